//! `weir-agent`: the node agent binary. Settings: flags > environment >
//! `--config` file > defaults (see `weir_agent::config` and
//! docs/configuration.md).

use std::io::IsTerminal as _;

use anyhow::Context as _;
use clap::Parser as _;
use weir_agent::cleanup::{self, kube_proxy};
use weir_agent::cni_config::CniConfig;
use weir_agent::config::{CleanupFlags, Flags, InstallCniFlags, Settings, Source, Subcommand};
use weir_agent::datapath::{Datapath, EMBEDDED_OBJECT};
use weir_agent::desired::{Algorithm, Scope};
use weir_agent::ops::{Listeners, MapCensus, Ops};
use weir_agent::reconcile::Reconciler;
use weir_agent::sockterm::SocketTerminator;
use weir_agent::sync::{NodeOptions, PolicyEnforcement, Syncer};
use weir_agent::verdicts;
use weir_agent::{kubernetes, standalone};

fn main() -> anyhow::Result<()> {
    match Subcommand::named(std::env::args_os().nth(1).as_deref()) {
        // The subcommand's name stands in for the program name.
        Some(Subcommand::Cleanup) => {
            return run_cleanup(&CleanupFlags::parse_from(std::env::args_os().skip(1)));
        }
        Some(Subcommand::InstallCni) => {
            return install_cni(&InstallCniFlags::parse_from(std::env::args_os().skip(1)));
        }
        None => {}
    }
    let flags = Flags::parse();
    // Validated before anything else: a bad setting touches nothing.
    let settings = Settings::load(&flags)?;
    init_logging(&settings.log_level);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(settings))?;
    tracing::info!("shutting down; programs stay attached and maps pinned for the next agent");
    Ok(())
}

/// `weir-agent cleanup`: weir's state off the node, or kube-proxy's.
fn run_cleanup(flags: &CleanupFlags) -> anyhow::Result<()> {
    if flags.kube_proxy {
        let removed = kube_proxy::remove().context("removing kube-proxy's rules")?;
        if removed.is_empty() {
            println!("no kube-proxy chains or tables found");
        } else {
            println!("removed kube-proxy's {}", removed.summary());
        }
        return Ok(());
    }
    let settings = Settings::load(&flags.agent)?;
    let plan = cleanup::Plan {
        bpffs: settings.bpffs,
        cni_conf_dir: settings.cni_conf_dir,
        cni_bin_dir: flags.cni_bin_dir.clone(),
        status_file: settings.status_file,
        verdict_socket: settings.verdict_socket,
        force: flags.force,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(cleanup::run(&plan))?;
    if report.is_empty() {
        println!("nothing of weir found on this node");
    } else {
        print!("{report}");
    }
    Ok(())
}

/// `weir-agent install-cni`: the plugin into the runtime's directory.
fn install_cni(flags: &InstallCniFlags) -> anyhow::Result<()> {
    let plugin = match &flags.plugin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name(cleanup::cni::PLUGIN_NAME),
    };
    let installed = cleanup::cni::install_plugin(&plugin, &flags.cni_bin_dir)?;
    println!("installed {} as {}", plugin.display(), installed.display());
    Ok(())
}

