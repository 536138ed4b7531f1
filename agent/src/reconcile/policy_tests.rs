//! The policy reconciler against the in-memory maps: what it writes, in
//! which order, and that a failure at any write leaves every pod with its
//! old or its new verdict for every peer, and a retry converges.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weir_common::policy::{PolicyEndpoint, PolicyRuleValue};

use super::*;
use crate::desired::policy::Direction;
use crate::desired::policy::test_support::{PODS, TCP, UDP, World, allowed_by, ip, pod};
use crate::desired::{IdHints, PolicyState};
use crate::maps::{FakePolicyMaps, PolicyMaps, RuleKey};

fn node() -> Vec<Ipv4Addr> {
    vec!["198.18.0.11".parse().unwrap()]
}

/// A: x isolated both ways (ingress from y, egress to 10.0.0.0/16 except
/// 10.0.2.0/24 on 80), z default-deny ingress.
fn world_a() -> World {
    World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}], \
              egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}}], ports: [{port: 80}]}]}",
        )
        .with("z", "deny", "{podSelector: {}}")
}

/// B: x's except moves and port 81 joins, z's policy is gone, y gets one,
/// x/a is replaced by x/new.
fn world_b() -> World {
    let mut world = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}], \
              egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.3.0/24]}}], ports: [{port: 80}, {port: 81}]}]}",
        )
        .with("y", "web", "{podSelector: {matchLabels: {app: a}}, ingress: [{ports: [{port: 80}]}]}");
    world
        .pods
        .retain(|p| (p.metadata.namespace.as_deref(), p.metadata.name.as_deref()) != (Some("x"), Some("a")));
    world
        .pods
        .push(pod("x", "new", "node-1", "10.0.1.50", "{app: a}", "[]"));
    world
}

fn hints(maps: &FakePolicyMaps) -> IdHints {
    IdHints::from_maps(&maps.endpoints().unwrap())
}

fn in_maps(maps: &FakePolicyMaps, pod: Ipv4Addr) -> Option<PolicyEndpoint> {
    maps.endpoints.get(&u32::from_ne_bytes(pod.octets())).copied()
}

/// Every (pod, direction, peer, protocol, port) verdict worth asking.
fn verdicts(
    endpoint: impl Fn(Ipv4Addr) -> Option<PolicyEndpoint>,
    rules: &BTreeMap<RuleKey, PolicyRuleValue>,
) -> Vec<bool> {
    let mut pods: Vec<Ipv4Addr> = PODS.map(ip).into();
    pods.push(ip("10.0.1.50"));
    let mut peers = pods.clone();
    peers.extend(["10.0.2.99", "10.0.3.99", "10.1.0.1", "198.51.100.1"].map(ip));
    let mut out = Vec::new();
    for pod in &pods {
        for direction in [Direction::Ingress, Direction::Egress] {
            for peer in &peers {
                for (proto, port) in [(TCP, 80), (TCP, 81), (UDP, 53)] {
                    out.push(allowed_by(endpoint(*pod), rules, direction, *peer, proto, port));
                }
            }
        }
    }
    out
}

fn state_verdicts(state: &PolicyState) -> Vec<bool> {
    verdicts(|p| state.endpoints.get(&p).copied(), &state.rules)
}

fn programmed(a: &World) -> (FakePolicyMaps, PolicyState) {
    let mut maps = FakePolicyMaps::default();
    let state = a.compile();
    reconcile(&mut maps, &state, &node()).unwrap();
    maps.log.clear();
    (maps, state)
}

#[test]
fn fresh_maps_get_the_state_and_a_second_pass_writes_nothing() {
    let (mut maps, state) = programmed(&world_a());
    assert_eq!(maps.endpoints.len(), 6);
    assert_eq!(maps.rules.len(), state.rules.len());
    assert_eq!(
        maps.hosts.iter().copied().collect::<Vec<_>>(),
        [u32::from_ne_bytes([198, 18, 0, 11])]
    );
    let again = reconcile(&mut maps, &state, &node()).unwrap();
    assert_eq!((again.updated, again.deleted), (0, 0));
    assert_eq!(maps.log, [""; 0]);
    assert_eq!(
        (again.endpoints, again.rules, again.policies),
        (6, state.rules.len(), 2)
    );
}

#[test]
fn rules_go_in_before_isolation_and_out_after_it() {
    let (mut maps, _) = programmed(&World::new());
    let isolated = World::new()
        .with("x", "p", "{podSelector: {matchLabels: {app: a}}, ingress: [{}]}")
        .compile_with(&hints(&maps));
    reconcile(&mut maps, &isolated, &node()).unwrap();
    assert_eq!(maps.log, ["put_rule", "put_endpoint"]);
    maps.log.clear();
    let open = World::new().compile_with(&hints(&maps));
    let summary = reconcile(&mut maps, &open, &node()).unwrap();
    assert_eq!(maps.log, ["put_endpoint", "delete_rule"]);
    assert_eq!((summary.updated, summary.deleted), (1, 1));
}

