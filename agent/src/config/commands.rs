//! The agent's subcommands besides running: `weir-agent cleanup` and
//! `weir-agent install-cni`. Each takes the agent's own flags (and
//! `--config`), so it finds the pin directory, CNI directories and files
//! exactly where the agent put them.

use std::path::PathBuf;

use super::Flags;

/// The subcommand named by the first argument, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    /// `cleanup`.
    Cleanup,
    /// `install-cni`.
    InstallCni,
}

impl Subcommand {
    /// The subcommand `first` (the first argument) names.
    #[must_use]
    pub fn named(first: Option<&std::ffi::OsStr>) -> Option<Self> {
        match first.and_then(std::ffi::OsStr::to_str) {
            Some("cleanup") => Some(Self::Cleanup),
            Some("install-cni") => Some(Self::InstallCni),
            _ => None,
        }
    }
}

/// Takes weir off this node (uninstall), or with --kube-proxy takes
/// kube-proxy's rules off it.
///
/// Without --kube-proxy: unpins weir's links (detaching its programs from
/// the cgroup, the uplink and the pod veths), unpins its maps, deletes the
/// routes marked `proto 87`, removes the conflist it wrote, its status file
/// and verdict socket. Stop the agent first. Give it the agent's flags or
/// --config so it finds the same paths. Running it twice is fine.
///
/// With --kube-proxy: deletes kube-proxy's iptables chains (KUBE-SERVICES,
/// KUBE-SVC-*, ...) with the jumps into them, and its nftables tables,
/// leaving weir (and every other rule) alone. Stop kube-proxy first.
///
/// Example:
///   weir-agent cleanup --config /etc/weir/agent.yaml --cni-bin-dir /opt/cni/bin
///   weir-agent cleanup --kube-proxy
#[derive(Debug, clap::Parser)]
#[command(
    name = "weir-agent cleanup",
    bin_name = "weir-agent cleanup",
    verbatim_doc_comment
)]
pub struct CleanupFlags {
    /// Remove kube-proxy's iptables chains and nftables tables (and only those).
    #[arg(long)]
    pub kube_proxy: bool,
    /// Also remove the CNI plugin `weir-cni` from this directory
    /// (e.g. /opt/cni/bin).
    #[arg(long, env = "WEIR_CNI_BIN_DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Clean up even though an agent answers on the verdict socket.
    #[arg(long)]
    pub force: bool,
    /// The agent's settings.
    #[command(flatten)]
    pub agent: Flags,
}

/// Installs the CNI plugin binary into the runtime's plugin directory,
/// atomically (the DaemonSet's init container).
///
/// Example:
///   weir-agent install-cni --cni-bin-dir /host/opt/cni/bin
#[derive(Debug, clap::Parser)]
#[command(
    name = "weir-agent install-cni",
    bin_name = "weir-agent install-cni",
    verbatim_doc_comment
)]
pub struct InstallCniFlags {
    /// The runtime's CNI plugin directory.
    #[arg(long, env = "WEIR_CNI_BIN_DIR")]
    pub cni_bin_dir: PathBuf,
    /// The plugin to install [default: weir-cni next to this executable].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn subcommands_take_the_agents_flags() {
        let c = CleanupFlags::try_parse_from([
            "cleanup",
            "--bpffs",
            "/sys/fs/bpf/x",
            "--cni-bin-dir",
            "/opt/cni/bin",
        ])
        .unwrap();
        assert_eq!(c.agent.bpffs, Some("/sys/fs/bpf/x".into()));
        assert_eq!(c.cni_bin_dir, Some("/opt/cni/bin".into()));
        assert!(!c.kube_proxy && !c.force);
        assert!(
            CleanupFlags::try_parse_from(["cleanup", "--kube-proxy"])
                .unwrap()
                .kube_proxy
        );
        assert!(InstallCniFlags::try_parse_from(["install-cni"]).is_err());
        assert_eq!(
            Subcommand::named(Some("cleanup".as_ref())),
            Some(Subcommand::Cleanup)
        );
        assert_eq!(Subcommand::named(Some("--manifests".as_ref())), None);
        assert_eq!(Subcommand::named(None), None);
    }
}
