//! HTTP/1.1 keep-alive connections to the instances (hyper's client connection, as
//! examples/flood.rs), one request at a time per connection.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Sender = SendRequest<Empty<Bytes>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest a connect or a request may take before it counts as lost.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What came back.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
    /// The response carried `RateLimit-Degraded` (decided by the failure mode).
    pub degraded: bool,
}

/// A request's headers beyond `Host`.
#[derive(Default)]
pub struct Headers<'a> {
    pub bearer: Option<&'a str>,
    pub forwarded_for: Option<&'a str>,
}

/// Opens a keep-alive connection (TCP_NODELAY: requests are small and latency counts).
pub async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection); // drives the connection; its error shows in send_request
    Ok(sender)
}

/// One GET, its body read, within [`REQUEST_TIMEOUT`].
pub async fn get(
    sender: &mut Sender,
    addr: SocketAddr,
    path: &str,
    headers: &Headers<'_>,
) -> Result<Answer, BoxError> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut request = Request::get(path).header(HOST, addr.to_string());
        if let Some(bearer) = headers.bearer {
            request = request.header(AUTHORIZATION, bearer);
        }
        if let Some(ip) = headers.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        let request = request.body(Empty::new())?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let degraded = response.headers().contains_key("ratelimit-degraded");
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(Answer { status, degraded })
    })
    .await?
}

/// The instance's Prometheus metrics (`GET /metrics`, never rate-limited).
pub async fn scrape(addr: SocketAddr) -> Result<String, BoxError> {
    let mut sender = connect(addr).await?;
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let request = Request::get("/metrics")
            .header(HOST, addr.to_string())
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            return Err(format!("/metrics answered {}", response.status()).into());
        }
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    })
    .await?
}

/// The sum of every sample of `metric` whose labels contain `label` (e.g.
/// `result="ok"`), in a Prometheus text exposition.
pub fn metric_sum(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .filter(|l| l[metric.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_the_matching_samples_only() {
        let text = "# TYPE ratelimit_config_reloads_total counter\n\
                    ratelimit_config_reloads_total{result=\"ok\"} 2\n\
                    ratelimit_config_reloads_total{result=\"failed\"} 1\n\
                    ratelimit_config_reloads_total_other{result=\"ok\"} 9\n";
        assert_eq!(
            metric_sum(text, "ratelimit_config_reloads_total", "result=\"ok\""),
            2.0
        );
        assert_eq!(metric_sum(text, "absent", ""), 0.0);
    }
}
