//! kube-proxy's leftovers: the iptables chains of its `iptables` (and
//! `ipvs`) mode and the nftables tables of its `nftables` mode. While they
//! are in place they see Service traffic before weir does — a NodePort
//! packet is translated by `KUBE-NODEPORTS`, a ClusterIP one by `KUBE-SVC-*`
//! from kube-proxy's last (stale) view — so the agent warns at start and
//! `weir-agent cleanup --kube-proxy` removes them, as `kube-proxy --cleanup`
//! would.
//!
//! The rules are read and changed with `iptables-save` / `iptables-restore`
//! and `nft`, the tools kube-proxy itself (and Cilium's cleanup) drive. The
//! Rust crates for iptables (`iptables`) and nftables (`nftables`) shell
//! out to the very same binaries, and the kernel interfaces underneath
//! (xtables blobs per table for legacy, `nf_tables` netlink for the rest)
//! differ per backend; `iptables-restore --noflush` changes a whole table
//! in one atomic commit, which is what a removal of many chains needs.
//!
//! Only kube-proxy's own chains are touched: `KUBE-FIREWALL`,
//! `KUBE-KUBELET-CANARY` and `KUBE-MARK-DROP` belong to the kubelet and stay.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Chains kube-proxy creates under a fixed name.
const FIXED_CHAINS: [&str; 14] = [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-MARK-MASQ",
    "KUBE-FORWARD",
    "KUBE-PROXY-FIREWALL",
    "KUBE-PROXY-CANARY",
    // ipvs mode.
    "KUBE-LOAD-BALANCER",
    "KUBE-NODE-PORT",
    "KUBE-IPVS-FILTER",
    "KUBE-IPVS-OUT-FILTER",
    "KUBE-SOURCE-RANGES-FIREWALL",
    "KUBE-MARK-MASQ-IPVS",
];

/// Per-Service and per-endpoint chains: prefix + hash.
const CHAIN_PREFIXES: [&str; 6] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-SEP-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-XLB-",
];

/// The `iptables-save` / `iptables-restore` pairs looked at: the default
/// backend of each family, and the legacy one where it is installed (a node
/// may have both, kube-proxy's image picks one by itself).
const IPTABLES: [(&str, &str); 4] = [
    ("iptables-save", "iptables-restore"),
    ("ip6tables-save", "ip6tables-restore"),
    ("iptables-legacy-save", "iptables-legacy-restore"),
    ("ip6tables-legacy-save", "ip6tables-legacy-restore"),
];

/// The nftables tables of kube-proxy's nftables mode.
const NFT_TABLES: [&str; 2] = ["ip kube-proxy", "ip6 kube-proxy"];

/// Errors reading or removing kube-proxy's rules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool could not be run.
    #[error("cannot run {tool}")]
    Spawn {
        /// The command.
        tool: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        tool: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// kube-proxy's chains in one table of one iptables backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSet {
    /// The `*-save` tool that listed them.
    pub tool: &'static str,
    /// The table (`nat`, `filter`, ...).
    pub table: String,
    /// The chains.
    pub chains: Vec<String>,
    /// Rules of other chains jumping to them (as `-A CHAIN ...`).
    pub jumps: Vec<String>,
}

/// What of kube-proxy is on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// iptables chains, per backend and table.
    pub iptables: Vec<ChainSet>,
    /// nftables tables (`ip kube-proxy`).
    pub nft_tables: Vec<String>,
}

impl Leftovers {
    /// Nothing of kube-proxy found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.iptables.is_empty() && self.nft_tables.is_empty()
    }

    /// One line naming what was found, for logs.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .iptables
            .iter()
            .map(|set| {
                let shown: Vec<&str> = set.chains.iter().take(3).map(String::as_str).collect();
                let more = set.chains.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{} table {}: {}{more}", set.tool, set.table, shown.join(", "))
            })
            .collect();
        parts.extend(self.nft_tables.iter().map(|t| format!("nftables table {t}")));
        parts.join("; ")
    }
}