#[test]
fn node_addresses_follow_the_argument() {
    let (mut maps, state) = programmed(&World::new());
    let other: Vec<Ipv4Addr> = vec!["198.18.0.12".parse().unwrap()];
    reconcile(&mut maps, &state, &other).unwrap();
    assert_eq!(maps.log, ["put_host", "delete_host"]);
    assert_eq!(
        maps.hosts.iter().copied().collect::<Vec<_>>(),
        [u32::from_ne_bytes([198, 18, 0, 12])]
    );
}

#[test]
fn stale_rules_of_an_id_are_gone_before_a_new_pod_takes_it() {
    let (mut maps, _) = programmed(&World::new());
    // A failed pass left rules for id 7, which no endpoint holds.
    let stale = World::new()
        .with("x", "all", "{podSelector: {}, ingress: [{}]}")
        .compile();
    let mut key = *stale.rules.keys().next().unwrap();
    key.data.endpoint = 7u16.to_be_bytes();
    maps.rules
        .insert(key, stale.rules.values().next().copied().unwrap());
    let mut world = World::new().with("x", "deny", "{podSelector: {matchLabels: {app: n}}}");
    world
        .pods
        .push(pod("x", "n", "node-1", "10.0.1.60", "{app: n}", "[]"));
    let want = world.compile_with(&hints(&maps));
    assert_eq!(want.endpoints[&ip("10.0.1.60")].id, 7);
    reconcile(&mut maps, &want, &node()).unwrap();
    assert_eq!(maps.log, ["delete_rule", "put_endpoint"]);
    assert!(maps.rules.is_empty());
}

#[test]
fn a_failure_at_every_write_leaves_old_or_new_verdicts_and_a_retry_converges() {
    let (base, a) = programmed(&world_a());
    let b = world_b().compile_with(&hints(&base));
    let want_a = state_verdicts(&a);
    let want_b = state_verdicts(&b);
    let mut full = base.clone();
    reconcile(&mut full, &b, &node()).unwrap();
    let writes = full.log.len();
    assert!(writes > 10, "the change is not trivial: {writes} writes");

    for n in 0..writes {
        let mut maps = base.clone();
        maps.fail_after_writes = Some(n);
        assert!(reconcile(&mut maps, &b, &node()).is_err(), "write {n} fails");
        let now = verdicts(|p| in_maps(&maps, p), &maps.rules);
        for (i, got) in now.iter().enumerate() {
            assert!(
                *got == want_a[i] || *got == want_b[i],
                "after {n} writes, verdict {i} is {got}: neither old nor new"
            );
        }
        // The next pass recomputes with the ids in the maps: the same state.
        let retry = world_b().compile_with(&hints(&maps));
        assert_eq!(
            retry.endpoints, b.endpoints,
            "ids are stable after a failure at {n}"
        );
        reconcile(&mut maps, &retry, &node()).unwrap();
        assert_eq!(
            (&maps.endpoints, &maps.rules, &maps.hosts),
            (&full.endpoints, &full.rules, &full.hosts)
        );
        assert_eq!(verdicts(|p| in_maps(&maps, p), &maps.rules), want_b);
    }
}

#[test]
fn a_label_change_rewrites_only_the_entries_that_name_the_pod() {
    let world = || {
        World::new().with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}]}]}",
        )
    };
    let (mut maps, before) = programmed(&world());
    let mut relabeled = world();
    for p in &mut relabeled.pods {
        if p.metadata.namespace.as_deref() == Some("z") && p.metadata.name.as_deref() == Some("c") {
            p.metadata.labels = Some([("app".to_owned(), "b".to_owned())].into());
        }
    }
    let after = relabeled.compile_with(&hints(&maps));
    let summary = reconcile(&mut maps, &after, &node()).unwrap();
    // z/c's /32 appears under x/a and x/b; nothing else is written.
    assert_eq!(maps.log, ["put_rule", "put_rule"]);
    assert_eq!((summary.updated, summary.deleted), (2, 0));
    assert_eq!(after.rules.len(), before.rules.len() + 2);

    // A namespace relabeled into a selector: its pods' entries only.
    let mut world = World::new().with(
        "x",
        "p",
        "{podSelector: {matchLabels: {app: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}",
    );
    let (mut maps, _) = programmed(&world);
    world.namespaces[2] = crate::desired::policy::test_support::namespace("z", "{team: b}");
    let after = world.compile_with(&hints(&maps));
    reconcile(&mut maps, &after, &node()).unwrap();
    assert_eq!(maps.log, ["put_rule"; 3], "z/a, z/b, z/c into x/a's ingress");
}
