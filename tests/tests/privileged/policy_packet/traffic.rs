//! Real traffic through the policy programs: pods made by `weir-cni` on a
//! node, the programs attached to their veths by the agent's reconciler
//! (`pod_interfaces` + `Datapath::attach_pod_interfaces`), the policy maps
//! written through `PinnedPolicyMaps`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use aya::maps::{MapData, RingBuf};
use weir_agent::datapath::pods::{PIN_PREFIX, pod_interfaces};
use weir_agent::datapath::{Datapath, DatapathMaps, EMBEDDED_OBJECT, MapSizes};
use weir_agent::maps::{PinnedPolicyMaps, PolicyMaps as _, RuleKey};
use weir_common::policy::{
    ENDPOINT_ISOLATE_INGRESS, POLICY_INGRESS, PolicyEndpoint, PolicyRuleKey, PolicyRuleValue, PolicyVerdict,
    VERDICT_DROP,
};

use super::harness::range;
use weir_tests::Node;

use crate::common::{CLIENT, ECHO_PODS, ECHO_TARGET_PORT, echo_node, request};
use crate::packet::TCP;

/// This thread in another network namespace until dropped.
struct InNetns {
    original: File,
}

impl InNetns {
    fn enter(netns: &Path) -> Self {
        let original = File::open("/proc/thread-self/ns/net").expect("this thread's netns");
        let target = File::open(netns).unwrap_or_else(|e| panic!("opening {}: {e}", netns.display()));
        setns(&target);
        InNetns { original }
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        setns(&self.original);
    }
}

fn setns(netns: &File) {
    // SAFETY: setns on an open netns file only changes this thread's namespace.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn policy_packet_real_traffic_an_isolated_pod_answers_only_what_a_rule_allows() {
    assert!(
        !EMBEDDED_OBJECT.is_empty(),
        "weir-agent was built without its eBPF object: run `cargo xtask test`"
    );
    let node = echo_node();
    let (echo_a, echo_b) = (ECHO_PODS[0].1, ECHO_PODS[1].1);
    let client = node.pod(CLIENT).expect("the client pod").ip;
    let to_a = SocketAddrV4::new(echo_a, ECHO_TARGET_PORT);
    let to_b = SocketAddrV4::new(echo_b, ECHO_TARGET_PORT);

    let (datapath, maps, interfaces) = open_and_attach(&node);
    let mut policy = maps.policy;
    let mut verdicts = RingBuf::try_from(maps.verdicts).expect("the verdict ring buffer");
    assert!(request(&node, CLIENT, to_a, 2).all_answered(), "not isolated yet");

    // echo-a isolated for ingress, no rule: nothing gets in; echo-b is open.
    let endpoint = PolicyEndpoint {
        id: 1,
        flags: ENDPOINT_ISOLATE_INGRESS,
        pad: 0,
    };
    policy.put_endpoint(be(echo_a), &endpoint).unwrap();
    let denied = request(&node, CLIENT, to_a, 2);
    assert_eq!(denied.answers().count(), 0, "isolated without rules: {denied:?}");
    assert!(
        request(&node, CLIENT, to_b, 2).all_answered(),
        "echo-b is not isolated"
    );
    assert_drops_reported(&mut verdicts, &interfaces, client, echo_a);

    // A rule for the client's /32 on TCP 8080: it answers, statefully.
    allow_client(&mut policy, client);
    let allowed = request(&node, CLIENT, to_a, 3);
    assert!(allowed.all_answered(), "allowed by the rule: {allowed:?}");

    // A restarted agent: `load` leaves the pod links to the pod reconciler,
    // which adopts them; enforcement never stopped.
    drop((datapath, policy, verdicts));
    let in_node = InNetns::enter(&node.netns().path());
    let (mut datapath, _maps, loaded) = Datapath::load(
        EMBEDDED_OBJECT,
        node.bpffs_path(),
        &MapSizes::default(),
        node.cgroup().path(),
        None,
    )
    .expect("loading as a restarted agent");
    assert!(
        loaded
            .pruned
            .iter()
            .all(|pin| !pin.to_string_lossy().contains(PIN_PREFIX)),
        "{loaded:?}"
    );
    let restarted = datapath.attach_pod_interfaces(&interfaces).expect("adopting");
    assert_eq!((restarted.attached, restarted.adopted), (0, 8), "{restarted:?}");
    drop(in_node);
    assert!(
        request(&node, CLIENT, to_a, 2).all_answered(),
        "allowed after the restart"
    );
    let other = request(&node, ECHO_PODS[1].0, to_a, 1);
    assert_eq!(
        other.answers().count(),
        0,
        "still isolated after the restart: {other:?}"
    );

    // The reconciler prunes the links of interfaces it is no longer given.
    let in_node = InNetns::enter(&node.netns().path());
    let pruned = datapath.attach_pod_interfaces(&interfaces[1..]).expect("pruning");
    assert_eq!((pruned.adopted, pruned.pruned.len()), (6, 2), "{pruned:?}");
    let empty = datapath.attach_pod_interfaces(&[]).expect("pruning all");
    assert_eq!(empty.pruned.len(), 6, "{empty:?}");
    drop(in_node);
}

