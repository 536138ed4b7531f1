//! Ports: numbers, names (per selected pod for ingress, per peer pod for
//! egress), endPort ranges, protocols, the range limit, rule attribution.

use weir_common::policy::{IPPROTO_SCTP, PolicyRuleValue};

use super::test_support::{NONE, PODS, TCP, UDP, World, ip, pod, reaches, sources, targets};
use super::{Direction, PolicyName, RuleRef};
use crate::desired::Reason;

/// The standard world with x/b serving `http` on 8080 and y/b `dns` on 5353.
fn world() -> World {
    let mut world = World::new();
    for p in &mut world.pods {
        let name = (
            p.metadata.namespace.clone().unwrap(),
            p.metadata.name.clone().unwrap(),
        );
        let name = (name.0.as_str(), name.1.as_str());
        if name == ("x", "b") {
            *p = pod(
                "x",
                "b",
                "node-1",
                "10.0.1.2",
                "{app: b}",
                "[{name: http, containerPort: 8080}]",
            );
        }
        if name == ("y", "b") {
            *p = pod(
                "y",
                "b",
                "node-1",
                "10.0.2.2",
                "{app: b}",
                "[{name: dns, containerPort: 5353, protocol: UDP}]",
            );
        }
    }
    world
}

#[test]
fn ingress_named_port_resolves_per_selected_pod() {
    let state = world()
        .with("x", "p", "{podSelector: {}, ingress: [{ports: [{port: http}]}]}")
        .compile();
    assert_eq!(sources(&state, "x/a", TCP, 80), PODS);
    assert_eq!(sources(&state, "x/a", TCP, 8080), NONE);
    assert_eq!(sources(&state, "x/b", TCP, 8080), PODS);
    assert_eq!(sources(&state, "x/b", TCP, 80), NONE);
    assert_eq!(sources(&state, "x/a", UDP, 80), NONE, "the name is TCP's");
}

#[test]
fn egress_named_port_resolves_per_peer_pod() {
    let state = world()
        .with(
            "x",
            "p",
            "{podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {}}], ports: [{port: dns, protocol: UDP}]}]}",
        )
        .compile();
    assert_eq!(
        targets(&state, "x/a", UDP, 53),
        ["x/a", "x/c", "y/a", "y/c", "z/a", "z/b", "z/c"],
        "x/b and y/b declare no dns on 53"
    );
    assert_eq!(targets(&state, "x/a", UDP, 5353), ["y/b"]);
    assert_eq!(targets(&state, "x/a", TCP, 53), NONE);
    assert!(
        state.rules.keys().all(|k| k.peer_prefix_len == 32),
        "names contribute pod /32s only"
    );
}

#[test]
fn egress_named_port_with_an_ip_block_covers_the_pods_inside_it() {
    let mut w = world().with(
        "x",
        "p",
        "{podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.2.0/24, except: [10.0.2.3/32]}}], ports: [{port: http}, {port: 9000}]}]}",
    );
    let mut host = pod(
        "y",
        "host",
        "node-1",
        "10.0.2.77",
        "{}",
        "[{name: http, containerPort: 80}]",
    );
    host.spec.as_mut().unwrap().host_network = Some(true);
    w.pods.push(host);
    let state = w.compile();
    assert_eq!(
        targets(&state, "x/a", TCP, 80),
        ["y/a"],
        "y/b has no http, y/c is excepted"
    );
    assert!(
        !reaches(&state, "x/a", "10.0.2.200", TCP, 80),
        "no pod there to name the port"
    );
    assert!(
        !reaches(&state, "x/a", "10.0.2.77", TCP, 80),
        "a host-network pod is not a pod peer"
    );
    assert!(
        reaches(&state, "x/a", "10.0.2.200", TCP, 9000),
        "numbers hold for the whole block"
    );
    assert!(!reaches(&state, "x/a", "y/c", TCP, 9000));
}

#[test]
fn end_port_is_an_inclusive_range() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8100}]}]}",
        )
        .compile();
    for (port, ok) in [
        (7999, false),
        (8000, true),
        (8050, true),
        (8100, true),
        (8101, false),
    ] {
        assert_eq!(reaches(&state, "y/a", "x/a", TCP, port), ok, "port {port}");
    }
    assert!(!reaches(&state, "y/a", "x/a", UDP, 8050));
}

#[test]
fn udp_and_sctp() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 53}, {protocol: SCTP}]}]}",
        )
        .compile();
    assert!(reaches(&state, "y/a", "x/a", UDP, 53));
    assert!(!reaches(&state, "y/a", "x/a", TCP, 53));
    assert!(reaches(&state, "y/a", "x/a", IPPROTO_SCTP, 9999));
}

#[test]
fn unknown_protocol_fails_closed() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}, {}]}",
        )
        .compile();
    assert_eq!(state.errors.len(), 1);
    assert_eq!(state.errors[0].reason, Reason::UnsupportedProtocol("ICMP".into()));
    assert!(
        sources(&state, "x/a", TCP, 80).is_empty(),
        "not even the valid rule"
    );
}

#[test]
fn too_many_ranges_for_one_prefix_deny_it_with_an_error() {
    let ports: Vec<String> = (0..17).map(|i| format!("{{port: {}}}", 1000 + 2 * i)).collect();
    let spec = format!(
        "{{podSelector: {{matchLabels: {{app: a}}}}, ingress: [{{ports: [{}]}}]}}",
        ports.join(", ")
    );
    let state = World::new().with("x", "p", &spec).compile();
    assert!(!reaches(&state, "y/a", "x/a", TCP, 1000), "fail closed");
    assert!(state.endpoints[&ip("x/a")].flags != 0);
    assert_eq!(sources(&state, "x/b", TCP, 1000), PODS, "x/b is not selected");
    let errors: Vec<String> = state.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        ["NetworkPolicy x/p: pod x/a: 17 port ranges for ingress peer 0.0.0.0/0 (at most 16); denied"]
    );
}

#[test]
fn ranges_name_the_rule_that_allows_them() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {matchLabels: {app: a}}, ingress: [{ports: [{port: 80}]}, {ports: [{port: 81}]}]}",
        )
        .compile();
    let value: &PolicyRuleValue = state.rules.values().next().unwrap();
    let named: Vec<(u16, String)> = value.ranges[..usize::from(value.count)]
        .iter()
        .map(|r| (r.first, state.rule(r.rule).unwrap().to_string()))
        .collect();
    assert_eq!(
        named,
        [
            (80, "x/p ingress[0]".to_owned()),
            (81, "x/p ingress[1]".to_owned())
        ]
    );
    let rule = state.rule(value.ranges[0].rule).unwrap();
    assert_eq!(
        *rule,
        RuleRef {
            policy: PolicyName {
                namespace: "x".into(),
                name: "p".into()
            },
            direction: Direction::Ingress,
            index: 0
        }
    );
    assert!(state.endpoints.contains_key(&ip("x/a")));
}
