//! `cargo xtask bench`: weir against kube-proxy-shaped iptables and
//! nftables, and the direct path, in one run on one machine.
//! Measurements, never assertions: a run fails only when something errors.
//!
//! For each size (Services × endpoints) a fresh one-node lab is built
//! ([`topology`]) and, in this order:
//!
//! 1. weir: the agent programs the set (cold), then endpoint changes;
//!    its memory and CPU ([`programming`]);
//! 2. connection rate and latency from the client pod to the probed
//!    ClusterIP through weir, and straight to the backend pods' IPs
//!    (direct); NodePort from the external client ([`connect`]);
//! 3. the TC program's cost per packet on this size's maps ([`pktcost`]);
//! 4. each peer: its rules loaded into the node netns (cold, then changes),
//!    the same connection runs through them, the rules flushed.
//!
//! Runs are repeated and reported as medians with their range; the
//! machine settles between runs. Results: `results.json`, `results.md`
//! and SVG charts ([`report`]).

mod cni;
mod connect;
mod pktcost;
mod programming;
mod report;
mod rules;
mod services;
mod stats;
mod svg;
mod topology;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

pub use self::pktcost::worker as tc_cost_worker;
use self::rules::Peer;
use self::services::{NODE_PORT, PEER_NODE_PORT, PORT, ServiceSet};
use self::stats::Spread;
use self::topology::Topology;

/// Endpoints of every Service: 10k Services are then the 100k endpoints
/// the targets are stated for.
const ENDPOINTS: usize = 10;

/// Real backend pods behind the probed Service.
const BACKEND_PODS: usize = 4;

/// What to measure.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The quick (CI smoke) run.
    pub quick: bool,
    /// Service counts, in order.
    pub sizes: Vec<usize>,
    /// Endpoints per Service.
    pub endpoints: usize,
    /// Seconds per connection run.
    pub seconds: f64,
    /// Clients at once in a connection run.
    pub concurrency: usize,
    /// Repeats of every connection run.
    pub repeats: usize,
    /// Endpoint changes timed per datapath and size.
    pub changes: usize,
    /// The peers measured.
    pub peers: Vec<Peer>,
    /// Largest size the nftables peer is loaded at (a kube-proxy-shaped
    /// ruleset of 10k Services takes tens of seconds of kernel time to load).
    pub nftables_max: usize,
    /// Pause between connection runs, for `TIME_WAIT` and conntrack to drain.
    pub settle_ms: u64,
    /// CNI settings.
    #[serde(skip)]
    pub cni: cni::Settings,
}

impl Settings {
    /// The full run, or the quick one; `sizes` overrides the sizes.
    #[must_use]
    pub fn new(quick: bool, sizes: Option<Vec<usize>>) -> Self {
        let default_sizes = if quick {
            vec![100, 1000]
        } else {
            vec![100, 1000, 10_000, 30_000]
        };
        Settings {
            quick,
            sizes: sizes.unwrap_or(default_sizes),
            endpoints: ENDPOINTS,
            seconds: if quick { 1.0 } else { 3.0 },
            concurrency: 4,
            repeats: if quick { 2 } else { 3 },
            changes: if quick { 10 } else { 30 },
            peers: vec![Peer::Iptables, Peer::Nftables],
            nftables_max: 10_000,
            settle_ms: if quick { 300 } else { 1000 },
            cni: cni::Settings::new(quick),
        }
    }
}

impl Settings {
    /// Other endpoint counts or peers than the defaults.
    pub fn with(mut self, endpoints: Option<usize>, peers: Option<&[String]>) -> Result<Self> {
        if let Some(endpoints) = endpoints {
            self.endpoints = endpoints.max(1);
        }
        if let Some(names) = peers {
            self.peers = names
                .iter()
                .filter(|name| name.as_str() != "none")
                .map(|name| match name.as_str() {
                    "iptables" => Ok(Peer::Iptables),
                    "nftables" => Ok(Peer::Nftables),
                    other => bail!("no peer {other:?} (iptables, nftables or none)"),
                })
                .collect::<Result<_>>()?;
        }
        Ok(self)
    }
}

/// Set by Ctrl-C / SIGTERM; checked between steps so teardown runs on the
/// normal path.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; the bench lab is being torn down");
    }
    Ok(())
}

/// Repeated connection runs of one datapath.
#[derive(Clone, Debug, Default, Serialize)]
#[expect(
    clippy::struct_field_names,
    reason = "`runs` are the raw runs the spreads summarise"
)]
pub struct Runs {
    /// Transactions per second.
    pub rate: Spread,
    /// Median latency per run, µs.
    pub p50_us: Spread,
    /// 99th percentile per run, µs.
    pub p99_us: Spread,
    /// Every run.
    pub runs: Vec<connect::Run>,
}

