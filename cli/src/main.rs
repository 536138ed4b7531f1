//! `weir`: what the node's datapath does, for operators.
//!
//! Maps are read straight from bpffs (`--bpffs`), so the `bpf` commands work
//! while the agent is down; `status`, `service` and `monitor` ask the agent
//! (`--agent`, its health address; `--verdict-socket`).

mod agent;
mod cmd;
mod exit;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// weir: inspect the node's services, maps, connections, policies and IPAM,
/// trace a flow, and watch policy verdicts.
///
/// Examples:
///   weir status
///   weir service list -o json
///   weir bpf lb list
///   weir bpf ct list --address 10.244.1.3 --proto tcp
///   weir bpf policy get x/a
///   weir ipam list
///   weir trace 10.244.1.2 10.96.0.10:80/tcp --probe
///   weir trace 198.18.0.100 198.18.0.11:30080/tcp --source-port 40000
///   weir monitor --namespace x
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    /// bpffs directory the agent pins its maps under.
    #[arg(long, global = true, env = "WEIR_BPFFS", default_value = "/sys/fs/bpf/weir")]
    pub bpffs: PathBuf,
    /// The agent's health/API address.
    #[arg(long, global = true, env = "WEIR_AGENT", default_value = "127.0.0.1:9879")]
    pub agent: String,
    /// The agent's verdict socket.
    #[arg(
        long,
        global = true,
        env = "WEIR_VERDICT_SOCKET",
        default_value = "/run/weir/verdicts.sock"
    )]
    pub verdict_socket: PathBuf,
    /// The CNI plugin's IPAM store.
    #[arg(
        long,
        global = true,
        env = "WEIR_CNI_DATA_DIR",
        default_value = "/var/lib/cni/weir"
    )]
    pub cni_data_dir: PathBuf,
    /// Output: a table for people, or json / yaml for scripts (stable field
    /// names).
    #[arg(short, long, global = true, default_value = "table")]
    pub output: Format,
    /// What to show.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Agent health, node, datapath mode, counts, map fill, last sync.
    Status,
    /// Services as the datapath serves them.
    #[command(subcommand)]
    Service(cmd::service::Command),
    /// The pinned eBPF maps, read directly (works while the agent is down).
    #[command(subcommand)]
    Bpf(cmd::bpf::Command),
    /// The node's pod address allocations.
    #[command(subcommand)]
    Ipam(cmd::ipam::Command),
    /// Predict what the datapath does with a flow (and, with --probe, try it).
    Trace(cmd::trace::Args),
    /// Stream NetworkPolicy verdicts (drops; --all for allows too).
    Monitor(cmd::monitor::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Command::Status => cmd::status::run(&args),
        Command::Service(command) => cmd::service::run(&args, command),
        Command::Bpf(command) => cmd::bpf::run(&args, command),
        Command::Ipam(command) => cmd::ipam::run(&args, command),
        Command::Trace(trace) => cmd::trace::run(&args, trace),
        Command::Monitor(monitor) => cmd::monitor::run(&args, monitor),
    };
    match result {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("weir: {error:#}");
            exit::code_of(&error)
        }
    }
}
