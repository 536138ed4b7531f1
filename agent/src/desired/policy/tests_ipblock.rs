//! ipBlocks: /0, excepts, nested and overlapping blocks, a pod /32 inside
//! an except, bad CIDRs.

use std::net::Ipv4Addr;

use weir_common::policy::POLICY_INGRESS;

use super::test_support::{NONE, TCP, World, reaches, sources, targets};
use crate::desired::Reason;

fn ingress(spec_rules: &str) -> super::PolicyState {
    World::new()
        .with(
            "x",
            "p",
            &format!("{{podSelector: {{matchLabels: {{app: a}}}}, ingress: {spec_rules}}}"),
        )
        .compile()
}

#[test]
fn a_zero_prefix_block_matches_everything() {
    let state = World::new()
        .with(
            "x",
            "p",
            "{podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}",
        )
        .compile();
    assert_eq!(
        state.rules.keys().map(|k| k.peer_prefix_len).collect::<Vec<_>>(),
        [0]
    );
    assert!(reaches(&state, "x/a", "198.51.100.1", TCP, 443));
    assert!(reaches(&state, "x/a", "255.255.255.255", TCP, 1));
    assert_eq!(targets(&state, "x/a", TCP, 80).len(), 9);
}

#[test]
fn except_carves_a_denied_hole() {
    let state = ingress("[{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}}]}]");
    assert_eq!(
        sources(&state, "x/a", TCP, 80),
        ["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]
    );
    let hole = state.rules.iter().find(|(k, _)| k.peer_prefix_len == 24).unwrap();
    assert_eq!(hole.1.count, 0, "the except is an entry that allows nothing");
    assert_eq!(hole.0.data.direction, POLICY_INGRESS);
    assert_eq!(
        Ipv4Addr::from(hole.0.data.peer.to_ne_bytes()),
        Ipv4Addr::new(10, 0, 2, 0)
    );
}

#[test]
fn a_pod_inside_an_except_keeps_what_another_peer_allows() {
    let state = ingress(
        "[{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}}]}, \
          {from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: b}}}], ports: [{port: 80}]}]",
    );
    assert_eq!(
        sources(&state, "x/a", TCP, 80),
        ["x/a", "x/b", "x/c", "y/b", "z/a", "z/b", "z/c"]
    );
    assert_eq!(
        sources(&state, "x/a", TCP, 81),
        ["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]
    );
    assert!(!reaches(&state, "10.0.2.99", "x/a", TCP, 80));
}

#[test]
fn nested_blocks_and_excepts() {
    let state = ingress(
        "[{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/16]}}], ports: [{port: 80}]}, \
          {from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}], ports: [{port: 81}]}, \
          {from: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.0/24]}}], ports: [{port: 83}]}, \
          {from: [{ipBlock: {cidr: 10.0.1.128/25}}], ports: [{port: 82}]}]",
    );
    let allowed = |peer: &str| -> Vec<u16> {
        [80, 81, 82, 83]
            .into_iter()
            .filter(|p| reaches(&state, peer, "x/a", TCP, *p))
            .collect()
    };
    assert_eq!(allowed("10.1.0.1"), [80]);
    assert_eq!(allowed("10.0.2.1"), [81]);
    assert_eq!(
        allowed("10.0.1.1"),
        [0u16; 0],
        "excepted by the /16 block; the /24 excepts itself"
    );
    assert_eq!(allowed("10.0.1.200"), [82]);
    assert_eq!(allowed("11.0.0.1"), [0u16; 0]);
}

#[test]
fn overlapping_blocks_union_where_both_hold() {
    let state = ingress(
        "[{from: [{ipBlock: {cidr: 10.0.0.0/16}}], ports: [{port: 80}]}, \
          {from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}], ports: [{port: 81}]}]",
    );
    let allowed = |peer: &str| -> Vec<u16> {
        [80, 81]
            .into_iter()
            .filter(|p| reaches(&state, peer, "x/a", TCP, *p))
            .collect()
    };
    assert_eq!(allowed("10.0.1.5"), [80]);
    assert_eq!(allowed("10.0.2.5"), [80, 81]);
    assert_eq!(allowed("10.5.0.1"), [81]);
}

#[test]
fn bad_cidrs_fail_closed_with_an_error() {
    for (block, reason) in [
        ("{cidr: 10.0.0.0/33}", Reason::BadCidr("10.0.0.0/33".into())),
        ("{cidr: 10.0.0.0}", Reason::BadCidr("10.0.0.0".into())),
        ("{cidr: banana/8}", Reason::BadCidr("banana/8".into())),
        (
            "{cidr: 10.0.0.0/16, except: [10.0.0.0/x]}",
            Reason::BadCidr("10.0.0.0/x".into()),
        ),
        (
            "{cidr: 10.0.0.0/16, except: [10.1.0.0/24]}",
            Reason::ExceptOutsideCidr {
                except: "10.1.0.0/24".into(),
                cidr: "10.0.0.0/16".into(),
            },
        ),
        (
            "{cidr: 10.0.0.0/16, except: [10.0.0.0/8]}",
            Reason::ExceptOutsideCidr {
                except: "10.0.0.0/8".into(),
                cidr: "10.0.0.0/16".into(),
            },
        ),
    ] {
        let state = ingress(&format!("[{{from: [{{ipBlock: {block}}}]}}, {{}}]"));
        assert_eq!(state.errors.len(), 1, "{block}");
        assert_eq!(state.errors[0].reason, reason);
        assert!(
            state.rules.is_empty(),
            "{block}: no allow, not even the other rule"
        );
        assert_eq!(sources(&state, "x/a", TCP, 80), NONE);
    }
}

#[test]
fn ipv6_blocks_match_no_ipv4_peer_and_host_bits_are_cleared() {
    let state = ingress("[{from: [{ipBlock: {cidr: '2001:db8::/64'}}, {ipBlock: {cidr: 10.0.1.7/24}}]}]");
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    let keys: Vec<(u8, Ipv4Addr)> = state
        .rules
        .keys()
        .map(|k| (k.peer_prefix_len, Ipv4Addr::from(k.data.peer.to_ne_bytes())))
        .collect();
    assert_eq!(keys, [(24, Ipv4Addr::new(10, 0, 1, 0))]);
    assert_eq!(sources(&state, "x/a", TCP, 80), ["x/a", "x/b", "x/c"]);
    let bad = ingress("[{from: [{ipBlock: {cidr: '2001:db8::/129'}}]}]");
    assert_eq!(bad.errors.len(), 1);
}