impl Runs {
    fn of(runs: Vec<connect::Run>) -> Self {
        let pick = |f: fn(&connect::Run) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        Runs {
            rate: pick(|r| r.rate),
            p50_us: pick(|r| f64::from(r.p50_us)),
            p99_us: pick(|r| f64::from(r.p99_us)),
            runs,
        }
    }
}

/// Everything measured at one size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SizeResult {
    /// Services.
    pub services: usize,
    /// Endpoints of each (the probed one: the backend pods).
    pub endpoints_per_service: usize,
    /// Endpoints in all.
    pub total_endpoints: usize,
    /// ClusterIP runs from the client pod, by datapath.
    pub clusterip: BTreeMap<String, Runs>,
    /// NodePort runs from the external client, by datapath.
    pub nodeport: BTreeMap<String, Runs>,
    /// weir's programming, memory and CPU.
    pub weir: programming::WeirProgramming,
    /// The peers' programming, by peer.
    pub peers: BTreeMap<String, programming::PeerProgramming>,
    /// The TC program per packet.
    pub packet_cost: pktcost::PacketCost,
    /// What was left out at this size, and why.
    pub notes: Vec<String>,
}

/// Builds nothing itself: `bin_dir` holds the binaries, `object` the eBPF
/// object; results go to `out`.
pub fn run(bin_dir: &Path, object: &Path, settings: &Settings, out: &Path) -> Result<()> {
    let started = Instant::now();
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\n  interrupted: finishing the current step, then tearing down");
    })
    .context("installing the Ctrl-C handler")?;
    weir_tests::cleanup_once();
    let mut sizes = Vec::new();
    for &count in &settings.sizes {
        check_interrupted()?;
        eprintln!("bench: {count} Services × {} endpoints", settings.endpoints);
        let size_started = Instant::now();
        sizes.push(measure_size(bin_dir, object, settings, count)?);
        eprintln!(
            "bench: {count} Services done in {:.0} s",
            size_started.elapsed().as_secs_f64()
        );
        // Partial results survive a later failure.
        report::write(out, settings, &sizes, None, started.elapsed())?;
    }
    check_interrupted()?;
    eprintln!("bench: CNI ADD");
    let cni = cni::run(bin_dir, settings.cni)?;
    let written = report::write(out, settings, &sizes, Some(&cni), started.elapsed())?;
    println!("{}", std::fs::read_to_string(&written).unwrap_or_default());
    eprintln!(
        "bench: done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn measure_size(bin_dir: &Path, object: &Path, settings: &Settings, count: usize) -> Result<SizeResult> {
    // The probed Service's endpoints are real pods: at most 4 of them.
    let topology = Topology::new(bin_dir, settings.endpoints.min(BACKEND_PODS))?;
    let result = measure_on(&topology, object, settings, count);
    // Explicit teardown reports what failed; drop would only print it.
    let torn = topology.teardown();
    let result = result?;
    torn?;
    Ok(result)
}

