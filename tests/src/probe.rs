//! `weir-probe` servers and clients inside pods, nodes and the external client.
//!
//! A server answers every connection (or UDP datagram) with its name and the
//! source address it saw, so a client learns which backend a connection
//! reached — and whether anything rewrote its source on the way — without any
//! parsing of HTTP or logs. Both run in a netns and cgroup of their own (a
//! pod's, say), so the client's `connect()` is the one the agent's socket-LB
//! programs see.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cmd;

/// Prefix of a failed attempt's line in `weir-probe connect` text output.
pub const ERROR_PREFIX: &str = "error: ";

/// Transport of a probe or a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP: one connection per attempt.
    #[default]
    Tcp,
    /// UDP: one connected socket and one datagram per attempt.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so tables can give it a width.
        f.pad(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = anyhow::Error;

    /// `tcp`/`udp` in any case (Kubernetes writes `TCP`, people write `tcp`).
    fn from_str(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => bail!("protocol {text:?} is not supported (TCP or UDP)"),
        }
    }
}

/// Where a process runs: a netns, and the cgroup it joins first (socket-LB
/// applies to processes below a cgroup the agent attached to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The netns file (`/run/netns/NAME`).
    pub netns: PathBuf,
    /// Cgroup directory to join, if any.
    pub cgroup: Option<PathBuf>,
}

/// A running `weir-probe serve`.
#[derive(Debug)]
pub struct Server {
    /// The name it answers with.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddrV4,
    /// What it listens for.
    pub protocol: Protocol,
    child: Child,
}

/// A server's answer to one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The name the server answers with (the pod's name, for the lab's pods).
    pub name: String,
    /// The source address the server saw (`None` from a server that does not
    /// report it).
    pub peer: Option<SocketAddrV4>,
    /// The client socket's own address.
    pub local: Option<SocketAddrV4>,
    /// How long the attempt took, connect to answer.
    pub elapsed: Duration,
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// `ECONNREFUSED`: a RST, or ICMP port unreachable for UDP.
    Refused,
    /// No answer within the attempt's limit.
    Timeout,
    /// No route, or ICMP host/net unreachable.
    Unreachable,
    /// The connection was reset after it was made, or the datapath aborted
    /// the socket.
    Reset,
    /// Anything else.
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            FailureKind::Refused => "refused",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Reset => "reset",
            FailureKind::Other => "failed",
        })
    }
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The class of failure.
    pub kind: FailureKind,
    /// The client's error message.
    pub message: String,
    /// How long the attempt took before it failed.
    pub elapsed: Duration,
}

/// One attempt: the server's answer, or why there was none.
pub type Attempt = std::result::Result<Answer, Failure>;

/// The outcome of `weir-probe connect --count N`, one entry per attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replies {
    /// Attempts in order.
    pub attempts: Vec<Attempt>,
}

/// A `weir-probe` command that joins `place` before doing anything.
fn probe_command(probe: &Path, place: &Place, detached: bool) -> std::process::Command {
    let mut command = cmd::command(probe, detached);
    command.arg("--netns").arg(&place.netns);
    if let Some(cgroup) = &place.cgroup {
        command.arg("--cgroup").arg(cgroup);
    }
    command
}

impl Server {
    /// Starts a server and returns once it listens (it prints one line after
    /// `bind`, so no client can race it). A `detached` server is in a session
    /// of its own and outlives this process; its owner stops it with its
    /// cgroup.
    pub fn start(
        probe: &Path,
        place: &Place,
        name: &str,
        (listen, protocol): (SocketAddrV4, Protocol),
        log: &Path,
        detached: bool,
    ) -> Result<Self> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = probe_command(probe, place, detached);
        command
            .args(["serve", "--name", name, "--listen", &listen.to_string()])
            .args((protocol == Protocol::Udp).then_some("--udp"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let what = format!("`{}`", cmd::describe(&command));
        let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("server stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if line.is_empty() {
            let _ = child.kill();
            let exit = child.wait()?;
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} exited ({exit}) before listening: {}", log.trim());
        }
        Ok(Server {
            name: name.to_owned(),
            listen,
            protocol,
            child,
        })
    }

    /// Kills the server and reaps it.
    pub fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = self.child.kill();
        }
        self.child.wait()?;
        Ok(())
    }
}

/// A running `weir-probe session`: one socket held open, one exchange per
/// [`Session::exchange`]. Killed on drop.
#[derive(Debug)]
pub struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    what: String,
}

