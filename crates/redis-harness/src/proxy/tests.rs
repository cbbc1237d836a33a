use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use super::{FaultProxy, Mode};
use crate::RedisServer;

/// Generous bound for things that must happen: a slow machine must not fail the test.
const EVENTUALLY: Duration = Duration::from_secs(10);

fn proxied(server: &RedisServer) -> FaultProxy {
    FaultProxy::start(("127.0.0.1", server.port()))
}

fn redis_conn(proxy: &FaultProxy) -> redis::Connection {
    redis::Client::open(proxy.url())
        .expect("proxy url")
        .get_connection_with_timeout(EVENTUALLY)
        .expect("connection through the proxy")
}

fn ping(conn: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(conn)
}

/// A raw connection through the proxy that has completed one round trip, so the proxy
/// has certainly accepted and connected it.
fn raw_conn(proxy: &FaultProxy) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect to proxy");
    stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
    assert_eq!(
        raw_ping(&mut stream).expect("PING through the proxy"),
        "+PONG\r\n"
    );
    stream
}

fn raw_ping(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"PING\r\n")?;
    read_reply(stream)
}

fn read_reply(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Asserts the peer closed the connection (EOF or reset), as opposed to a timeout.
fn assert_closed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
    let mut buf = [0u8; 64];
    // Writing first may fail already (reset): that is a closed connection too.
    let result = stream
        .write_all(b"PING\r\n")
        .and_then(|()| stream.read(&mut buf));
    match result {
        Ok(0) => {}
        Ok(n) => panic!("the connection is open: got {:?}", &buf[..n]),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the connection was not closed within {EVENTUALLY:?}"
        ),
    }
}

#[test]
fn passes_traffic() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let mut conn = redis_conn(&proxy);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let got: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(got, "v");
    let direct: String = server.cmd(&["GET", "k"]);
    assert_eq!(direct, "v", "the write reached the real server");
}

#[test]
fn delays_traffic() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let mut conn = redis_conn(&proxy);
    // One second each way: a reply within half a second would mean no delay.
    proxy.set_mode(Mode::Delay(Duration::from_secs(1)));

    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        done.send(ping(&mut conn)).expect("the test waits");
    });
    assert!(
        finished.recv_timeout(Duration::from_millis(500)).is_err(),
        "a reply came back through a 1 s delay within 500 ms"
    );
    let reply = finished
        .recv_timeout(EVENTUALLY)
        .expect("a delayed reply still arrives");
    assert_eq!(reply.expect("PING"), "PONG");
    worker.join().unwrap();
}

#[test]
fn blackholes_traffic_and_delivers_it_when_healed() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let mut conn = redis_conn(&proxy);
    let mut raw = raw_conn(&proxy);
    proxy.set_mode(Mode::Blackhole);

    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = ping(&mut conn).expect_err("a reply came through a blackhole");
    assert!(err.is_timeout(), "expected a read timeout, got {err}");

    raw.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = raw_ping(&mut raw).expect_err("a reply came through a blackhole");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    // The connection stayed open and the held request is delivered once healed.
    proxy.set_mode(Mode::Pass);
    raw.set_read_timeout(Some(EVENTUALLY)).unwrap();
    assert_eq!(
        read_reply(&mut raw).expect("the held PING's reply"),
        "+PONG\r\n"
    );
}

#[test]
fn refuses_open_and_new_connections() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let mut open = raw_conn(&proxy);
    proxy.set_mode(Mode::Refuse);
    assert_closed(&mut open);

    // A new connection is accepted by the kernel, then closed by the proxy at once.
    let mut new = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect to proxy");
    assert_closed(&mut new);
    let client = redis::Client::open(proxy.url()).unwrap();
    assert!(client.get_connection_with_timeout(EVENTUALLY).is_err());

    proxy.set_mode(Mode::Pass);
    assert_eq!(
        ping(&mut redis_conn(&proxy)).expect("PING after refusing"),
        "PONG"
    );
}

#[test]
fn cut_all_drops_open_connections_then_keeps_passing() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let mut first = raw_conn(&proxy);
    let mut second = redis_conn(&proxy);
    assert_eq!(ping(&mut second).unwrap(), "PONG");

    proxy.cut_all();
    assert_closed(&mut first);
    assert!(
        ping(&mut second).is_err(),
        "a cut connection still answered"
    );

    assert_eq!(
        ping(&mut redis_conn(&proxy)).expect("PING after the cut"),
        "PONG"
    );
}

#[test]
fn dropping_the_proxy_closes_its_port_and_connections() {
    let server = RedisServer::spawn();
    let proxy = proxied(&server);
    let port = proxy.port();
    let mut open = raw_conn(&proxy);
    proxy.set_mode(Mode::Blackhole); // a held connection must not keep the proxy alive
    drop(proxy);
    assert_closed(&mut open);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
