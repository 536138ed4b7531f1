//! The CNI plugin: ADD latency (p50/p99 over sequential ADDs, each followed
//! by its DEL so every ADD sees the same store) and the wall time of 64
//! parallel ADDs, on a throwaway node netns built by the tests' library.

use std::path::Path;
use std::time::{Duration, Instant};

use super::stats::percentile_ms;

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

/// CNI ADD numbers.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CniResults {
    /// Sequential ADDs timed.
    pub sequential: usize,
    /// ADD latency p50, ms.
    pub add_p50_ms: f64,
    /// ADD latency p99, ms.
    pub add_p99_ms: f64,
    /// ADDs started at once.
    pub parallel: usize,
    /// Wall time of the parallel ADDs, ms.
    pub parallel_wall_ms: f64,
}

/// Runs the CNI benchmark with the binaries in `bin_dir`.
pub fn run(bin_dir: &Path, settings: Settings) -> Result<CniResults> {
    weir_tests::cleanup_once();
    let mut node = Node::new(Binaries::in_dir(bin_dir), RunKind::Test)?;
    let sequential = sequential_adds(&mut node, settings.sequential)?;
    let parallel = parallel_adds(&mut node, settings.parallel)?;
    node.teardown()?;
    Ok(CniResults {
        sequential: sequential.len(),
        add_p50_ms: percentile_ms(&sequential, 50),
        add_p99_ms: percentile_ms(&sequential, 99),
        parallel: settings.parallel,
        parallel_wall_ms: parallel.as_secs_f64() * 1000.0,
    })
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
