use weir_common::policy::{POLICY_MAX_PORT_RANGES, PROTO_ANY, PolicyRuleKey, PortRange};

use super::*;

fn key(endpoint: u16, direction: u8, peer: [u8; 4], len: u8) -> RuleKey {
    RuleKey {
        peer_prefix_len: len,
        data: PolicyRuleKey {
            endpoint: endpoint.to_be_bytes(),
            direction,
            pad: 0,
            peer: u32::from_ne_bytes(peer),
        },
    }
}

fn value(ranges: &[(u8, u16, u16, u16)]) -> PolicyRuleValue {
    let mut value = PolicyRuleValue {
        count: u8::try_from(ranges.len()).unwrap(),
        pad: [0; 3],
        ranges: [PortRange::default(); POLICY_MAX_PORT_RANGES],
    };
    for (slot, (proto, first, last, rule)) in value.ranges.iter_mut().zip(ranges) {
        *slot = PortRange {
            first: *first,
            last: *last,
            proto: *proto,
            pad: 0,
            rule: *rule,
        };
    }
    value
}

#[test]
fn entries_of_one_endpoint_and_direction_sorted_with_denies() {
    let rules = vec![
        (
            key(3, POLICY_INGRESS, [10, 244, 2, 2], 32),
            value(&[(6, 80, 80, 1)]),
        ),
        (
            key(3, POLICY_INGRESS, [10, 0, 0, 0], 8),
            value(&[(PROTO_ANY, 0, 65535, 2)]),
        ),
        (key(3, POLICY_INGRESS, [10, 9, 0, 0], 16), value(&[])),
        // Another direction and another endpoint: not listed.
        (
            key(3, POLICY_EGRESS, [10, 244, 2, 2], 32),
            value(&[(17, 53, 53, RULE_NONE)]),
        ),
        (
            key(4, POLICY_INGRESS, [10, 244, 2, 3], 32),
            value(&[(6, 80, 80, 1)]),
        ),
    ];
    let ingress = entries(&rules, 3, POLICY_INGRESS);
    let peers: Vec<&str> = ingress.iter().map(|e| e.peer.as_str()).collect();
    assert_eq!(peers, ["10.0.0.0/8", "10.9.0.0/16", "10.244.2.2/32"]);
    assert!(ingress[1].deny && ingress[1].allow.is_empty());
    assert_eq!(
        ingress[2].allow,
        [PortAllow {
            protocol: "tcp".into(),
            first: 80,
            last: 80,
            rule: Some(1)
        }]
    );
    let egress = entries(&rules, 3, POLICY_EGRESS);
    assert_eq!(egress.len(), 1);
    assert_eq!(egress[0].allow[0].rule, None);
}

#[test]
fn the_table_names_peers_and_shows_deny() {
    let view = PolicyView {
        pod: Some("x/a".into()),
        ip: Ipv4Addr::new(10, 244, 1, 3),
        endpoint_id: 3,
        ingress_isolated: true,
        egress_isolated: false,
        ingress: vec![
            RuleEntry {
                peer: "10.244.2.2/32".into(),
                peer_pod: Some("x/b".into()),
                deny: false,
                allow: vec![
                    PortAllow {
                        protocol: "tcp".into(),
                        first: 80,
                        last: 81,
                        rule: Some(1),
                    },
                    PortAllow {
                        protocol: "any".into(),
                        first: 0,
                        last: 65535,
                        rule: None,
                    },
                ],
            },
            RuleEntry {
                peer: "10.9.0.0/16".into(),
                peer_pod: None,
                deny: true,
                allow: Vec::new(),
            },
        ],
        egress: Vec::new(),
    };
    let table = view.table();
    assert!(
        table.starts_with("pod x/a  ip 10.244.1.3  endpoint 3\ningress: isolated\n"),
        "{table}"
    );
    assert!(
        table.contains("ingress    10.244.2.2/32  x/b  tcp 80-81 (rule 1), any"),
        "{table}"
    );
    assert!(table.contains("ingress    10.9.0.0/16    -    deny"), "{table}");
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["ingress"][0]["peer_pod"], "x/b");
    assert!(json["ingress"][1].get("peer_pod").is_none());
}
