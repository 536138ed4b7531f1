//! Kubernetes mode: the API server is the source of truth. Watchers keep
//! reflector stores current ([`crate::source::apiserver`]); this loop turns
//! their updates into sync passes over a snapshot of the stores — the same
//! [`Syncer::sync`] the standalone directory source drives.
//!
//! - Nothing is written, and so nothing pruned, before every kind has been
//!   listed once: a restarted agent keeps the pinned state until it knows
//!   the whole cluster again.
//! - A watch failure keeps the last known state programmed, marks the agent
//!   not ready, and is healed by the watcher's relist, after which one pass
//!   brings the maps to what changed meanwhile.
//! - A failed pass is retried with backoff; a full pass also runs every
//!   `resync` interval, which repairs anything that drifted in the maps.

pub mod events;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::config::ApiServer;
use crate::maps::{LbMaps, MasqMaps};
use crate::ops::Ops;
use crate::source::apiserver::{self, Kind, Update};
use crate::status::{self, Status};
use crate::sync::Syncer;

/// Settings of the Kubernetes loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kubeconfig file; `None`: in-cluster service account (or the usual
    /// `KUBECONFIG` / `~/.kube/config` fallbacks).
    pub kubeconfig: Option<PathBuf>,
    /// The API server's address, replacing the kubeconfig's server or the
    /// in-cluster `KUBERNETES_SERVICE_HOST` (kube-proxy replacement mode).
    pub api_server: Option<ApiServer>,
    /// This node's name: its Pods are watched.
    pub node_name: Option<String>,
    /// Every this often a full pass runs even when nothing changed.
    pub resync: Duration,
    /// Longest wait before a failed watch starts over.
    pub max_watch_backoff: Duration,
    /// Where to write the status after each complete pass, if anywhere.
    pub status_file: Option<PathBuf>,
}

