//! Selection, peers and policy types, checked through the datapath model:
//! which pods of the standard world reach which.

use weir_common::policy::{ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, PROTO_ANY};

use super::test_support::{NONE, PODS, TCP, UDP, World, ip, pod, reaches, sources, targets};
use super::{Direction, PolicyName};
use crate::desired::Reason;

fn flags(state: &super::PolicyState, pod: &str) -> u8 {
    state.endpoints[&ip(pod)].flags
}

#[test]
fn without_policies_every_local_pod_is_an_open_endpoint() {
    let state = World::new().compile();
    let local: Vec<_> = state.endpoints.keys().copied().collect();
    let want: Vec<_> = ["x/a", "x/b", "y/a", "y/b", "z/a", "z/b"].map(ip).into();
    assert_eq!(local, want, "pods of node-2 are not endpoints here");
    assert!(state.endpoints.values().all(|ep| ep.flags == 0));
    assert!(state.rules.is_empty() && state.errors.is_empty());
    assert_eq!(sources(&state, "x/a", TCP, 80), PODS);
}

#[test]
fn default_deny_ingress_isolates_only_ingress() {
    let state = World::new().with("x", "deny", "{podSelector: {}}").compile();
    assert_eq!(flags(&state, "x/a"), ENDPOINT_ISOLATE_INGRESS);
    assert_eq!(flags(&state, "x/b"), ENDPOINT_ISOLATE_INGRESS);
    assert_eq!(flags(&state, "y/a"), 0, "another namespace");
    assert!(state.rules.is_empty(), "nothing is allowed: no entry at all");
    assert_eq!(sources(&state, "x/a", TCP, 80), NONE);
    assert_eq!(
        targets(&state, "x/a", UDP, 53),
        ["x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]
    );
    let info = &state.endpoint_info[&state.endpoints[&ip("x/a")].id];
    assert_eq!(info.pod, "x/a");
    assert_eq!(
        info.policies(Direction::Ingress),
        [PolicyName {
            namespace: "x".into(),
            name: "deny".into()
        }]
    );
    assert_eq!(info.policies(Direction::Egress), []);
    assert_eq!(state.policies.len(), 1);
}

#[test]
fn default_deny_egress_needs_the_explicit_type() {
    let state = World::new()
        .with("x", "deny", "{podSelector: {}, policyTypes: [Egress]}")
        .compile();
    assert_eq!(flags(&state, "x/a"), ENDPOINT_ISOLATE_EGRESS);
    assert_eq!(targets(&state, "x/a", TCP, 80), NONE);
    assert_eq!(
        sources(&state, "x/a", TCP, 80).len(),
        7,
        "all but x/a and x/b, denied their egress"
    );
}

#[test]
fn allow_all_rule_is_a_zero_prefix_with_every_port() {
    let state = World::new()
        .with("x", "all", "{podSelector: {}, ingress: [{}], egress: [{}]}")
        .compile();
    assert_eq!(
        flags(&state, "x/a"),
        ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS
    );
    let prefixes: Vec<_> = state.rules.keys().map(|k| k.peer_prefix_len).collect();
    assert_eq!(prefixes, [0; 4], "x/a and x/b, each direction");
    let value = state.rules.values().next().unwrap();
    assert_eq!((value.count, value.ranges[0].proto), (1, PROTO_ANY));
    assert_eq!((value.ranges[0].first, value.ranges[0].last), (0, 65535));
    assert_eq!(sources(&state, "x/a", UDP, 9999), PODS);
    assert!(
        reaches(&state, "198.51.100.7", "x/a", 1, 0),
        "any protocol, any address"
    );
}

#[test]
fn pod_selector_peer_alone_means_the_policy_namespace() {
    let state = World::new()
        .with("x", "p", "{podSelector: {matchLabels: {app: a}}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}")
        .compile();
    assert_eq!(sources(&state, "x/a", TCP, 80), ["x/b"]);
    assert_eq!(sources(&state, "x/b", TCP, 80), PODS, "x/b is not selected");
}

#[test]
fn namespace_selector_alone_means_every_pod_there() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}}]}]}",
        )
        .compile();
    assert_eq!(
        sources(&state, "x/a", TCP, 80),
        ["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]
    );
    let by_name = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]}",
        )
        .compile();
    assert_eq!(
        sources(&by_name, "x/a", TCP, 80),
        ["y/a", "y/b", "y/c"],
        "the API server's name label"
    );
}

#[test]
fn selectors_in_one_peer_are_anded_and_peers_are_ored() {
    let and = World::new()
        .with(
            "x",
            "and",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: c}}}]}]}",
        )
        .compile();
    assert_eq!(sources(&and, "x/a", TCP, 80), ["x/c", "z/c"]);
    let or = World::new()
        .with(
            "x",
            "or",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}}, {podSelector: {matchLabels: {app: c}}}]}]}",
        )
        .compile();
    assert_eq!(
        sources(&or, "x/a", TCP, 80),
        ["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]
    );
    let or_other = World::new()
        .with(
            "x",
            "or",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: c}}}]}]}",
        )
        .compile();
    assert_eq!(sources(&or_other, "x/a", TCP, 80), ["x/c", "y/a", "y/b", "y/c"]);
}

#[test]
fn match_expressions_select_the_target() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [a]}]}, ingress: []}",
        )
        .compile();
    assert_eq!(flags(&state, "x/a"), 0);
    assert_eq!(flags(&state, "x/b"), ENDPOINT_ISOLATE_INGRESS);
}

