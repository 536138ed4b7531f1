//! The uplink's TC programs, run by the kernel on crafted frames with
//! `BPF_PROG_TEST_RUN`: the real eBPF object, its maps written by the real
//! agent code (desired state from YAML → reconciler → pinned maps), and
//! every rewritten frame checked for addresses, ports and checksums.
//!
//! Each test runs on a thread moved into a fresh, empty network namespace,
//! so the programs' route lookups see no routes and nothing can leave.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::{Map, MapData};
use aya::programs::{TcAttachType, TestRun as _, TestRunOptions};
use weir_agent::datapath::{Datapath, EMBEDDED_OBJECT, MapSizes};
use weir_agent::desired::{self, Scope};
use weir_agent::maps::PinnedMasqMaps;
use weir_agent::reconcile::{Reconciler, masq};
use weir_agent::source::dir;
use weir_common::nat::{NAT_F_REPLY, NAT_F_SNAT, NAT_MAP, NAT_ORIGIN_MASQ, NAT_ORIGIN_NODEPORT};
use weir_common::{Nat4Entry, Nat4Key};

use crate::packet::{Scratch, TCP, UDP, checksums_ok, frame, tuple};

const TC_ACT_OK: u32 = 0;

/// A loaded datapath whose maps hold one manifest's state for one node.
struct Harness {
    datapath: Datapath,
    _masq: PinnedMasqMaps,
    // Last: the maps and programs go before their bpffs.
    scratch: Scratch,
}

