//! The peers: the same Service set as kube-proxy's iptables and nftables
//! modes would program it, loaded into the bench node's netns (never the
//! root netns) and removed again.
//!
//! The iptables peer uses the legacy (`x_tables`) backend, as kube-proxy
//! does on a node whose iptables is legacy: `iptables-restore` of the
//! `nf_tables` backend (`iptables-nft`, 1.8.9 here) took more than six
//! minutes for the 10k-Service ruleset on this machine, against about ten
//! seconds for `iptables-legacy-restore` — too slow to be run at every
//! size. The per-packet walk of `KUBE-SERVICES` is linear in both.

pub mod iptables;
pub mod nftables;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use weir_tests::cmd;

/// A peer datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// kube-proxy's iptables mode.
    Iptables,
    /// kube-proxy's nftables mode.
    Nftables,
}

impl Peer {
    /// Its name in tables and JSON.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Peer::Iptables => "iptables",
            Peer::Nftables => "nftables",
        }
    }

    /// Loads `rules` (a file in this peer's input format) into `netns`;
    /// returns the wall time of the loading process.
    pub fn load(self, netns: &Path, file: &Path, rules: &str) -> Result<Duration> {
        std::fs::write(file, rules).with_context(|| format!("writing {}", file.display()))?;
        let mut command = match self {
            // As kube-proxy calls it: wait for the xtables lock, keep what
            // the file does not name.
            Peer::Iptables => {
                let mut c = cmd::nsenter(netns, IPTABLES_RESTORE);
                c.args(["-w", "5", "--noflush"]).arg(file);
                c
            }
            Peer::Nftables => {
                let mut c = cmd::nsenter(netns, "nft");
                c.arg("-f").arg(file);
                c
            }
        };
        let started = Instant::now();
        cmd::run_command(&mut command).with_context(|| format!("loading the {} rules", self.name()))?;
        Ok(started.elapsed())
    }
}

/// The iptables peer's loader and its rule tool.
const IPTABLES_RESTORE: &str = "iptables-legacy-restore";
const IPTABLES: &str = "iptables-legacy";

/// Removes every iptables (legacy) and nftables rule from `netns`.
pub fn flush(netns: &Path) -> Result<()> {
    for table in ["nat", "filter"] {
        // Flush, then delete the (now unreferenced) chains.
        cmd::run_in_netns(netns, IPTABLES, ["-w", "5", "-t", table, "-F"])
            .with_context(|| format!("flushing the {table} table"))?;
        cmd::run_in_netns(netns, IPTABLES, ["-w", "5", "-t", table, "-X"])
            .with_context(|| format!("deleting the {table} table's chains"))?;
    }
    cmd::run_in_netns(netns, "nft", ["flush", "ruleset"]).context("flushing the nftables ruleset")?;
    Ok(())
}

/// Whether `netns` holds no rule at all: no nftables table, no iptables
/// rule or user chain.
pub fn is_empty(netns: &Path) -> Result<bool> {
    let ruleset = cmd::run_in_netns(netns, "nft", ["list", "ruleset"])?;
    let saved = cmd::run_in_netns(netns, "iptables-legacy-save", std::iter::empty::<&str>())?;
    let legacy_rules = saved
        .lines()
        .any(|line| line.starts_with("-A") || (line.starts_with(':') && !is_builtin_chain(line)));
    Ok(ruleset.trim().is_empty() && !legacy_rules)
}

fn is_builtin_chain(line: &str) -> bool {
    ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .iter()
        .any(|chain| line.starts_with(&format!(":{chain} ")))
}
