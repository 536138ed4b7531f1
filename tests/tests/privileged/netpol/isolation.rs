//! Isolation by namespace: no policy, default deny in each direction,
//! stateful replies, peers from the same namespace or by namespace labels,
//! and a deleted policy.

use weir_tests::netpol::{self, Peer, Reachability, TruthTable};
use weir_tests::{Cluster, Origin, Protocol};

use super::{VerdictLines, apply, check, delete, model_cluster, namespace_of, policy, wait_positive_metric};

#[test]
#[ignore = "needs root"]
fn netpol_default_deny_namespaces_and_delete() {
    let mut cluster = model_cluster();

    // No policy: everything reaches everything, TCP and UDP, both ports.
    let everything = Reachability::new(true);
    for (port, protocol) in [(80, Protocol::Tcp), (81, Protocol::Tcp), (80, Protocol::Udp)] {
        check(&cluster, "no policy", &everything, port, protocol);
    }

    // Default deny ingress in x: nothing gets into x.
    let x_a_node = cluster
        .expect(cluster.pod_node("x/a"), "x/a's node")
        .name()
        .to_owned();
    let verdicts = VerdictLines::follow(&cluster, &x_a_node);
    let deny_ingress = policy("x", "deny-ingress", "  podSelector: {}\n  policyTypes: [Ingress]");
    apply(&mut cluster, &deny_ingress);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::default(), Peer::namespace("x"), false);
    check(
        &cluster,
        "default deny ingress in x",
        &reachability,
        80,
        Protocol::Tcp,
    );
    // Nodes: a pod's own node still gets in (kubelet probes), another does not.
    from_nodes_into_x(&cluster);
    // The drops were reported on the verdict socket and counted against
    // the policy on the node of the pod that was protected.
    let line = verdicts.wait_for(|v| {
        v["verdict"] == "drop"
            && v["direction"] == "ingress"
            && v["pod"] == "x/a"
            && v["policies"] == serde_json::json!(["x/deny-ingress"])
    });
    assert_eq!(
        line["reason"], "dropped: no ingress rule of x/deny-ingress matched",
        "{line}"
    );
    wait_positive_metric(
        &cluster,
        &x_a_node,
        "weir_policy_verdicts_total",
        &[
            r#"policy="x/deny-ingress""#,
            r#"direction="ingress""#,
            r#"verdict="drop""#,
        ],
    );
    delete(&mut cluster, &deny_ingress);

    // Default deny egress in x (no DNS involved: pods are dialled by IP).
    let deny_egress = policy("x", "deny-egress", "  podSelector: {}\n  policyTypes: [Egress]");
    apply(&mut cluster, &deny_egress);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::namespace("x"), Peer::default(), false);
    check(
        &cluster,
        "default deny egress in x",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(&mut cluster, &deny_egress);

    // Stateful: x allows all ingress but no egress. Connections into x
    // work, so their replies leave x although its egress is isolated;
    // nothing x starts gets out. UDP answers are replies too.
    let ingress_only = policy(
        "x",
        "ingress-only",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{}]",
    );
    apply(&mut cluster, &ingress_only);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        check(
            &cluster,
            "x: all ingress, no egress (replies pass)",
            &reachability,
            80,
            protocol,
        );
    }
    delete(&mut cluster, &ingress_only);

    peers_by_namespace(&mut cluster, &everything);
}

/// Peers from the same namespace, or from namespaces chosen by label; a
/// deleted policy lets everything in again.
fn peers_by_namespace(cluster: &mut Cluster, everything: &Reachability) {
    // Ingress from the same namespace only.
    let same_namespace = policy(
        "x",
        "allow-same-namespace",
        "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]",
    );
    apply(cluster, &same_namespace);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::namespace("y"), Peer::namespace("x"), false);
    reachability.expect_peer(Peer::namespace("z"), Peer::namespace("x"), false);
    check(
        cluster,
        "ingress to x from x only",
        &reachability,
        80,
        Protocol::Tcp,
    );

    // Deleted: everything is allowed again.
    delete(cluster, &same_namespace);
    check(cluster, "policy deleted", everything, 80, Protocol::Tcp);

    // From a namespace chosen by label: matchLabels, then matchExpressions
    // on the label the API server adds to every Namespace.
    let by_label = policy(
        "x",
        "allow-from-y",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]",
    );
    apply(cluster, &by_label);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::namespace("x"), Peer::namespace("x"), false);
    reachability.expect_peer(Peer::namespace("z"), Peer::namespace("x"), false);
    check(
        cluster,
        "ingress to x from namespace ns=y",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(cluster, &by_label);

    let not_y = policy(
        "x",
        "allow-from-not-y",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: \
         [{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}]}}]}]",
    );
    apply(cluster, &not_y);
    let mut reachability = Reachability::new(true);
    reachability.expect_peer(Peer::namespace("y"), Peer::namespace("x"), false);
    check(
        cluster,
        "ingress to x from namespaces NotIn [y]",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(cluster, &not_y);
    check(cluster, "every policy deleted", everything, 80, Protocol::Tcp);
}

/// With ingress to x denied: each node reaches the pods of x on it, and
/// only those; every other pod from everywhere.
fn from_nodes_into_x(cluster: &Cluster) {
    let sources: Vec<(String, Origin)> = cluster
        .node_names()
        .into_iter()
        .map(|name| (name.clone(), Origin::Node(name)))
        .collect();
    let targets = cluster.expect(netpol::pod_targets(cluster, 80), "the model's pods");
    let rows = sources.iter().map(|(name, _)| name.clone()).collect();
    let mut expected = TruthTable::new(rows, netpol::pod_keys(), true);
    for (node, _) in &sources {
        for pod in netpol::pod_keys() {
            let own = cluster
                .expect(cluster.pod_node(&pod), "a model pod's node")
                .name()
                == node;
            expected.set(node, &pod, namespace_of(&pod) != "x" || own);
        }
    }
    let checked = netpol::check_from(
        cluster,
        &sources,
        (&expected, &targets),
        Protocol::Tcp,
        |_, _| false,
        "default deny ingress in x, from the nodes",
    );
    cluster.expect(checked, "from the nodes");
}
