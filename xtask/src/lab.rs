//! `cargo xtask lab`: weir on a multi-node cluster made of network namespaces.
//!
//! Alone, it is a demo that cleans up after itself ([`demo`]): two nodes on
//! one fabric, `examples/lab` applied, a ClusterIP answered by backends on
//! both nodes, a pod-to-pod reachability matrix. With a subcommand it is a
//! tool around a lab that stays up between commands ([`persistent`]):
//!
//! ```text
//! cargo xtask lab up [--nodes N]       build it (state in /run/weir-lab)
//! cargo xtask lab apply FILE|DIR...    Namespaces, Pods, Services, EndpointSlices, NetworkPolicies
//! cargo xtask lab delete FILE|DIR...   the same objects, deleted (pods get CNI DEL)
//! cargo xtask lab probe FROM TO:PORT[/tcp|udp] [--count N] [-o json]
//! cargo xtask lab status [-o json]
//! cargo xtask lab down
//! ```
//!
//! The topology itself is `weir_tests::Cluster`, the same code the privileged
//! tests use.

mod demo;
mod persistent;
mod probe;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use weir_tests::{AgentStatus, Applied, Binaries, DEFAULT_NODES};

use crate::build;

/// A lab subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a cluster and leave it running (state in /run/weir-lab).
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = DEFAULT_NODES)]
        nodes: usize,
    },
    /// Remove the lab: agents, pods (CNI DEL), namespaces, cgroups, mounts.
    Down,
    /// Create or update Kubernetes objects from YAML files or directories.
    Apply {
        /// Files or directories of YAML (multi-document files are fine).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Delete the objects the files describe.
    Delete {
        /// Files or directories of YAML.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Connect from a pod, a node or the external client; show who answered.
    Probe {
        /// `namespace/pod` (or a pod in `default`), a node name, or `external`.
        from: String,
        /// `ADDRESS:PORT[/tcp|udp]`; ADDRESS is an IPv4 address, a pod or a node.
        to: String,
        /// Attempts, each on a fresh socket.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Limit per attempt.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the operator CLI `weir` on a lab node, pointed at that node's
    /// maps, agent, verdict socket and IPAM store (as an operator on the
    /// node would run it). Example: `cargo xtask lab weir node-1 service list`.
    Weir {
        /// The node, e.g. `node-1`.
        node: String,
        /// The `weir` command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Nodes, agents, pods and Services of the lab.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

/// Runs `cargo xtask lab [command]` (as root).
pub fn run(root: &Path, command: Option<Command>) -> Result<()> {
    match command {
        None => demo::run(root, &built(root)?),
        Some(Command::Up { nodes }) => persistent::up(&built(root)?, nodes),
        Some(Command::Down) => persistent::down(),
        Some(Command::Apply { paths }) => persistent::apply(&paths),
        Some(Command::Delete { paths }) => persistent::delete(&paths),
        Some(Command::Probe {
            from,
            to,
            count,
            timeout_ms,
            output,
        }) => probe::run(&from, &to, count, timeout_ms, output),
        Some(Command::Status { output }) => status::run(output),
        Some(Command::Weir { node, args }) => weir(&node, &args),
    }
}

/// `lab weir NODE ARGS…`: the CLI's output as it is, and its exit code.
fn weir(node: &str, args: &[String]) -> Result<()> {
    use std::io::Write as _;
    let cluster = weir_tests::Cluster::attach_persistent_lab(weir_tests::Access::Read)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = cluster.node(node)?.weir(&args)?;
    std::io::stdout().write_all(&output.stdout)?;
    std::io::stderr().write_all(&output.stderr)?;
    if !output.status.success() {
        std::process::exit(output.status.code().unwrap_or(1));
    }
    Ok(())
}

/// Builds everything and returns the binaries.
fn built(root: &Path) -> Result<Binaries> {
    let built = build::build(root, build::Profile::Dev)?;
    Ok(Binaries::in_dir(built.bin_dir))
}

/// One line of progress.
fn step(text: &str) {
    println!("  ✓ {text}");
}

/// `1 backend`, `3 backends`.
fn count<N: Copy + std::fmt::Display + PartialEq + From<u8>>(n: N, noun: &str) -> String {
    if n == N::from(1) {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What an apply or delete did, one object per line.
fn print_changes(applied: &Applied) {
    for change in &applied.changes {
        let detail = if change.detail.is_empty() {
            String::new()
        } else {
            format!(" {}", change.detail)
        };
        let separator = if change.action == "generated" { ":" } else { "" };
        println!("    {} {}{separator}{detail}", change.object, change.action);
    }
}

/// `node-1 generation 3 (1 frontend, 3 backends, 1 node route)`.
fn agent_summary(node: &str, status: &AgentStatus) -> String {
    format!(
        "{node} generation {} ({}, {}, {})",
        status.generation,
        count(status.frontends, "frontend"),
        count(status.backends, "backend"),
        count(status.node_routes, "node route")
    )
}

/// Ctrl-C (and SIGTERM) set a flag the lab checks between steps; teardown
/// then runs on the normal path. In the demo the terminal's SIGINT also
/// reaches the agents and probes (same process group), so no step waits long
/// for them; the persistent lab's agents and servers are in sessions of their
/// own and never see it.
fn install_interrupt_handler() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("\n  … still cleaning up, please wait");
        } else {
            eprintln!("\n  interrupted: finishing the current step, then cleaning up");
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}
