//! The configuration file's schema: camelCase keys as in Kubernetes
//! component configurations (kube-proxy's `KubeProxyConfiguration`). Every
//! field is optional; an unknown key is an error rather than a setting
//! silently ignored (a typo must not turn masquerading off).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Error, Result};

/// `apiVersion` a file may declare.
pub const API_VERSION: &str = "weir.dev/v1alpha1";
/// `kind` a file may declare.
pub const KIND: &str = "AgentConfiguration";

/// The file as written. Strings are parsed later, so an error names the key.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Optional; if present it must be [`API_VERSION`].
    pub api_version: Option<String>,
    /// Optional; if present it must be [`KIND`].
    pub kind: Option<String>,
    /// `--manifests`.
    pub manifests: Option<PathBuf>,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--api-server-host`.
    pub api_server_host: Option<String>,
    /// `--api-server-port`.
    pub api_server_port: Option<u16>,
    /// `--bpffs`.
    pub bpffs: Option<PathBuf>,
    /// `--cgroup`.
    pub cgroup: Option<PathBuf>,
    /// `--status-file`.
    pub status_file: Option<PathBuf>,
    /// `--poll-interval-ms`.
    pub poll_interval_ms: Option<u64>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--cni-conf-dir`.
    pub cni_conf_dir: Option<PathBuf>,
    /// `--cni-data-dir`.
    pub cni_data_dir: Option<PathBuf>,
    /// `--pod-mtu`.
    #[serde(rename = "podMTU")]
    pub pod_mtu: Option<u32>,
    /// `--device`.
    pub device: Option<String>,
    /// `--cluster-cidr`.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// `--service-cidr`.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,
    /// `--masquerade`.
    pub masquerade: Option<bool>,
    /// `--node-port-range`, `FIRST-LAST`.
    pub node_port_range: Option<String>,
    /// `--lb-algorithm`.
    pub lb_algorithm: Option<String>,
    /// `--maglev-table-size`.
    pub maglev_table_size: Option<u32>,
    /// `--map-size-*`.
    pub map_sizes: Option<FileMapSizes>,
    /// `--bpf-object`.
    pub bpf_object: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--health-address`.
    pub health_address: Option<String>,
    /// `--metrics-address`.
    pub metrics_address: Option<String>,
    /// `--verdict-socket`.
    pub verdict_socket: Option<PathBuf>,
    /// `--log-allowed-connections`.
    pub log_allowed_connections: Option<bool>,
}

/// `mapSizes:` of the file.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileMapSizes {
    /// `--map-size-services`.
    pub services: Option<u32>,
    /// `--map-size-backends`.
    pub backends: Option<u32>,
    /// `--map-size-affinity`.
    pub affinity: Option<u32>,
    /// `--map-size-nat`.
    pub nat: Option<u32>,
}

impl FileConfig {
    /// Reads and parses `path`. An empty file is an empty configuration.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let file: Self = serde_yaml::from_str(text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |field: &'static str, reason: String| Error::Invalid {
            origin: super::Origin::File(path.to_owned()),
            field,
            reason,
        };
        if let Some(v) = file.api_version.as_deref().filter(|v| *v != API_VERSION) {
            return Err(invalid("apiVersion", format!("{v:?} is not {API_VERSION:?}")));
        }
        if let Some(k) = file.kind.as_deref().filter(|k| *k != KIND) {
            return Err(invalid("kind", format!("{k:?} is not {KIND:?}")));
        }
        Ok(file)
    }
}
