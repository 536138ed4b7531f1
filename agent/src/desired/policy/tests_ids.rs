//! Endpoint and rule ids stay put across passes and restarts.

use std::collections::BTreeMap;

use weir_common::policy::PolicyEndpoint;

use super::IdHints;
use super::test_support::{World, ip, pod};

fn ids(state: &super::PolicyState) -> BTreeMap<String, u16> {
    state
        .endpoint_info
        .values()
        .map(|i| (i.pod.clone(), state.endpoints[&i.ip].id))
        .collect()
}

#[test]
fn fresh_ids_are_the_lowest_from_one_in_address_order() {
    let state = World::new().compile();
    let got: Vec<u16> = state.endpoints.values().map(|ep| ep.id).collect();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn endpoint_ids_are_adopted_from_the_map_and_never_reused_in_the_same_pass() {
    let first = World::new().compile();
    // What the endpoint map holds, as PolicyMaps::endpoints() returns it.
    let in_map: Vec<(u32, PolicyEndpoint)> = first
        .endpoints
        .iter()
        .map(|(ip, ep)| (u32::from_ne_bytes(ip.octets()), *ep))
        .collect();
    let hints = IdHints::from_maps(&in_map);

    let mut world = World::new();
    world.pods.retain(|p| p.metadata.name.as_deref() != Some("a"));
    world
        .pods
        .push(pod("x", "new", "node-1", "10.0.1.200", "{}", "[]"));
    world
        .pods
        .push(pod("x", "first", "node-1", "10.0.0.1", "{}", "[]"));
    let second = world.compile_with(&hints);
    let got = ids(&second);
    assert_eq!(got["x/b"], ids(&first)["x/b"], "kept");
    assert_eq!(got["y/b"], ids(&first)["y/b"], "kept");
    // ids 1, 3, 5 left with the a pods; the new pods get 7 and 8.
    assert_eq!((got["x/first"], got["x/new"]), (7, 8));

    let restarted = world.compile_with(&IdHints::from_maps(
        &second
            .endpoints
            .iter()
            .map(|(ip, ep)| (u32::from_ne_bytes(ip.octets()), *ep))
            .collect::<Vec<_>>(),
    ));
    assert_eq!(restarted.endpoints, second.endpoints);
    assert_eq!(restarted.rules, second.rules);
}

#[test]
fn rule_ids_stay_with_their_rule_when_policies_come_and_go() {
    let world = World::new().with("x", "m", "{podSelector: {}, ingress: [{ports: [{port: 80}]}]}");
    let first = world.compile();
    let id_of = |state: &super::PolicyState, name: &str| {
        state
            .rule_table
            .iter()
            .find(|(_, r)| r.policy.name == name)
            .map(|(id, _)| *id)
            .unwrap()
    };
    assert_eq!(id_of(&first, "m"), 1);
    let world = world.with("x", "a", "{podSelector: {}, ingress: [{ports: [{port: 81}]}]}");
    let unhinted = world.compile();
    assert_eq!(id_of(&unhinted, "a"), 1, "a sorts first");
    let hinted = world.compile_with(&IdHints::default().with_rules_of(&first));
    assert_eq!((id_of(&hinted, "m"), id_of(&hinted, "a")), (1, 2));
    let value = hinted.rules.get(&super::trie::key(
        hinted.endpoints[&ip("x/a")].id,
        super::Direction::Ingress,
        "0.0.0.0/0".parse().unwrap(),
    ));
    let rules: Vec<u16> = value.unwrap().ranges[..2].iter().map(|r| r.rule).collect();
    assert_eq!(rules, [1, 2], "TCP 80 of m, TCP 81 of a: each names its rule");
}

#[test]
fn a_large_cluster_compiles_quickly_enough_to_recompute_every_pass() {
    let mut world = World::new();
    world.pods.clear();
    for n in 0..3000u32 {
        let (ns, node) = (
            format!("ns{}", n % 30),
            if n % 50 == 0 { "node-1" } else { "node-2" },
        );
        let addr = format!("10.1.{}.{}", n / 250, n % 250 + 1);
        world.pods.push(pod(
            &ns,
            &format!("p{n}"),
            node,
            &addr,
            &format!("{{app: a{}}}", n % 7),
            "[{name: http, containerPort: 80}]",
        ));
    }
    for n in 0..30 {
        world = world.with(
            &format!("ns{n}"),
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: a1}}}], ports: [{port: http}]}, \
              {from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}], egress: [{to: [{podSelector: {}}], ports: [{port: http}]}]}",
        );
    }
    // About 50 ms with the test profile: recomputing in full is cheap.
    let state = world.compile();
    assert_eq!(state.endpoints.len(), 60);
    // Per endpoint: 429 app=a1 /32s, the block and its except (ingress),
    // the 100 pods of its namespace (egress).
    assert_eq!(state.rules.len(), 60 * (429 + 2 + 100));
    assert_eq!(state.errors, []);
}
