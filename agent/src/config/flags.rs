//! The command line. Every flag is optional here — even those with a
//! default — so that a value the operator did not give can come from the
//! configuration file; the defaults live in [`super::Settings::default`].
//! clap resolves a flag over its environment variable, which makes the
//! precedence flag > env > file > default.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::desired::Algorithm;
use crate::reconcile::maglev;

/// weir node agent: programs the eBPF load balancer from Kubernetes objects.
///
/// Standalone mode reads Service and EndpointSlice YAML from a directory
/// (the files you would `kubectl apply`) and follows changes to it.
/// Settings come from flags, then environment variables, then the YAML file
/// given with --config (schema: docs/configuration.md), then defaults.
///
/// Example:
///   weir-agent --manifests ./manifests --bpffs /sys/fs/bpf/weir \
///       --cgroup /sys/fs/cgroup/unified/weir
///   weir-agent --config /etc/weir/agent.yaml
///
/// Subcommands (`weir-agent SUBCOMMAND --help`; cleanup takes these flags too):
///   weir-agent cleanup [--cni-bin-dir DIR]   take weir off the node (uninstall)
///   weir-agent cleanup --kube-proxy          remove kube-proxy's iptables/nftables rules
///   weir-agent install-cni --cni-bin-dir DIR install weir-cni atomically
#[derive(Debug, Default, clap::Parser)]
#[command(name = "weir-agent", version, verbatim_doc_comment)]
pub struct Flags {
    /// YAML configuration file (docs/configuration.md); flags and
    /// environment variables override what it says.
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of Service / EndpointSlice manifests (standalone mode).
    #[arg(long, env = "WEIR_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// kubeconfig of the API server to watch (Kubernetes mode; without it
    /// and without --manifests the in-cluster configuration is used).
    #[arg(long, env = "WEIR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's address (IP or DNS name), used instead of the
    /// kubeconfig's server or the in-cluster `KUBERNETES_SERVICE_HOST` (a
    /// ClusterIP: unreachable before a kube-proxy — or weir — runs). Set
    /// it when weir replaces kube-proxy.
    #[arg(long, env = "WEIR_API_SERVER_HOST", value_parser = super::parse_host)]
    pub api_server_host: Option<String>,
    /// The API server's port with --api-server-host [default: 6443].
    #[arg(long, env = "WEIR_API_SERVER_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub api_server_port: Option<u16>,
    /// bpffs directory to pin maps under (must be on a mounted bpffs)
    /// [default: /sys/fs/bpf/weir].
    #[arg(long, env = "WEIR_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// cgroup v2 directory whose processes get socket-level load balancing
    /// [default: /sys/fs/cgroup].
    #[arg(long, env = "WEIR_CGROUP")]
    pub cgroup: Option<PathBuf>,
    /// Write a JSON status document here after every reconcile.
    #[arg(long, env = "WEIR_STATUS_FILE")]
    pub status_file: Option<PathBuf>,
    /// How often to check the manifest directory for changes, in
    /// milliseconds [default: 500].
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_interval_ms: Option<u64>,
    /// Name of this node's Node object: enables routes to the other nodes'
    /// pods and writing this node's CNI config.
    #[arg(long, env = "WEIR_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where to write the node's CNI conflist [default: /etc/cni/net.d].
    #[arg(long, env = "WEIR_CNI_CONF_DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// The CNI plugin's IPAM store, written into the conflist
    /// [default: /var/lib/cni/weir].
    #[arg(long, env = "WEIR_CNI_DATA_DIR")]
    pub cni_data_dir: Option<PathBuf>,
    /// MTU of pod interfaces, written into the conflist [default: 1500].
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub pod_mtu: Option<u32>,
    /// The node's uplink device: masquerading happens there (TCX programs).
    #[arg(long, env = "WEIR_DEVICE")]
    pub device: Option<String>,
    /// The cluster's pod CIDR (all nodes' podCIDRs). With --masquerade, pod
    /// traffic to anything outside it and outside the nodes leaves with the
    /// node address.
    #[arg(long, env = "WEIR_CLUSTER_CIDR")]
    pub cluster_cidr: Option<ipnetwork::Ipv4Network>,
    /// The Service CIDR (kube-apiserver's --service-cluster-ip-range): the
    /// node routes it as unreachable, so a ClusterIP packet no socket hook
    /// translated (e.g. ping) is refused at once, never sent to the default
    /// route. Needs --node-name.
    #[arg(long, env = "WEIR_SERVICE_CIDR")]
    pub service_cidr: Option<ipnetwork::Ipv4Network>,
    /// Masquerade pod traffic leaving the cluster (needs --node-name,
    /// --device and --cluster-cidr).
    #[arg(long, env = "WEIR_MASQUERADE")]
    pub masquerade: bool,
    /// Allowed nodePort values, as the API server's
    /// --service-node-port-range [default: 30000-32767].
    #[arg(long, value_parser = parse_port_range)]
    pub node_port_range: Option<RangeInclusive<u16>>,
    /// How connections from outside the node pick a backend: random or
    /// maglev (per Service: annotation weir.dev/lb-algorithm) [default: random].
    #[arg(long, env = "WEIR_LB_ALGORITHM")]
    pub lb_algorithm: Option<Algorithm>,
    /// Maglev lookup table size per frontend (a prime, at most 1021)
    /// [default: 1021].
    #[arg(long, value_parser = parse_maglev_size)]
    pub maglev_table_size: Option<u32>,
    /// Capacity of the service map (frontends × (backends + 1)) [default: 65536].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub map_size_services: Option<u32>,
    /// Capacity of the backend map [default: 65536].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub map_size_backends: Option<u32>,
    /// Capacity of the session-affinity map [default: 65536].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub map_size_affinity: Option<u32>,
    /// Capacity of the NAT / connection-tracking table (two entries a flow)
    /// [default: 262144].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub map_size_nat: Option<u32>,
    /// Load this eBPF object instead of the one built into the binary.
    #[arg(long)]
    pub bpf_object: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` directives, e.g. `info,weir_agent=debug`);
    /// `RUST_LOG`, when set, wins [default: info].
    #[arg(long, env = "WEIR_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Address of /healthz and /readyz; `off` disables them
    /// [default: 0.0.0.0:9879].
    #[arg(long, env = "WEIR_HEALTH_ADDRESS")]
    pub health_address: Option<String>,
    /// Address of /metrics (Prometheus); `off` disables it
    /// [default: 0.0.0.0:9962].
    #[arg(long, env = "WEIR_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,
    /// Unix socket streaming NetworkPolicy verdicts as JSON lines (what
    /// `weir` reads); `off` disables it [default: /run/weir/verdicts.sock].
    #[arg(long, env = "WEIR_VERDICT_SOCKET")]
    pub verdict_socket: Option<PathBuf>,
    /// Report allowed new connections too, not only drops.
    #[arg(long, env = "WEIR_LOG_ALLOWED_CONNECTIONS")]
    pub log_allowed_connections: bool,
}

fn parse_maglev_size(text: &str) -> Result<u32, String> {
    let size: u32 = text.parse().map_err(|e| format!("{e}"))?;
    maglev::check_table_size(size).map_err(|e| e.to_string())
}

/// Parses `FIRST-LAST` (the API server's `--service-node-port-range` form).
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 30000-32767")?;
    let first: u16 = first.trim().parse().map_err(|e| format!("first port: {e}"))?;
    let last: u16 = last.trim().parse().map_err(|e| format!("last port: {e}"))?;
    if first == 0 || first > last {
        return Err(format!("{first}-{last} is not a range of ports"));
    }
    Ok(first..=last)
}
