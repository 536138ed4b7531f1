//! `weir-probe bench`: the load generator and server of `cargo xtask bench`.
//!
//! ```text
//! weir-probe [--netns PATH] [--cgroup DIR] bench serve --listen IP:PORT [--threads 8]
//! weir-probe [--netns PATH] [--cgroup DIR] bench connect IP:PORT… [--seconds 3]
//!            [--concurrency 4] [--timeout-ms 1000]
//! ```
//!
//! One measured transaction is what a short-lived client does: a new TCP
//! connection (`connect()`, which the socket-LB hooks see, or a SYN that
//! iptables/nftables DNAT), a small request (`ping\n`), the one-line answer,
//! and the close — the client closes first, so `TIME_WAIT` stays on the
//! client side, where `tcp_tw_reuse` (set by the bench in the client's
//! netns) lets ports be reused. `connect` keeps `--concurrency` such
//! clients busy for `--seconds` and prints one JSON object: the count,
//! the rate and the latency percentiles of successful transactions, and
//! the failures by kind. Given several targets, each client takes them in
//! turn (a baseline that spreads over the same backends a Service would).
//!
//! `serve` answers with a fixed pool of threads accepting on one listener,
//! not a thread per connection like `serve`: spawning a thread per
//! transaction would cost more than the datapath being measured.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde_json::json;

use super::failure_kind;

/// The two halves of a benchmark.
#[derive(Debug, Subcommand)]
pub(super) enum Bench {
    /// Answer `ping` lines with `pong` on a pool of accepting threads.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Threads accepting connections.
        #[arg(long, default_value_t = 8)]
        threads: usize,
    },
    /// Connect, ask, read, close — as fast as possible; print one JSON summary.
    Connect {
        /// Addresses to dial, in turn.
        #[arg(required = true)]
        targets: Vec<SocketAddr>,
        /// How long to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Clients running at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Limit for each transaction.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

pub(super) fn run(bench: &Bench) -> Result<ExitCode> {
    match bench {
        Bench::Serve { listen, threads } => serve(*listen, (*threads).max(1)),
        Bench::Connect {
            targets,
            seconds,
            concurrency,
            timeout_ms,
        } => Ok(connect(
            targets,
            Duration::from_secs_f64(seconds.max(0.01)),
            (*concurrency).max(1),
            Duration::from_millis((*timeout_ms).max(1)),
        )),
    }
}

fn serve(listen: SocketAddr, threads: usize) -> Result<ExitCode> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}/tcp"))?;
    println!("listening on {listen}/tcp (bench)");
    std::io::stdout().flush()?;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    // A client's trouble (reset, gone) ends that transaction only.
                    if let Ok((stream, _)) = listener.accept() {
                        let _ = answer(stream);
                    }
                }
            });
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// Answers every line with `pong`, until the client closes.
fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        writer.write_all(b"pong\n")?;
        line.clear();
    }
    Ok(())
}

/// What one client thread measured.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    failures: std::collections::BTreeMap<&'static str, u64>,
}

fn connect(targets: &[SocketAddr], length: Duration, concurrency: usize, timeout: Duration) -> ExitCode {
    let started = Instant::now();
    let deadline = started + length;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|k| scope.spawn(move || client(targets, k, deadline, timeout)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut micros: Vec<u32> = tallies.iter().flat_map(|t| t.micros.iter().copied()).collect();
    micros.sort_unstable();
    let mut failures = std::collections::BTreeMap::new();
    for tally in &tallies {
        for (kind, count) in &tally.failures {
            *failures.entry(*kind).or_insert(0_u64) += count;
        }
    }
    let percentile = |p: usize| -> u32 {
        let index = (micros.len() * p).div_ceil(100).saturating_sub(1);
        micros.get(index).copied().unwrap_or(0)
    };
    let count = micros.len();
    #[expect(
        clippy::cast_precision_loss,
        reason = "a count of transactions fits f64 exactly"
    )]
    let rate = count as f64 / elapsed;
    let summary = json!({
        "targets": targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "concurrency": concurrency,
        "seconds": elapsed,
        "transactions": count,
        "rate": rate,
        "p50_us": percentile(50),
        "p90_us": percentile(90),
        "p99_us": percentile(99),
        "max_us": micros.last().copied().unwrap_or(0),
        "failures": failures,
    });
    println!("{summary}");
    ExitCode::SUCCESS
}

/// One client: transactions until `deadline`, client `k` starting at
/// target `k` so the clients spread over the targets from the start.
fn client(targets: &[SocketAddr], k: usize, deadline: Instant, timeout: Duration) -> Tally {
    let mut tally = Tally::default();
    let mut next = k;
    while Instant::now() < deadline {
        let target = targets[next % targets.len()];
        next += 1;
        let started = Instant::now();
        match transaction(target, timeout) {
            Ok(()) => tally
                .micros
                .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)),
            Err(err) => {
                *tally.failures.entry(failure_kind(&err)).or_insert(0) += 1;
                // A failing datapath must not turn into a busy loop.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    tally
}

/// New connection, one request, its answer, close.
fn transaction(target: SocketAddr, timeout: Duration) -> Result<()> {
    let mut stream =
        TcpStream::connect_timeout(&target, timeout).with_context(|| format!("connect {target}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"ping\n").context("sending the request")?;
    let mut answer = [0_u8; 5];
    stream.read_exact(&mut answer).context("reading the answer")?;
    anyhow::ensure!(&answer == b"pong\n", "unexpected answer {answer:?}");
    Ok(())
}
