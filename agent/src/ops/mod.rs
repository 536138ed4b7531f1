//! What the agent tells operators and probes: liveness (/healthz),
//! readiness (/readyz) and Prometheus metrics (/metrics).
//!
//! [`Ops`] is a cheap, cloneable handle: `main` creates it, the syncer and
//! the source loops record into it, the HTTP servers read it.
//!
//! Readiness means "the last sync pass programmed everything": it is false
//! until the first complete pass, and false again while a pass keeps
//! failing — a full map included. kube-proxy stays ready with rules it
//! could not write; weir does not, because a node that silently drops new
//! Services is worse than one a rollout notices (the Services already
//! programmed keep working either way; see `docs/configuration.md`).

pub mod api;
pub mod census;
pub mod http;
pub mod metrics;
mod server;
pub mod trace;
pub mod view;

use crate::desired::ServiceName;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use census::MapCensus;
pub use metrics::Metrics;
pub use server::{Error, Listeners};

use metrics::{ErrorLabels, KindLabel, MapLabel, ResourceLabel, ResultLabel, VerdictLabels};

/// /healthz fails when the main loop has not ticked for this long: it
/// polls every few hundred milliseconds, so a minute means it is wedged.
pub const LIVENESS_WINDOW: Duration = Duration::from_secs(60);

/// Why the agent is not ready before anything happened.
const STARTING: &str = "starting: no complete sync pass yet";

/// The shared state behind [`Ops`].
struct Inner {
    health: Mutex<Health>,
    metrics: Metrics,
    census: Option<MapCensus>,
    /// What `/v1/…` shows, as of the last pass.
    view: Mutex<api::View>,
}

struct Health {
    ready: bool,
    reason: String,
    last_tick: Instant,
}

/// Health and metrics of the agent; clones share one state.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

impl Default for Ops {
    fn default() -> Self {
        Self::new(None)
    }
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").finish_non_exhaustive()
    }
}

