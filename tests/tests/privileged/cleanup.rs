//! `weir-agent cleanup` leaves a node as it was before the agent first
//! started: every observable piece of node state is snapshotted before the
//! agent runs, the agent programs Services, routes, the conflist and the
//! pods' veths, is stopped (its datapath stays), `cleanup` runs with the
//! agent's own flags — and the snapshot is taken again and compared. The
//! links the agent pinned are checked to be gone from the kernel by id.
//! (`cleanup --kube-proxy` is tested with the rest of kube-proxy
//! replacement mode, in `kube_proxy_free.rs`.)

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::programs::links::{FdLink, PinnedLink};
use weir_tests::Node;
use weir_tests::cmd::{nsenter, run_command, run_in_netns};

use crate::common::{
    CLIENT, ECHO_PODS, ECHO_PORT, ECHO_TARGET_PORT, ECHO_VIP, Expect, TRIES_FOR_ALL, binaries, check_table,
    echo_node, write_echo_service,
};

/// The Node objects the agent reads: this node (the standalone node's pod
/// CIDR) and another, reached through a host-gw route on the uplink.
const NODES_YAML: &str = "apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 198.18.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 198.18.0.12}]}
";

/// Another plugin's conflist, there before weir and after it.
const OTHER_CONFLIST: &str = "99-other.conflist";

fn vip(answered_by: &'static [&'static str], tries: u32) -> Expect<'static> {
    Expect {
        source: CLIENT,
        destination: SocketAddrV4::new(ECHO_VIP, ECHO_PORT),
        answered_by,
        tries,
    }
}

/// The flags the agent ran with beyond what the harness passes, and the
/// harness's own (the cleanup needs every path the agent used).
fn agent_flags(node: &Node, conf_dir: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    [
        "--node-name",
        "node-1",
        "--cni-conf-dir",
        &path(conf_dir),
        "--cni-data-dir",
        &path(&node.ipam_dir()),
        "--device",
        "eth0",
        "--service-cidr",
        "10.96.0.0/12",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn harness_flags(node: &Node) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--manifests".into(),
        path(node.manifests().path()),
        "--bpffs".into(),
        path(node.bpffs_path()),
        "--cgroup".into(),
        path(node.cgroup().path()),
        "--status-file".into(),
        path(&node.run_dir().join("agent-status.json")),
        "--verdict-socket".into(),
        path(&node.verdict_socket()),
    ]
}

/// `weir-agent ARGS` in the node netns; its stdout, panicking on failure.
pub(crate) fn weir_agent(node: &Node, args: &[String]) -> String {
    let mut command = nsenter(&node.netns().path(), &binaries().agent);
    command.args(args);
    node.expect(run_command(&mut command), "running weir-agent")
}

/// `program args` in the node netns, for snapshots.
pub(crate) fn in_node(node: &Node, program: &str, args: &[&str]) -> String {
    node.expect(
        run_in_netns(&node.netns().path(), program, args),
        &format!("running {program} {}", args.join(" ")),
    )
}

/// Every observable piece of node state weir could touch, as text.
fn snapshot(node: &Node, dirs: &[&Path]) -> String {
    let mut out = String::new();
    let mut section = |name: &str, text: String| {
        let _ = writeln!(out, "== {name}\n{}", text.trim_end());
    };
    section("links", in_node(node, "ip", &["-d", "link", "show"]));
    section("addresses", in_node(node, "ip", &["addr", "show"]));
    section(
        "ipv4 routes",
        in_node(node, "ip", &["-4", "route", "show", "table", "all"]),
    );
    section(
        "ipv6 routes",
        in_node(node, "ip", &["-6", "route", "show", "table", "all"]),
    );
    section("rules", in_node(node, "ip", &["rule", "show"]));
    section(
        "ip_forward",
        in_node(node, "cat", &["/proc/sys/net/ipv4/ip_forward"]),
    );
    // Counters and the generation comment change by themselves.
    let iptables: Vec<String> = in_node(node, "iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect();
    section("iptables", iptables.join("\n"));
    section("nftables", in_node(node, "nft", &["list", "ruleset"]));
    section("bpffs", tree(node.bpffs_path()));
    for dir in dirs {
        section(&dir.display().to_string(), tree(dir));
    }
    section("cgroups", tree_dirs(node.cgroup().path()));
    let mut run_dir: Vec<String> = std::fs::read_dir(node.run_dir())
        .unwrap_or_else(|e| panic!("listing {}: {e}", node.run_dir().display()))
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    run_dir.sort();
    section("work directory", run_dir.join("\n"));
    out
}

/// Every file below `dir` with its size, sorted.
fn tree(dir: &Path) -> String {
    let mut lines = Vec::new();
    walk(dir, dir, &mut lines, false);
    lines.sort();
    lines.join("\n")
}

/// Every directory below `dir`, sorted.
fn tree_dirs(dir: &Path) -> String {
    let mut lines = Vec::new();
    walk(dir, dir, &mut lines, true);
    lines.sort();
    lines.join("\n")
}

fn walk(root: &Path, dir: &Path, lines: &mut Vec<String>, dirs_only: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("an entry").path();
        let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if meta.is_dir() {
            lines.push(format!("{shown}/"));
            walk(root, &path, lines, dirs_only);
        } else if !dirs_only {
            lines.push(format!("{shown} {}", meta.len()));
        }
    }
}

