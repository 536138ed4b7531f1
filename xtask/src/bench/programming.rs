//! Programming time: the cold load of a whole Service set, and single
//! endpoint changes, for weir's agent and for the peers' loaders.
//!
//! weir runs standalone on the manifest directory: the bench writes the
//! set as one file (atomically) and waits for the agent's status. The
//! agent's own histograms split the time: `weir_sync_duration_seconds` is
//! the sync pass — desired state computed from the parsed objects and
//! written to the maps, what `iptables-restore`/`nft -f` of an already
//! generated ruleset compare with — and
//! `weir_network_programming_duration_seconds` runs from the change being
//! seen to the maps written, so it also holds reading and parsing every
//! manifest (standalone mode re-reads the whole directory on any change).
//! Each change is one pass, so the deltas of the histograms' sums are the
//! exact durations.
//!
//! The peers: the wall time of one `iptables-restore --noflush` (or
//! `nft -f`) process loading what kube-proxy would write — all of it when
//! cold, a partial sync (iptables) or an incremental transaction (nftables)
//! for a change. Rules are in the kernel when the process returns.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;

use super::rules::{self, Peer};
use super::services::ServiceSet;
use super::stats;
use super::topology::Topology;

/// The manifest file the agent reads the set from.
const MANIFEST: &str = "bench-services.yaml";

/// How long a cold load may take before the bench gives up.
const COLD_TIMEOUT: Duration = Duration::from_mins(15);

/// Changes a datapath always gets, and the time after which it gets no more.
const MIN_CHANGES: usize = 3;
const CHANGE_BUDGET: Duration = Duration::from_mins(1);

/// The agent's two histograms, as sums and counts.
#[derive(Clone, Copy, Debug, Default)]
struct Histograms {
    sync_sum: f64,
    sync_count: f64,
    programming_sum: f64,
    programming_count: f64,
}

impl Histograms {
    fn scrape(topology: &Topology) -> Result<Self> {
        let (code, body) = topology.node()?.http_get(9962, "/metrics")?;
        ensure!(code == 200, "GET /metrics answered {code}");
        let value = |name: &str| -> f64 {
            body.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Ok(Histograms {
            sync_sum: value("weir_sync_duration_seconds_sum"),
            sync_count: value("weir_sync_duration_seconds_count"),
            programming_sum: value("weir_network_programming_duration_seconds_sum"),
            programming_count: value("weir_network_programming_duration_seconds_count"),
        })
    }

    /// Mean sync pass and programming time since `before`, in ms.
    fn since(&self, before: &Histograms) -> (f64, f64) {
        let per = |sum: f64, count: f64| if count > 0.0 { sum / count * 1000.0 } else { 0.0 };
        (
            per(
                self.sync_sum - before.sync_sum,
                self.sync_count - before.sync_count,
            ),
            per(
                self.programming_sum - before.programming_sum,
                self.programming_count - before.programming_count,
            ),
        )
    }
}

/// weir's programming numbers at one size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WeirProgramming {
    /// Cold: the sync pass that programmed the whole set, ms.
    pub cold_sync_ms: f64,
    /// Cold: change seen → maps written (reading and parsing included), ms.
    pub cold_programming_ms: f64,
    /// Cold: manifest written → status file reporting it, ms.
    pub cold_wall_ms: f64,
    /// Endpoint change, sync pass: p50 and p99, ms.
    pub change_sync_p50_ms: f64,
    /// See above.
    pub change_sync_p99_ms: f64,
    /// Endpoint change, change seen → maps written: p50 and p99, ms.
    pub change_programming_p50_ms: f64,
    /// See above.
    pub change_programming_p99_ms: f64,
    /// Changes measured.
    pub changes: usize,
    /// The agent's resident memory after start, before any Service, MiB.
    pub rss_idle_mib: f64,
    /// Peak resident memory (`VmHWM`) after the load and the changes, MiB.
    pub rss_peak_mib: f64,
    /// Resident memory at the end, MiB.
    pub rss_end_mib: f64,
    /// CPU seconds (user + system) the agent spent on the cold load.
    pub cpu_cold_s: f64,
    /// CPU seconds spent on all the changes.
    pub cpu_changes_s: f64,
}

