//! The answers really come through the agent's eBPF programs: with their
//! links unpinned (what `weir-agent cleanup` does) or no Service in the maps
//! (empty manifests) there is no answer. A stopped agent leaves its programs
//! attached — the datapath outlives the agent, as iptables rules outlive
//! kube-proxy.

use std::net::SocketAddrV4;

use crate::common::{
    CLIENT, ECHO_PODS, ECHO_PORT, ECHO_TARGET_PORT, ECHO_VIP, Expect, TRIES_FOR_ALL, check_table, echo_node,
    echo_node_with_agent, write_echo_service,
};

const ECHO_ALL: &[&str] = &["echo-a", "echo-b", "echo-c"];

fn vip_row(answered_by: &'static [&'static str], tries: u32) -> Expect<'static> {
    Expect {
        source: CLIENT,
        destination: SocketAddrV4::new(ECHO_VIP, ECHO_PORT),
        answered_by,
        tries,
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_datapath_outlives_the_agent_until_its_link_pins_go() {
    let mut node = echo_node_with_agent();
    check_table(&node, &[vip_row(ECHO_ALL, TRIES_FOR_ALL)]);

    let stopped = node.stop_agent();
    let exit = node.expect(stopped, "stopping weir-agent");
    assert!(
        exit.success(),
        "weir-agent did not exit cleanly on SIGTERM: {exit}"
    );
    check_table(&node, &[vip_row(ECHO_ALL, TRIES_FOR_ALL)]);

    // Unpinning the links detaches the programs (no other reference holds
    // them): only the rewrite goes.
    let links = node.run_dir().join("bpffs/links");
    let pins: Vec<_> = std::fs::read_dir(&links)
        .unwrap_or_else(|e| panic!("reading {}: {e}", links.display()))
        .map(|entry| entry.expect("a pin").path())
        .collect();
    assert_eq!(pins.len(), 4, "one pinned link per socket-LB hook: {pins:?}");
    for pin in &pins {
        std::fs::remove_file(pin).unwrap_or_else(|e| panic!("removing {}: {e}", pin.display()));
    }
    check_table(
        &node,
        &[
            vip_row(&[], 5),
            // The pods themselves are fine: only the rewrite is gone.
            Expect {
                source: CLIENT,
                destination: SocketAddrV4::new(ECHO_PODS[0].1, ECHO_TARGET_PORT),
                answered_by: &["echo-a"],
                tries: 5,
            },
        ],
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_agent_without_manifests_rewrites_nothing_until_they_appear() {
    let mut node = echo_node();
    let started = node.start_agent();
    let status = node.expect(started, "starting weir-agent on an empty directory");
    assert_eq!(
        (status.frontends, status.backends),
        (0, 0),
        "agent status with no manifests: {status:?}"
    );
    check_table(&node, &[vip_row(&[], 5)]);

    write_echo_service(&node);
    let loaded = node.wait_for_status("the echo Service and its 3 backends", |status| {
        status.frontends == 1 && status.backends == 3
    });
    node.expect(loaded, "waiting for the agent to load the echo Service");
    check_table(&node, &[vip_row(ECHO_ALL, TRIES_FOR_ALL)]);
}
