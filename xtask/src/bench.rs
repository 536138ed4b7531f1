//! `cargo xtask bench`: measurements, never assertions (DEVELOPERS.md rule 4).
//!
//! For now: the CNI plugin. ADD latency (p50/p99 over sequential ADDs, each
//! followed by its DEL so every ADD sees the same store) and the wall time of
//! 64 parallel ADDs, on a throwaway node netns built by the tests' library.
//! Results go to stdout as a table and to `target/bench/cni.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use weir_tests::{Binaries, CniCommand, Node, RunKind};

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Sequential ADDs timed.
    pub sequential: usize,
    /// ADDs started at once.
    pub parallel: usize,
}

impl Settings {
    /// The full run, or a quick smoke run.
    #[must_use]
    pub fn new(quick: bool) -> Self {
        if quick {
            Settings {
                sequential: 20,
                parallel: 64,
            }
        } else {
            Settings {
                sequential: 200,
                parallel: 64,
            }
        }
    }
}

/// Runs the CNI benchmark with the binaries in `bin_dir`.
pub fn run(root: &Path, bin_dir: &Path, settings: Settings) -> Result<()> {
    weir_tests::cleanup_once();
    let mut node = Node::new(Binaries::in_dir(bin_dir), RunKind::Test)?;
    let sequential = sequential_adds(&mut node, settings.sequential)?;
    let parallel = parallel_adds(&mut node, settings.parallel)?;
    node.teardown()?;

    let p50 = percentile(&sequential, 50);
    let p99 = percentile(&sequential, 99);
    println!("\nweir-cni ADD (veth, /32, routes, proxy ARP, IPAM on disk), node netns on this machine\n");
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| ADD latency p50 ({} sequential ADDs) | {:.2} ms |",
        sequential.len(),
        ms(p50)
    );
    println!("| ADD latency p99 | {:.2} ms |", ms(p99));
    println!(
        "| {} parallel ADDs, wall time | {:.1} ms |",
        settings.parallel,
        ms(parallel)
    );
    let json = serde_json::json!({
        "machine": machine(),
        "add_sequential": {"count": sequential.len(), "p50_ms": ms(p50), "p99_ms": ms(p99)},
        "add_parallel": {"count": settings.parallel, "wall_ms": ms(parallel)},
    });
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("cni.json"), serde_json::to_string_pretty(&json)?)?;
    println!("\nresults: {}", out.join("cni.json").display());
    Ok(())
}

fn sequential_adds(node: &mut Node, count: usize) -> Result<Vec<Duration>> {
    let sandbox = node.add_sandbox("bench-seq")?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let id = node.container_id(&format!("seq{i}"));
        let start = Instant::now();
        let out = node.cni().exec(
            CniCommand::Add,
            &id,
            &sandbox.path(),
            node.cni().config().as_bytes(),
        )?;
        times.push(start.elapsed());
        if !out.success {
            bail!("ADD {i} failed: {}", out.stdout);
        }
        node.cni().del(&id, &sandbox.path())?;
    }
    Ok(times)
}

fn parallel_adds(node: &mut Node, count: usize) -> Result<Duration> {
    let sandboxes = (0..count)
        .map(|i| node.add_sandbox(&format!("bench-par{i}")))
        .collect::<Result<Vec<_>>>()?;
    let node = &*node;
    let start = Instant::now();
    let outcomes: Vec<Result<bool>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sandboxes
            .iter()
            .enumerate()
            .map(|(i, sandbox)| {
                scope.spawn(move || {
                    let id = node.container_id(&format!("par{i}"));
                    node.cni()
                        .exec(
                            CniCommand::Add,
                            &id,
                            &sandbox.path(),
                            node.cni().config().as_bytes(),
                        )
                        .map(|o| o.success)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(false)))
            .collect()
    });
    let wall = start.elapsed();
    for outcome in outcomes {
        if !outcome.context("running a parallel ADD")? {
            bail!("a parallel ADD failed");
        }
    }
    Ok(wall)
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = (sorted.len() * p)
        .div_ceil(100)
        .saturating_sub(1)
        .min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the numbers were measured on.
fn machine() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    serde_json::json!({
        "kernel": kernel.trim(),
        "cpus": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        "cpu": cpu,
    })
}
