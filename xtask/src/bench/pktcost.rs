//! Per-packet cost of the uplink's TC NAT program, with `BPF_PROG_TEST_RUN`
//! against the maps the agent programmed for the current size.
//!
//! A worker process (this binary, `cargo xtask bench --tc-cost-worker`) is
//! started in the node's netns with `nsenter --net`, so the program's route
//! lookups see the node's routes; it loads the eBPF object with its maps
//! bound to the agent's pinned ones and runs the ingress program on
//! crafted frames. The kernel times each run. One frame of a run whose
//! program rewrites it cannot be repeated in-kernel (the repeats would see
//! the rewritten frame), so each case is `ROUNDS` single runs, kernel-timed,
//! and the median is reported — less the timer's own cost, measured as the
//! difference between single runs and in-kernel repeats of the case that
//! rewrites nothing (`pass`):
//!
//! - `nodeport_new_flow`: a SYN to the NodePort from a fresh source port each
//!   run — frontend lookup, backend choice, NAT entries created, DNAT;
//! - `nodeport_established`: the same flow again — NAT entry found, DNAT;
//! - `reply`: the backend's answer on egress — reverse translation;
//! - `pass`: a packet to the node that is no Service — lookups, untouched.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use serde::{Deserialize, Serialize};
use weir_tests::cmd;

use super::services::{NODE_PORT, TARGET_PORT};
use super::topology::{MAP_SIZES, Topology};

/// Single runs per case.
const ROUNDS: u16 = 20_000;

/// In-kernel repeats of the frame nothing rewrites.
const REPEATS: u32 = 200_000;

/// Program names in the object (see the agent's `datapath` module).
const TC_INGRESS: &str = "weir_tc_ingress";
const TC_EGRESS: &str = "weir_tc_egress";

/// What the worker is asked to do.
#[derive(Debug, Deserialize, Serialize)]
struct Job {
    object: std::path::PathBuf,
    bpffs: std::path::PathBuf,
    node: Ipv4Addr,
    client: Ipv4Addr,
    backends: Vec<Ipv4Addr>,
}

/// Median nanoseconds per packet, by case (timer overhead subtracted).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[expect(
    clippy::struct_field_names,
    reason = "the unit is part of each JSON field name"
)]
pub struct PacketCost {
    /// New NodePort flow (SYN), ns.
    pub nodeport_new_flow_ns: f64,
    /// Established NodePort flow, ns.
    pub nodeport_established_ns: f64,
    /// Reply of a NodePort flow on egress, ns.
    pub reply_ns: f64,
    /// A packet that is no Service's, ns (in-kernel repeats).
    pub pass_ns: f64,
    /// What a single kernel-timed run adds to the program's time, ns.
    pub timer_overhead_ns: f64,
}

/// Runs the worker in the node's netns against its pinned maps.
pub fn measure(topology: &Topology, object: &Path) -> Result<PacketCost> {
    let node = topology.node()?;
    let job = Job {
        object: object.to_owned(),
        bpffs: node.bpffs_path().to_owned(),
        node: topology.node_ip,
        client: Topology::external_ip(),
        backends: topology.backends.clone(),
    };
    // This very binary, through /proc: a rebuild of xtask while the bench
    // runs replaces the file, not the running image.
    let exe = format!("/proc/{}/exe", std::process::id());
    let mut command = cmd::nsenter(&node.netns().path(), exe);
    command.args(["bench", "--tc-cost-worker", &serde_json::to_string(&job)?]);
    let out = cmd::run_command(&mut command).context("running the packet-cost worker")?;
    serde_json::from_str(out.trim()).with_context(|| format!("parsing the worker's answer {out:?}"))
}

