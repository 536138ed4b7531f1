//! `weir-cni` driven exactly as a runtime does: ADD, DEL, DEL again, and garbage.

use std::path::Path;

use weir_tests::{CniCommand, Netns, Node};

use crate::common::empty_node;

/// CNI spec 1.1, "Well-known Error Codes": 6 is "failed to decode content",
/// e.g. a network config that is not JSON. (4 is for bad `CNI_*` variables.)
const DECODE_FAILURE: u32 = 6;

/// Host veth names weir-cni creates start with this.
const HOST_VETH_PREFIX: &str = "weir";

fn weir_links(node: &Node) -> Vec<String> {
    let links = node.expect(node.netns().links(), "listing node links");
    links
        .into_iter()
        .map(|link| link.ifname)
        .filter(|name| name.starts_with(HOST_VETH_PREFIX))
        .collect()
}

fn routes_to(netns: &Netns, dst: &str) -> Vec<String> {
    let routes = netns
        .routes()
        .unwrap_or_else(|err| panic!("routes of {}: {err:#}", netns.name()));
    routes
        .into_iter()
        .filter(|route| route.dst == dst)
        .map(|route| format!("{route:?}"))
        .collect()
}

fn allocation(node: &Node, ip: &str) -> std::path::PathBuf {
    node.ipam_dir().join("weir").join(ip)
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn add_then_del_leaves_nothing_behind_and_del_is_idempotent() {
    let mut node = empty_node();
    let sandbox = node.add_sandbox("pod");
    let sandbox = node.expect(sandbox, "creating the pod netns");
    let container_id = node.container_id("pod");
    let netns_path = sandbox.path();

    // ADD: the result, and that it is true on the node and in the pod.
    let result = node.expect(node.cni().add(&container_id, &netns_path), "weir-cni ADD");
    assert_eq!(result.cni_version, "1.1.0");
    let ip = node.expect(result.pod_ip(), "the pod IP");
    assert_eq!(
        ip.to_string(),
        "10.244.1.2",
        "first address of a fresh store: {result:?}"
    );
    assert_eq!(result.ips[0].address, "10.244.1.2/32");
    assert_eq!(result.ips[0].gateway.as_deref(), Some("169.254.1.1"));
    let host = node
        .expect(result.host_interface(), "host interface")
        .name
        .clone();
    assert!(host.starts_with(HOST_VETH_PREFIX), "host veth {host:?}");
    let pod_interface = result
        .interfaces
        .iter()
        .find(|interface| interface.sandbox.is_some());
    let pod_interface = pod_interface.unwrap_or_else(|| panic!("no sandbox interface in {result:?}"));
    assert_eq!(pod_interface.name, "eth0");
    assert_eq!(
        pod_interface.sandbox.as_deref().map(Path::new),
        Some(netns_path.as_path())
    );
    assert!(
        result
            .routes
            .iter()
            .any(|route| route.dst == "0.0.0.0/0" && route.gw.as_deref() == Some("169.254.1.1")),
        "no default route via 169.254.1.1 in {result:?}"
    );

    assert_eq!(
        weir_links(&node),
        std::slice::from_ref(&host),
        "node links after ADD"
    );
    let eth0 = node
        .expect(sandbox.link("eth0"), "pod links")
        .expect("no eth0 in the pod after ADD");
    assert!(
        eth0.flags.iter().any(|flag| flag == "UP"),
        "eth0 is down: {eth0:?}"
    );
    let pod_routes = node.expect(sandbox.routes(), "pod routes");
    assert!(
        pod_routes
            .iter()
            .any(|route| route.dst == "default" && route.gateway.as_deref() == Some("169.254.1.1")),
        "pod routes: {pod_routes:?}"
    );
    let node_routes = routes_to(node.netns(), "10.244.1.2");
    assert_eq!(
        node_routes.len(),
        1,
        "node route to the pod after ADD: {node_routes:?}"
    );
    assert!(
        allocation(&node, "10.244.1.2").is_file(),
        "no IPAM allocation file after ADD"
    );

    // DEL: every trace gone.
    node.expect(node.cni().del(&container_id, &netns_path), "weir-cni DEL");
    assert_eq!(
        weir_links(&node),
        Vec::<String>::new(),
        "host veth left after DEL"
    );
    assert!(
        node.expect(sandbox.link("eth0"), "pod links").is_none(),
        "eth0 left in the pod after DEL"
    );
    assert_eq!(
        routes_to(node.netns(), "10.244.1.2"),
        Vec::<String>::new(),
        "node route left after DEL"
    );
    assert!(
        !allocation(&node, "10.244.1.2").exists(),
        "IPAM allocation file left after DEL"
    );

    // A runtime retries DEL; the spec says that must succeed.
    node.expect(node.cni().del(&container_id, &netns_path), "second weir-cni DEL");
    assert_eq!(weir_links(&node), Vec::<String>::new());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn garbage_config_is_rejected_with_a_decode_error_and_changes_nothing() {
    let mut node = empty_node();
    let sandbox = node.add_sandbox("pod");
    let sandbox = node.expect(sandbox, "creating the pod netns");
    let container_id = node.container_id("pod");
    let garbage: [&[u8]; 2] = [
        b"this is not a network config\n",
        br#"{"cniVersion": "1.1.0", "name": "#,
    ];
    for stdin in garbage {
        let shown = String::from_utf8_lossy(stdin);
        let output = node
            .cni()
            .exec(CniCommand::Add, &container_id, &sandbox.path(), stdin);
        let output = node.expect(output, "running weir-cni");
        assert!(
            !output.success,
            "weir-cni ADD accepted {shown:?}: {}",
            output.stdout
        );
        let error = output.error().unwrap_or_else(|| {
            panic!(
                "weir-cni printed no error object for {shown:?}\n  stdout: {}\n  stderr: {}",
                output.stdout, output.stderr
            )
        });
        assert_eq!(error.code, DECODE_FAILURE, "error code for {shown:?}: {error:?}");
        assert!(!error.msg.is_empty(), "empty error message for {shown:?}");
    }
    assert_eq!(
        weir_links(&node),
        Vec::<String>::new(),
        "a rejected ADD created a link"
    );
    assert!(
        node.expect(sandbox.link("eth0"), "pod links").is_none(),
        "a rejected ADD created eth0"
    );
    assert!(
        !allocation(&node, "10.244.1.2").exists(),
        "a rejected ADD allocated an address"
    );
}
