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
    /// Build, then measure (root): CNI ADD latency and parallel ADDs.
    Bench {
        /// A short run (CI smoke).
        #[arg(long)]
        quick: bool,
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
        Task::Bench { quick } => {
            if !cmd::is_root() {
                bail!("the benchmarks build network namespaces: run them as root (`sudo ./x bench`)");
            }
            let built = build::build(&root, build::Profile::Release)?;
            bench::run(&root, &built.bin_dir, bench::Settings::new(quick))
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
