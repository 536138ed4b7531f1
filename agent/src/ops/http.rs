//! The agent's tiny HTTP/1.1 server: one request per connection, answered
//! and closed. Probes and scrapers (kubelet, load balancers, Prometheus)
//! need nothing more, and both the `healthCheckNodePort` servers and the
//! ops endpoints use this one piece of code.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// How long a client gets to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status line text, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// More headers, written as given.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// A plain-text response.
    #[must_use]
    pub fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `200 OK` with `doc` as pretty JSON (a document that cannot be
    /// serialised is a `500`).
    #[must_use]
    pub fn json(doc: &impl serde::Serialize) -> Self {
        match serde_json::to_string_pretty(doc) {
            Ok(body) => Self {
                status: "200 OK",
                content_type: "application/json",
                headers: Vec::new(),
                body: body + "\n",
            },
            Err(e) => Self::text("500 Internal Server Error", format!("{e}\n")),
        }
    }

    /// The bytes on the wire.
    #[must_use]
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\n",
            self.status, self.content_type
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(
            out,
            "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.body.len(),
            self.body
        );
        out
    }
}

/// Accepts connections forever, answering each with `handler(target)` (the
/// path with its `?query`, see [`request_target`]); the target is `None`
/// when the client sent no readable request line (a TCP
/// probe), so a health check can still answer it.
pub async fn serve<H, F>(listener: TcpListener, what: &'static str, handler: H)
where
    H: Fn(Option<String>) -> F + Clone + Send + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(answer(stream, peer, handler.clone()));
            }
            Err(e) => {
                warn!(error = %e, server = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the request (up to a bound, only as far as its request line),
/// writes the response and closes, so the client sees a clean close.
async fn answer<H, F>(mut stream: TcpStream, peer: SocketAddr, handler: H)
where
    H: Fn(Option<String>) -> F,
    F: Future<Output = Response>,
{
    let mut buf = [0u8; 1024];
    let path = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => request_target(&buf[..n]),
        _ => None,
    };
    if path.is_none() {
        debug!(%peer, "client sent no request line");
    }
    let response = handler(path).await;
    let _ = stream.write_all(response.render().as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The target of `GET /path?query HTTP/1.1`, query included (handlers that
/// route by path split it off; `/v1/policy/verdict` reads its parameters).
#[must_use]
pub fn request_target(request: &[u8]) -> Option<String> {
    let line = request.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

/// The path of `GET /path?query HTTP/1.1`, without the query.
#[must_use]
pub fn request_path(request: &[u8]) -> Option<String> {
    let line = request.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let target = line.split_whitespace().nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_path_drops_the_query() {
        assert_eq!(
            request_path(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").as_deref(),
            Some("/metrics")
        );
        assert_eq!(request_path(b""), None);
    }

    #[test]
    fn render_counts_the_body() {
        let r = Response::text("200 OK", "ok").render();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 2\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok"), "{r}");
    }
}