impl Session {
    /// Starts a client in `place` for `target`; the socket is opened by the
    /// first exchange.
    pub fn start(
        probe: &Path,
        place: &Place,
        (target, protocol): (SocketAddrV4, Protocol),
        timeout: Duration,
    ) -> Result<Self> {
        let mut command = probe_command(probe, place, false);
        command
            .args(["session", &target.to_string()])
            .args((protocol == Protocol::Udp).then_some("--udp"))
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let what = format!("`{}`", cmd::describe(&command));
        let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
        let stdin = child.stdin.take().context("session stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("session stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            what,
        })
    }

    /// One exchange on the held socket (a fresh one after a failure).
    pub fn exchange(&mut self) -> Result<Attempt> {
        use std::io::Write as _;
        writeln!(self.stdin).with_context(|| format!("writing to {}", self.what))?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            bail!("{} exited", self.what);
        }
        parse_attempt(line.trim_end()).with_context(|| format!("output of {}", self.what))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weir-probe connect` from `place` to `target` and returns every
/// attempt. Failed attempts are data, not errors: only a probe that could not
/// run at all is an error.
pub fn connect(
    probe: &Path,
    place: &Place,
    target: (SocketAddrV4, Protocol),
    count: u32,
    timeout: Duration,
) -> Result<Replies> {
    Loop::start(probe, place, target, (count, Duration::ZERO), timeout)?.finish()
}

/// A `weir-probe connect` running in the background: `count` attempts,
/// `interval` apart — a steady request loop while the test does something
/// else.
#[derive(Debug)]
pub struct Loop {
    child: Child,
    count: u32,
    what: String,
}

impl Loop {
    /// Starts the loop.
    pub fn start(
        probe: &Path,
        place: &Place,
        (target, protocol): (SocketAddrV4, Protocol),
        (count, interval): (u32, Duration),
        timeout: Duration,
    ) -> Result<Self> {
        let mut command = probe_command(probe, place, false);
        command
            .args(["connect", &target.to_string(), "--json"])
            .args((protocol == Protocol::Udp).then_some("--udp"))
            .args(["--count", &count.to_string()])
            .args(["--interval-ms", &interval.as_millis().to_string()])
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("`{}`", cmd::describe(&command));
        let child = command.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self { child, count, what })
    }

    /// Waits for the last attempt and returns them all.
    pub fn finish(self) -> Result<Replies> {
        let output = self
            .child
            .wait_with_output()
            .with_context(|| format!("running {}", self.what))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let attempts: Result<Vec<Attempt>> = stdout.lines().map(parse_attempt).collect();
        let attempts = attempts.with_context(|| format!("output of {}", self.what))?;
        if attempts.len() != self.count as usize {
            bail!(
                "{} printed {} lines for {} attempts ({})\n  stdout: {}\n  stderr: {}",
                self.what,
                attempts.len(),
                self.count,
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Replies { attempts })
    }
}

/// One line of `weir-probe connect --json`.
#[derive(Deserialize)]
struct Line {
    answer: Option<String>,
    local: Option<String>,
    error: Option<String>,
    kind: Option<String>,
    micros: u64,
}

/// Parses one `--json` line into an attempt.
fn parse_attempt(text: &str) -> Result<Attempt> {
    let line: Line = serde_json::from_str(text).with_context(|| format!("unexpected line {text:?}"))?;
    let elapsed = Duration::from_micros(line.micros);
    if let Some(answer) = line.answer {
        let mut words = answer.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let peer = words.next().and_then(|word| v4(word.parse().ok()?));
        let local = line.local.and_then(|text| v4(text.parse().ok()?));
        return Ok(Ok(Answer {
            name,
            peer,
            local,
            elapsed,
        }));
    }
    let kind = match line.kind.as_deref() {
        Some("refused") => FailureKind::Refused,
        Some("timeout") => FailureKind::Timeout,
        Some("unreachable") => FailureKind::Unreachable,
        Some("reset") => FailureKind::Reset,
        _ => FailureKind::Other,
    };
    Ok(Err(Failure {
        kind,
        message: line.error.unwrap_or_default(),
        elapsed,
    }))
}

/// The IPv4 form of a socket address (the topology is IPv4 only).
fn v4(address: SocketAddr) -> Option<SocketAddrV4> {
    match address {
        SocketAddr::V4(address) => Some(address),
        SocketAddr::V6(_) => None,
    }
}

impl Replies {
    /// How many times each server answered.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for answer in self.answers() {
            *counts.entry(answer.name.as_str()).or_default() += 1;
        }
        counts
    }

    /// The answers of successful attempts.
    pub fn answers(&self) -> impl Iterator<Item = &Answer> {
        self.attempts.iter().filter_map(|attempt| attempt.as_ref().ok())
    }

    /// The error messages of failed attempts.
    #[must_use]
    pub fn failures(&self) -> Vec<&str> {
        self.attempts
            .iter()
            .filter_map(|attempt| attempt.as_ref().err().map(|failure| failure.message.as_str()))
            .collect()
    }

    /// Whether every attempt was answered.
    #[must_use]
    pub fn all_answered(&self) -> bool {
        self.attempts.iter().all(Result::is_ok)
    }

    /// Whether no attempt was answered.
    #[must_use]
    pub fn none_answered(&self) -> bool {
        self.attempts.iter().all(Result::is_err)
    }

    /// The distinct source addresses (IP only) the servers saw.
    #[must_use]
    pub fn peer_ips(&self) -> Vec<std::net::Ipv4Addr> {
        let mut ips: Vec<_> = self.answers().filter_map(|a| a.peer.map(|p| *p.ip())).collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_failures_parse() {
        let ok =
            parse_attempt(r#"{"answer":"echo-a 10.244.1.5:40000","local":"10.244.1.5:40000","micros":310}"#)
                .unwrap()
                .unwrap();
        assert_eq!(ok.name, "echo-a");
        assert_eq!(ok.peer, Some("10.244.1.5:40000".parse().unwrap()));
        assert_eq!(ok.local, ok.peer);
        assert_eq!(ok.elapsed, Duration::from_micros(310));

        // A server that only says its name still counts as an answer.
        let old = parse_attempt(r#"{"answer":"echo-b","local":"10.244.1.5:1","micros":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!((old.name.as_str(), old.peer), ("echo-b", None));

        let failed = parse_attempt(r#"{"error":"connect: refused","kind":"refused","micros":40}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(failed.kind, FailureKind::Refused);
        assert!(parse_attempt("echo-a").is_err());
    }

    #[test]
    fn protocols_parse_in_any_case() {
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("udp".parse::<Protocol>().unwrap(), Protocol::Udp);
        assert!("SCTP".parse::<Protocol>().is_err());
    }
}