/// Writes the set for the agent, measures the cold load, then `changes`
/// endpoint changes. Leaves `set` at its last generation.
pub fn weir(topology: &Topology, set: &mut ServiceSet, changes: usize) -> Result<WeirProgramming> {
    let pid = topology.agent_pid()?;
    let idle = Process::read(pid)?;
    let manifests = topology.cluster.manifests();
    let text = set.manifest();
    let frontends = set.count as u64 + 1;
    let generation = topology.agent_status()?.map_or(0, |s| s.generation);
    let before = Histograms::scrape(topology)?;
    let started = Instant::now();
    manifests.write(MANIFEST, &text)?;
    topology.wait_for_agent(&format!("{frontends} frontends"), COLD_TIMEOUT, |s| {
        s.generation > generation && s.frontends >= frontends
    })?;
    let cold_wall = started.elapsed();
    let after = Histograms::scrape(topology)?;
    let (cold_sync, cold_programming) = after.since(&before);
    let loaded = Process::read(pid)?;

    let mut sync = Vec::with_capacity(changes);
    let mut programming = Vec::with_capacity(changes);
    let changes_started = Instant::now();
    for k in 0..changes {
        if k >= MIN_CHANGES && changes_started.elapsed() > CHANGE_BUDGET {
            break;
        }
        set.generation += 1;
        let text = set.manifest();
        let generation = topology.agent_status()?.map_or(0, |s| s.generation);
        let before = Histograms::scrape(topology)?;
        manifests.write(MANIFEST, &text)?;
        topology.wait_for_agent("the endpoint change", COLD_TIMEOUT, |s| s.generation > generation)?;
        let (s, p) = Histograms::scrape(topology)?.since(&before);
        sync.push(s);
        programming.push(p);
    }
    let end = Process::read(pid)?;
    Ok(WeirProgramming {
        cold_sync_ms: cold_sync,
        cold_programming_ms: cold_programming,
        cold_wall_ms: cold_wall.as_secs_f64() * 1000.0,
        change_sync_p50_ms: stats::percentile(&sync, 50),
        change_sync_p99_ms: stats::percentile(&sync, 99),
        change_programming_p50_ms: stats::percentile(&programming, 50),
        change_programming_p99_ms: stats::percentile(&programming, 99),
        changes: sync.len(),
        rss_idle_mib: idle.rss_mib,
        rss_peak_mib: end.peak_rss_mib,
        rss_end_mib: end.rss_mib,
        cpu_cold_s: loaded.cpu_s - idle.cpu_s,
        cpu_changes_s: end.cpu_s - loaded.cpu_s,
    })
}

/// A peer's programming numbers at one size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerProgramming {
    /// Cold load of the whole set, ms.
    pub cold_ms: f64,
    /// Endpoint change: p50 and p99, ms.
    pub change_p50_ms: f64,
    /// See above.
    pub change_p99_ms: f64,
    /// Changes measured.
    pub changes: usize,
    /// Size of the cold ruleset, bytes.
    pub ruleset_bytes: usize,
}

/// Loads the set into `netns` as `peer`, then makes `changes` endpoint
/// changes. The rules stay loaded for the datapath runs; `rules::flush`
/// removes them.
pub fn peer(
    peer: Peer,
    netns: &Path,
    scratch: &Path,
    set: &ServiceSet,
    changes: usize,
) -> Result<PeerProgramming> {
    let mut set = ServiceSet {
        generation: 0,
        ..set.clone()
    };
    let file = scratch.join(format!("{}.rules", peer.name()));
    let full = match peer {
        Peer::Iptables => rules::iptables::full_restore(&set),
        Peer::Nftables => rules::nftables::full_ruleset(&set),
    };
    let cold = peer.load(netns, &file, &full)?;
    let mut times = Vec::with_capacity(changes);
    let started = Instant::now();
    for k in 0..changes {
        // A peer whose every change costs seconds (nftables revalidates the
        // whole table's jumps on each transaction) gets a time budget.
        if k >= MIN_CHANGES && started.elapsed() > CHANGE_BUDGET {
            break;
        }
        let old = set.endpoints_of(set.changed());
        set.generation += 1;
        let text = match peer {
            Peer::Iptables => rules::iptables::partial_restore(&set, &old),
            Peer::Nftables => rules::nftables::endpoint_change(&set, &old),
        };
        times.push(peer.load(netns, &file, &text)?.as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&file);
    Ok(PeerProgramming {
        cold_ms: cold.as_secs_f64() * 1000.0,
        change_p50_ms: stats::percentile(&times, 50),
        change_p99_ms: stats::percentile(&times, 99),
        changes: times.len(),
        ruleset_bytes: full.len(),
    })
}

/// What `/proc` says about a process.
struct Process {
    rss_mib: f64,
    peak_rss_mib: f64,
    cpu_s: f64,
}

impl Process {
    fn read(pid: u32) -> Result<Self> {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the agent's status")?;
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the agent's stat")?;
        // Fields after the command name (which may hold spaces) start at 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(Process {
            rss_mib: kib("VmRSS:") / 1024.0,
            peak_rss_mib: kib("VmHWM:") / 1024.0,
            cpu_s: (ticks(14) + ticks(15)) / clock_ticks(),
        })
    }
}

/// `CLK_TCK`, the unit of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
