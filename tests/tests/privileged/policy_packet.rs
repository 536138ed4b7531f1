//! The NetworkPolicy programs of the pod veths, run by the kernel on crafted
//! frames with `BPF_PROG_TEST_RUN`: the real eBPF object, its policy maps
//! written through the agent's `PinnedPolicyMaps`, and the verdict ring
//! buffer read back with aya's `RingBuf` — and once with real traffic, the
//! programs attached to pod veths by the agent's reconciler.
//!
//! Each test runs on a thread moved into a fresh, empty network namespace.

mod harness;
mod traffic;

use weir_agent::maps::PolicyMaps as _;
use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, IPPROTO_SCTP, POLICY_EGRESS, POLICY_INGRESS,
    POLICY_LOG_ALLOWS, PROTO_ANY, PolicyConfig, PolicyVerdict, RULE_NONE, VERDICT_ALLOW, VERDICT_DROP,
};

use crate::packet::{TCP, UDP};
use harness::{
    DROP, Harness, ICMP, PASS, POD, POD_ID, addr, arp, ipv4, ping, port_unreachable, range, sctp, tcp, udp,
};

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_not_isolated_and_non_ipv4_traffic_passes() {
    let mut h = Harness::new();
    let request = tcp("10.0.1.2:40000", "10.244.1.5:80");
    let out = tcp("10.244.1.5:40000", "10.0.1.2:80");
    // No endpoint entry, then one that isolates nothing, then ingress only.
    assert_eq!((h.sent_to_pod(&request), h.sent_by_pod(&out)), (PASS, PASS));
    h.isolate(0);
    assert_eq!((h.sent_to_pod(&request), h.sent_by_pod(&out)), (PASS, PASS));
    h.isolate(ENDPOINT_ISOLATE_INGRESS);
    assert_eq!(h.sent_by_pod(&out), PASS, "egress is not isolated");
    assert_eq!(h.sent_to_pod(&request), DROP, "ingress is isolated, no rule");
    h.isolate(ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS);
    assert_eq!(
        (h.sent_to_pod(&arp()), h.sent_by_pod(&arp())),
        (PASS, PASS),
        "ARP always passes"
    );
    assert_eq!(h.verdicts().len(), 1, "one drop, one verdict");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_ingress_rules_by_peer_prefix_protocol_and_port() {
    let mut h = Harness::new();
    h.isolate(ENDPOINT_ISOLATE_INGRESS);
    h.allow(
        POLICY_INGRESS,
        "10.0.1.0/24",
        &[range(TCP, 80, 80, 7), range(TCP, 8000, 8080, 8)],
    );
    // ipBlock 10.0.1.0/24 except 10.0.1.128/25: the except holds nothing.
    h.allow(POLICY_INGRESS, "10.0.1.128/25", &[]);
    h.allow(POLICY_INGRESS, "10.0.2.0/24", &[range(PROTO_ANY, 0, u16::MAX, 9)]);
    h.allow(
        POLICY_INGRESS,
        "10.0.3.0/24",
        &[range(IPPROTO_SCTP, 9999, 9999, 10)],
    );
    let cases: [(&str, Vec<u8>, u32); 14] = [
        (
            "TCP 80 from the /24",
            tcp("10.0.1.2:40000", "10.244.1.5:80"),
            PASS,
        ),
        (
            "TCP 81 from the /24",
            tcp("10.0.1.2:40001", "10.244.1.5:81"),
            DROP,
        ),
        (
            "UDP 80 from the /24",
            udp("10.0.1.2:40002", "10.244.1.5:80"),
            DROP,
        ),
        (
            "TCP 80 from outside",
            tcp("10.0.9.2:40003", "10.244.1.5:80"),
            DROP,
        ),
        (
            "TCP 80 from the except",
            tcp("10.0.1.200:40004", "10.244.1.5:80"),
            DROP,
        ),
        (
            "TCP 8000, range start",
            tcp("10.0.1.2:40005", "10.244.1.5:8000"),
            PASS,
        ),
        (
            "TCP 8080, range end",
            tcp("10.0.1.2:40006", "10.244.1.5:8080"),
            PASS,
        ),
        (
            "TCP 8081, past the range",
            tcp("10.0.1.2:40007", "10.244.1.5:8081"),
            DROP,
        ),
        (
            "TCP 7999, before the range",
            tcp("10.0.1.2:40008", "10.244.1.5:7999"),
            DROP,
        ),
        (
            "ICMP from the any-protocol /24",
            ping("10.0.2.9", "10.244.1.5"),
            PASS,
        ),
        (
            "ICMP from the /24 with ports",
            ping("10.0.1.2", "10.244.1.5"),
            DROP,
        ),
        ("SCTP 9999", sctp("10.0.3.4:5000", "10.244.1.5:9999"), PASS),
        ("SCTP 9998", sctp("10.0.3.4:5001", "10.244.1.5:9998"), DROP),
        (
            "TCP 9999 from the SCTP /24",
            tcp("10.0.3.4:5002", "10.244.1.5:9999"),
            DROP,
        ),
    ];
    let mut failures = Vec::new();
    for (what, packet, want) in &cases {
        let got = h.sent_to_pod(packet);
        if got != *want {
            failures.push(format!("{what}: got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Every drop, in order, with its fields; no allow without POLICY_LOG_ALLOWS.
    let drops: Vec<_> = cases.iter().filter(|c| c.2 == DROP).collect();
    let verdicts = h.verdicts();
    assert_eq!(verdicts.len(), drops.len(), "{verdicts:#?}");
    for ((what, packet, _), v) in drops.iter().zip(&verdicts) {
        assert_drop_of(what, packet, v);
    }
}

/// `v` reports the ingress drop of `packet`, with every field right.
fn assert_drop_of(what: &str, packet: &[u8], v: &PolicyVerdict) {
    let proto = packet[23];
    let want_ports = if proto == ICMP {
        (0, 0)
    } else {
        let l4 = &packet[34..];
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    };
    assert_eq!(
        (
            v.saddr.to_ne_bytes(),
            v.daddr.to_ne_bytes(),
            (u16::from_be(v.sport), u16::from_be(v.dport)),
            v.proto
        ),
        (
            <[u8; 4]>::try_from(&packet[26..30]).unwrap(),
            <[u8; 4]>::try_from(&packet[30..34]).unwrap(),
            want_ports,
            proto
        ),
        "{what}"
    );
    assert_eq!(
        (v.direction, v.verdict, v.endpoint, v.rule, v.pad),
        (POLICY_INGRESS, VERDICT_DROP, POD_ID, RULE_NONE, 0),
        "{what}"
    );
    // In a test run the packet is seen on the namespace's loopback.
    assert_eq!(v.ifindex, 1, "{what}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_egress_rules_and_the_node_always_reaching_its_pods() {
    let mut h = Harness::new();
    h.isolate(ENDPOINT_ISOLATE_EGRESS);
    h.allow(POLICY_EGRESS, "10.0.9.0/24", &[range(UDP, 53, 53, 4)]);
    assert_eq!(h.sent_by_pod(&udp("10.244.1.5:5000", "10.0.9.1:53")), PASS);
    assert_eq!(
        h.sent_by_pod(&udp("10.244.1.5:5001", "10.0.8.1:53")),
        DROP,
        "other peer"
    );
    assert_eq!(h.sent_by_pod(&tcp("10.244.1.5:5002", "10.0.9.1:53")), DROP, "TCP");
    // The egress rule does not open ingress; ingress is not isolated.
    assert_eq!(h.sent_to_pod(&tcp("10.0.8.1:5003", "10.244.1.5:80")), PASS);
    let verdicts = h.verdicts();
    assert_eq!(verdicts.len(), 2, "{verdicts:#?}");
    assert!(
        verdicts
            .iter()
            .all(|v| v.direction == POLICY_EGRESS && v.verdict == VERDICT_DROP)
    );
    assert_eq!(verdicts[0].daddr, addr("10.0.8.1"));

    // Ingress isolated without rules: only the node itself gets in.
    h.isolate(ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS);
    h.policy.put_host(addr("198.18.0.11")).unwrap();
    assert_eq!(
        h.sent_to_pod(&tcp("198.18.0.11:5004", "10.244.1.5:8080")),
        PASS,
        "kubelet probe"
    );
    assert_eq!(
        h.sent_to_pod(&tcp("198.18.0.12:5005", "10.244.1.5:8080")),
        DROP,
        "another node"
    );
    h.policy.delete_host(addr("198.18.0.11")).unwrap();
    h.policy
        .delete_host(addr("198.18.0.11"))
        .expect("deleting twice is fine");
    assert_eq!(
        h.sent_to_pod(&tcp("198.18.0.11:5006", "10.244.1.5:8080")),
        DROP,
        "host removed"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_replies_of_allowed_connections_pass_and_others_do_not() {
    let mut h = Harness::new();
    h.isolate(ENDPOINT_ISOLATE_INGRESS | ENDPOINT_ISOLATE_EGRESS);
    h.allow(
        POLICY_INGRESS,
        "10.0.1.0/24",
        &[range(TCP, 80, 80, 1), range(PROTO_ANY, 0, 0, 2)],
    );
    h.allow(POLICY_EGRESS, "10.0.7.0/24", &[range(UDP, 53, 53, 3)]);

    // In: request allowed by rule; the reply leaves although egress has no rule for it.
    assert_eq!(h.sent_to_pod(&tcp("10.0.1.2:40000", "10.244.1.5:80")), PASS);
    assert_eq!(
        h.sent_by_pod(&tcp("10.244.1.5:80", "10.0.1.2:40000")),
        PASS,
        "reply of an allowed request"
    );
    assert_eq!(
        h.sent_to_pod(&tcp("10.0.1.2:40000", "10.244.1.5:80")),
        PASS,
        "the connection goes on"
    );
    assert_eq!(
        h.sent_by_pod(&tcp("10.244.1.5:80", "10.0.1.2:40001")),
        DROP,
        "no request from :40001"
    );
    assert_eq!(
        h.sent_by_pod(&tcp("10.244.1.5:80", "10.0.1.3:40000")),
        DROP,
        "no request from .3"
    );

    // Out: the DNS answer comes in although no ingress rule allows 10.0.7.1.
    assert_eq!(h.sent_by_pod(&udp("10.244.1.5:5353", "10.0.7.1:53")), PASS);
    assert_eq!(
        h.sent_to_pod(&udp("10.0.7.1:53", "10.244.1.5:5353")),
        PASS,
        "reply of an allowed query"
    );
    assert_eq!(
        h.sent_to_pod(&udp("10.0.7.1:53", "10.244.1.5:5354")),
        DROP,
        "no query from :5354"
    );

    // ICMP errors about a known connection pass like its replies.
    let unreachable = port_unreachable(UDP, "10.0.7.1", POD, "10.244.1.5:5353", "10.0.7.1:53");
    assert_eq!(
        h.sent_to_pod(&unreachable),
        PASS,
        "port unreachable for the query"
    );
    let unknown = port_unreachable(UDP, "10.0.7.1", POD, "10.244.1.5:5999", "10.0.7.1:53");
    assert_eq!(h.sent_to_pod(&unknown), DROP, "about a query never sent");
    let about_reply = port_unreachable(TCP, "10.244.1.5", "10.0.1.2", "10.0.1.2:40000", "10.244.1.5:80");
    assert_eq!(
        h.sent_by_pod(&about_reply),
        PASS,
        "the pod reports an error about a request it allowed in"
    );

    // ICMP: allowed in by the any-port range (port 0), the echo reply leaves.
    assert_eq!(h.sent_to_pod(&ping("10.0.1.9", "10.244.1.5")), PASS);
    assert_eq!(h.sent_by_pod(&ping("10.244.1.5", "10.0.1.9")), PASS, "echo reply");
    assert_eq!(
        h.sent_by_pod(&ping("10.244.1.5", "10.0.1.8")),
        DROP,
        "no echo from .8"
    );

    let verdicts = h.verdicts();
    let seen: Vec<_> = verdicts.iter().map(|v| (v.direction, v.verdict)).collect();
    assert_eq!(
        seen,
        [
            (POLICY_EGRESS, VERDICT_DROP),
            (POLICY_EGRESS, VERDICT_DROP),
            (POLICY_INGRESS, VERDICT_DROP),
            (POLICY_INGRESS, VERDICT_DROP),
            (POLICY_EGRESS, VERDICT_DROP)
        ]
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_allow_verdicts_only_when_asked_and_once_per_connection() {
    let mut h = Harness::new();
    h.isolate(ENDPOINT_ISOLATE_INGRESS);
    h.allow(POLICY_INGRESS, "10.0.1.0/24", &[range(TCP, 80, 80, 7)]);
    assert_eq!(h.sent_to_pod(&tcp("10.0.1.2:40000", "10.244.1.5:80")), PASS);
    assert_eq!(h.verdicts(), [], "allows are not logged by default");

    h.policy
        .set_config(&PolicyConfig {
            flags: POLICY_LOG_ALLOWS,
        })
        .unwrap();
    assert_eq!(h.sent_to_pod(&tcp("10.0.1.2:40001", "10.244.1.5:80")), PASS);
    assert_eq!(h.sent_to_pod(&tcp("10.0.1.2:40001", "10.244.1.5:80")), PASS);
    let verdicts = h.verdicts();
    assert_eq!(verdicts.len(), 1, "one per new connection: {verdicts:#?}");
    let v = verdicts[0];
    assert_eq!(
        (
            v.saddr,
            v.daddr,
            u16::from_be(v.sport),
            u16::from_be(v.dport),
            v.proto
        ),
        (addr("10.0.1.2"), addr(POD), 40001, 80, TCP)
    );
    assert_eq!(
        (v.direction, v.verdict, v.endpoint, v.rule),
        (POLICY_INGRESS, VERDICT_ALLOW, POD_ID, 7)
    );

    h.policy.set_config(&PolicyConfig::default()).unwrap();
    assert_eq!(h.sent_to_pod(&tcp("10.0.1.2:40002", "10.244.1.5:80")), PASS);
    assert_eq!(h.verdicts(), []);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_later_fragments_follow_their_first_fragment() {
    let mut h = Harness::new();
    h.isolate(ENDPOINT_ISOLATE_INGRESS);
    h.allow(POLICY_INGRESS, "10.0.1.0/24", &[range(UDP, 5000, 5000, 1)]);
    let mut udp_head = vec![0u8; 8];
    udp_head[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp_head[2..4].copy_from_slice(&5000u16.to_be_bytes());
    let more = 0x2000;
    let first = ipv4(UDP, "10.0.1.2", POD, &udp_head, 77, more);
    let second = ipv4(UDP, "10.0.1.2", POD, &[0u8; 16], 77, 1);
    let stray = ipv4(UDP, "10.0.1.2", POD, &[0u8; 16], 78, 1);
    assert_eq!(
        h.sent_to_pod(&first),
        PASS,
        "the first fragment is judged by its ports"
    );
    assert_eq!(
        h.sent_to_pod(&second),
        PASS,
        "a later fragment of an allowed datagram"
    );
    assert_eq!(
        h.sent_to_pod(&stray),
        DROP,
        "a later fragment of a datagram never allowed"
    );
    let mut udp_denied = udp_head.clone();
    udp_denied[2..4].copy_from_slice(&5001u16.to_be_bytes());
    assert_eq!(
        h.sent_to_pod(&ipv4(UDP, "10.0.1.2", POD, &udp_denied, 79, more)),
        DROP
    );
    assert_eq!(
        h.sent_to_pod(&ipv4(UDP, "10.0.1.2", POD, &[0u8; 16], 79, 1)),
        DROP
    );
    assert_eq!(h.verdicts().len(), 3);
}
