//! The NetworkPolicy part of a sync pass: compile the policies for this
//! node's pods, bring the policy maps to it, keep the policy programs on
//! every pod veth, and tell the verdict log what the ids now mean.

use std::net::Ipv4Addr;

use tracing::{info, warn};
use weir_common::policy::{POLICY_LOG_ALLOWS, PolicyConfig};

use crate::datapath::{Datapath, pods};
use crate::desired::policy::{self, IdHints, PolicyInput, PolicyState};
use crate::desired::{self, ObjectError};
use crate::maps::PolicyMaps;
use crate::ops::Ops;
use crate::reconcile::policy as reconcile;
use crate::source::Objects;
use crate::verdicts::{self, Hub};

/// Copies of shared objects.
fn owned<T: Clone>(objects: &[std::sync::Arc<T>]) -> Vec<T> {
    objects.iter().map(|o| T::clone(o)).collect()
}

/// What enforcing policies needs beyond the objects.
pub struct PolicyEnforcement {
    maps: Box<dyn PolicyMaps + Send>,
    /// Attaches the programs to pod veths; `None` in tests without a kernel.
    datapath: Option<Datapath>,
    hub: Option<Hub>,
    log_allows: bool,
    configured: bool,
    /// The last compilation: its rule ids are kept for unchanged rules.
    previous: Option<PolicyState>,
}

impl PolicyEnforcement {
    /// Enforcement through `maps`, attaching with `datapath`.
    #[must_use]
    pub fn new(maps: Box<dyn PolicyMaps + Send>, datapath: Option<Datapath>) -> Self {
        Self {
            maps,
            datapath,
            hub: None,
            log_allows: false,
            configured: false,
            previous: None,
        }
    }

    /// Verdicts are attributed through `hub`.
    #[must_use]
    pub fn with_verdicts(mut self, hub: Hub, log_allows: bool) -> Self {
        self.hub = Some(hub);
        self.log_allows = log_allows;
        self
    }

    /// One pass; returns what failed (empty: all in place) and adds the
    /// policies that could not be compiled to `skipped`.
    pub async fn apply(
        &mut self,
        objects: &Objects,
        node_name: &str,
        node_addresses: &[Ipv4Addr],
        ops: &Ops,
        skipped: &mut Vec<ObjectError>,
    ) -> Vec<(&'static str, &'static str, String)> {
        let mut failures = Vec::new();
        if !self.configured {
            let config = PolicyConfig {
                flags: if self.log_allows { POLICY_LOG_ALLOWS } else { 0 },
            };
            match self.maps.set_config(&config) {
                Ok(()) => self.configured = true,
                Err(e) => failures.push(("policy", super::map_reason(&e), format!("policy settings: {e}"))),
            }
        }
        let current = match self.maps.endpoints() {
            Ok(endpoints) => endpoints,
            Err(e) => {
                failures.push((
                    "policy",
                    super::map_reason(&e),
                    format!("reading policy endpoints: {e}"),
                ));
                return failures;
            }
        };
        let hints = IdHints::from_maps(&current);
        let hints = match &self.previous {
            Some(previous) => hints.with_rules_of(previous),
            None => hints,
        };
        // Copies for the compiler, made only on passes that compile (when
        // a Pod, Namespace, NetworkPolicy or Node changed).
        let (policies, namespaces, pods) = (
            owned(&objects.network_policies),
            owned(&objects.namespaces),
            owned(&objects.pods),
        );
        let input = PolicyInput {
            policies: &policies,
            namespaces: &namespaces,
            pods: &pods,
            node_name,
        };
        let mut state = policy::compile(&input, &hints);
        for e in &state.errors {
            warn!(error = %e, "NetworkPolicy cannot be compiled; the pods it selects stay isolated");
            ops.object_skipped(e.object.kind);
        }
        skipped.append(&mut state.errors);

        // Programs on every pod veth first: an endpoint's entries only
        // matter once its packets meet the programs.
        if let Some(datapath) = &mut self.datapath {
            match pods::pod_interfaces().await {
                Ok(interfaces) => match datapath.attach_pod_interfaces(&interfaces) {
                    Ok(report) => {
                        // A veth can vanish between listing and attaching
                        // (its pod was deleted): warn, the next pass knows.
                        for (interface, error) in &report.failed {
                            warn!(%interface, error = %error, "cannot attach the policy programs");
                        }
                        if report.attached + report.pruned.len() > 0 {
                            info!(
                                attached = report.attached,
                                pruned = report.pruned.len(),
                                "policy programs on pod interfaces"
                            );
                        }
                    }
                    Err(e) => {
                        failures.push(("policy", "attach", format!("policy programs on pod veths: {e}")));
                    }
                },
                Err(e) => failures.push(("policy", "netlink", format!("listing pod veths: {e}"))),
            }
        }

        match reconcile::reconcile_from(&mut self.maps, current, &state, node_addresses) {
            Ok(summary) => {
                ops.policies_programmed(summary.policies);
                if summary.updated + summary.deleted > 0 {
                    info!(
                        policies = summary.policies,
                        endpoints = summary.endpoints,
                        rules = summary.rules,
                        updated = summary.updated,
                        deleted = summary.deleted,
                        "network policies reconciled"
                    );
                }
                if let Some(hub) = &self.hub {
                    hub.set_context(context(&state));
                }
                ops.publish_endpoints(endpoint_docs(&state), summary.policies);
                self.previous = Some(state);
            }
            Err(e) => {
                failures.push((
                    "policy",
                    super::map_reason(&e),
                    format!("network policy maps: {e}"),
                ));
            }
        }
        failures
    }
}

/// What the verdict log needs of a compilation.
fn context(state: &PolicyState) -> verdicts::Context {
    let names = |list: &[policy::PolicyName]| list.iter().map(ToString::to_string).collect();
    verdicts::Context {
        endpoints: state
            .endpoint_info
            .iter()
            .map(|(id, info)| {
                let endpoint = verdicts::EndpointInfo {
                    pod: info.pod.clone(),
                    ingress: names(&info.ingress),
                    egress: names(&info.egress),
                };
                (*id, endpoint)
            })
            .collect(),
        rules: state
            .rule_table
            .iter()
            .map(|(id, rule)| {
                let info = verdicts::RuleInfo {
                    policy: rule.policy.to_string(),
                    index: rule.index,
                };
                (*id, info)
            })
            .collect(),
    }
}

/// The local pods as the CLI's `/v1/endpoints` shows them.
fn endpoint_docs(state: &PolicyState) -> Vec<crate::ops::api::EndpointDoc> {
    let names = |list: &[policy::PolicyName]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    state
        .endpoint_info
        .iter()
        .map(|(id, info)| crate::ops::api::EndpointDoc {
            pod: info.pod.clone(),
            ip: info.ip,
            id: *id,
            isolated_ingress: !info.ingress.is_empty(),
            isolated_egress: !info.egress.is_empty(),
            ingress_policies: names(&info.ingress),
            egress_policies: names(&info.egress),
        })
        .collect()
}

/// The node's own addresses, always allowed into its pods.
#[must_use]
pub fn node_addresses(state: Option<&desired::NodeState>) -> Vec<Ipv4Addr> {
    state
        .and_then(|s| s.local.as_ref())
        .and_then(|l| l.internal_ip)
        .into_iter()
        .collect()
}