/// Loads the object into the node's bpffs and attaches the policy programs
/// to every pod veth, as the agent does, from inside the node's netns;
/// checks that a second pass adopts everything.
fn open_and_attach(node: &Node) -> (Datapath, DatapathMaps, Vec<(String, u32)>) {
    // Load and attach as the agent does, from inside the node's netns.
    let in_node = InNetns::enter(&node.netns().path());
    let (mut datapath, maps) = Datapath::open(EMBEDDED_OBJECT, node.bpffs_path(), &MapSizes::default())
        .expect("loading the eBPF object");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let interfaces = runtime.block_on(pod_interfaces()).expect("listing the pod veths");
    assert_eq!(interfaces.len(), 4, "one veth per pod: {interfaces:?}");
    let report = datapath.attach_pod_interfaces(&interfaces).expect("attaching");
    assert_eq!((report.attached, report.adopted), (8, 0), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let again = datapath
        .attach_pod_interfaces(&interfaces)
        .expect("attaching again");
    assert_eq!(
        (again.attached, again.adopted, again.pruned.len()),
        (0, 8, 0),
        "{again:?}"
    );
    drop(in_node);

    (datapath, maps, interfaces)
}

/// Every verdict on the ring buffer is a drop of `client` → `pod` TCP 8080
/// seen on a pod veth, and there is at least one.
fn assert_drops_reported(
    verdicts: &mut RingBuf<MapData>,
    interfaces: &[(String, u32)],
    client: Ipv4Addr,
    pod: Ipv4Addr,
) {
    let mut dropped = Vec::new();
    while let Some(item) = verdicts.next() {
        // SAFETY: the program writes whole PolicyVerdicts; read unaligned.
        dropped.push(unsafe { item.as_ptr().cast::<PolicyVerdict>().read_unaligned() });
    }
    assert!(!dropped.is_empty(), "the drops are reported");
    for v in &dropped {
        assert_eq!(
            (
                v.saddr,
                v.daddr,
                u16::from_be(v.dport),
                v.proto,
                v.verdict,
                v.endpoint
            ),
            (be(client), be(pod), ECHO_TARGET_PORT, TCP, VERDICT_DROP, 1),
            "{v:?}"
        );
        let veth = interfaces.iter().find(|(_, index)| *index == v.ifindex);
        assert!(veth.is_some(), "seen on a pod veth: {v:?}");
    }
}

/// A rule letting `client` (/32) reach endpoint 1 on TCP 8080.
fn allow_client(policy: &mut PinnedPolicyMaps, client: Ipv4Addr) {
    let mut value = PolicyRuleValue {
        count: 1,
        ..Default::default()
    };
    value.ranges[0] = range(TCP, ECHO_TARGET_PORT, ECHO_TARGET_PORT, 5);
    let key = RuleKey {
        peer_prefix_len: 32,
        data: PolicyRuleKey {
            endpoint: 1u16.to_be_bytes(),
            direction: POLICY_INGRESS,
            pad: 0,
            peer: be(client),
        },
    };
    policy.put_rule(&key, &value).unwrap();
}