/// Errors setting up the API client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file cannot be read or used.
    #[error("kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig given and no in-cluster configuration found.
    #[error("no Kubernetes API configuration found (pass --kubeconfig or --manifests)")]
    Infer(#[source] kube::config::InferConfigError),
    /// `apiServerHost` given, no kubeconfig, and no service account
    /// mounted (token and CA under /var/run/secrets/kubernetes.io).
    #[error("apiServerHost is set but there are no in-cluster credentials (pass --kubeconfig)")]
    InCluster(#[source] kube::config::InClusterError),
    /// The configured API server does not make a URL.
    #[error("API server address {address}")]
    Url {
        /// What was configured.
        address: String,
        /// Why.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The client cannot be built from the configuration.
    #[error("cannot create the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// The API client for `options`. Nothing is contacted yet.
pub async fn client(options: &Options) -> Result<Client, Error> {
    Client::try_from(client_config(options).await?).map_err(Error::Client)
}

/// The client configuration for `options`: the kubeconfig, else the
/// in-cluster service account; `api_server` replaces the server address
/// of either (keeping the kubeconfig's scheme; https in-cluster).
pub async fn client_config(options: &Options) -> Result<kube::Config, Error> {
    let mut config = match &options.kubeconfig {
        Some(path) => {
            let err = |source| Error::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        // The service account's token and CA; the address is replaced
        // below. Not `infer`: its in-cluster URL is the ClusterIP in
        // KUBERNETES_SERVICE_HOST, the very thing weir has yet to program.
        None if options.api_server.is_some() => kube::Config::incluster_dns().map_err(Error::InCluster)?,
        None => kube::Config::infer().await.map_err(Error::Infer)?,
    };
    if let Some(api) = &options.api_server {
        let scheme = config.cluster_url.scheme_str().unwrap_or("https").to_owned();
        let address = api.url(&scheme);
        config.cluster_url = address.parse().map_err(|source| Error::Url {
            address: address.clone(),
            source,
        })?;
    }
    Ok(config)
}

/// How often the loop proves it is alive when nothing happens.
const TICK: Duration = Duration::from_secs(5);

/// Runs until `shutdown` completes. Never gives up: watch failures are
/// retried by the watchers, failed passes here.
pub async fn run<M: LbMaps, Q: MasqMaps>(
    options: &Options,
    client: &Client,
    syncer: &mut Syncer<M, Q>,
    ops: &Ops,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let source = apiserver::Options {
        node_name: options.node_name.clone(),
        max_backoff: options.max_watch_backoff,
    };
    let watches = apiserver::start(client, &source, &tx);
    drop(tx);
    let mut progress = Progress::default();
    let mut status = Status::default();
    let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut retry_at = Instant::now();
    let mut resync_at = Instant::now() + options.resync;
    let mut last_pass_ok = false;
    let mut skip_events = events::SkipEvents::new(client.clone(), options.node_name.clone());
    ops.set_ready(false, &progress.not_ready_reason());
    loop {
        let wake = if progress.pending() { retry_at } else { resync_at }.min(Instant::now() + TICK);
        tokio::select! {
            update = rx.recv() => {
                let Some(update) = update else { return };
                progress.apply(update, ops);
                while let Ok(update) = rx.try_recv() {
                    progress.apply(update, ops);
                }
                // A change is programmed at once, even while a failing
                // pass is being retried with backoff: one stuck part must
                // not delay every other change.
                retry_at = Instant::now();
            }
            () = tokio::time::sleep_until(wake) => {}
            () = &mut shutdown => return,
        }
        ops.alive();
        let now = Instant::now();
        if now >= resync_at {
            progress.resync = true;
            resync_at = now + options.resync;
        }
        if progress.all_listed() && progress.pending() && now >= retry_at {
            let objects = watches.stores.snapshot();
            last_pass_ok = syncer.sync(&objects, &mut status).await;
            skip_events.report(syncer.skipped()).await;
            if last_pass_ok {
                if let Some(seen) = progress.changed_since.take() {
                    ops.observe_programming(seen.into_std());
                }
                progress.resync = false;
                retry.reset();
                status.generation += 1;
                info!(generation = status.generation, "in sync with the API server");
                if let Some(path) = &options.status_file
                    && let Err(e) = status::write(path, &status)
                {
                    warn!(error = %e, path = %path.display(), "cannot write status file");
                }
            } else {
                retry_at = now + retry.next_delay();
            }
        }
        // A failed pass already said what failed (see Syncer::sync).
        let reason = progress.not_ready_reason();
        if !reason.is_empty() {
            ops.set_ready(false, &reason);
        } else if last_pass_ok {
            ops.set_ready(true, "");
        }
    }
}

/// What the watchers have told the loop so far.
#[derive(Debug, Default)]
struct Progress {
    /// Kinds listed completely at least once.
    listed: BTreeSet<Kind>,
    /// Kinds whose watch failed and has not relisted since, with the error.
    failing: BTreeMap<Kind, String>,
    /// The earliest change not yet programmed.
    changed_since: Option<Instant>,
    /// A periodic full pass is due.
    resync: bool,
}

impl Progress {
    fn apply(&mut self, update: Update, ops: &Ops) {
        match update {
            Update::Changed { seen, .. } => {
                self.changed_since.get_or_insert(seen.into());
            }
            Update::Listed { kind, seen } => {
                if self.listed.insert(kind) {
                    info!(resource = kind.resource(), "initial list complete");
                }
                if self.failing.remove(&kind).is_some() {
                    info!(resource = kind.resource(), "watch recovered: relisted");
                }
                self.changed_since.get_or_insert(seen.into());
            }
            Update::Failed { kind, error } => {
                warn!(resource = kind.resource(), %error, "watch failed; keeping the last known state and relisting");
                ops.watch_restart(kind.resource());
                self.failing.insert(kind, error);
            }
        }
    }

    fn all_listed(&self) -> bool {
        self.listed.len() == Kind::ALL.len()
    }

    fn pending(&self) -> bool {
        self.changed_since.is_some() || self.resync
    }

    /// Why the source is not complete; empty when it is.
    fn not_ready_reason(&self) -> String {
        let unlisted: Vec<_> = Kind::ALL
            .iter()
            .filter(|k| !self.listed.contains(k))
            .map(|k| k.resource())
            .collect();
        if !unlisted.is_empty() {
            return format!("waiting for the initial list of {}", unlisted.join(", "));
        }
        if let Some((kind, error)) = self.failing.iter().next() {
            return format!("watch of {} failing: {error}", kind.resource());
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Options reading a kubeconfig of one cluster at `server` (with
    /// `extra` cluster fields), written to a file of this test (`name`).
    fn options_for(name: &str, server: &str, extra: &str) -> (std::path::PathBuf, Options) {
        let path = std::env::temp_dir().join(format!("weir-kubeconfig-{name}-{}", std::process::id()));
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: c, cluster: {{server: '{server}'{extra}}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        );
        std::fs::write(&path, kubeconfig).unwrap();
        let options = Options {
            kubeconfig: Some(path.clone()),
            api_server: None,
            node_name: None,
            resync: Duration::from_secs(60),
            max_watch_backoff: Duration::from_secs(30),
            status_file: None,
        };
        (path, options)
    }

    #[test]
    fn the_configured_api_server_replaces_the_kubeconfigs() {
        let (path, mut options) = options_for("plain", "http://198.18.0.2:6443", "");
        let plain = block_on(client_config(&options)).unwrap();
        assert_eq!(plain.cluster_url.to_string(), "http://198.18.0.2:6443/");
        options.api_server = Some(ApiServer {
            host: "2001:db8::7".into(),
            port: 8443,
        });
        let replaced = block_on(client_config(&options)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(replaced.cluster_url.to_string(), "http://[2001:db8::7]:8443/");
    }

    #[test]
    fn a_tls_client_can_be_built() {
        // rustls with exactly one crypto provider (ring): building the
        // connector would panic if none or two were compiled in.
        let (path, options) = options_for(
            "tls",
            "https://192.0.2.10:6443",
            ", insecure-skip-tls-verify: true",
        );
        let built = block_on(async { client(&options).await.map(|_| ()) });
        std::fs::remove_file(&path).unwrap();
        built.unwrap();
    }

    #[test]
    fn ready_only_after_every_list_and_while_no_watch_fails() {
        let ops = Ops::new(None);
        let mut p = Progress::default();
        assert!(p.not_ready_reason().starts_with("waiting for the initial list"));
        for kind in Kind::ALL {
            p.apply(
                Update::Listed {
                    kind,
                    seen: std::time::Instant::now(),
                },
                &ops,
            );
        }
        assert!(p.all_listed() && p.pending());
        assert_eq!(p.not_ready_reason(), "");
        p.apply(
            Update::Failed {
                kind: Kind::Service,
                error: "connection refused".into(),
            },
            &ops,
        );
        assert_eq!(
            p.not_ready_reason(),
            "watch of services failing: connection refused"
        );
        p.apply(
            Update::Listed {
                kind: Kind::Service,
                seen: std::time::Instant::now(),
            },
            &ops,
        );
        assert_eq!(p.not_ready_reason(), "");
    }

    #[test]
    fn the_earliest_unprogrammed_change_is_kept() {
        let ops = Ops::new(None);
        let mut p = Progress::default();
        let first = std::time::Instant::now();
        for seen in [first, first + Duration::from_millis(5)] {
            p.apply(
                Update::Changed {
                    kind: Kind::EndpointSlice,
                    seen,
                },
                &ops,
            );
        }
        assert_eq!(p.changed_since.map(Instant::into_std), Some(first));
    }
}
