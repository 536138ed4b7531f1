//! The agent's settings: command-line flags, their environment variables, a
//! YAML file (`--config`) and defaults, merged in that order of precedence
//! and validated as a whole before the agent touches anything — a bad
//! setting stops it at start with the field and where it came from, rather
//! than half-programming a node.

mod api_server;
mod commands;
mod file;
mod flags;
mod merge;

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::Ipv4Network;

use crate::datapath::MapSizes;
use crate::desired::Algorithm;

pub use api_server::{ApiServer, DEFAULT_PORT as DEFAULT_API_SERVER_PORT, parse_host};
pub use commands::{CleanupFlags, InstallCniFlags, Subcommand};
pub use file::{API_VERSION, FileConfig, FileMapSizes, KIND};
pub use flags::{Flags, parse_port_range};

/// Default address of /healthz and /readyz.
pub const DEFAULT_HEALTH_ADDRESS: &str = "0.0.0.0:9879";
/// Default address of /metrics.
pub const DEFAULT_METRICS_ADDRESS: &str = "0.0.0.0:9962";
/// Default of `verdictSocket`.
pub const DEFAULT_VERDICT_SOCKET: &str = "/run/weir/verdicts.sock";

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file at this path.
    File(PathBuf),
    /// A command-line flag or its environment variable.
    Flag(&'static str),
    /// Not given anywhere.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Flag(flag) => write!(f, "flag {flag} (or its environment variable)"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the schema (the message names the key:
    /// unknown field, wrong type).
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is out of range or malformed, or contradicts another.
    #[error("{origin}: {field}: {reason}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The file key (the flag is its kebab-case twin).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Result of loading settings.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the agent takes Services, EndpointSlices and Nodes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Standalone mode: a directory of YAML.
    Manifests(PathBuf),
    /// Kubernetes mode: this kubeconfig, or the in-cluster configuration.
    Kubernetes {
        /// `None`: in-cluster (service account) configuration.
        kubeconfig: Option<PathBuf>,
        /// The API server's address, overriding the kubeconfig's server or
        /// the in-cluster `KUBERNETES_SERVICE_HOST` (a ClusterIP, which
        /// needs a working kube-proxy — or weir — first).
        api_server: Option<ApiServer>,
    },
}

/// The merged, validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The file the settings were read from, if any.
    pub config_file: Option<PathBuf>,
    /// Where objects come from.
    pub source: Source,
    /// bpffs pin directory.
    pub bpffs: PathBuf,
    /// cgroup v2 directory for socket-LB.
    pub cgroup: PathBuf,
    /// Status file.
    pub status_file: Option<PathBuf>,
    /// Manifest directory poll interval.
    pub poll_interval: Duration,
    /// This node's Node name.
    pub node_name: Option<String>,
    /// CNI conflist directory.
    pub cni_conf_dir: PathBuf,
    /// CNI IPAM store.
    pub cni_data_dir: PathBuf,
    /// Pod interface MTU.
    pub pod_mtu: u32,
    /// The uplink device for the TC programs.
    pub device: Option<String>,
    /// The cluster's pod CIDR.
    pub cluster_cidr: Option<Ipv4Network>,
    /// The Service CIDR.
    pub service_cidr: Option<Ipv4Network>,
    /// Masquerade pod traffic leaving the cluster.
    pub masquerade: bool,
    /// Allowed nodePorts.
    pub node_port_range: RangeInclusive<u16>,
    /// External frontends' algorithm.
    pub lb_algorithm: Algorithm,
    /// Maglev table size (prime).
    pub maglev_table_size: u32,
    /// Map capacities.
    pub map_sizes: MapSizes,
    /// eBPF object to load instead of the embedded one.
    pub bpf_object: Option<PathBuf>,
    /// `EnvFilter` directives (`RUST_LOG` wins when set).
    pub log_level: String,
    /// /healthz and /readyz; `None`: off.
    pub health_address: Option<SocketAddr>,
    /// /metrics; `None`: off.
    pub metrics_address: Option<SocketAddr>,
    /// Where NetworkPolicy verdicts are streamed; `None`: off.
    pub verdict_socket: Option<PathBuf>,
    /// Report allowed new connections, not only drops.
    pub log_allowed_connections: bool,
}

impl Settings {
    /// Merges `flags` (with their environment variables), the file they
    /// name, and defaults; then validates the result.
    pub fn load(flags: &Flags) -> Result<Self> {
        let file = match &flags.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(flags, &file)
    }

    /// [`Self::load`] with the file already parsed (`flags.config` names it).
    pub fn merge(flags: &Flags, file: &FileConfig) -> Result<Self> {
        merge::merge(flags, file)
    }

    /// The manifest directory, in standalone mode.
    #[must_use]
    pub fn manifests(&self) -> Option<&Path> {
        match &self.source {
            Source::Manifests(dir) => Some(dir),
            Source::Kubernetes { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
