//! The policy reconciler: the only writer of the NetworkPolicy maps.
//!
//! Each pass diffs a compiled [`PolicyState`] against the maps and writes
//! only the difference, in an order where every peer address of every pod
//! sees, between any two writes, either its old verdict or its new one —
//! never one that is neither (in particular never more than both allow):
//!
//! 1. new node addresses (a pod about to be isolated still answers its
//!    kubelet's probes);
//! 2. stale rule entries of an endpoint id no endpoint uses yet but a new
//!    endpoint is about to (left behind by a failed pass): they must not
//!    apply to the new pod even for a moment;
//! 3. new or changed rule entries, longest prefix first: when a prefix is
//!    written, every longer prefix that carves holes into it (an except, a
//!    pod /32) already holds its new value;
//! 4. endpoints: a direction becomes isolated only once its rules are there,
//!    and stops being isolated before they go;
//! 5. deleted endpoints;
//! 6. stale rule entries, shortest prefix first: an address never falls
//!    back from a deleted except to a stale, broader allow;
//! 7. stale node addresses.
//!
//! Every write is idempotent, so a failed pass is simply run again. The
//! state is recomputed in full each pass; only changed entries are written.
//!
//! Before compiling, read the endpoint map so endpoint ids are kept:
//!
//! ```no_run
//! # fn pass(maps: &mut weir_agent::maps::FakePolicyMaps, previous: &weir_agent::desired::PolicyState,
//! #         input: &weir_agent::desired::PolicyInput<'_>) -> anyhow::Result<()> {
//! use weir_agent::desired::{IdHints, compile_policies};
//! use weir_agent::maps::PolicyMaps;
//! let hints = IdHints::from_maps(&maps.endpoints()?).with_rules_of(previous);
//! let want = compile_policies(input, &hints);
//! weir_agent::reconcile::policy::reconcile(maps, &want, &["198.18.0.11".parse()?])?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weir_common::policy::{PolicyEndpoint, PolicyRuleValue};

use crate::desired::PolicyState;
use crate::maps::{self, PolicyMaps, RuleKey};

/// What one policy pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySummary {
    /// Endpoints (local pods) now programmed.
    pub endpoints: usize,
    /// Rule trie entries now programmed.
    pub rules: usize,
    /// Policies that select at least one local pod.
    pub policies: usize,
    /// Entries inserted or replaced.
    pub updated: usize,
    /// Entries deleted.
    pub deleted: usize,
}

/// Brings the policy maps to `want`, with `node_addresses` as the node's
/// own addresses (always allowed into its pods). Entries the maps hold but
/// `want` does not are removed, so pass a complete state.
pub fn reconcile(
    maps: &mut (impl PolicyMaps + ?Sized),
    want: &PolicyState,
    node_addresses: &[Ipv4Addr],
) -> maps::Result<PolicySummary> {
    let current = maps.endpoints()?;
    reconcile_from(maps, current, want, node_addresses)
}

/// [`reconcile`] with the endpoint map as the caller just read it (the sync
/// pass reads it once for the compiler's id hints; nothing else writes it).
pub fn reconcile_from(
    maps: &mut (impl PolicyMaps + ?Sized),
    current_endpoints: Vec<(u32, PolicyEndpoint)>,
    want: &PolicyState,
    node_addresses: &[Ipv4Addr],
) -> maps::Result<PolicySummary> {
    let be = |ip: &Ipv4Addr| u32::from_ne_bytes(ip.octets());
    let current_endpoints: BTreeMap<u32, PolicyEndpoint> = current_endpoints.into_iter().collect();
    let current_rules: BTreeMap<RuleKey, PolicyRuleValue> = maps.rules()?.into_iter().collect();
    let current_hosts: BTreeSet<u32> = maps.hosts()?.into_iter().collect();
    let want_endpoints: BTreeMap<u32, PolicyEndpoint> =
        want.endpoints.iter().map(|(ip, ep)| (be(ip), *ep)).collect();
    let want_hosts: BTreeSet<u32> = node_addresses.iter().map(be).collect();
    let mut summary = PolicySummary {
        endpoints: want.endpoints.len(),
        rules: want.rules.len(),
        policies: want.policies.len(),
        ..PolicySummary::default()
    };

    for host in want_hosts.difference(&current_hosts) {
        maps.put_host(*host)?;
        summary.updated += 1;
    }

    let ids_in_use: BTreeSet<u16> = current_endpoints.values().map(|ep| ep.id).collect();
    let ids_arriving: BTreeSet<u16> = want_endpoints
        .iter()
        .filter(|(ip, ep)| current_endpoints.get(ip).map(|c| c.id) != Some(ep.id))
        .map(|(_, ep)| ep.id)
        .filter(|id| !ids_in_use.contains(id))
        .collect();
    let stale: Vec<&RuleKey> = current_rules
        .keys()
        .filter(|k| !want.rules.contains_key(k))
        .collect();
    let mut deleted_early = BTreeSet::new();
    for key in &stale {
        if ids_arriving.contains(&u16::from_be_bytes(key.data.endpoint)) {
            maps.delete_rule(key)?;
            deleted_early.insert(**key);
            summary.deleted += 1;
        }
    }

    let mut puts: Vec<(&RuleKey, &PolicyRuleValue)> = want
        .rules
        .iter()
        .filter(|(k, v)| current_rules.get(k) != Some(v))
        .collect();
    puts.sort_by_key(|(k, _)| (std::cmp::Reverse(k.peer_prefix_len), **k));
    for (key, value) in puts {
        maps.put_rule(key, value)?;
        summary.updated += 1;
    }

    for (ip, endpoint) in &want_endpoints {
        if current_endpoints.get(ip) != Some(endpoint) {
            maps.put_endpoint(*ip, endpoint)?;
            summary.updated += 1;
        }
    }
    for ip in current_endpoints.keys() {
        if !want_endpoints.contains_key(ip) {
            maps.delete_endpoint(*ip)?;
            summary.deleted += 1;
        }
    }

    let mut stale: Vec<&RuleKey> = stale
        .into_iter()
        .filter(|k| !deleted_early.contains(*k))
        .collect();
    stale.sort_by_key(|k| (k.peer_prefix_len, **k));
    for key in stale {
        maps.delete_rule(key)?;
        summary.deleted += 1;
    }

    for host in current_hosts.difference(&want_hosts) {
        maps.delete_host(*host)?;
        summary.deleted += 1;
    }
    Ok(summary)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
