//! Connection-rate runs: `weir-probe bench connect` in a client's netns and
//! cgroup, one JSON summary back.

use std::net::SocketAddrV4;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use weir_tests::Place;

/// One run's summary, as `weir-probe bench connect` prints it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Run {
    /// Successful transactions per second.
    pub rate: f64,
    /// Median transaction latency (connect, request, answer), µs.
    pub p50_us: u32,
    /// 99th percentile, µs.
    pub p99_us: u32,
    /// Successful transactions.
    pub transactions: u64,
    /// Failed transactions by kind.
    #[serde(default)]
    pub failures: std::collections::BTreeMap<String, u64>,
}

impl Run {
    /// Failed transactions.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// How long and how wide a run is.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Seconds per run.
    pub seconds: f64,
    /// Clients at once.
    pub concurrency: usize,
}

/// Runs the load generator from `place` against `targets` (each client
/// takes them in turn). A run in which
/// nothing succeeded, or more than 1% failed, is an error: the datapath
/// under test is broken, and its rate would be meaningless.
pub fn run(probe: &Path, place: &Place, targets: &[SocketAddrV4], load: Load) -> Result<Run> {
    let target = targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new(probe);
    command.arg("--netns").arg(&place.netns);
    if let Some(cgroup) = &place.cgroup {
        command.arg("--cgroup").arg(cgroup);
    }
    command.args(["bench", "connect"]);
    command.args(targets.iter().map(ToString::to_string));
    command.args([
        "--seconds",
        &load.seconds.to_string(),
        "--concurrency",
        &load.concurrency.to_string(),
    ]);
    let output = command.output().context("running weir-probe bench connect")?;
    if !output.status.success() {
        bail!(
            "weir-probe bench connect {target} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let run: Run = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parsing {:?}", String::from_utf8_lossy(&output.stdout)))?;
    if run.transactions == 0 || run.failed() * 100 > run.transactions {
        bail!(
            "connections to {target} failed: {} ok, failures {:?}",
            run.transactions,
            run.failures
        );
    }
    Ok(run)
}
