//! The ops listeners: /healthz, /readyz and the CLI's `/v1/…` API (see
//! [`super::api`]) on the health address, /metrics
//! on the metrics address — one listener serving all three when the
//! addresses are equal. Bound at start, before the datapath is touched, so
//! a port in use stops the agent with a clear error instead of a node that
//! runs unobserved.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::Ops;
use super::http::{self, Response};
use super::metrics::CONTENT_TYPE;

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for {what} (set {setting}, or \"off\")")]
pub struct Error {
    /// The address.
    pub address: SocketAddr,
    /// `/healthz, /readyz` or `/metrics`.
    pub what: &'static str,
    /// The setting that chose the address.
    pub setting: &'static str,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Which paths a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Paths {
    pub(super) health: bool,
    pub(super) metrics: bool,
}

/// The bound, not yet serving, listeners.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<(TcpListener, Paths)>,
}

impl Listeners {
    /// Binds the health and metrics addresses (`None`: that endpoint is off).
    pub async fn bind(health: Option<SocketAddr>, metrics: Option<SocketAddr>) -> Result<Self, Error> {
        let bind = |address: SocketAddr, what, setting| async move {
            TcpListener::bind(address).await.map_err(|source| Error {
                address,
                what,
                setting,
                source,
            })
        };
        let mut bound = Vec::new();
        match (health, metrics) {
            (Some(h), Some(m)) if h == m => {
                let listener = bind(h, "/healthz, /readyz and /metrics", "healthAddress").await?;
                bound.push((
                    listener,
                    Paths {
                        health: true,
                        metrics: true,
                    },
                ));
            }
            (health, metrics) => {
                if let Some(address) = health {
                    let listener = bind(address, "/healthz and /readyz", "healthAddress").await?;
                    bound.push((
                        listener,
                        Paths {
                            health: true,
                            metrics: false,
                        },
                    ));
                }
                if let Some(address) = metrics {
                    let listener = bind(address, "/metrics", "metricsAddress").await?;
                    bound.push((
                        listener,
                        Paths {
                            health: false,
                            metrics: true,
                        },
                    ));
                }
            }
        }
        Ok(Self { bound })
    }

    /// The bound addresses (port 0 resolved), for logs and tests.
    #[must_use]
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves `ops` on every listener, in background tasks.
    pub fn spawn(self, ops: &Ops) {
        for (listener, paths) in self.bound {
            let ops = ops.clone();
            let handler = move |path: Option<String>| {
                let ops = ops.clone();
                async move { route(&ops, paths, path.as_deref()).await }
            };
            tokio::spawn(http::serve(listener, "ops", handler));
        }
    }
}

pub(super) async fn route(ops: &Ops, paths: Paths, path: Option<&str>) -> Response {
    // The request target carries the query; only /v1/policy/verdict reads it.
    let (path, query) = path.map_or((None, ""), |t| {
        let (p, q) = t.split_once('?').unwrap_or((t, ""));
        (Some(p), q)
    });
    match path {
        Some("/v1/policy/verdict") if paths.health => super::trace::verdict(ops, query).await,
        Some("/healthz" | "/livez") if paths.health => healthz(ops),
        Some("/readyz") if paths.health => readyz(ops),
        // The CLI's API lives next to the health endpoints: it is local to
        // the node, as `weir` is.
        Some(p) if paths.health && p.starts_with("/v1/") => super::api::route(ops, p)
            .await
            .unwrap_or_else(|| Response::text("404 Not Found", "not found\n")),
        Some("/metrics") if paths.metrics => Response {
            status: "200 OK",
            content_type: CONTENT_TYPE,
            headers: Vec::new(),
            body: ops.scrape().await,
        },
        _ => Response::text("404 Not Found", "not found\n"),
    }
}

/// 200 while the main loop ticks.
#[must_use]
pub fn healthz(ops: &Ops) -> Response {
    let stalled = ops.since_alive();
    if stalled < super::LIVENESS_WINDOW {
        Response::text("200 OK", "ok\n")
    } else {
        Response::text(
            "503 Service Unavailable",
            format!("main loop stalled for {}s\n", stalled.as_secs()),
        )
    }
}

/// 200 when ready; 503 with the reason otherwise.
#[must_use]
pub fn readyz(ops: &Ops) -> Response {
    match ops.readiness() {
        (true, _) => Response::text("200 OK", "ok\n"),
        (false, reason) => Response::text("503 Service Unavailable", format!("{reason}\n")),
    }
}
