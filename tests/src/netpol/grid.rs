//! Probing a grid: every source dials every target at once.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::pod_keys;
use super::table::TruthTable;
use crate::cluster::{Cluster, Origin};
use crate::probe::Protocol;

/// Per-attempt limit. An answer within the lab takes well under a
/// millisecond; a dropped SYN is only ever a timeout, so this bounds what a
/// denied cell costs.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

/// Attempts per cell: one lost packet must not turn a cell red.
const ATTEMPTS: u32 = 2;

/// A column of a grid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The column's name (`y/b`, `svc y/s-b`).
    pub label: String,
    /// What the sources dial.
    pub address: SocketAddrV4,
    /// The server name an answer must carry to count (a Service's backend,
    /// say); `None`: any answer counts.
    pub answers_as: Option<String>,
}

/// The model's pods as targets: their pod IPs on `port`; the answer must
/// come from the pod itself.
pub fn pod_targets(cluster: &Cluster, port: u16) -> Result<Vec<Target>> {
    pod_keys()
        .into_iter()
        .map(|key| {
            let pod = cluster.pod(&key)?;
            Ok(Target {
                address: SocketAddrV4::new(pod.ip, port),
                answers_as: Some(pod.name.clone()),
                label: key,
            })
        })
        .collect()
}

/// What one probe of a grid saw: the matrix, and for each cell that was not
/// connected, why (`timeout: …`, `refused: …`, `answered by c`).
#[derive(Clone, Debug)]
pub struct Observation {
    /// Connected or not, rows are `sources`, columns the targets' labels.
    pub table: TruthTable,
    /// Why a cell is false.
    pub failures: BTreeMap<(String, String), String>,
}

/// One line of `weir-probe scan`.
#[derive(Deserialize)]
struct ScanLine {
    target: String,
    answer: Option<String>,
    error: Option<String>,
    kind: Option<String>,
}

/// Probes every target from every source (pods of the cluster) once, all
/// at the same time: one `weir-probe scan` per source.
pub fn observe(
    cluster: &Cluster,
    sources: &[String],
    targets: &[Target],
    protocol: Protocol,
) -> Result<Observation> {
    let origins: Vec<(String, Origin)> = sources
        .iter()
        .map(|key| (key.clone(), Origin::Pod(key.clone())))
        .collect();
    observe_from(cluster, &origins, targets, protocol)
}

/// [`observe`] from any origins (pods, nodes, the external client), each
/// row named by the first element of its pair.
pub fn observe_from(
    cluster: &Cluster,
    sources: &[(String, Origin)],
    targets: &[Target],
    protocol: Protocol,
) -> Result<Observation> {
    let mut children: Vec<(String, Child)> = Vec::new();
    for (source, origin) in sources {
        let place = cluster.place(origin)?;
        let mut command = crate::cmd::command(&cluster.binaries().probe, false);
        command.arg("--netns").arg(&place.netns);
        if let Some(cgroup) = &place.cgroup {
            command.arg("--cgroup").arg(cgroup);
        }
        command
            .arg("scan")
            .args(targets.iter().map(|t| t.address.to_string()))
            .args((protocol == Protocol::Udp).then_some("--udp"))
            .args(["--timeout-ms", &ATTEMPT_TIMEOUT.as_millis().to_string()])
            .args(["--attempts", &ATTEMPTS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", crate::cmd::describe(&command)));
        match child {
            Ok(child) => children.push((source.clone(), child)),
            Err(err) => {
                // Those already running are reaped before giving up.
                for (_, mut started) in children {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                return Err(err);
            }
        }
    }
    let rows: Vec<String> = sources.iter().map(|(name, _)| name.clone()).collect();
    let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
    let mut table = TruthTable::new(rows, labels, false);
    let mut failures = BTreeMap::new();
    // Every child is waited for, also after an error, so none is left behind.
    let mut first_error = None;
    for (source, child) in children {
        let result = read_row(&source, child, targets, protocol);
        match result {
            Ok(row) => {
                for (target, outcome) in targets.iter().zip(row) {
                    match outcome {
                        Ok(()) => table.set(&source, &target.label, true),
                        Err(why) => {
                            failures.insert((source.clone(), target.label.clone()), why);
                        }
                    }
                }
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(Observation { table, failures }),
    }
}

/// The outcome per target of one source's scan.
fn read_row(
    source: &str,
    child: Child,
    targets: &[Target],
    protocol: Protocol,
) -> Result<Vec<Result<(), String>>> {
    let output = child
        .wait_with_output()
        .with_context(|| format!("running weir-probe scan in {source}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    if lines.len() != targets.len() {
        bail!(
            "weir-probe scan in {source} ({protocol}) printed {} lines for {} targets ({})\n  stdout: {}\n  stderr: {}",
            lines.len(),
            targets.len(),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    targets
        .iter()
        .zip(lines)
        .map(|(target, line)| outcome(line, target).with_context(|| format!("from {source}")))
        .collect()
}

/// One target's line of `weir-probe scan`: connected, or why not (an
/// answer from another server than the target's is not a connection to it).
fn outcome(line: &str, target: &Target) -> Result<Result<(), String>> {
    let line: ScanLine = serde_json::from_str(line).with_context(|| format!("unexpected line {line:?}"))?;
    if line.target != target.address.to_string() {
        bail!("weir-probe scan answered for {} out of order", line.target);
    }
    Ok(match (line.answer, &target.answers_as) {
        (Some(answer), Some(name)) => {
            let server = answer.split_whitespace().next().unwrap_or_default().to_owned();
            if server == *name {
                Ok(())
            } else {
                Err(format!("answered by {server}, not {name}"))
            }
        }
        (Some(_), None) => Ok(()),
        (None, _) => Err(format!(
            "{}: {}",
            line.kind.as_deref().unwrap_or("failed"),
            line.error.unwrap_or_default()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lines_become_cells() {
        let target = Target {
            label: "y/b".to_owned(),
            address: "10.244.2.3:80".parse().unwrap(),
            answers_as: Some("b".to_owned()),
        };
        let answered = r#"{"target":"10.244.2.3:80","answer":"b 10.244.1.2:40000","local":"10.244.1.2:40000","micros":90}"#;
        assert_eq!(outcome(answered, &target).unwrap(), Ok(()));
        let stranger = answered.replace("\"b 10", "\"c 10");
        assert_eq!(
            outcome(&stranger, &target).unwrap(),
            Err("answered by c, not b".to_owned())
        );
        let dropped = r#"{"target":"10.244.2.3:80","error":"connect 10.244.2.3:80: timed out","kind":"timeout","micros":300000}"#;
        let why = outcome(dropped, &target).unwrap().unwrap_err();
        assert!(why.starts_with("timeout: connect"), "{why}");
        let elsewhere = dropped.replace("10.244.2.3:80\",\"error", "10.244.2.4:80\",\"error");
        assert!(outcome(&elsewhere, &target).is_err());
        assert!(outcome("weir-probe: bad", &target).is_err());
    }
}