/// Warns when kube-proxy's rules are on the node: they see Service traffic
/// before weir (NodePorts translated by `KUBE-NODEPORTS` from kube-proxy's last,
/// possibly stale view). Run once at start; checking is best effort.
fn warn_about_kube_proxy() {
    match kube_proxy::detect() {
        Ok(found) if !found.is_empty() => tracing::warn!(
            found = %found.summary(),
            "kube-proxy's rules are on this node and intercept Service traffic before weir: \
             stop kube-proxy, then run `weir-agent cleanup --kube-proxy`"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot check for kube-proxy's rules"),
    }
}

/// `RUST_LOG`, when set, wins over the configured level.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Bound before the datapath is touched: a port in use is a start error.
    let listeners = Listeners::bind(settings.health_address, settings.metrics_address).await?;
    // A kubeconfig that cannot be used is a start error too; the API
    // server itself is only contacted by the watchers.
    let source = match &settings.source {
        Source::Manifests(dir) => Mode::Standalone(standalone::Options {
            manifests: dir.clone(),
            poll_interval: settings.poll_interval,
            status_file: settings.status_file.clone(),
        }),
        Source::Kubernetes {
            kubeconfig,
            api_server,
        } => {
            let options = kubernetes::Options {
                kubeconfig: kubeconfig.clone(),
                api_server: api_server.clone(),
                node_name: settings.node_name.clone(),
                resync: RESYNC_PERIOD,
                max_watch_backoff: MAX_WATCH_BACKOFF,
                status_file: settings.status_file.clone(),
            };
            let client = kubernetes::client(&options).await?;
            Mode::Kubernetes(options, client)
        }
    };
    log_start(&settings, &listeners);
    warn_about_kube_proxy();

    let object = match &settings.bpf_object {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => EMBEDDED_OBJECT.to_vec(),
    };
    std::fs::create_dir_all(&settings.bpffs)
        .with_context(|| format!("creating pin directory {}", settings.bpffs.display()))?;
    let (datapath, maps, report) = Datapath::load(
        &object,
        &settings.bpffs,
        &settings.map_sizes,
        &settings.cgroup,
        settings.device.as_deref(),
    )?;
    tracing::info!(
        bpffs = %settings.bpffs.display(),
        cgroup = %settings.cgroup.display(),
        adopted = report.adopted,
        attached = report.attached,
        pruned = report.pruned.len(),
        "datapath loaded"
    );
    let ops = Ops::new(Some(MapCensus::new(&settings.bpffs)));
    ops.set_agent_info(agent_info(&settings));
    listeners.spawn(&ops);

    let node = settings.node_name.clone().map(|name| NodeOptions {
        name,
        cni: CniConfig {
            conf_dir: settings.cni_conf_dir.clone(),
            data_dir: settings.cni_data_dir.clone(),
            mtu: settings.pod_mtu,
        },
        masquerade: settings.cluster_cidr.filter(|_| settings.masquerade),
        service_cidr: settings.service_cidr,
    });
    let scope = Scope {
        node_port_range: settings.node_port_range.clone(),
        algorithm: settings.lb_algorithm,
        maglev_table_size: settings.maglev_table_size,
        ..Scope::default()
    };
    let hub = verdicts::Hub::new(ops.clone());
    start_verdict_log(maps.verdicts, &hub, settings.verdict_socket.clone());
    let enforce = node.is_some();
    let mut syncer = Syncer::new(Reconciler::new(maps.lb), maps.masq, node, scope).with_ops(ops);
    if enforce {
        let policy = PolicyEnforcement::new(Box::new(maps.policy), Some(datapath))
            .with_verdicts(hub, settings.log_allowed_connections);
        syncer = syncer.with_policy(policy);
    } else {
        // Without a node there are no pods to enforce policies for; the
        // programs stay attached through their pinned links regardless.
        drop(datapath);
    }
    match SocketTerminator::new(&settings.cgroup, maps.reverse_sk) {
        Ok(sockets) => syncer = syncer.with_socket_termination(sockets),
        Err(e) => tracing::warn!(error = %e, "connected UDP sockets will keep a backend that left"),
    }
    match source {
        Mode::Standalone(options) => standalone::run(&options, &mut syncer, shutdown_signal()).await,
        Mode::Kubernetes(options, client) => {
            let ops = syncer.ops().clone();
            kubernetes::run(&options, &client, &mut syncer, &ops, shutdown_signal()).await;
        }
    }
    Ok(())
}

/// Reads the policy verdict ring buffer and serves the verdict socket, in
/// the background. Either failing costs the log, never enforcement.
fn start_verdict_log(ring: aya::maps::Map, hub: &verdicts::Hub, socket: Option<std::path::PathBuf>) {
    match aya::maps::RingBuf::try_from(ring) {
        Ok(ring) => {
            tokio::spawn(verdicts::read(ring, hub.clone()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot open the verdict ring buffer; no verdict log"),
    }
    if let Some(path) = socket {
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(e) = verdicts::serve(&path, hub).await {
                tracing::warn!(error = %e, "no verdict socket");
            }
        });
    }
}

/// Where the objects come from.
enum Mode {
    Standalone(standalone::Options),
    Kubernetes(kubernetes::Options, kube::Client),
}

/// A full pass this often repairs whatever drifted in the maps (kube-proxy
/// resyncs on a period too).
const RESYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest wait between attempts to restart a failed watch: client-go's
/// reflector backs off to 30 s as well.
const MAX_WATCH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// How this agent runs, for the CLI's `/v1/status`.
fn agent_info(settings: &Settings) -> weir_agent::ops::api::AgentInfo {
    weir_agent::ops::api::AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        datapath: if settings.device.is_some() {
            "socket-lb+tc"
        } else {
            "socket-lb"
        }
        .to_owned(),
        tc_devices: settings.device.iter().map(ToString::to_string).collect(),
        lb_algorithm: match settings.lb_algorithm {
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        }
        .to_owned(),
        source: source_text(&settings.source),
        ip_family: "ipv4".to_owned(),
    }
}

/// Where objects come from, for the log and `/v1/status`.
fn source_text(source: &Source) -> String {
    let base = match source {
        Source::Manifests(dir) => return format!("manifests {}", dir.display()),
        Source::Kubernetes {
            kubeconfig: Some(path),
            ..
        } => format!("kubeconfig {}", path.display()),
        Source::Kubernetes { kubeconfig: None, .. } => "in-cluster".to_owned(),
    };
    match source {
        Source::Kubernetes {
            api_server: Some(api),
            ..
        } => format!("{base}, API server {api}"),
        _ => base,
    }
}

/// One line with what this agent is and does; the node's addresses follow
/// once its Node object is seen (logged by the syncer).
fn log_start(settings: &Settings, listeners: &Listeners) {
    let mode = match &settings.device {
        Some(_) => "socket-lb+tc",
        None => "socket-lb",
    };
    let source = source_text(&settings.source);
    let algorithm = match settings.lb_algorithm {
        Algorithm::Random => "random",
        Algorithm::Maglev => "maglev",
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node = settings.node_name.as_deref().unwrap_or("(none)"),
        ip_family = "ipv4",
        datapath = mode,
        devices = ?settings.device.as_slice(),
        lb_algorithm = algorithm,
        masquerade = settings.masquerade,
        %source,
        config_file = %settings
            .config_file
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
        health = ?settings.health_address,
        metrics = ?settings.metrics_address,
        listening = ?listeners.addresses(),
        poll_interval = ?settings.poll_interval,
        "weir-agent starting"
    );
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
