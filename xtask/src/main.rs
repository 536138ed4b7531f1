//! `cargo xtask`: build, lab and test orchestration for weir.

mod bench;
mod build;
mod cmd;
mod lab;
mod test;
mod toolchain;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

/// weir's developer tasks. Start with `./x lab` (which calls `cargo xtask lab`).
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install missing tools (nightly rust-src, bpf-linker), build the eBPF
    /// object and the binaries.
    Build {
        /// Build the userspace binaries with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// The multi-node lab (root). Alone: build, bring up two nodes, apply
    /// examples/lab, show a ClusterIP answered across nodes and pod-to-pod
    /// reachability, tear down. With a subcommand: a lab that stays up.
    Lab {
        #[command(subcommand)]
        command: Option<lab::Command>,
    },
    /// Build, then measure (root): weir against kube-proxy-shaped iptables
    /// and nftables and the direct path — connection rate and latency,
    /// NodePort, programming time, agent memory/CPU, TC cost per packet,
    /// CNI ADD. Results, tables and charts in bench/results/ (quick:
    /// target/bench/quick/).
    Bench {
        /// A short run at 100 and 1k Services (CI smoke, a few minutes).
        #[arg(long)]
        quick: bool,
        /// Service counts to measure, e.g. `100,1000` (default: quick
        /// 100,1000; full 100,1000,10000,30000).
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<usize>>,
        /// Endpoints per Service (default 4; 10 gives the 10k Services /
        /// 100k endpoints point of the targets).
        #[arg(long)]
        endpoints: Option<usize>,
        /// Peers to compare with (default `iptables,nftables`; `none`: weir
        /// and the direct path only).
        #[arg(long, value_delimiter = ',')]
        peers: Option<Vec<String>>,
        /// Where to write the results.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Development only: measure the dev-profile binaries (quicker to
        /// build; their numbers are not the ones to publish).
        #[arg(long, hide = true)]
        dev_build: bool,
        /// Internal: the packet-cost worker (run in the node netns).
        #[arg(long, hide = true)]
        tc_cost_worker: Option<String>,
    },
    /// Build, then run unit tests and the privileged integration tests (root).
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit: bool,
        /// Only privileged tests whose name contains this.
        filter: Option<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = workspace_root()?;
    match args.task {
        Task::Build { release } => {
            let profile = if release {
                build::Profile::Release
            } else {
                build::Profile::Dev
            };
            let built = build::build(&root, profile)?;
            eprintln!("xtask: eBPF object {}", built.object.display());
            eprintln!("xtask: binaries in {}", built.bin_dir.display());
            Ok(())
        }
        Task::Bench {
            quick,
            sizes,
            endpoints,
            peers,
            out,
            dev_build,
            tc_cost_worker,
        } => {
            if let Some(job) = tc_cost_worker {
                return bench::tc_cost_worker(&job);
            }
            if !cmd::is_root() {
                bail!("the benchmarks build network namespaces: run them as root (`sudo ./x bench`)");
            }
            let profile = if dev_build {
                build::Profile::Dev
            } else {
                build::Profile::Release
            };
            let built = build::build(&root, profile)?;
            let out = out.unwrap_or_else(|| bench::default_out(&root, quick));
            bench::run(
                &built.bin_dir,
                &built.object,
                &bench::Settings::new(quick, sizes).with(endpoints, peers.as_deref())?,
                &out,
            )
        }
        Task::Lab { command } => {
            if !cmd::is_root() {
                bail!(
                    "the lab builds network namespaces, cgroups and a bpffs: run it as root (`sudo ./x lab`)"
                );
            }
            lab::run(&root, command)
        }
        Task::Test { unit, filter } => test::test(&root, unit, filter.as_deref()),
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> Result<PathBuf> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").context("run this through `cargo xtask`")?;
    PathBuf::from(manifest)
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}