/// The worker: prints one JSON [`PacketCost`].
pub fn worker(job: &str) -> Result<()> {
    let job: Job = serde_json::from_str(job).context("parsing the job")?;
    let bytes = std::fs::read(&job.object).with_context(|| format!("reading {}", job.object.display()))?;
    // The maps are the agent's, found by their pinned names; the same
    // capacities as the agent's, or the pins would not match.
    let mut ebpf = aya::EbpfLoader::new()
        .default_map_pin_directory(&job.bpffs)
        .map_max_entries(weir_common::lb::SERVICES_MAP, MAP_SIZES.services)
        .map_max_entries(weir_common::lb::BACKENDS_MAP, MAP_SIZES.backends)
        .map_max_entries(weir_common::lb::AFFINITY_MAP, MAP_SIZES.affinity)
        .map_max_entries(weir_common::nat::NAT_MAP, MAP_SIZES.nat)
        .load(&bytes)
        .context("loading the eBPF object against the agent's pinned maps")?;
    for name in [TC_INGRESS, TC_EGRESS] {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        program.load().with_context(|| format!("loading {name}"))?;
    }
    let frontend = SocketAddrV4::new(job.node, NODE_PORT);
    let program = |name: &str| -> Result<&SchedClassifier> {
        Ok(ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    };
    let ingress = program(TC_INGRESS)?;
    let egress = program(TC_EGRESS)?;

    // New flows: a fresh source port each time.
    let mut new_flow = Vec::with_capacity(usize::from(ROUNDS));
    let mut translated_to = None;
    for k in 0..ROUNDS {
        let client = SocketAddrV4::new(job.client, 20_000 + k);
        let (ns, out) = run(ingress, &frame(client, frontend, true))?;
        new_flow.push(ns);
        translated_to = Some(destination(&out));
    }
    let backend = translated_to.context("no run")?;
    ensure!(
        job.backends.contains(backend.ip()) && backend.port() == TARGET_PORT,
        "the NodePort SYN was not translated to a backend (went to {backend})"
    );
    // Established: the last flow again.
    let client = SocketAddrV4::new(job.client, 20_000 + ROUNDS - 1);
    let established = repeat(ingress, &frame(client, frontend, false))?;
    // Its replies, from whichever backend it was given.
    let (_, out) = run(ingress, &frame(client, frontend, false))?;
    let reply = repeat(egress, &frame(destination(&out), client, false))?;
    let not_a_service = frame(client, SocketAddrV4::new(job.node, 22), false);
    let pass_single = repeat(ingress, &not_a_service)?;
    let pass = in_kernel(ingress, &not_a_service)?;
    let overhead = (pass_single - pass).max(0.0);
    let cost = PacketCost {
        nodeport_new_flow_ns: median(&mut new_flow) - overhead,
        nodeport_established_ns: established - overhead,
        reply_ns: reply - overhead,
        pass_ns: pass,
        timer_overhead_ns: overhead,
    };
    println!("{}", serde_json::to_string(&cost)?);
    Ok(())
}

/// `ROUNDS` single runs of one frame: the median.
fn repeat(program: &SchedClassifier, input: &[u8]) -> Result<f64> {
    let mut times = (0..ROUNDS)
        .map(|_| run(program, input).map(|(ns, _)| ns))
        .collect::<Result<Vec<_>>>()?;
    Ok(median(&mut times))
}

/// `REPEATS` runs of a frame the program does not rewrite, repeated by the
/// kernel: the mean per run (median of five such batches).
fn in_kernel(program: &SchedClassifier, input: &[u8]) -> Result<f64> {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let mut options = TestRunOptions::new();
        options.data_in = Some(input);
        options.repeat = REPEATS;
        let result = program.test_run(options).context("BPF_PROG_TEST_RUN")?;
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds of one run")]
        batches.push(result.duration.as_nanos() as f64);
    }
    Ok(median(&mut batches))
}

/// One kernel-timed run: nanoseconds, and the frame as it left.
fn run(program: &SchedClassifier, input: &[u8]) -> Result<(f64, Vec<u8>)> {
    let mut out = vec![0_u8; input.len() + 64];
    let mut options = TestRunOptions::new();
    options.data_in = Some(input);
    options.data_out = Some(&mut out);
    let result = program.test_run(options).context("BPF_PROG_TEST_RUN")?;
    // TC_ACT_OK, or TC_ACT_REDIRECT for a reply the program forwards itself.
    if ![0, 7].contains(&result.return_value) {
        bail!(
            "the program answered {} (not TC_ACT_OK/REDIRECT)",
            result.return_value
        );
    }
    out.truncate(usize::try_from(result.data_size_out)?);
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds of one run")]
    let ns = result.duration.as_nanos() as f64;
    Ok((ns, out))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The destination of an Ethernet/IPv4/TCP frame.
fn destination(frame: &[u8]) -> SocketAddrV4 {
    let ip = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    SocketAddrV4::new(ip, u16::from_be_bytes([frame[36], frame[37]]))
}

/// An Ethernet/IPv4/TCP frame with valid checksums, no payload; `syn` or a
/// bare ACK.
fn frame(src: SocketAddrV4, dst: SocketAddrV4, syn: bool) -> Vec<u8> {
    let flags = if syn {
        weir_tests::frame::SYN
    } else {
        weir_tests::frame::ACK
    };
    weir_tests::frame::tcp_frame(src, dst, flags, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_checksums() {
        let f = frame(
            "198.18.0.100:40000".parse().unwrap(),
            "198.18.0.11:30080".parse().unwrap(),
            true,
        );
        assert_eq!(f.len(), 54);
        assert!(weir_tests::frame::checksums_ok(&f));
        assert_eq!(destination(&f), "198.18.0.11:30080".parse().unwrap());
    }
}
