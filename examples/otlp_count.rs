//! A stand-in for an OpenTelemetry collector, for `scripts/bench-tracing.sh`: accepts
//! OTLP/HTTP protobuf exports (`POST /v1/traces`), counts the spans in them and answers
//! `GET /count` with the total. Listens on 127.0.0.1 only; uncompressed bodies only (the
//! project's exporter does not compress). A process of its own, so that its work is not
//! counted as the server's.
//!
//! `PORT=14318 cargo run --release --example otlp_count`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(14318);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let spans = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming() {
        let stream = stream?;
        let spans = Arc::clone(&spans);
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &spans) {
                eprintln!("otlp_count: {e}");
            }
        });
    }
    Ok(())
}

/// Answers the requests of one connection (HTTP/1.1, kept alive).
fn serve(stream: TcpStream, spans: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, answer) = if request_line.starts_with("POST /v1/traces ") {
            match count_spans(&body) {
                Some(n) => {
                    spans.fetch_add(n, Ordering::Relaxed);
                    ("200 OK", String::new())
                }
                None => ("400 Bad Request", String::new()),
            }
        } else if request_line.starts_with("GET /count ") {
            ("200 OK", spans.load(Ordering::Relaxed).to_string())
        } else {
            ("404 Not Found", String::new())
        };
        // One write: a response in pieces would wait on the exporter's delayed ACK.
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        writer.write_all(response.as_bytes())?;
    }
}

/// The spans in an `ExportTraceServiceRequest`: its `resource_spans` (field 1), their
/// `scope_spans` (field 2), their `spans` (field 2). `None` if it is not protobuf.
fn count_spans(request: &[u8]) -> Option<u64> {
    let mut n = 0;
    for resource_spans in fields(request, 1)? {
        for scope_spans in fields(resource_spans, 2)? {
            n += fields(scope_spans, 2)?.len() as u64;
        }
    }
    Some(n)
}

/// The length-delimited values of field `wanted` in a protobuf message.
fn fields(mut message: &[u8], wanted: u64) -> Option<Vec<&[u8]>> {
    let mut found = Vec::new();
    while !message.is_empty() {
        let tag = varint(&mut message)?;
        match tag & 7 {
            0 => {
                varint(&mut message)?;
            }
            1 => message = message.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                let value = message.get(..len)?;
                message = &message[len..];
                if tag >> 3 == wanted {
                    found.push(value);
                }
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    Some(found)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
