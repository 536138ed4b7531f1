//! ClusterIP load balancing through the agent's `connect4` program, checked as
//! expectation tables: from a pod, to an address, exactly which servers answer.

use std::net::{Ipv4Addr, SocketAddrV4};

use weir_tests::ServiceSpec;

use crate::common::{
    CLIENT, ECHO_PODS, ECHO_PORT, ECHO_TARGET_PORT, ECHO_VIP, Expect, TRIES_FOR_ALL, check_table, echo_node,
    echo_node_with_agent, echo_service, write_echo_service,
};

const ECHO_ALL: &[&str] = &["echo-a", "echo-b", "echo-c"];

fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ECHO_VIP, port)
}

fn pod_addr(index: usize, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ECHO_PODS[index].1, port)
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn clusterip_reaches_all_and_only_its_own_backends() {
    let mut node = echo_node();
    // A second Service with its own backend, to show the first one's traffic
    // never strays to it (and the other way round).
    let added = node.add_pod("other-a").map(|pod| pod.ip);
    let other_ip = node.expect(added, "adding pod other-a");
    let served = node.serve("other-a", "other-a", ECHO_TARGET_PORT);
    node.expect(served, "starting other-a's server");
    let other = ServiceSpec {
        name: "other".to_owned(),
        cluster_ip: Ipv4Addr::new(10, 96, 0, 20),
        port_name: "http".to_owned(),
        port: 80,
        target_port: ECHO_TARGET_PORT,
        endpoints: vec![("other-a".to_owned(), other_ip)],
    };
    write_echo_service(&node);
    node.expect(
        node.manifests().write_service(&other),
        "writing the other Service",
    );
    let started = node.start_agent();
    let status = node.expect(started, "starting weir-agent");
    assert_eq!(
        (status.frontends, status.backends),
        (2, 4),
        "agent status: {status:?}"
    );

    check_table(
        &node,
        &[
            Expect {
                source: CLIENT,
                destination: vip(ECHO_PORT),
                answered_by: ECHO_ALL,
                tries: TRIES_FOR_ALL,
            },
            Expect {
                source: CLIENT,
                destination: SocketAddrV4::new(other.cluster_ip, 80),
                answered_by: &["other-a"],
                tries: 20,
            },
            // A backend calling its own Service may land on itself.
            Expect {
                source: "echo-a",
                destination: vip(ECHO_PORT),
                answered_by: ECHO_ALL,
                tries: TRIES_FOR_ALL,
            },
            // Pod IPs are not VIPs: dialled directly, they are left alone.
            Expect {
                source: CLIENT,
                destination: pod_addr(1, ECHO_TARGET_PORT),
                answered_by: &["echo-b"],
                tries: 10,
            },
        ],
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn backend_removed_from_the_endpointslice_gets_no_new_connections() {
    let mut node = echo_node_with_agent();
    let before = node.agent_status().expect("status after start");

    let without_c = echo_service(&ECHO_PODS[..2]);
    let written = node
        .manifests()
        .write(&without_c.endpointslice_file(), &without_c.endpointslice_yaml());
    node.expect(written, "rewriting the EndpointSlice");
    let waited = node.wait_for_generation(before.generation + 1);
    let after = node.expect(waited, "waiting for the agent to reconcile the new slice");
    assert_eq!(
        (after.frontends, after.backends),
        (1, 2),
        "agent status after removing echo-c: {after:?}"
    );

    check_table(
        &node,
        &[
            Expect {
                source: CLIENT,
                destination: vip(ECHO_PORT),
                answered_by: &["echo-a", "echo-b"],
                tries: TRIES_FOR_ALL,
            },
            // echo-c is still up: only the slice keeps traffic away from it.
            Expect {
                source: CLIENT,
                destination: pod_addr(2, ECHO_TARGET_PORT),
                answered_by: &["echo-c"],
                tries: 5,
            },
        ],
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn ports_and_addresses_no_service_declares_are_not_rewritten() {
    let mut node = echo_node();
    // Servers on port 81 of every backend would answer if the program rewrote
    // only the address of a connect to VIP:81, and the 8080 ones if it mapped
    // the undeclared port onto the Service's targetPort.
    for (pod, _) in ECHO_PODS {
        let served = node.serve(pod, &format!("{pod}:81"), 81);
        node.expect(served, "starting a port-81 server");
    }
    write_echo_service(&node);
    let started = node.start_agent();
    node.expect(started, "starting weir-agent");

    // The node has no route to 10.96.0.0/12, so an attempt that is not
    // rewritten fails (ICMP unreachable from the node, or the attempt's timeout).
    check_table(
        &node,
        &[
            Expect {
                source: CLIENT,
                destination: vip(81),
                answered_by: &[],
                tries: 5,
            },
            Expect {
                source: CLIENT,
                destination: SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 11), ECHO_PORT),
                answered_by: &[],
                tries: 5,
            },
            // Control: the same VIP on its declared port, and a pod's port 81
            // dialled directly, both work.
            Expect {
                source: CLIENT,
                destination: vip(ECHO_PORT),
                answered_by: ECHO_ALL,
                tries: TRIES_FOR_ALL,
            },
            Expect {
                source: CLIENT,
                destination: pod_addr(0, 81),
                answered_by: &["echo-a:81"],
                tries: 5,
            },
        ],
    );
}
