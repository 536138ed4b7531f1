//! `weir-agent`: the node agent binary.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use weir_agent::cni_config::CniConfig;
use weir_agent::datapath::{Datapath, EMBEDDED_OBJECT, MapSizes};
use weir_agent::desired::{Algorithm, Scope};
use weir_agent::reconcile::{Reconciler, maglev};
use weir_agent::sockterm::SocketTerminator;
use weir_agent::standalone;
use weir_agent::sync::{NodeOptions, Syncer};

/// weir node agent: programs the eBPF load balancer from Kubernetes objects.
///
/// Standalone mode reads Service and EndpointSlice YAML from a directory
/// (the files you would `kubectl apply`) and follows changes to it.
///
/// Example:
///   weir-agent --manifests ./manifests --bpffs /sys/fs/bpf/weir \
///       --cgroup /sys/fs/cgroup/unified/weir
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Directory of Service / EndpointSlice manifests (standalone mode).
    #[arg(long, env = "WEIR_MANIFESTS")]
    manifests: PathBuf,
    /// bpffs directory to pin maps under (must be on a mounted bpffs).
    #[arg(long, env = "WEIR_BPFFS", default_value = "/sys/fs/bpf/weir")]
    bpffs: PathBuf,
    /// cgroup v2 directory whose processes get socket-level load balancing.
    #[arg(long, env = "WEIR_CGROUP", default_value = "/sys/fs/cgroup")]
    cgroup: PathBuf,
    /// Write a JSON status document here after every reconcile.
    #[arg(long, env = "WEIR_STATUS_FILE")]
    status_file: Option<PathBuf>,
    /// How often to check the manifest directory for changes, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_interval_ms: u64,
    /// Name of this node's Node object: enables routes to the other nodes'
    /// pods and writing this node's CNI config.
    #[arg(long, env = "WEIR_NODE_NAME")]
    node_name: Option<String>,
    /// Where to write the node's CNI conflist.
    #[arg(long, env = "WEIR_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The CNI plugin's IPAM store, written into the conflist.
    #[arg(long, env = "WEIR_CNI_DATA_DIR", default_value = "/var/lib/cni/weir")]
    cni_data_dir: PathBuf,
    /// MTU of pod interfaces, written into the conflist.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(68..=65535))]
    pod_mtu: u32,
    /// The node's uplink device: masquerading happens there (TCX programs).
    #[arg(long, env = "WEIR_DEVICE")]
    device: Option<String>,
    /// The cluster's pod CIDR (all nodes' podCIDRs). With --masquerade, pod
    /// traffic to anything outside it and outside the nodes leaves with the
    /// node address.
    #[arg(long, env = "WEIR_CLUSTER_CIDR")]
    cluster_cidr: Option<ipnetwork::Ipv4Network>,
    /// The Service CIDR (kube-apiserver's --service-cluster-ip-range): the
    /// node routes it as unreachable, so a ClusterIP packet no socket hook
    /// translated (e.g. ping) is refused at once, never sent to the default
    /// route. Needs --node-name.
    #[arg(long, env = "WEIR_SERVICE_CIDR", requires = "node_name")]
    service_cidr: Option<ipnetwork::Ipv4Network>,
    /// Masquerade pod traffic leaving the cluster (needs --node-name,
    /// --device and --cluster-cidr).
    #[arg(long, env = "WEIR_MASQUERADE", requires_all = ["node_name", "device", "cluster_cidr"])]
    masquerade: bool,
    /// Allowed nodePort values, as the API server's --service-node-port-range.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    node_port_range: std::ops::RangeInclusive<u16>,
    /// How connections from outside the node pick a backend: random or
    /// maglev (per Service: annotation weir.dev/lb-algorithm).
    #[arg(long, env = "WEIR_LB_ALGORITHM", default_value = "random")]
    lb_algorithm: Algorithm,
    /// Maglev lookup table size per frontend (a prime, at most 1021).
    #[arg(long, default_value_t = maglev::DEFAULT_TABLE_SIZE, value_parser = parse_maglev_size)]
    maglev_table_size: u32,
    /// Capacity of the service map (frontends × (backends + 1)).
    #[arg(long, default_value_t = MapSizes::default().services, value_parser = clap::value_parser!(u32).range(1..))]
    map_size_services: u32,
    /// Capacity of the backend map.
    #[arg(long, default_value_t = MapSizes::default().backends, value_parser = clap::value_parser!(u32).range(1..))]
    map_size_backends: u32,
    /// Capacity of the session-affinity map.
    #[arg(long, default_value_t = MapSizes::default().affinity, value_parser = clap::value_parser!(u32).range(1..))]
    map_size_affinity: u32,
    /// Capacity of the NAT / connection-tracking table (two entries a flow).
    #[arg(long, default_value_t = MapSizes::default().nat, value_parser = clap::value_parser!(u32).range(1..))]
    map_size_nat: u32,
    /// Load this eBPF object instead of the one built into the binary.
    #[arg(long)]
    bpf_object: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    let object = match &args.bpf_object {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => EMBEDDED_OBJECT.to_vec(),
    };
    std::fs::create_dir_all(&args.bpffs)
        .with_context(|| format!("creating pin directory {}", args.bpffs.display()))?;
    let sizes = MapSizes {
        services: args.map_size_services,
        backends: args.map_size_backends,
        affinity: args.map_size_affinity,
        nat: args.map_size_nat,
    };
    let (_datapath, maps, report) =
        Datapath::load(&object, &args.bpffs, &sizes, &args.cgroup, args.device.as_deref())?;
    tracing::info!(
        bpffs = %args.bpffs.display(),
        cgroup = %args.cgroup.display(),
        adopted = report.adopted,
        attached = report.attached,
        pruned = report.pruned.len(),
        "datapath loaded"
    );

    let options = standalone::Options {
        manifests: args.manifests,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        status_file: args.status_file,
    };
    let node = args.node_name.map(|name| NodeOptions {
        name,
        cni: CniConfig {
            conf_dir: args.cni_conf_dir,
            data_dir: args.cni_data_dir,
            mtu: args.pod_mtu,
        },
        masquerade: args.cluster_cidr.filter(|_| args.masquerade),
        service_cidr: args.service_cidr,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = Scope {
            node_port_range: args.node_port_range,
            algorithm: args.lb_algorithm,
            maglev_table_size: args.maglev_table_size,
            ..Scope::default()
        };
        let mut syncer = Syncer::new(Reconciler::new(maps.lb), maps.masq, node, settings);
        match SocketTerminator::new(&args.cgroup, maps.reverse_sk) {
            Ok(sockets) => syncer = syncer.with_socket_termination(sockets),
            Err(e) => tracing::warn!(error = %e, "connected UDP sockets will keep a backend that left"),
        }
        standalone::run(&options, &mut syncer, shutdown_signal()).await;
    });
    tracing::info!("shutting down; programs stay attached and maps pinned for the next agent");
    Ok(())
}

fn parse_maglev_size(text: &str) -> Result<u32, String> {
    let size: u32 = text.parse().map_err(|e| format!("{e}"))?;
    maglev::check_table_size(size).map_err(|e| e.to_string())
}

/// Parses `FIRST-LAST`.
fn parse_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
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

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