impl Ops {
    /// Not ready, alive as of now; `census` counts the pinned maps for
    /// /metrics (`None`: no map metrics, e.g. in unit tests).
    #[must_use]
    pub fn new(census: Option<MapCensus>) -> Self {
        Self {
            inner: Arc::new(Inner {
                health: Mutex::new(Health {
                    ready: false,
                    reason: STARTING.to_owned(),
                    last_tick: Instant::now(),
                }),
                metrics: Metrics::new(),
                census,
                view: Mutex::default(),
            }),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets readiness; `reason` says why not (ignored when ready). Logged
    /// when it changes.
    pub fn set_ready(&self, ready: bool, reason: &str) {
        let mut health = self.health();
        if health.ready != ready || (!ready && health.reason != reason) {
            if ready {
                tracing::info!("ready");
            } else {
                tracing::warn!(reason, "not ready");
            }
        }
        health.ready = ready;
        health.reason = if ready { String::new() } else { reason.to_owned() };
        self.inner.metrics.ready.set(i64::from(ready));
    }

    /// Whether ready, and why not.
    #[must_use]
    pub fn readiness(&self) -> (bool, String) {
        let health = self.health();
        (health.ready, health.reason.clone())
    }

    /// A liveness tick from the main loop.
    pub fn alive(&self) {
        self.health().last_tick = Instant::now();
    }

    /// Time since the last [`Self::alive`].
    #[must_use]
    pub fn since_alive(&self) -> Duration {
        self.health().last_tick.elapsed()
    }

    /// A change seen at `seen` is now in the maps.
    pub fn observe_programming(&self, seen: Instant) {
        self.inner
            .metrics
            .programming
            .observe(seen.elapsed().as_secs_f64());
    }

    /// One sync pass took `took`; `ok`: everything programmed.
    pub fn observe_sync(&self, took: Duration, ok: bool) {
        self.inner.metrics.sync_duration.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.inner
            .metrics
            .sync_passes
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// What the load-balancer maps hold after a successful reconcile.
    pub fn programmed(&self, services: usize, frontends: usize, backends: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let m = &self.inner.metrics;
        m.services.set(gauge(services));
        m.frontends.set(gauge(frontends));
        m.backends.set(gauge(backends));
    }

    /// `NetworkPolicies` programmed after a successful policy reconcile.
    pub fn policies_programmed(&self, policies: usize) {
        self.inner
            .metrics
            .policies
            .set(i64::try_from(policies).unwrap_or(i64::MAX));
    }

    /// A verdict of the datapath, attributed to `policy`.
    pub fn policy_verdict(&self, policy: &str, direction: &str, verdict: &str) {
        self.inner
            .metrics
            .policy_verdicts
            .get_or_create(&VerdictLabels {
                policy: policy.to_owned(),
                direction: direction.to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
    }

    /// A verdict that could not be attributed to any policy.
    pub fn verdict_unattributed(&self) {
        self.inner.metrics.verdicts_lost.inc();
    }

    /// A reconciler failed for `reason` (`map_full`, ...).
    pub fn reconcile_error(&self, reconciler: &str, reason: &str) {
        self.inner
            .metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                reconciler: reconciler.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A watch of `resource` was restarted.
    pub fn watch_restart(&self, resource: &str) {
        self.inner
            .metrics
            .watch_restarts
            .get_or_create(&ResourceLabel {
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// The source holds `count` objects of `resource`.
    pub fn source_objects(&self, resource: &str, count: usize) {
        self.inner
            .metrics
            .source_objects
            .get_or_create(&ResourceLabel {
                resource: resource.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// An object of `kind` was skipped as invalid.
    pub fn object_skipped(&self, kind: &str) {
        self.inner
            .metrics
            .objects_skipped
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    fn view_mut(&self) -> std::sync::MutexGuard<'_, api::View> {
        self.inner.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `/v1/…` shows, read in place: it holds every Service's document, too
    /// much to copy for one answer.
    fn with_view<R>(&self, read: impl FnOnce(&api::View) -> R) -> R {
        read(&self.view_mut())
    }

    /// What the load balancer's last pass left in its maps (they need no
    /// walk to be counted).
    pub fn lb_entries(&self, services: usize, backends: usize, maglev: usize) {
        if let Some(census) = &self.inner.census {
            census.written(weir_common::lb::SERVICES_MAP, services);
            census.written(weir_common::lb::BACKENDS_MAP, backends);
            census.written(weir_common::lb::MAGLEV_MAP, maglev);
        }
    }

    /// The map census, if the maps are counted.
    fn census(&self) -> Option<MapCensus> {
        self.inner.census.clone()
    }

    /// How the agent runs (set once at start, for `/v1/status`).
    pub fn set_agent_info(&self, info: api::AgentInfo) {
        self.view_mut().agent = info;
    }

    /// This node as the current pass sees it.
    pub fn publish_node(&self, node: api::NodeInfo) {
        self.view_mut().node = node;
    }

    /// The Services the current pass recomputed (`None`: it has no
    /// frontend any more), and the load-balancer counts. `full`: these are
    /// all the Services there are.
    pub fn publish_services(
        &self,
        full: bool,
        services: Vec<(ServiceName, Option<view::ServiceInputs>)>,
        scope: &crate::desired::Scope,
        frontends: usize,
        backends: usize,
    ) {
        let mut view = self.view_mut();
        if full {
            view.services.clear();
            view.scope = scope.clone();
        }
        for (name, inputs) in services {
            match inputs {
                Some(inputs) => view.services.insert(name, inputs),
                None => view.services.remove(&name),
            };
        }
        view.counts.services = view.services.len();
        view.counts.frontends = frontends;
        view.counts.backends = backends;
    }

    /// Every pod with an address, as the current pass sees them.
    pub fn publish_pods(&self, pods: Vec<api::PodDoc>) {
        self.view_mut().pods = pods;
    }

    /// The policy endpoints and policy count of the last policy reconcile.
    pub fn publish_endpoints(&self, endpoints: Vec<api::EndpointDoc>, policies: usize) {
        let mut view = self.view_mut();
        view.counts.endpoints = endpoints.len();
        view.counts.policies = policies;
        view.endpoints = endpoints;
    }

    /// A pass ended: the objects it skipped; a complete one (`ok`) also
    /// counts as a generation, stamped now.
    pub fn publish_pass(&self, ok: bool, skipped: Vec<String>) {
        let mut view = self.view_mut();
        view.skipped = skipped;
        if ok {
            view.generation += 1;
            view.last_sync = Some(std::time::SystemTime::now());
        }
    }

    /// The metrics exposition, with the map counts refreshed first (on the
    /// blocking pool: counting walks the maps).
    pub async fn scrape(&self) -> String {
        if let Some(census) = self.inner.census.clone() {
            match tokio::task::spawn_blocking(move || census.count()).await {
                Ok(counts) => {
                    let m = &self.inner.metrics;
                    for count in counts {
                        let label = MapLabel {
                            map: count.map.to_owned(),
                        };
                        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                        m.map_entries.get_or_create(&label).set(gauge(count.entries));
                        m.map_capacity.get_or_create(&label).set(gauge(count.capacity));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "counting map entries failed"),
            }
        }
        self.inner.metrics.render()
    }

    /// The metrics exposition as it stands (no map count).
    #[must_use]
    pub fn render(&self) -> String {
        self.inner.metrics.render()
    }
}

#[cfg(test)]
mod tests;