impl Harness {
    fn new(node: &str, node_ip: &str, manifest: &str) -> Self {
        let scratch = Scratch::new();
        let manifests = scratch.run_dir.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(manifests.join("objects.yaml"), manifest).unwrap();
        let (objects, errors) = dir::read(&manifests).expect("reading the manifest");
        assert!(errors.is_empty(), "{errors:?}");

        let (datapath, maps) = Datapath::open(EMBEDDED_OBJECT, scratch.bpffs.path(), &MapSizes::default())
            .expect("loading the eBPF object");
        let node_ip: Ipv4Addr = node_ip.parse().unwrap();
        let scope = Scope {
            node_name: Some(node.into()),
            node_addresses: vec![node_ip],
            ..Scope::default()
        };
        let (state, errors) = desired::compute(&objects.services, &objects.slices, &scope);
        assert!(errors.is_empty(), "{errors:?}");
        Reconciler::new(maps.lb)
            .reconcile(&state)
            .expect("writing the LB maps");
        let mut masq_maps = maps.masq;
        let node_ips: BTreeSet<Ipv4Addr> = ["198.18.0.11", "198.18.0.12"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let want = masq::desired(Some("10.244.0.0/16".parse().unwrap()), Some(node_ip), &node_ips);
        masq::reconcile(&mut masq_maps, &want).expect("writing the node config");
        Harness {
            datapath,
            _masq: masq_maps,
            scratch,
        }
    }

    /// Runs the uplink program of `direction` on `input`: its verdict and
    /// the frame as it left the program.
    fn run(&mut self, direction: TcAttachType, input: &[u8]) -> (u32, Vec<u8>) {
        let program = self
            .datapath
            .uplink_program(direction)
            .expect("loading the TC program");
        let mut out = vec![0u8; input.len() + 64];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// The NAT table (v2 layout) as the programs left it.
    fn nat_entries(&self) -> Vec<(Nat4Key, Nat4Entry)> {
        let pin = self.scratch.bpffs.path().join(NAT_MAP);
        let map: aya::maps::HashMap<MapData, Nat4Key, Nat4Entry> = MapData::from_pin(&pin)
            .and_then(Map::from_map_data)
            .and_then(aya::maps::HashMap::try_from)
            .unwrap_or_else(|e| panic!("opening {}: {e}", pin.display()));
        map.iter()
            .collect::<Result<_, _>>()
            .expect("reading the NAT table")
    }

    fn ingress(&mut self, input: &[u8]) -> (u32, Vec<u8>) {
        self.run(TcAttachType::Ingress, input)
    }

    fn egress(&mut self, input: &[u8]) -> (u32, Vec<u8>) {
        self.run(TcAttachType::Egress, input)
    }
}

fn at(addr: &str) -> SocketAddrV4 {
    addr.parse().unwrap()
}

/// A NodePort Service with endpoints on n1 (10.244.1.x) and n2 (10.244.2.x).
fn web(extra_spec: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec: {{type: NodePort, clusterIP: 10.96.0.40, externalIPs: [203.0.113.10], {extra_spec}\n\
                ports: [{{port: 80, targetPort: 8080, nodePort: 30080}}, {{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}}]}}\n\
         ---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nports: [{{port: 8080}}, {{name: dns, port: 5353, protocol: UDP}}]\nendpoints: {endpoints}\n"
    )
}

const CLIENT: &str = "198.18.0.100:40000";

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn node_port_to_a_local_backend_keeps_the_client_and_the_reply_is_translated_back() {
    let mut h = Harness::new(
        "n1",
        "198.18.0.11",
        &web("", "[{addresses: [10.244.1.2], nodeName: n1}]"),
    );
    for proto in [TCP, UDP] {
        let (frontend, backend) = if proto == TCP {
            ("198.18.0.11:30080", "10.244.1.2:8080")
        } else {
            ("198.18.0.11:30053", "10.244.1.2:5353")
        };
        let (verdict, out) = h.ingress(&frame(proto, at(CLIENT), at(frontend)));
        assert_eq!(verdict, TC_ACT_OK);
        assert_eq!(
            tuple(&out),
            (at(CLIENT), at(backend)),
            "proto {proto}: DNAT only, client kept"
        );
        assert!(checksums_ok(&out), "proto {proto}: checksums after DNAT");

        let (verdict, reply) = h.egress(&frame(proto, at(backend), at(CLIENT)));
        assert_eq!(verdict, TC_ACT_OK);
        assert_eq!(
            tuple(&reply),
            (at(frontend), at(CLIENT)),
            "proto {proto}: the reply comes from the frontend"
        );
        assert!(checksums_ok(&reply), "proto {proto}: checksums of the reply");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn node_port_to_a_remote_backend_is_snated_to_the_node_and_its_reply_returns_to_the_client() {
    let mut h = Harness::new(
        "n1",
        "198.18.0.11",
        &web("", "[{addresses: [10.244.2.2], nodeName: n2}]"),
    );
    let (_, out) = h.ingress(&frame(TCP, at(CLIENT), at("198.18.0.11:30080")));
    let (src, dst) = tuple(&out);
    assert_eq!(dst, at("10.244.2.2:8080"));
    assert_eq!(
        *src.ip(),
        Ipv4Addr::new(198, 18, 0, 11),
        "source is the node, so the reply comes back here"
    );
    assert!(checksums_ok(&out));

    // The backend answers the node; the node answers the client as the frontend.
    let (_, reply) = h.ingress(&frame(TCP, at("10.244.2.2:8080"), src));
    assert_eq!(tuple(&reply), (at("198.18.0.11:30080"), at(CLIENT)));
    assert!(checksums_ok(&reply));

    // The conntrack view: both entries say why they exist and since when.
    let entries = h.nat_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for (key, entry) in &entries {
        let reply = u16::from_be(key.sport) == 8080;
        let want = if reply {
            NAT_F_REPLY | NAT_F_SNAT
        } else {
            NAT_F_SNAT
        };
        assert_eq!(
            (entry.origin, entry.flags),
            (NAT_ORIGIN_NODEPORT, want),
            "{key:?}"
        );
        assert!(
            entry.created_ns > 0 && entry.last_seen_ns >= entry.created_ns,
            "{entry:?}"
        );
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_established_flow_keeps_its_backend() {
    let endpoints = "[{addresses: [10.244.1.2, 10.244.1.3, 10.244.1.4], nodeName: n1}]";
    let mut h = Harness::new("n1", "198.18.0.11", &web("", endpoints));
    let first = frame(TCP, at(CLIENT), at("198.18.0.11:30080"));
    let (_, out) = h.ingress(&first);
    let chosen = tuple(&out).1;
    for _ in 0..20 {
        assert_eq!(
            tuple(&h.ingress(&first).1).1,
            chosen,
            "every packet of the flow goes to one backend"
        );
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn maglev_sends_a_connection_to_the_same_backend_whichever_node_it_enters() {
    let spec = "";
    let endpoints = "[{addresses: [10.244.1.2, 10.244.1.3], nodeName: n1}, {addresses: [10.244.2.2, 10.244.2.3], nodeName: n2}]";
    let manifest = web(spec, endpoints).replacen(
        "metadata: {name: web, namespace: default}",
        "metadata: {name: web, namespace: default, annotations: {weir.dev/lb-algorithm: maglev}}",
        1,
    );
    let mut n1 = Harness::new("n1", "198.18.0.11", &manifest);
    let mut n2 = Harness::new("n2", "198.18.0.12", &manifest);
    let mut seen = BTreeSet::new();
    for port in 41_000..41_040 {
        let syn = frame(
            TCP,
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 100), port),
            at("203.0.113.10:80"),
        );
        let via_n1 = tuple(&n1.ingress(&syn).1).1;
        let via_n2 = tuple(&n2.ingress(&syn).1).1;
        assert_eq!(via_n1, via_n2, "client port {port}");
        seen.insert(via_n1);
    }
    assert_eq!(
        seen.len(),
        4,
        "40 connections spread over all four backends: {seen:?}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_frontend_without_backends_and_a_cluster_ip_are_left_to_the_kernel() {
    let mut h = Harness::new("n1", "198.18.0.11", &web("", "[]"));
    for frontend in ["198.18.0.11:30080", "10.96.0.40:80", "198.18.0.11:22"] {
        let input = frame(TCP, at(CLIENT), at(frontend));
        let (verdict, out) = h.ingress(&input);
        assert_eq!(
            (verdict, &out),
            (TC_ACT_OK, &input),
            "{frontend} passes untouched"
        );
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pods_leaving_the_cluster_are_masqueraded_and_in_cluster_traffic_is_not() {
    let mut h = Harness::new("n1", "198.18.0.11", &web("", "[]"));
    let pod = at("10.244.1.5:36000");
    let outside = at("198.18.0.100:9000");
    for proto in [TCP, UDP] {
        let (verdict, out) = h.egress(&frame(proto, pod, outside));
        assert_eq!(verdict, TC_ACT_OK);
        let (src, dst) = tuple(&out);
        assert_eq!(
            (*src.ip(), dst),
            (Ipv4Addr::new(198, 18, 0, 11), outside),
            "proto {proto}"
        );
        assert!(checksums_ok(&out), "proto {proto}");
        let (_, reply) = h.ingress(&frame(proto, outside, src));
        assert_eq!(
            tuple(&reply),
            (outside, pod),
            "proto {proto}: the reply reaches the pod"
        );
        assert!(checksums_ok(&reply), "proto {proto}");
    }
    let entries = h.nat_entries();
    assert_eq!(entries.len(), 4, "two flows, two entries each: {entries:?}");
    assert!(
        entries
            .iter()
            .all(|(_, e)| e.origin == NAT_ORIGIN_MASQ && e.flags & NAT_F_SNAT != 0),
        "{entries:?}"
    );
    // Pod to pod on another node, and pod to a node: the pod's address stays.
    for dst in ["10.244.2.7:8080", "198.18.0.12:10250"] {
        let input = frame(TCP, pod, at(dst));
        assert_eq!(h.egress(&input).1, input, "to {dst}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_full_service_map_is_a_clear_error_and_no_frontend_is_half_written() {
    use weir_agent::maps::{self, LbMaps as _};
    let scratch = Scratch::new();
    let sizes = MapSizes {
        services: 4,
        ..MapSizes::default()
    };
    let (_datapath, loaded) = Datapath::open(EMBEDDED_OBJECT, scratch.bpffs.path(), &sizes).expect("loading");
    let mut reconciler = Reconciler::new(loaded.lb);

    let service = |name: &str, ip: &str, backends: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{port: 80}}]\nendpoints: [{{addresses: [{backends}]}}]\n---\n"
        )
    };
    let manifests = scratch.run_dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let state = |yaml: &str| {
        std::fs::write(manifests.join("objects.yaml"), yaml).unwrap();
        let (objects, errors) = dir::read(&manifests).expect("reading the manifest");
        assert!(errors.is_empty(), "{errors:?}");
        desired::compute(&objects.services, &objects.slices, &Scope::default()).0
    };

    let small = service("a", "10.96.0.1", "10.244.1.2");
    reconciler.reconcile(&state(&small)).expect("two entries fit");
    let before = maps::dump(reconciler.maps()).unwrap();

    let big = small + &service("b", "10.96.0.2", "10.244.1.3, 10.244.1.4, 10.244.1.5");
    let err = reconciler
        .reconcile(&state(&big))
        .expect_err("six entries do not fit in four");
    assert!(
        matches!(
            err,
            maps::Error::Full {
                map: "weir_lb4_services_v1"
            }
        ),
        "{err}"
    );
    // Frontend a is as it was; b has no master entry, so no packet can
    // reach a half-written b.
    let after = maps::dump(reconciler.maps()).unwrap();
    assert!(
        before.lines().all(|line| after.lines().any(|l| l == line)),
        "a changed:\n{before}\n{after}"
    );
    assert!(!after.contains("10.96.0.2:80/6 count="), "{after}");
    let masters = reconciler
        .maps()
        .services()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.backend_slot == 0)
        .count();
    assert_eq!(masters, 1);
}
