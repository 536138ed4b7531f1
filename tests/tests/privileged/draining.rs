//! Connections that outlive their endpoint. kube-proxy's contract: new
//! connections never go to an endpoint that left the EndpointSlice (or is
//! only terminating while others are ready), but an established TCP
//! connection to it keeps working until one side closes it — the pod may
//! still be finishing requests. UDP has no end to wait for: a flow pinned to
//! a backend that left must move, as kube-proxy's conntrack flush makes it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use weir_tests::{Attempt, Cluster, FailureKind, Protocol, Session, kube, node_address};

use crate::common::{ATTEMPT_TIMEOUT, cluster};

const OBJECTS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: t1}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: t2}
spec:
  nodeName: node-2
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: leaving}
spec:
  type: NodePort
  clusterIP: 10.96.0.42
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30090}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
";

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 42);

/// The EndpointSlice of `leaving` with the given `(address, conditions)`.
fn slice(endpoints: &[(Ipv4Addr, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: leaving-1, labels: {kubernetes.io/service-name: leaving}}\n\
         addressType: IPv4\n\
         ports: [{name: http, port: 8080, protocol: TCP}, {name: dns, port: 5353, protocol: UDP}]\n\
         endpoints:\n",
    );
    for (address, conditions) in endpoints {
        writeln!(yaml, "- {{addresses: ['{address}'], conditions: {conditions}}}")
            .expect("writing to a String");
    }
    yaml
}

const READY: &str = "{ready: true, serving: true, terminating: false}";
const TERMINATING: &str = "{ready: false, serving: true, terminating: true}";

fn apply_slice(cluster: &mut Cluster, endpoints: &[(Ipv4Addr, &str)]) {
    let before = cluster.generations();
    let objects = kube::parse_documents(&slice(endpoints)).unwrap_or_else(|e| panic!("slice YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the EndpointSlice");
    let settled = cluster.wait_settled(&before);
    cluster.expect(settled, "waiting for the agents");
}

/// The name of the server that answered, or the failure.
fn answered_by(attempt: &Attempt) -> Result<&str, (FailureKind, &str)> {
    attempt
        .as_ref()
        .map(|answer| answer.name.as_str())
        .map_err(|failure| (failure.kind, failure.message.as_str()))
}

struct Held {
    what: String,
    session: Session,
}

impl Held {
    fn open(cluster: &Cluster, from: &str, to: (SocketAddrV4, Protocol)) -> Self {
        let origin = cluster.expect(cluster.origin(from), "origin");
        let session = cluster.expect(
            cluster.session(&origin, to, ATTEMPT_TIMEOUT),
            "starting a session",
        );
        Self {
            what: format!("{from} → {}/{}", to.0, to.1),
            session,
        }
    }

    fn exchange(&mut self, cluster: &Cluster) -> Attempt {
        let attempt = self.session.exchange();
        cluster.expect(attempt, &format!("exchange {}", self.what))
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn established_tcp_outlives_its_endpoint_and_connected_udp_moves() {
    let mut cluster = cluster(2);
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the pods and Service");
    let t1 = cluster.expect(cluster.pod("default/t1").map(|p| p.ip), "t1");
    let t2 = cluster.expect(cluster.pod("default/t2").map(|p| p.ip), "t2");
    apply_slice(&mut cluster, &[(t1, READY)]);

    let http = (SocketAddrV4::new(VIP, 80), Protocol::Tcp);
    let dns = (SocketAddrV4::new(VIP, 53), Protocol::Udp);
    let node_port = |node| (SocketAddrV4::new(node_address(node), 30090), Protocol::Tcp);
    // Socket-LB from a pod and from a node, and the TC path (local backend
    // and SNAT to the remote one) from outside.
    let mut tcp: Vec<Held> = vec![
        Held::open(&cluster, "default/a", http),
        Held::open(&cluster, "node-2", http),
        Held::open(&cluster, "external", node_port(1)),
        Held::open(&cluster, "external", node_port(2)),
    ];
    let mut udp = Held::open(&cluster, "default/a", dns);
    for held in tcp.iter_mut().chain([&mut udp]) {
        let attempt = held.exchange(&cluster);
        assert_eq!(answered_by(&attempt), Ok("t1"), "{} before the change", held.what);
    }

    // t1 starts terminating while t2 is ready: only t2 takes new connections.
    apply_slice(&mut cluster, &[(t1, TERMINATING), (t2, READY)]);
    for from in ["default/a", "node-1", "node-2"] {
        let origin = cluster.expect(cluster.origin(from), "origin");
        let replies = cluster.probe(&origin, http, 10, ATTEMPT_TIMEOUT);
        let replies = cluster.expect(replies, "probing");
        assert_eq!(
            replies.counts().into_iter().collect::<Vec<_>>(),
            [("t2", 10)],
            "new connections from {from}: {:?}",
            replies.failures()
        );
    }
    for held in &mut tcp {
        let attempt = held.exchange(&cluster);
        assert_eq!(
            answered_by(&attempt),
            Ok("t1"),
            "{}: the established connection to the terminating endpoint",
            held.what
        );
    }
    // The connected UDP socket to t1 is terminated (ECONNABORTED), as
    // Cilium does; the application's next socket reaches t2.
    let aborted = udp.exchange(&cluster);
    assert!(
        matches!(answered_by(&aborted), Err((FailureKind::Reset, _))),
        "{}: the socket to the backend that left must be aborted, got {:?}",
        udp.what,
        answered_by(&aborted)
    );
    let moved = udp.exchange(&cluster);
    assert_eq!(answered_by(&moved), Ok("t2"), "{}: a fresh socket", udp.what);

    // t1 leaves the slice altogether (its pod still runs): established TCP
    // connections still work until they close.
    apply_slice(&mut cluster, &[(t2, READY)]);
    for held in &mut tcp {
        for _ in 0..3 {
            let attempt = held.exchange(&cluster);
            assert_eq!(
                answered_by(&attempt),
                Ok("t1"),
                "{} after t1 left the slice",
                held.what
            );
        }
    }
}
