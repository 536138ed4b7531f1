//! What a policy selects changing under it: a pod's labels, a namespace's
//! labels, a pod that appears. Each is an update of one object, and only
//! what it affects may change.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use weir_tests::netpol::{self, Peer, Reachability, Target, TruthTable};
use weir_tests::{Cluster, Origin, Protocol};

use super::super::{apply, check, delete, policy};

/// A policy admitting pods labelled `role: trusted` from any namespace: a
/// pod gains the label (an update of the Pod object; the pod keeps running
/// with its address) and gets in; it loses it and is out again.
pub(super) fn pod_labels_change(cluster: &mut Cluster) {
    let trusted = policy(
        "x",
        "trusted",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, \
         podSelector: {matchLabels: {role: trusted}}}]}]",
    );
    apply(cluster, &trusted);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::default(), Peer::namespace("x"), false);
    check(
        cluster,
        "ingress to x only from role=trusted: nobody",
        &reachability,
        80,
        Protocol::Tcp,
    );

    let node = cluster
        .expect(cluster.pod_node("y/c"), "y/c's node")
        .name()
        .to_owned();
    let ip = cluster.expect(cluster.pod("y/c"), "y/c").ip;
    let labels = BTreeMap::from([("role".to_owned(), "trusted".to_owned())]);
    let applied = apply(cluster, &netpol::pod_yaml("y/c", &node, &labels));
    let change = &applied.changes[0];
    assert_eq!(
        change.action, "configured",
        "a label change updates the pod: {change:?}"
    );
    assert_eq!(
        cluster.expect(cluster.pod("y/c"), "y/c").ip,
        ip,
        "y/c was recreated"
    );
    reachability.expect_peer(
        Peer {
            namespace: Some("y"),
            pod: Some("c"),
        },
        Peer::namespace("x"),
        true,
    );
    check(
        cluster,
        "y/c labelled role=trusted",
        &reachability,
        80,
        Protocol::Tcp,
    );

    apply(cluster, &netpol::pod_yaml("y/c", &node, &BTreeMap::new()));
    reachability.expect_peer(
        Peer {
            namespace: Some("y"),
            pod: Some("c"),
        },
        Peer::namespace("x"),
        false,
    );
    check(cluster, "y/c's label removed", &reachability, 80, Protocol::Tcp);
    delete(cluster, &trusted);
}

/// A policy admitting namespaces labelled `team: blue`: z gains the label
/// and its pods get in; it loses it and they are out again.
pub(super) fn namespace_labels_change(cluster: &mut Cluster) {
    let blue = policy(
        "x",
        "team-blue",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]",
    );
    apply(cluster, &blue);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::default(), Peer::namespace("x"), false);
    check(
        cluster,
        "ingress to x from team=blue: nobody",
        &reachability,
        80,
        Protocol::Tcp,
    );

    let namespace_z = |labels: &str| {
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: z, labels: {{ns: z{labels}}}}}\n")
    };
    let applied = apply(cluster, &namespace_z(", team: blue"));
    assert_eq!(applied.changes[0].action, "configured", "{:?}", applied.changes);
    reachability.expect_peer(Peer::namespace("z"), Peer::namespace("x"), true);
    check(
        cluster,
        "namespace z labelled team=blue",
        &reachability,
        80,
        Protocol::Tcp,
    );

    apply(cluster, &namespace_z(""));
    reachability.expect_peer(Peer::namespace("z"), Peer::namespace("x"), false);
    check(
        cluster,
        "namespace z's label removed",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(cluster, &blue);
}

/// A pod created under a policy is selected by it (as a destination) and
/// counted among its peers (as a source) without anything else changing.
pub(super) fn pod_appears(cluster: &mut Cluster) {
    let same_namespace = policy(
        "x",
        "allow-same-namespace",
        "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]",
    );
    apply(cluster, &same_namespace);
    let new_pod = netpol::pod_yaml("x/d", "node-2", &BTreeMap::new());
    apply(cluster, &new_pod);
    let target = |key: &str| {
        let pod = cluster.expect(cluster.pod(key), "a model pod");
        Target {
            label: key.to_owned(),
            address: SocketAddrV4::new(pod.ip, 80),
            answers_as: Some(pod.name.clone()),
        }
    };
    let targets = [target("x/d"), target("x/b")];
    let rows = ["x/a", "y/a", "x/d"].map(str::to_owned).to_vec();
    let sources: Vec<(String, Origin)> = rows
        .iter()
        .map(|key| (key.clone(), Origin::Pod(key.clone())))
        .collect();
    let cols = targets.iter().map(|t| t.label.clone()).collect();
    let mut expected = TruthTable::new(rows, cols, true);
    expected.set("y/a", "x/d", false);
    expected.set("y/a", "x/b", false);
    let checked = netpol::check_from(
        cluster,
        &sources,
        (&expected, &targets),
        Protocol::Tcp,
        |from, to| from == to,
        "new pod x/d under ingress from x only",
    );
    cluster.expect(checked, "a pod that appears");
    delete(cluster, &new_pod);
    delete(cluster, &same_namespace);
}
