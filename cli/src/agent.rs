//! Asking the agent: a plain HTTP/1.1 GET to its health/API address (the
//! agent's listener is local to the node and speaks only that).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;

use crate::exit::Failure;

/// GET `path` from the agent at `address` (`host:port`); the body of a 2xx
/// answer. Anything else is an error naming what happened.
pub fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let unreachable = |reason: String| Failure::AgentUnreachable {
        address: address.to_owned(),
        reason,
    };
    let mut stream = TcpStream::connect(address).map_err(|e| unreachable(e.to_string()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // One write: the agent reads the request line from the first segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| unreachable(e.to_string()))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| unreachable(e.to_string()))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the agent's answer has no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the agent's answer has no status code")?;
    Ok((code, body.to_owned()))
}

/// GET `path` as JSON; a non-2xx answer is an error with its body.
pub fn get_json<T: serde::de::DeserializeOwned>(address: &str, path: &str) -> anyhow::Result<T> {
    let (code, body) = get(address, path)?;
    anyhow::ensure!(
        (200..300).contains(&code),
        "the agent answered {code} to {path}: {}",
        body.trim()
    );
    serde_json::from_str(&body)
        .with_context(|| format!("the agent's answer to {path} is not what weir expects"))
}
