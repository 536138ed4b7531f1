//! Things that change and things that pass through: egress to a Service's
//! backends (judged after socket-LB picked the backend), a policy updated in
//! place, a pod's labels changing, UDP.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use weir_tests::netpol::{self, Peer, Reachability, Target, TruthTable};
use weir_tests::{Cluster, Protocol};

use super::{apply, check, delete, model_cluster, namespace_of, policy};

mod labels;

/// Services in y over one pod each: (name, ClusterIP, backend pod name).
const SERVICES: [(&str, Ipv4Addr, &str); 2] = [
    ("s-b", Ipv4Addr::new(10, 96, 0, 20), "b"),
    ("s-c", Ipv4Addr::new(10, 96, 0, 21), "c"),
];

fn services_yaml() -> String {
    let mut yaml = String::new();
    for (name, vip, backend) in SERVICES {
        let _ = write!(
            yaml,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: y}}\n\
             spec: {{clusterIP: {vip}, selector: {{pod: {backend}}}, \
             ports: [{{name: http, port: 80, targetPort: serve-80-tcp}}]}}\n"
        );
    }
    yaml
}

/// Probes every model pod → every Service until the grid matches
/// `connected(source namespace, service)`.
fn check_services(cluster: &Cluster, case: &str, connected: impl Fn(&str, &str) -> bool) {
    let targets: Vec<Target> = SERVICES
        .iter()
        .map(|(name, vip, backend)| Target {
            label: format!("y/{name}"),
            address: SocketAddrV4::new(*vip, 80),
            answers_as: Some((*backend).to_owned()),
        })
        .collect();
    let labels = targets.iter().map(|t| t.label.clone()).collect();
    let mut expected = TruthTable::new(netpol::pod_keys(), labels, true);
    for from in netpol::pod_keys() {
        for (name, _, _) in SERVICES {
            expected.set(&from, &format!("y/{name}"), connected(namespace_of(&from), name));
        }
    }
    let checked = netpol::check_targets(
        cluster,
        &expected,
        &targets,
        Protocol::Tcp,
        |_, _| false,
        "ClusterIPs port 80",
    );
    cluster.expect(checked, case);
}

#[test]
#[ignore = "needs root"]
fn netpol_services_updates_labels_and_udp() {
    let mut cluster = model_cluster();

    // Egress from x only to pods b of y: the Service over y/b answers, the
    // one over y/c does not — the connect() went to the ClusterIP, the
    // policy judged the backend socket-LB chose.
    apply(&mut cluster, &services_yaml());
    check_services(&cluster, "Services, no policy", |_, _| true);
    let to_b = policy(
        "x",
        "egress-to-y-b",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: \
         {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]",
    );
    apply(&mut cluster, &to_b);
    check_services(
        &cluster,
        "egress from x to y's pods b, through ClusterIPs",
        |ns, svc| ns != "x" || svc == "s-b",
    );
    delete(&mut cluster, &to_b);

    // Updated in place: the same policy object, first from y, then from z.
    let from = |namespace: &str| {
        policy(
            "x",
            "allow-from",
            &format!(
                "  podSelector: {{}}\n  ingress: [{{from: [{{namespaceSelector: \
                 {{matchLabels: {{ns: {namespace}}}}}}}]}}]"
            ),
        )
    };
    for (allowed, denied) in [("y", "z"), ("z", "y")] {
        let applied = apply(&mut cluster, &from(allowed));
        let action = applied.changes.first().map(|c| c.action);
        assert_eq!(
            action,
            Some(if allowed == "y" { "created" } else { "configured" })
        );
        let mut reachability = Reachability::new(true);
        reachability.expect_peer(Peer::namespace("x"), Peer::namespace("x"), false);
        reachability.expect_peer(Peer::namespace(denied), Peer::namespace("x"), false);
        check(
            &cluster,
            &format!("ingress to x from {allowed} only"),
            &reachability,
            80,
            Protocol::Tcp,
        );
    }
    delete(&mut cluster, &from("z"));

    labels::pod_labels_change(&mut cluster);
    labels::namespace_labels_change(&mut cluster);
    labels::pod_appears(&mut cluster);

    // UDP 80 allowed into x, nothing else.
    let udp = policy(
        "x",
        "udp-80",
        "  podSelector: {}\n  ingress: [{ports: [{protocol: UDP, port: 80}]}]",
    );
    apply(&mut cluster, &udp);
    let mut into_x_denied = Reachability::new(true);
    into_x_denied.expect_peer(Peer::default(), Peer::namespace("x"), false);
    // What changed first (see named ports), then what must still work.
    let everything = Reachability::new(true);
    check(
        &cluster,
        "UDP 80 into x: not TCP",
        &into_x_denied,
        80,
        Protocol::Tcp,
    );
    check(
        &cluster,
        "UDP 80 into x: not 81",
        &into_x_denied,
        81,
        Protocol::Udp,
    );
    check(&cluster, "UDP 80 into x", &everything, 80, Protocol::Udp);
    delete(&mut cluster, &udp);
    check(&cluster, "every policy deleted", &everything, 80, Protocol::Tcp);
}
