//! `weir bpf …`: the pinned maps, read directly from bpffs. Nothing here asks
//! the agent for map contents, so every command works while it is down (or
//! crash-looping) — which is exactly when an operator needs to see what the
//! datapath still does.

mod ct;
pub(crate) mod decode;
pub mod endpoints;
mod lb;
mod maps;
mod nat;
mod policy;

use std::path::Path;

use weir_common::lb::SERVICES_MAP;

use crate::Args;
use crate::exit::{Failure, OK};

/// The `bpf` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load-balancer frontends and their backends.
    #[command(subcommand)]
    Lb(lb::Command),
    /// Connection tracking: the NAT table and the policy table.
    #[command(subcommand)]
    Ct(ct::Command),
    /// NAT translations (original → rewritten) and the masquerade settings.
    #[command(subcommand)]
    Nat(nat::Command),
    /// A pod's NetworkPolicy endpoint and rules.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Every weir map pinned in bpffs: type, entries, capacity, layout version.
    ///
    /// Example:
    ///   weir bpf maps -o json
    #[command(verbatim_doc_comment)]
    Maps,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<u8> {
    ensure_pinned(&args.bpffs)?;
    match command {
        Command::Lb(command) => lb::run(args, command),
        Command::Ct(command) => ct::run(args, command),
        Command::Nat(command) => nat::run(args, command),
        Command::Policy(command) => policy::run(args, command),
        Command::Maps => maps::run(args),
    }?;
    Ok(OK)
}

/// Fails with [`Failure::MapsUnreachable`] unless `bpffs` holds weir's pins:
/// the service map is pinned first and always, so its absence means the
/// agent never ran here (or bpffs is not mounted, or the path is wrong).
fn ensure_pinned(bpffs: &Path) -> anyhow::Result<()> {
    let pin = bpffs.join(SERVICES_MAP);
    match std::fs::symlink_metadata(&pin) {
        Ok(_) => Ok(()),
        Err(e) => Err(unreachable(bpffs, format!("{}: {e}", pin.display())).into()),
    }
}

/// A map that cannot be opened: exit code 4.
fn unreachable(bpffs: &Path, reason: impl std::fmt::Display) -> Failure {
    Failure::MapsUnreachable {
        bpffs: bpffs.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Maps an error opening pinned maps (in `weir_agent::maps`) to exit code 4;
/// other map errors (iterating) stay plain errors.
fn open_failure(bpffs: &Path) -> impl FnOnce(weir_agent::maps::Error) -> anyhow::Error {
    move |error| match error {
        weir_agent::maps::Error::Map { op: "open", .. } => {
            unreachable(bpffs, format!("{:#}", anyhow::Error::from(error))).into()
        }
        other => other.into(),
    }
}
