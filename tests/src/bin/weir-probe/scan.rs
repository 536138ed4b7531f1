//! `weir-probe scan`: many targets at once, for reachability grids.
//!
//! A NetworkPolicy drops a SYN silently, so a denied cell costs a full
//! timeout; dialled one after another, a 9×9 grid with a few denied rows
//! would take many seconds. Every target gets a thread of its own instead,
//! so a whole row costs about `attempts × timeout` at worst.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::{connect_tcp, connect_udp, json_line};

/// Dials every target (up to `attempts` times each, until answered) and
/// prints one `connect --json` line per target with a `target` field, in
/// the order of `targets`. Exit 0 if every target answered.
///
/// The threads are created after `main` joined the netns and the cgroup,
/// so they inherit both (a new thread copies its creator's namespaces).
pub(super) fn scan(targets: &[SocketAddr], udp: bool, timeout: Duration, attempts: u32) -> Result<ExitCode> {
    let lines: Vec<(bool, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|target| scope.spawn(move || dial(*target, udp, timeout, attempts)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or((false, r#"{"error":"thread panicked"}"#.to_owned()))
            })
            .collect()
    });
    let mut stdout = std::io::stdout().lock();
    let mut all = true;
    for (answered, line) in lines {
        all &= answered;
        writeln!(stdout, "{line}").context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")?;
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One target: the first answer, or the last failure; as a JSON line.
fn dial(target: SocketAddr, udp: bool, timeout: Duration, attempts: u32) -> (bool, String) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let result = if udp {
            connect_udp(target, timeout)
        } else {
            connect_tcp(target, timeout)
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if result.is_ok() || attempt >= attempts {
            let line = json_line(&result, micros);
            // `json_line` renders an object; the target goes in front of it.
            let line = format!(
                r#"{{"target":"{target}",{}"#,
                line.strip_prefix('{').unwrap_or(&line)
            );
            return (result.is_ok(), line);
        }
    }
}
