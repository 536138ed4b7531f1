//! `weir-probe` servers and clients inside pods.
//!
//! A server answers every connection with its name, so a client learns which
//! backend a connection reached without any parsing of HTTP or logs. Both run in a
//! pod's netns and cgroup, so the client's `connect()` is the one the agent's
//! `connect4` program sees.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Prefix of a failed attempt's line in `weir-probe connect` output.
pub const ERROR_PREFIX: &str = "error: ";

/// A running `weir-probe serve`.
#[derive(Debug)]
pub struct Server {
    /// The name it answers with.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddrV4,
    child: Child,
}

/// One connection attempt: the name of the server that answered, or the error.
pub type Attempt = std::result::Result<String, String>;

/// The outcome of `weir-probe connect --count N`, one entry per attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replies {
    /// Attempts in order.
    pub attempts: Vec<Attempt>,
}

/// A `weir-probe` command that joins `netns` and `cgroup` before doing anything.
fn probe_command(probe: &Path, netns: &Path, cgroup: &Path) -> Command {
    let mut command = Command::new(probe);
    command.arg("--netns").arg(netns).arg("--cgroup").arg(cgroup);
    command
}

impl Server {
    /// Starts a server and returns once it listens (it prints one line after
    /// `bind` + `listen`, so no client can race it).
    pub fn start(
        probe: &Path,
        netns: &Path,
        cgroup: &Path,
        name: &str,
        listen: SocketAddrV4,
        log: &Path,
    ) -> Result<Self> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = probe_command(probe, netns, cgroup);
        command
            .args(["serve", "--name", name, "--listen", &listen.to_string()])
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

/// Runs `weir-probe connect target --count count` from inside a pod and returns
/// every attempt. Failed attempts are data, not errors: only a probe that could
/// not run at all is an error.
pub fn connect(
    probe: &Path,
    netns: &Path,
    cgroup: &Path,
    target: SocketAddrV4,
    count: u32,
    timeout: Duration,
) -> Result<Replies> {
    let mut command = probe_command(probe, netns, cgroup);
    command
        .args(["connect", &target.to_string()])
        .args(["--count", &count.to_string()])
        .args(["--timeout-ms", &timeout.as_millis().to_string()]);
    let output = command
        .output()
        .with_context(|| format!("running `{}`", cmd::describe(&command)))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let attempts: Vec<Attempt> = stdout
        .lines()
        .map(|line| match line.strip_prefix(ERROR_PREFIX) {
            Some(error) => Err(error.to_owned()),
            None => Ok(line.to_owned()),
        })
        .collect();
    if attempts.len() != count as usize {
        bail!(
            "`{}` printed {} lines for {count} attempts ({})\n  stdout: {}\n  stderr: {}",
            cmd::describe(&command),
            attempts.len(),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(Replies { attempts })
}

impl Replies {
    /// How many times each server answered.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for name in self.attempts.iter().filter_map(|attempt| attempt.as_deref().ok()) {
            *counts.entry(name).or_default() += 1;
        }
        counts
    }

    /// The errors of failed attempts.
    #[must_use]
    pub fn failures(&self) -> Vec<&str> {
        self.attempts
            .iter()
            .filter_map(|attempt| attempt.as_ref().err().map(String::as_str))
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
}
