use weir_common::nat::{NAT_EGRESS, NAT_F_REPLY, NAT_F_SNAT, NAT_ORIGIN_NODEPORT, NatRewrite};
use weir_common::policy::POLICY_EGRESS;

use super::*;
use crate::cmd::bpf::decode::stored_ip;
use crate::output::Render;

const SEC: u64 = 1_000_000_000;

/// The reply half of a NodePort flow 198.18.0.100:40000 → 198.18.0.11:30080
/// served by the remote backend 10.244.2.2:8080 (SNATed to the node).
fn nodeport_reply() -> (Nat4Key, Nat4Entry) {
    let key = Nat4Key {
        saddr: stored_ip(Ipv4Addr::new(10, 244, 2, 2)),
        daddr: stored_ip(Ipv4Addr::new(198, 18, 0, 11)),
        sport: 8080u16.to_be(),
        dport: 40000u16.to_be(),
        proto: 6,
        direction: NAT_INGRESS,
        pad: [0; 2],
    };
    let entry = Nat4Entry {
        rewrite: NatRewrite {
            saddr: stored_ip(Ipv4Addr::new(198, 18, 0, 11)),
            daddr: stored_ip(Ipv4Addr::new(198, 18, 0, 100)),
            sport: 30080u16.to_be(),
            dport: 40000u16.to_be(),
        },
        origin: NAT_ORIGIN_NODEPORT,
        flags: NAT_F_REPLY | NAT_F_SNAT,
        pad: [0; 2],
        created_ns: 10 * SEC,
        last_seen_ns: 70 * SEC,
    };
    (key, entry)
}

fn policy_flow() -> (PolicyCtKey, PolicyCtValue) {
    let key = PolicyCtKey {
        saddr: stored_ip(Ipv4Addr::new(10, 244, 1, 3)),
        daddr: stored_ip(Ipv4Addr::new(10, 244, 2, 2)),
        sport: 51000u16.to_be(),
        dport: 53u16.to_be(),
        proto: 17,
        direction: POLICY_EGRESS,
        endpoint: 4,
    };
    (
        key,
        PolicyCtValue {
            created_ns: 95 * SEC,
            rule: RULE_NONE,
            pad: [0; 6],
        },
    )
}

#[test]
fn nat_entries_decode_tuple_rewrite_origin_flags_and_age() {
    let (key, entry) = nodeport_reply();
    let e = nat_entry(&key, &entry, 100 * SEC);
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "table": "nat", "protocol": "tcp",
            "source": "10.244.2.2", "source_port": 8080,
            "destination": "198.18.0.11", "destination_port": 40000,
            "direction": "ingress", "age_secs": 90, "idle_secs": 30,
            "rewrite": {"source": "198.18.0.11", "source_port": 30080,
                        "destination": "198.18.0.100", "destination_port": 40000},
            "origin": "nodeport", "flags": ["reply", "snat"],
        })
    );
}

#[test]
fn policy_entries_name_endpoint_direction_and_rule() {
    let (key, value) = policy_flow();
    let json = serde_json::to_value(policy_entry(&key, &value, 100 * SEC)).unwrap();
    assert_eq!(json["table"], "policy");
    assert_eq!(json["direction"], "egress");
    assert_eq!(json["endpoint"], 4);
    assert!(json.get("rule").is_none());
    assert_eq!(json["age_secs"], 5);
    assert!(json.get("rewrite").is_none());
}

#[test]
fn filters_match_either_side_and_the_rewrite() {
    let (key, entry) = nodeport_reply();
    let nat = nat_entry(&key, &entry, 100 * SEC);
    let (key, value) = policy_flow();
    let pol = policy_entry(&key, &value, 100 * SEC);
    let external = Ipv4Addr::new(198, 18, 0, 100);
    let by_address = Filter {
        address: Some(external),
        ..Filter::default()
    };
    assert!(by_address.matches(&nat), "the client shows through the rewrite");
    assert!(!by_address.matches(&pol));
    let by_port = Filter {
        port: Some(30080),
        ..Filter::default()
    };
    assert!(by_port.matches(&nat));
    let udp = Filter {
        proto: Some(Proto::Udp),
        ..Filter::default()
    };
    assert!(!udp.matches(&nat) && udp.matches(&pol));
    assert_eq!(
        counts(&[nat.clone(), pol.clone(), pol]),
        CtCounts { nat: 1, policy: 2 }
    );
}

#[test]
fn egress_and_unknown_times_render_as_such() {
    let (mut key, mut entry) = nodeport_reply();
    key.direction = NAT_EGRESS;
    entry.created_ns = 0;
    entry.last_seen_ns = 0;
    entry.flags = 0x44;
    let e = nat_entry(&key, &entry, 100 * SEC);
    assert_eq!(e.direction, "egress");
    assert_eq!(e.age_secs, None);
    assert_eq!(e.flags, ["migrated", "0x40"]);
}

#[test]
fn the_table_has_one_line_per_entry_and_a_table_column() {
    let (key, entry) = nodeport_reply();
    let (pkey, pvalue) = policy_flow();
    let list = CtList {
        entries: vec![
            nat_entry(&key, &entry, 100 * SEC),
            policy_entry(&pkey, &pvalue, 100 * SEC),
        ],
    };
    let table = list.table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TABLE"), "{table}");
    assert!(lines[1].starts_with("nat ") && lines[1].contains("198.18.0.11:30080 → 198.18.0.100:40000"));
    assert!(
        lines[2].starts_with("policy") && lines[2].contains("endpoint 4"),
        "{table}"
    );
    assert_eq!(
        CtCounts { nat: 1, policy: 2 }.table(),
        "TABLE   ENTRIES\nnat     1\npolicy  2\ntotal   3\n"
    );
}

#[test]
fn listing_order_is_by_table_then_oldest_first_unknown_ages_last() {
    let (key, entry) = nodeport_reply();
    let (pkey, pvalue) = policy_flow();
    let created_at = |created_s: u64| {
        let entry = Nat4Entry {
            created_ns: created_s * SEC,
            ..entry
        };
        nat_entry(&key, &entry, 100 * SEC)
    };
    let mut entries = [
        policy_entry(&pkey, &pvalue, 100 * SEC),
        created_at(0),
        created_at(95),
        created_at(10),
    ];
    entries.sort_by_key(CtEntry::order);
    let ages: Vec<(&str, Option<u64>)> = entries.iter().map(|e| (e.table, e.age_secs)).collect();
    assert_eq!(
        ages,
        [
            ("nat", Some(90)),
            ("nat", Some(5)),
            ("nat", None),
            ("policy", Some(5))
        ]
    );
}
