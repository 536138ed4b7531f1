//! The evaluator against hand-built map contents.

use std::net::Ipv4Addr;

use weir_common::IPPROTO_TCP;
use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, PROTO_ANY, PolicyEndpoint, PolicyRuleKey,
    PolicyRuleValue, PortRange,
};

use super::{Direction, Evaluation, Flow, PolicySnapshot, Reason};
use crate::maps::{FakePolicyMaps, RuleKey};

const UDP: u8 = 17;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn be(s: &str) -> u32 {
    u32::from_ne_bytes(ip(s).octets())
}

fn rule(
    endpoint: u16,
    direction: Direction,
    prefix: &str,
    ranges: &[(u16, u16, u8, u16)],
) -> (RuleKey, PolicyRuleValue) {
    let (address, len) = prefix.split_once('/').unwrap();
    let mut value = PolicyRuleValue {
        count: u8::try_from(ranges.len()).unwrap(),
        ..PolicyRuleValue::default()
    };
    for (slot, &(first, last, proto, rule)) in value.ranges.iter_mut().zip(ranges) {
        *slot = PortRange {
            first,
            last,
            proto,
            pad: 0,
            rule,
        };
    }
    let key = RuleKey {
        peer_prefix_len: len.parse().unwrap(),
        data: PolicyRuleKey {
            endpoint: endpoint.to_be_bytes(),
            direction: direction.number(),
            pad: 0,
            peer: be(address),
        },
    };
    (key, value)
}

/// Pod a (10.244.1.3, endpoint 7) isolated both ways: ingress from
/// 10.244.0.0/16 on TCP 80-81 (rule 1) except 10.244.2.0/24 (nothing), from
/// 10.244.2.9 anything (rule 2); egress to 10.96.0.0/12 UDP 53 (rule 3).
/// Pod b (10.244.1.4, endpoint 8) isolated for nothing.
fn maps() -> PolicySnapshot {
    let mut fake = FakePolicyMaps::default();
    let flags = ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS;
    fake.endpoints
        .insert(be("10.244.1.3"), PolicyEndpoint { id: 7, flags, pad: 0 });
    fake.endpoints.insert(
        be("10.244.1.4"),
        PolicyEndpoint {
            id: 8,
            flags: 0,
            pad: 0,
        },
    );
    fake.hosts.insert(be("198.18.0.11"));
    for (key, value) in [
        rule(
            7,
            Direction::Ingress,
            "10.244.0.0/16",
            &[(80, 81, IPPROTO_TCP, 1)],
        ),
        rule(7, Direction::Ingress, "10.244.2.0/24", &[]),
        rule(
            7,
            Direction::Ingress,
            "10.244.2.9/32",
            &[(0, 65535, PROTO_ANY, 2)],
        ),
        rule(7, Direction::Egress, "10.96.0.0/12", &[(53, 53, UDP, 3)]),
        // Another endpoint's rule for the same peer must not leak.
        rule(8, Direction::Ingress, "0.0.0.0/0", &[]),
    ] {
        fake.rules.insert(key, value);
    }
    PolicySnapshot::read(&fake).unwrap()
}

fn flow(src: &str, dst: &str, port: u16, proto: u8) -> Flow {
    Flow {
        src: ip(src),
        dst: ip(dst),
        port,
        proto,
    }
}

#[test]
fn a_rule_prefix_and_port_range_allow_and_name_the_rule() {
    let got = maps().evaluate(
        &flow("10.244.1.9", "10.244.1.3", 81, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert_eq!(
        got,
        Evaluation {
            allowed: true,
            endpoint: Some(7),
            rule: Some(1),
            reason: Reason::Rule {
                prefix: "10.244.0.0/16".into()
            }
        }
    );
}

#[test]
fn a_port_or_protocol_outside_the_ranges_is_dropped() {
    let m = maps();
    let got = m.evaluate(
        &flow("10.244.1.9", "10.244.1.3", 82, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert_eq!(
        got.reason,
        Reason::NoPort {
            prefix: "10.244.0.0/16".into()
        }
    );
    assert!(!got.allowed);
    assert!(
        !m.evaluate(&flow("10.244.1.9", "10.244.1.3", 80, UDP), Direction::Ingress)
            .allowed
    );
}

#[test]
fn the_longest_prefix_decides_even_when_a_shorter_one_would_allow() {
    let m = maps();
    let except = m.evaluate(
        &flow("10.244.2.5", "10.244.1.3", 80, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert!(!except.allowed, "{except:?}");
    assert_eq!(
        except.reason,
        Reason::NoPort {
            prefix: "10.244.2.0/24".into()
        }
    );
    let host = m.evaluate(&flow("10.244.2.9", "10.244.1.3", 9999, UDP), Direction::Ingress);
    assert_eq!(host.rule, Some(2));
}

#[test]
fn no_prefix_for_the_peer_is_a_drop() {
    let got = maps().evaluate(
        &flow("192.0.2.1", "10.244.1.3", 80, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert_eq!(
        got,
        Evaluation {
            allowed: false,
            endpoint: Some(7),
            rule: None,
            reason: Reason::NoPrefix
        }
    );
}

#[test]
fn egress_looks_at_the_destination_in_the_egress_trie() {
    let m = maps();
    let dns = m.evaluate(&flow("10.244.1.3", "10.96.0.10", 53, UDP), Direction::Egress);
    assert_eq!(dns.rule, Some(3));
    // The ingress /16 says nothing about egress.
    assert!(
        !m.evaluate(
            &flow("10.244.1.3", "10.244.1.9", 80, IPPROTO_TCP),
            Direction::Egress
        )
        .allowed
    );
}

#[test]
fn not_isolated_unknown_pods_and_the_node_itself_are_allowed() {
    let m = maps();
    let open = m.evaluate(
        &flow("192.0.2.1", "10.244.1.4", 80, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert_eq!((open.allowed, open.reason), (true, Reason::NotIsolated));
    let unknown = m.evaluate(
        &flow("192.0.2.1", "10.244.9.9", 80, IPPROTO_TCP),
        Direction::Ingress,
    );
    assert_eq!(
        (unknown.allowed, unknown.endpoint, unknown.reason),
        (true, None, Reason::NotAnEndpoint)
    );
    let node = m.evaluate(&flow("198.18.0.11", "10.244.1.3", 9, UDP), Direction::Ingress);
    assert_eq!((node.allowed, node.reason), (true, Reason::FromNode));
    // The node exemption is for ingress only.
    assert!(
        !m.evaluate(&flow("10.244.1.3", "198.18.0.11", 9, UDP), Direction::Egress)
            .allowed
    );
    assert!(m.is_endpoint(ip("10.244.1.4")) && !m.is_endpoint(ip("10.244.1.5")));
}