fn measure_on(topology: &Topology, object: &Path, settings: &Settings, count: usize) -> Result<SizeResult> {
    let mut set = ServiceSet::new(count, settings.endpoints, topology.backends.clone());
    let mut result = SizeResult {
        services: set.count,
        endpoints_per_service: set.endpoints,
        total_endpoints: set.total_endpoints(),
        ..SizeResult::default()
    };
    let probe = topology.cluster.binaries().probe.clone();
    let load = connect::Load {
        seconds: settings.seconds,
        concurrency: settings.concurrency,
    };
    let vip = SocketAddrV4::new(ServiceSet::vip(set.probed()), PORT);
    let direct = topology.direct_targets();
    let node_netns = topology.node_netns()?;

    eprintln!(
        "  weir: programming {} Services, {} endpoint changes",
        set.count, settings.changes
    );
    result.weir = programming::weir(topology, &mut set, settings.changes)?;
    check_interrupted()?;
    let cases = [
        ("weir", topology.client_via_weir(), vec![vip], true),
        ("direct", topology.client_plain(), direct, true),
        // No direct NodePort baseline: a pod answering a client outside the
        // cluster is masqueraded by weir on the uplink, so a pod IP cannot
        // be dialled from outside without weir's own translation.
        (
            "weir",
            topology.external(),
            vec![SocketAddrV4::new(topology.node_ip, NODE_PORT)],
            false,
        ),
    ];
    // A short warm-up of each path first: the first connections of a run
    // pay for ARP and cold caches, not for the datapath.
    for (_, place, targets, _) in &cases {
        connect::run(
            &probe,
            place,
            targets,
            connect::Load {
                seconds: 0.2,
                concurrency: 1,
            },
        )?;
    }
    let mut runs: BTreeMap<(&str, bool), Vec<connect::Run>> = BTreeMap::new();
    for _ in 0..settings.repeats {
        for (name, place, targets, clusterip) in &cases {
            check_interrupted()?;
            settle(settings);
            runs.entry((name, *clusterip))
                .or_default()
                .push(connect::run(&probe, place, targets, load)?);
        }
    }
    eprintln!("  weir: TC program per-packet cost");
    result.packet_cost = pktcost::measure(topology, object)?;

    for &peer in &settings.peers {
        check_interrupted()?;
        if peer == Peer::Nftables && count > settings.nftables_max {
            result.notes.push(format!(
                "nftables not loaded at {count} Services: above {} Services one kube-proxy-shaped `nft -f` \
                 keeps the kernel busy for tens of seconds (39 s at 10k on the development machine), and every \
                 endpoint change revalidates the whole table",
                settings.nftables_max
            ));
            continue;
        }
        eprintln!(
            "  {}: loading {} Services, {} endpoint changes",
            peer.name(),
            set.count,
            settings.changes
        );
        let measured = measure_peer(topology, peer, &set, settings, &mut runs);
        let flushed = rules::flush(&node_netns);
        // The full run reports a peer's own limit (iptables-legacy cannot
        // load 30k Services × 10 endpoints) and goes on; the quick run,
        // CI's, fails on any error.
        match measured {
            Ok(measured) => drop(result.peers.insert(peer.name().to_owned(), measured)),
            Err(e) if !settings.quick => result
                .notes
                .push(format!("{} not measured at {count} Services: {e:#}", peer.name())),
            Err(e) => return Err(e),
        }
        flushed?;
        if !rules::is_empty(&node_netns)? {
            bail!(
                "rules left in the node netns after flushing the {} peer",
                peer.name()
            );
        }
    }
    for ((name, clusterip), list) in runs {
        let table = if clusterip {
            &mut result.clusterip
        } else {
            &mut result.nodeport
        };
        table.insert(name.to_owned(), Runs::of(list));
    }
    Ok(result)
}

/// Loads `peer`, measures its programming and its connection runs.
fn measure_peer<'a>(
    topology: &Topology,
    peer: Peer,
    set: &ServiceSet,
    settings: &Settings,
    runs: &mut BTreeMap<(&'a str, bool), Vec<connect::Run>>,
) -> Result<programming::PeerProgramming> {
    let node_netns = topology.node_netns()?;
    let scratch = topology.cluster.run_dir().to_owned();
    let programming = programming::peer(peer, &node_netns, &scratch, set, settings.changes)?;
    // Conntrack exists in the node netns now; its TIME_WAIT entries would
    // otherwise collide with reused client ports.
    weir_tests::cmd::run_in_netns(
        &node_netns,
        "sysctl",
        ["-q", "-w", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1"],
    )
    .context("shortening conntrack's TIME_WAIT in the node netns")?;
    let probe = topology.cluster.binaries().probe.clone();
    let vip = SocketAddrV4::new(ServiceSet::vip(set.probed()), PORT);
    let node_port = SocketAddrV4::new(topology.node_ip, PEER_NODE_PORT);
    let name: &'a str = peer.name();
    let cases = [
        (topology.client_plain(), vip, true),
        (topology.external(), node_port, false),
    ];
    for (place, target, _) in &cases {
        connect::run(
            &probe,
            place,
            &[*target],
            connect::Load {
                seconds: 0.2,
                concurrency: 1,
            },
        )
        .with_context(|| format!("{name} does not answer {target}"))?;
    }
    let load = connect::Load {
        seconds: settings.seconds,
        concurrency: settings.concurrency,
    };
    for _ in 0..settings.repeats {
        for (place, target, clusterip) in &cases {
            check_interrupted()?;
            settle(settings);
            runs.entry((name, *clusterip))
                .or_default()
                .push(connect::run(&probe, place, &[*target], load)?);
        }
    }
    Ok(programming)
}

fn settle(settings: &Settings) {
    std::thread::sleep(Duration::from_millis(settings.settle_ms));
}

/// Where results go unless told: the committed folder for the full run,
/// the target directory for quick runs (CI must not dirty the tree).
#[must_use]
pub fn default_out(root: &Path, quick: bool) -> PathBuf {
    if quick {
        root.join("target/bench/quick")
    } else {
        root.join("bench/results")
    }
}