/// Waits for IPv6 duplicate address detection on the fresh links to end:
/// their link-local addresses (and routes) change state by themselves.
fn settle(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_node(node, "ip", &["addr", "show"]).contains("tentative") {
        assert!(
            Instant::now() < deadline,
            "IPv6 addresses still tentative after 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Link pins under the node's bpffs.
pub(crate) fn pins(node: &Node) -> Vec<PathBuf> {
    match std::fs::read_dir(node.bpffs_path().join("links")) {
        Ok(entries) => entries.map(|e| e.expect("a pin").path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The kernel ids of the pinned links (the descriptors are closed again).
fn link_ids(pins: &[PathBuf]) -> BTreeSet<u32> {
    pins.iter()
        .map(|pin| {
            let link = PinnedLink::from_pin(pin).unwrap_or_else(|e| panic!("opening {}: {e}", pin.display()));
            let link = FdLink::from(link);
            link.info()
                .unwrap_or_else(|e| panic!("link info of {}: {e}", pin.display()))
                .id()
        })
        .collect()
}

fn live_link_ids() -> BTreeSet<u32> {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|info| info.id())
        .collect()
}

/// Line-by-line difference of two snapshots, for the failure message.
fn diff(before: &str, after: &str) -> String {
    let (b, a): (BTreeSet<&str>, BTreeSet<&str>) = (before.lines().collect(), after.lines().collect());
    let mut out = String::new();
    for line in b.difference(&a) {
        let _ = writeln!(out, "- {line}");
    }
    for line in a.difference(&b) {
        let _ = writeln!(out, "+ {line}");
    }
    out
}

/// The echo node with what a real node has before weir: an uplink (a veth
/// whose peer stays in the node netns: nothing leaves it), a CNI config
/// directory and a plugin directory holding another plugin's files, and
/// the objects the agent will read. Returns the two CNI directories.
fn prepared_node() -> (Node, PathBuf, PathBuf) {
    let node = echo_node();
    for args in [
        &["link", "add", "eth0", "type", "veth", "peer", "name", "wire"][..],
        &["addr", "add", "198.18.0.11/24", "dev", "eth0"],
        &["link", "set", "wire", "up"],
        &["link", "set", "eth0", "up"],
    ] {
        node.expect(node.netns().ip(args), "setting up the uplink");
    }
    let conf_dir = node.run_dir().join("net.d");
    std::fs::create_dir_all(&conf_dir).expect("creating the CNI conf dir");
    std::fs::write(conf_dir.join(OTHER_CONFLIST), "{}\n").expect("writing another conflist");
    let bin_dir = node.run_dir().join("opt-cni-bin");
    std::fs::create_dir_all(&bin_dir).expect("creating the CNI bin dir");
    std::fs::write(bin_dir.join("loopback"), "another plugin").expect("writing another plugin");
    write_echo_service(&node);
    node.expect(
        node.manifests().write("nodes.yaml", NODES_YAML),
        "writing the Nodes",
    );
    settle(&node);
    (node, conf_dir, bin_dir)
}

/// Waits for the agent to have attached everywhere; returns its link ids.
fn wait_programmed(node: &Node, dirs: &[&Path]) -> (usize, BTreeSet<u32>) {
    // 4 socket-LB hooks on the cgroup, 2 on the uplink, 2 per pod veth.
    let expected_pins = 4 + 2 + 2 * (ECHO_PODS.len() + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pins(node).len() < expected_pins && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pinned = pins(node);
    assert_eq!(pinned.len(), expected_pins, "pinned links: {pinned:?}");
    let programmed = snapshot(node, dirs);
    for sign in [
        "proto 87",
        "10-weir.conflist",
        "weir_lb4_services_v1",
        "agent-status.json",
    ] {
        assert!(
            programmed.contains(sign),
            "{sign} missing while the agent runs:\n{programmed}"
        );
    }
    (expected_pins, link_ids(&pinned))
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cleanup_leaves_the_node_as_before_the_agent_started() {
    let (mut node, conf_dir, bin_dir) = prepared_node();
    let dirs = [conf_dir.as_path(), bin_dir.as_path()];
    let before = snapshot(&node, &dirs);
    check_table(&node, &[vip(&[], 3)]);

    // The DaemonSet's init container: the plugin next to weir-agent, into
    // the runtime's directory.
    let bin_flag = ["--cni-bin-dir".to_owned(), bin_dir.display().to_string()];
    weir_agent(&node, &[&["install-cni".to_owned()][..], &bin_flag].concat());
    let installed = std::fs::read(bin_dir.join("weir-cni")).expect("reading the installed plugin");
    assert!(
        installed == std::fs::read(&binaries().cni).expect("reading weir-cni"),
        "install-cni did not install weir-cni"
    );

    let flags = agent_flags(&node, &conf_dir);
    node.agent_args_mut().extend(flags.iter().cloned());
    let started = node.start_agent();
    let status = node.expect(started, "starting weir-agent");
    assert_eq!(status.node_routes, 1, "one route to node-2's pods: {status:?}");
    check_table(&node, &[vip(&["echo-a", "echo-b", "echo-c"], TRIES_FOR_ALL)]);
    let (expected_pins, ids) = wait_programmed(&node, &dirs);

    let mut cleanup = vec!["cleanup".to_owned()];
    cleanup.extend(harness_flags(&node));
    cleanup.extend(flags);
    cleanup.extend(bin_flag);
    // Refused while the agent runs: nothing is pulled from under it.
    let mut refused = nsenter(&node.netns().path(), &binaries().agent);
    let refused = refused
        .args(&cleanup)
        .output()
        .expect("running weir-agent cleanup");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("a weir-agent is running"),
        "cleanup while the agent runs: {stderr}"
    );
    assert_eq!(pins(&node).len(), expected_pins);

    let stopped = node.stop_agent();
    assert!(node.expect(stopped, "stopping weir-agent").success());
    // The datapath outlives the agent until cleanup.
    check_table(&node, &[vip(&["echo-a", "echo-b", "echo-c"], TRIES_FOR_ALL)]);
    assert!(ids.is_subset(&live_link_ids()), "links went with the agent");

    let report = weir_agent(&node, &cleanup);
    for line in [
        "detached and unpinned link",
        "unpinned map",
        "deleted route 10.244.2.0/24",
        "deleted route 10.96.0.0/12",
        "10-weir.conflist",
        "opt-cni-bin/weir-cni",
    ] {
        assert!(
            report.contains(line),
            "cleanup did not report {line:?}:\n{report}"
        );
    }

    let after = snapshot(&node, &dirs);
    assert!(
        before == after,
        "the node differs from before the agent started:\n{}\nbefore:\n{before}\nafter:\n{after}",
        diff(&before, &after)
    );
    let live = live_link_ids();
    let left: Vec<_> = ids.intersection(&live).collect();
    assert_eq!(left, Vec::<&u32>::new(), "links still attached after cleanup");
    check_table(
        &node,
        &[
            vip(&[], 3),
            Expect {
                source: CLIENT,
                destination: SocketAddrV4::new(ECHO_PODS[0].1, ECHO_TARGET_PORT),
                answered_by: &["echo-a"],
                tries: 3,
            },
        ],
    );
    let again = weir_agent(&node, &cleanup);
    assert!(again.contains("nothing of weir found"), "second cleanup: {again}");
    assert_eq!(snapshot(&node, &dirs), before);
}
