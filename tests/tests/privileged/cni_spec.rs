//! weir-cni against the CNI 1.1 spec, driven as a runtime drives it: every
//! supported version through ADD → CHECK → DEL → DEL, parallel ADDs, a full
//! pod CIDR, the error codes, and GC after plugins killed mid-ADD.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::{CniCommand, Node};

use crate::common::empty_node;

/// A pod netns on `node` (removed with the node).
fn sandbox(node: &mut Node, name: &str) -> weir_tests::Netns {
    let created = node.add_sandbox(name);
    node.expect(created, "creating a pod netns")
}

/// The config the node's runtime stand-in sends, with `changes` applied.
fn config(node: &Node, changes: &[(&str, Value)]) -> Vec<u8> {
    let mut config: Value = serde_json::from_str(node.cni().config()).unwrap();
    for (key, value) in changes {
        config[*key] = value.clone();
    }
    config.to_string().into_bytes()
}

fn allocations(node: &Node) -> BTreeSet<String> {
    match std::fs::read_dir(node.ipam_dir().join("weir")) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn weir_links(node: &Node) -> BTreeSet<String> {
    let links = node.expect(node.netns().links(), "listing node links");
    links
        .into_iter()
        .map(|l| l.ifname)
        .filter(|n| n.starts_with("weir"))
        .collect()
}

fn code(stdout: &str) -> Option<u64> {
    serde_json::from_str::<Value>(stdout).ok()?.get("code")?.as_u64()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn every_version_goes_through_add_check_del_del() {
    let mut node = empty_node();
    for (n, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let pod = sandbox(&mut node, &format!("v{n}"));
        let id = node.container_id(&format!("v{n}"));
        let conf = config(&node, &[("cniVersion", json!(version))]);
        let add = node.expect(node.cni().exec(CniCommand::Add, &id, &pod.path(), &conf), "ADD");
        assert!(add.success, "{version} ADD: {}", add.stdout);
        let result: Value = serde_json::from_str(&add.stdout).unwrap();
        assert_eq!(result["cniVersion"], json!(version));
        if version == "0.4.0" {
            assert_eq!(
                result["ips"][0]["version"],
                json!("4"),
                "0.4.0 results tag the IP version"
            );
        }
        let with_prev = config(
            &node,
            &[("cniVersion", json!(version)), ("prevResult", result.clone())],
        );
        let check = node.expect(
            node.cni().exec(CniCommand::Check, &id, &pod.path(), &with_prev),
            "CHECK",
        );
        assert!(check.success, "{version} CHECK after ADD: {}", check.stdout);
        for round in ["DEL", "second DEL"] {
            let del = node.expect(
                node.cni().exec(CniCommand::Del, &id, &pod.path(), &with_prev),
                "DEL",
            );
            assert!(del.success, "{version} {round}: {}", del.stdout);
        }
        let check = node.expect(
            node.cni().exec(CniCommand::Check, &id, &pod.path(), &with_prev),
            "CHECK",
        );
        assert!(!check.success, "{version} CHECK after DEL must fail");
    }
    assert_eq!(allocations(&node), BTreeSet::new());
    assert_eq!(weir_links(&node), BTreeSet::new());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sixty_four_parallel_adds_get_distinct_addresses_and_working_pods() {
    let mut node = empty_node();
    let pods: Vec<(String, PathBuf)> = (0..64)
        .map(|i| {
            let pod = sandbox(&mut node, &format!("p{i}"));
            (node.container_id(&format!("p{i}")), pod.path())
        })
        .collect();
    let conf = config(&node, &[]);
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(id, netns)| {
                let (node, conf) = (&node, &conf);
                scope.spawn(move || {
                    node.cni()
                        .exec(CniCommand::Add, id, netns, conf)
                        .expect("running ADD")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let out = h.join().unwrap();
                assert!(out.success, "parallel ADD: {}", out.stdout);
                serde_json::from_str(&out.stdout).unwrap()
            })
            .collect()
    });
    let ips: BTreeSet<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 64, "64 distinct addresses");
    assert_eq!(allocations(&node).len(), 64);
    // Working: CHECK verifies each pod's link, address and routes for real.
    for ((id, netns), result) in pods.iter().zip(&results) {
        let conf = config(&node, &[("prevResult", result.clone())]);
        let check = node.expect(node.cni().exec(CniCommand::Check, id, netns, &conf), "CHECK");
        assert!(check.success, "CHECK {id}: {}", check.stdout);
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_full_pod_cidr_is_a_clean_error_and_leaks_nothing() {
    let mut node = empty_node();
    // A /29: .0 network, .1 the node, .7 broadcast: five pod addresses.
    let conf = config(&node, &[("subnet", json!("10.244.9.0/29"))]);
    for i in 0..5 {
        let pod = sandbox(&mut node, &format!("f{i}"));
        let out = node.expect(
            node.cni().exec(
                CniCommand::Add,
                &node.container_id(&format!("f{i}")),
                &pod.path(),
                &conf,
            ),
            "ADD",
        );
        assert!(out.success, "ADD {i}: {}", out.stdout);
    }
    let pod = sandbox(&mut node, "f5");
    let links_before = weir_links(&node);
    let out = node.expect(
        node.cni()
            .exec(CniCommand::Add, &node.container_id("f5"), &pod.path(), &conf),
        "ADD",
    );
    assert!(!out.success);
    assert_eq!(code(&out.stdout), Some(101), "{}", out.stdout);
    assert_eq!(weir_links(&node), links_before, "the failed ADD left no link");
    assert_eq!(allocations(&node).len(), 5);
}

/// Runs weir-cni with exactly `env` (no other CNI variable) in the node.
fn run_raw(node: &Node, env: &[(&str, &str)], stdin: &[u8]) -> (bool, String) {
    let plugin = bin_dir().join("weir-cni");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", node.netns().path().display()))
        .arg(&plugin)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("starting weir-cni");
    {
        use std::io::Write as _;
        let _ = child.stdin.take().unwrap().write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn bin_dir() -> PathBuf {
    std::env::var_os(weir_tests::BIN_DIR_ENV).map_or_else(|| PathBuf::from("target/debug"), PathBuf::from)
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bad_environment_gets_the_right_codes_and_changes_nothing() {
    let mut node = empty_node();
    let pod = sandbox(&mut node, "e");
    let netns = pod.path().display().to_string();
    let conf = config(&node, &[]);
    let base = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "env-test"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "missing CNI_CONTAINERID",
            base.iter()
                .copied()
                .filter(|(k, _)| *k != "CNI_CONTAINERID")
                .chain([("CNI_NETNS", netns.as_str())])
                .collect(),
        ),
        (
            "CNI_NETNS that does not exist",
            base.iter()
                .copied()
                .chain([("CNI_NETNS", "/run/netns/weir-no-such-netns")])
                .collect(),
        ),
        (
            "an ifname longer than IFNAMSIZ",
            base.iter()
                .copied()
                .map(|(k, v)| {
                    if k == "CNI_IFNAME" {
                        (k, "an-ifname-too-long")
                    } else {
                        (k, v)
                    }
                })
                .chain([("CNI_NETNS", netns.as_str())])
                .collect(),
        ),
    ];
    for (what, env) in cases {
        let (success, stdout) = run_raw(&node, &env, &conf);
        assert!(!success, "{what}");
        // Spec 1.1: 4 = "invalid necessary environment variables".
        assert_eq!(code(&stdout), Some(4), "{what}: {stdout}");
    }
    assert_eq!(allocations(&node), BTreeSet::new());
    assert_eq!(weir_links(&node), BTreeSet::new());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn status_reports_not_ready_until_the_node_has_a_subnet() {
    let node = empty_node();
    let mut conf: Value = serde_json::from_str(node.cni().config()).unwrap();
    let (ok, _) = run_raw(
        &node,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")],
        conf.to_string().as_bytes(),
    );
    assert!(ok, "STATUS with a subnet succeeds");
    conf.as_object_mut().unwrap().remove("subnet");
    let (ok, stdout) = run_raw(
        &node,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")],
        conf.to_string().as_bytes(),
    );
    assert!(!ok);
    assert_eq!(code(&stdout), Some(50), "{stdout}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn gc_after_adds_killed_midway_leaks_nothing_and_keeps_valid_attachments() {
    let mut node = empty_node();
    let conf = config(&node, &[]);
    // One attachment that completes and stays valid.
    let keep = sandbox(&mut node, "keep");
    let keep_id = node.container_id("keep");
    let out = node.expect(
        node.cni().exec(CniCommand::Add, &keep_id, &keep.path(), &conf),
        "ADD",
    );
    assert!(out.success, "{}", out.stdout);
    let kept_ip = serde_json::from_str::<Value>(&out.stdout).unwrap()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // Thirty ADDs, each killed after a different delay (0–29 ms): some die
    // before reserving, some between reservation and link, some after.
    for i in 0..30u64 {
        let pod = sandbox(&mut node, &format!("k{i}"));
        let id = node.container_id(&format!("k{i}"));
        kill_add_after(&node, &id, &pod.path(), &conf, Duration::from_millis(i));
    }
    let gc = config(
        &node,
        &[(
            "cni.dev/valid-attachments",
            json!([{"containerID": keep_id, "ifname": "eth0"}]),
        )],
    );
    let out = node.expect(
        node.cni()
            .exec(CniCommand::Gc, "unused", Path::new("/nonexistent"), &gc),
        "GC",
    );
    assert!(out.success, "GC: {}", out.stdout);
    assert_eq!(
        allocations(&node),
        BTreeSet::from([kept_ip]),
        "only the valid attachment keeps an address"
    );
    assert_eq!(
        weir_links(&node).len(),
        1,
        "only the valid attachment keeps a veth: {:?}",
        weir_links(&node)
    );
}

/// Starts an ADD like a runtime and SIGKILLs it after `delay`.
fn kill_add_after(node: &Node, id: &str, netns: &Path, conf: &[u8], delay: Duration) {
    let plugin = bin_dir().join("weir-cni");
    let netns = netns.display().to_string();
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node.netns().path().display()))
        .arg(&plugin)
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_NETNS", &netns),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting weir-cni");
    {
        use std::io::Write as _;
        let _ = child.stdin.take().unwrap().write_all(conf);
    }
    std::thread::sleep(delay);
    // nsenter execs the plugin in place, so this is the plugin's pid.
    let _ = child.kill();
    let _ = child.wait();
}