/// Whether `chain` is one kube-proxy creates.
#[must_use]
pub fn is_kube_proxy_chain(chain: &str) -> bool {
    FIXED_CHAINS.contains(&chain) || CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// Lists kube-proxy's chains and tables in the current network namespace.
/// A tool that is not installed has nothing to show.
pub fn detect() -> Result<Leftovers> {
    let mut found = Leftovers::default();
    for (save, _) in IPTABLES {
        if let Some(text) = run(save, &[], None)? {
            found.iptables.extend(parse_save(save, &text));
        }
    }
    if let Some(text) = run("nft", &["list", "tables"], None)? {
        found.nft_tables = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("table "))
            .filter(|t| NFT_TABLES.contains(t))
            .map(str::to_owned)
            .collect();
    }
    Ok(found)
}

/// Removes what [`detect`] finds: per table one `iptables-restore
/// --noflush` that deletes the jumps into kube-proxy's chains, then
/// flushes and deletes the chains; `nft delete table` per table. Returns
/// what was removed (empty the second time).
pub fn remove() -> Result<Leftovers> {
    let found = detect()?;
    for set in &found.iptables {
        let restore = IPTABLES
            .iter()
            .find(|(save, _)| *save == set.tool)
            .map_or("iptables-restore", |(_, restore)| restore);
        // `-w`: wait for the xtables lock the kubelet (legacy backend) may hold.
        run(restore, &["-w", "--noflush"], Some(&restore_input(set)))?;
    }
    for table in &found.nft_tables {
        let mut args = vec!["delete", "table"];
        args.extend(table.split_whitespace());
        run("nft", &args, None)?;
    }
    Ok(found)
}

/// The kube-proxy chains of every table in `text` (`iptables-save` output).
fn parse_save(tool: &'static str, text: &str) -> Vec<ChainSet> {
    let mut sets = Vec::new();
    let mut current: Option<ChainSet> = None;
    for line in text.lines() {
        if let Some(table) = line.strip_prefix('*') {
            current = Some(ChainSet {
                tool,
                table: table.trim().to_owned(),
                chains: Vec::new(),
                jumps: Vec::new(),
            });
        } else if line.trim() == "COMMIT" {
            if let Some(set) = current.take().filter(|s| !s.chains.is_empty()) {
                sets.push(set);
            }
        } else if let (Some(set), Some(decl)) = (current.as_mut(), line.strip_prefix(':')) {
            let chain = decl.split_whitespace().next().unwrap_or_default();
            if is_kube_proxy_chain(chain) {
                set.chains.push(chain.to_owned());
            }
        } else if let (Some(set), Some(rule)) = (current.as_mut(), line.strip_prefix("-A ")) {
            let words = split_words(rule);
            let chain = words.first().map_or("", String::as_str);
            let target = words
                .windows(2)
                .find(|w| w[0] == "-j" || w[0] == "-g" || w[0] == "--jump" || w[0] == "--goto")
                .map(|w| w[1].as_str());
            if !is_kube_proxy_chain(chain) && target.is_some_and(is_kube_proxy_chain) {
                set.jumps.push(line.to_owned());
            }
        }
    }
    sets
}

/// The `iptables-restore --noflush` input removing `set`.
fn restore_input(set: &ChainSet) -> String {
    let mut input = format!("*{}\n", set.table);
    for jump in &set.jumps {
        // `-A CHAIN spec` → `-D CHAIN spec`: the saved spec is exactly
        // what `-D` matches, quoting included.
        input.push_str("-D ");
        input.push_str(jump.strip_prefix("-A ").unwrap_or(jump));
        input.push('\n');
    }
    for op in ["-F", "-X"] {
        for chain in &set.chains {
            input.push_str(op);
            input.push(' ');
            input.push_str(chain);
            input.push('\n');
        }
    }
    input.push_str("COMMIT\n");
    input
}

/// Splits a saved rule into words, keeping `"quoted strings"` whole (a
/// comment may contain `-j`).
fn split_words(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in rule.chars() {
        match c {
            _ if escaped => {
                word.push(c);
                escaped = false;
            }
            '\\' => {
                word.push(c);
                escaped = true;
            }
            '"' => {
                word.push(c);
                quoted = !quoted;
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Runs `tool args` with `stdin`; `None` if the tool is not installed.
fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Result<Option<String>> {
    let describe = || format!("{tool} {}", args.join(" "));
    let child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Spawn {
                tool: describe(),
                source,
            });
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|source| Error::Spawn {
            tool: describe(),
            source,
        })?;
    }
    let output = child.wait_with_output().map_err(|source| Error::Spawn {
        tool: describe(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Failed {
            tool: describe(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}

#[cfg(test)]
mod tests;
