//! The Prometheus metrics: families, their help text, and the text
//! exposition. Names follow kube-proxy's where there is one
//! (`network_programming_duration_seconds`, `sync_proxy_rules_duration_seconds`)
//! with weir's prefix, so dashboards translate one to one.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of `weir_network_programming_duration_seconds`: kube-proxy's
/// (0.25 s to 5 min) below which a poll loop of 100 ms and a socket-LB map
/// write of microseconds need finer buckets to be seen at all.
const PROGRAMMING_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// `{map}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    /// Short map name (`services`, `backends`, `nat`, ...).
    pub map: String,
}

/// `{reconciler, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Which reconciler failed (`lb`, `routes`, `masquerade`, ...).
    pub reconciler: String,
    /// Why (`map_full`, `map_error`, `netlink`, `io`, ...).
    pub reason: String,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// `{resource}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// The watched resource (`services`, `endpointslices`, `nodes`, ...).
    pub resource: String,
}

/// `{kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The object kind (`Service`, `EndpointSlice`, `Node`, ...).
    pub kind: String,
}

/// `{policy, direction, verdict}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `namespace/name` of the NetworkPolicy.
    pub policy: String,
    /// `ingress` or `egress` (of the selected pod).
    pub direction: String,
    /// `drop` or `allow`.
    pub verdict: String,
}

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    /// Event seen → maps written.
    pub programming: Histogram,
    /// One sync pass.
    pub sync_duration: Histogram,
    /// Services with at least one frontend programmed.
    pub services: Gauge,
    /// Frontends programmed.
    pub frontends: Gauge,
    /// Backends programmed.
    pub backends: Gauge,
    /// Network policies programmed (none until policies exist).
    pub policies: Gauge,
    /// Entries of each pinned map.
    pub map_entries: Family<MapLabel, Gauge>,
    /// Capacity of each pinned map.
    pub map_capacity: Family<MapLabel, Gauge>,
    /// Failed reconciles.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Sync passes by result.
    pub sync_passes: Family<ResultLabel, Counter>,
    /// 1 when ready.
    pub ready: Gauge,
    /// Watches restarted.
    pub watch_restarts: Family<ResourceLabel, Counter>,
    /// Objects skipped as invalid.
    pub objects_skipped: Family<KindLabel, Counter>,
    /// Objects the source holds, by resource.
    pub source_objects: Family<ResourceLabel, Gauge>,
    /// Policy verdicts reported by the datapath.
    pub policy_verdicts: Family<VerdictLabels, Counter>,
    /// Verdicts that could not be attributed to a policy.
    pub verdicts_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The families of the sources and of policy enforcement.
fn register_sources_and_policies(r: &mut Registry, metrics: &Metrics) {
    r.register(
            "weir_source_objects",
            "Objects the last sync pass was computed from, by resource (what the watchers or the manifest directory hold)",
            metrics.source_objects.clone(),
        );
    r.register(
            "weir_policy_verdicts",
            "NetworkPolicy verdicts: drops by every policy that isolated the pod, allows (when logged) by the policy whose rule matched",
            metrics.policy_verdicts.clone(),
        );
    r.register(
        "weir_policy_verdicts_unattributed",
        "Verdicts the agent could not attribute to a policy (the pod or rule changed meanwhile)",
        metrics.verdicts_lost.clone(),
    );
}

impl Metrics {
    /// All families registered, at zero.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let programming = Histogram::new(PROGRAMMING_BUCKETS);
        // kube-proxy's sync_proxy_rules_duration_seconds buckets: 1 ms to 16 s.
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let metrics = Self {
            programming: programming.clone(),
            sync_duration: sync_duration.clone(),
            services: Gauge::default(),
            frontends: Gauge::default(),
            backends: Gauge::default(),
            policies: Gauge::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            reconcile_errors: Family::default(),
            sync_passes: Family::default(),
            ready: Gauge::default(),
            watch_restarts: Family::default(),
            objects_skipped: Family::default(),
            source_objects: Family::default(),
            policy_verdicts: Family::default(),
            verdicts_lost: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "weir_network_programming_duration_seconds",
            "Time from a change of Services, EndpointSlices or Nodes being seen to the maps holding it",
            programming,
        );
        r.register(
            "weir_sync_duration_seconds",
            "Duration of one sync pass (desired state computed, every reconciler run)",
            sync_duration,
        );
        r.register(
            "weir_services_programmed",
            "Services with at least one frontend in the maps",
            metrics.services.clone(),
        );
        r.register(
            "weir_frontends_programmed",
            "Frontends (address, port, protocol) in the service map",
            metrics.frontends.clone(),
        );
        r.register(
            "weir_backends_programmed",
            "Backends in the backend map",
            metrics.backends.clone(),
        );
        r.register(
            "weir_policies_programmed",
            "NetworkPolicies compiled into the policy maps",
            metrics.policies.clone(),
        );
        r.register(
            "weir_map_entries",
            "Entries in a pinned eBPF map, counted at scrape time",
            metrics.map_entries.clone(),
        );
        r.register(
            "weir_map_capacity",
            "Capacity (max_entries) of a pinned eBPF map",
            metrics.map_capacity.clone(),
        );
        r.register(
            "weir_reconcile_errors",
            "Reconciles that failed, by reconciler and reason (map_full: raise the map's size)",
            metrics.reconcile_errors.clone(),
        );
        r.register(
            "weir_sync_passes",
            "Sync passes, by result (error: something is not programmed yet; retried)",
            metrics.sync_passes.clone(),
        );
        r.register(
            "weir_ready",
            "1 when the last sync pass programmed everything (what /readyz answers)",
            metrics.ready.clone(),
        );
        r.register(
            "weir_watch_restarts",
            "Kubernetes watches restarted, by resource",
            metrics.watch_restarts.clone(),
        );
        r.register(
            "weir_objects_skipped",
            "Objects (or parts) left out of the desired state as invalid, counted on each pass that skips them",
            metrics.objects_skipped.clone(),
        );
        register_sources_and_policies(r, &metrics);
        for result in ["ok", "error"] {
            let _ = metrics.sync_passes.get_or_create(&ResultLabel {
                result: result.to_owned(),
            });
        }
        Self { registry, ..metrics }
    }

    /// The `OpenMetrics` text exposition of every family.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