#[test]
fn policy_types_default_and_explicit_list_wins() {
    let egress_rules = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{}], egress: [{to: [{podSelector: {}}]}]}",
        )
        .compile();
    assert_eq!(
        flags(&egress_rules, "x/a"),
        ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS
    );
    assert_eq!(targets(&egress_rules, "x/a", TCP, 80), ["x/a", "x/b", "x/c"]);
    let explicit = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, policyTypes: [Ingress], ingress: [{}], egress: [{to: [{podSelector: {}}]}]}",
        )
        .compile();
    assert_eq!(
        flags(&explicit, "x/a"),
        ENDPOINT_ISOLATE_INGRESS,
        "egress rules ignored"
    );
    assert_eq!(targets(&explicit, "x/a", TCP, 80), PODS);
    let empty_egress = World::new()
        .with("x", "p", "{podSelector: {}, egress: []}")
        .compile();
    assert_eq!(flags(&empty_egress, "x/a"), ENDPOINT_ISOLATE_INGRESS);
}

#[test]
fn several_policies_are_a_union() {
    let state = World::new()
        .with("x", "from-b", "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 80}]}]}")
        .with("x", "from-y", "{podSelector: {matchLabels: {app: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}")
        .compile();
    assert_eq!(sources(&state, "x/a", TCP, 80), ["x/b", "y/a", "y/b", "y/c"]);
    assert_eq!(sources(&state, "x/a", TCP, 81), ["y/a", "y/b", "y/c"]);
    assert_eq!(sources(&state, "x/b", TCP, 80), ["x/b"]);
    let info = &state.endpoint_info[&state.endpoints[&ip("x/a")].id];
    let names: Vec<String> = info.ingress.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["x/from-b", "x/from-y"]);
}

#[test]
fn host_network_and_terminated_pods_are_neither_endpoints_nor_selected_peers() {
    let mut world = World::new().with(
        "x",
        "p",
        "{podSelector: {}, ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 192.0.2.0/24}}]}]}",
    );
    let mut host = pod("x", "host", "node-1", "192.0.2.5", "{app: h}", "[]");
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod("x", "done", "node-1", "10.0.1.9", "{app: d}", "[]");
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let host_in_x = {
        let mut p = pod("x", "host2", "node-1", "198.18.0.11", "{app: h}", "[]");
        p.spec.as_mut().unwrap().host_network = Some(true);
        p
    };
    world.pods.extend([host, done, host_in_x]);
    let state = world.compile();
    assert!(!state.endpoints.contains_key(&ip("192.0.2.5")));
    assert!(!state.endpoints.contains_key(&ip("10.0.1.9")));
    assert!(reaches(&state, "192.0.2.5", "x/a", TCP, 80), "by the ipBlock");
    assert!(
        !reaches(&state, "198.18.0.11", "x/a", TCP, 80),
        "podSelector {{}} does not name it"
    );
    assert!(!reaches(&state, "10.0.1.9", "x/a", TCP, 80));
}

#[test]
fn bad_selector_isolates_the_whole_namespace_and_allows_nothing() {
    let state = World::new()
        .with(
            "x",
            "bad",
            "{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}, ingress: [{}]}",
        )
        .compile();
    assert_eq!(flags(&state, "x/a"), ENDPOINT_ISOLATE_INGRESS);
    assert_eq!(flags(&state, "x/b"), ENDPOINT_ISOLATE_INGRESS);
    assert!(state.rules.is_empty());
    assert!(matches!(state.errors[..], [ref e] if matches!(e.reason, Reason::BadSelector(_))));
    assert_eq!(state.errors[0].object.to_string(), "NetworkPolicy x/bad");
}

#[test]
fn bad_peers_and_types_fail_closed() {
    for (spec, want) in [
        (
            "{podSelector: {}, ingress: [{from: [{}]}]}",
            "invalid peer: no peer type set",
        ),
        (
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "invalid peer: ipBlock cannot be combined with a selector",
        ),
        (
            "{podSelector: {}, policyTypes: [Sideways], ingress: [{}]}",
            "unknown policy type \"Sideways\"",
        ),
    ] {
        let state = World::new()
            .with("x", "p", spec)
            .with("y", "ok", "{podSelector: {}, ingress: [{}]}")
            .compile();
        assert_eq!(state.errors.len(), 1, "{spec}");
        assert_eq!(state.errors[0].reason.to_string(), want);
        assert!(flags(&state, "x/a") & ENDPOINT_ISOLATE_INGRESS != 0);
        assert_eq!(sources(&state, "x/a", TCP, 80), NONE, "{spec}");
        assert!(
            reaches(&state, "z/a", "y/a", TCP, 80),
            "another policy is unaffected"
        );
    }
}

#[test]
fn the_same_objects_in_any_order_give_the_same_state() {
    let world = World::new()
        .with(
            "x",
            "p1",
            "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}",
        )
        .with(
            "y",
            "p2",
            "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}]}]}",
        );
    let a = world.compile();
    let mut reversed = world;
    reversed.pods.reverse();
    reversed.policies.reverse();
    reversed.namespaces.reverse();
    let b = reversed.compile();
    assert_eq!(a.endpoints, b.endpoints);
    assert_eq!(a.rules, b.rules);
    assert_eq!(a.rule_table, b.rule_table);
    assert_eq!(a.endpoint_info, b.endpoint_info);
}
