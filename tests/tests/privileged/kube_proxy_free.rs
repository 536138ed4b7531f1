//! kube-proxy replacement mode: the agent reaches the API server at the
//! configured address when the kubeconfig's (here: the `kubernetes`
//! Service's ClusterIP, as in-cluster) is unreachable; it warns about
//! kube-proxy's rules at start; `weir-agent cleanup --kube-proxy` removes
//! kube-proxy-shaped iptables chains and nftables tables, and nothing else,
//! while the agent keeps running.

use std::time::Duration;

use weir_tests::cmd::nsenter;
use weir_tests::{API_SERVER_ADDRESS, API_SERVER_PORT, apiserver, kube};
use weir_tests::{Agent, AgentOptions, AgentPaths, Cgroup, Cluster, ClusterConfig, Node, RunKind};

use crate::cleanup::{in_node, pins, weir_agent};
use crate::common::{binaries, empty_node};

/// What the in-cluster configuration would name: the `kubernetes`
/// Service's ClusterIP, which nothing answers before weir programs it.
const CLUSTER_IP_SERVER: &str = "http://10.96.0.1:443";

/// An agent of node `node` started by hand with `kubeconfig` and `args`
/// (the harness's own agent of that node is stopped first).
fn start_agent(node: &Node, kubeconfig: &std::path::Path, args: &[String], log: &str) -> Agent {
    let paths = AgentPaths {
        manifests: node.manifests().path().to_owned(),
        bpffs: node.bpffs_path().to_owned(),
        attach_cgroup: node.cgroup().path().to_owned(),
        status: node.run_dir().join("agent-status.json"),
        log: node.run_dir().join("logs").join(log),
    };
    let _ = std::fs::remove_file(&paths.status);
    let options = AgentOptions {
        kubeconfig: Some(kubeconfig.to_owned()),
        extra_args: args.to_vec(),
        ..AgentOptions::default()
    };
    let own = Cgroup::existing(node.cgroup().path().join("weir-agent"));
    node.expect(
        Agent::start(&binaries().agent, &node.netns().path(), paths, &options, &own),
        "starting weir-agent by hand",
    )
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_agent_reaches_the_api_server_at_the_configured_address() {
    let config = ClusterConfig {
        nodes: 1,
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"));
    let kubeconfig = cluster.run_dir().join("kubeconfig-cluster-ip");
    cluster.expect(
        apiserver::write_kubeconfig(&kubeconfig, CLUSTER_IP_SERVER).map_err(anyhow::Error::from),
        "writing a kubeconfig naming the ClusterIP",
    );
    let node = cluster.node_mut("node-1").unwrap_or_else(|e| panic!("{e:#}"));
    let stopped = node.stop_agent();
    node.expect(stopped, "stopping the harness's agent");

    // Without an address to use instead, the agent never lists anything.
    let mut lost = start_agent(node, &kubeconfig, &[], "agent-cluster-ip.log");
    std::thread::sleep(Duration::from_secs(3));
    assert!(lost.is_running(), "the agent gave up instead of retrying");
    assert_eq!(
        lost.status(),
        None,
        "an agent without an API server reported a sync"
    );
    node.expect(lost.stop(), "stopping the agent without an API server");

    // With it, the same kubeconfig works: the watchers list and follow.
    let args = [
        "--api-server-host".to_owned(),
        API_SERVER_ADDRESS.to_string(),
        "--api-server-port".to_owned(),
        API_SERVER_PORT.to_string(),
    ];
    let mut agent = start_agent(node, &kubeconfig, &args, "agent-api-server-host.log");
    let first = node.expect(
        agent.wait_for_generation(1, Duration::from_secs(30)),
        "the first sync",
    );
    let service = "apiVersion: v1
kind: Service
metadata: {name: probe, namespace: default}
spec:
  clusterIP: 10.96.0.60
  ports: [{name: http, port: 80}]
";
    let objects = kube::parse_documents(service).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "creating a Service");
    let node = cluster.node_mut("node-1").unwrap_or_else(|e| panic!("{e:#}"));
    let seen = agent.wait_for_status("the new Service", Duration::from_secs(30), |s| {
        s.frontends == first.frontends + 1
    });
    node.expect(seen, "the Service created after the start reaching the maps");
    let log =
        std::fs::read_to_string(node.run_dir().join("logs/agent-api-server-host.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("API server {API_SERVER_ADDRESS}:{API_SERVER_PORT}")),
        "the start log names the address in use:\n{log}"
    );
    node.expect(agent.stop(), "stopping the agent");
}

/// kube-proxy's shape (iptables mode): the chains, the jumps from the
/// built-in chains, DNAT and masquerade rules — and rules that are not
/// kube-proxy's (the kubelet's KUBE-FIREWALL, a plain MASQUERADE, a chain
/// of someone else's).
const KUBE_PROXY_RULES: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-EXT-TCOU7JCQXEZGVUNU - [0:0]
:SOMEONE-ELSE - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
-A SOMEONE-ELSE -p tcp --dport 9 -j RETURN
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp --dport 53 -m comment --comment "kube-system/kube-dns:dns cluster IP" -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -j KUBE-NODEPORTS
-A KUBE-SVC-TCOU7JCQXEZGVUNU -j KUBE-SEP-IT2ZTR26TO4XFPTO
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p udp -j DNAT --to-destination 10.244.1.5:53
-A KUBE-NODEPORTS -p tcp --dport 30080 -j KUBE-EXT-TCOU7JCQXEZGVUNU
-A KUBE-EXT-TCOU7JCQXEZGVUNU -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -i lo -j ACCEPT
-A KUBE-FIREWALL -d 127.0.0.0/8 ! -s 127.0.0.0/8 -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
"#;

/// kube-proxy's nftables mode (its tables) and a table of someone else's.
const NFT_RULES: &str = "table ip kube-proxy {
  chain services { }
  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
}
table ip6 kube-proxy {
  chain services { }
}
table inet someone-else {
  chain input { type filter hook input priority 0; policy accept; tcp dport 9 accept; }
}
";

/// What stays of the rules above: every line of the expected remainder.
const REMAINING: [&str; 6] = [
    ":SOMEONE-ELSE -",
    "-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
    "-A SOMEONE-ELSE -p tcp -m tcp --dport 9 -j RETURN",
    "-A INPUT -j KUBE-FIREWALL",
    "-A FORWARD -i lo -j ACCEPT",
    "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -j DROP",
];

fn restore(node: &Node, program: &str, args: &[&str], input: &str) {
    use std::io::Write as _;
    let mut command = nsenter(&node.netns().path(), program);
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing rules");
    let out = child.wait_with_output().expect("waiting");
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// kube-proxy's chain names (not the kubelet's KUBE-FIREWALL) in `text`.
fn kube_proxy_names(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .filter(|w| w.starts_with("KUBE-") && *w != "KUBE-FIREWALL")
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cleanup_kube_proxy_removes_its_chains_and_tables_only() {
    let mut node = empty_node();
    restore(&node, "iptables-restore", &[], KUBE_PROXY_RULES);
    restore(&node, "nft", &["-f", "-"], NFT_RULES);
    let saved = in_node(&node, "iptables-save", &[]);
    assert!(
        kube_proxy_names(&saved).len() > 10,
        "rules not installed:\n{saved}"
    );

    let started = node.start_agent();
    node.expect(started, "starting weir-agent");
    let log_path = node.run_dir().join("logs/agent.log");
    let log = std::fs::read_to_string(&log_path).expect("reading the agent log");
    let warning = "kube-proxy's rules are on this node";
    let line = log
        .lines()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| panic!("no kube-proxy warning in the agent log:\n{log}"));
    for named in [
        "table nat: ",
        "KUBE-",
        "nftables table ip kube-proxy",
        "weir-agent cleanup --kube-proxy",
    ] {
        assert!(
            line.contains(named),
            "the warning does not name {named:?}: {line}"
        );
    }

    // While the agent runs: only kube-proxy's rules go, weir's links stay.
    let links_before = pins(&node).len();
    let report = weir_agent(&node, &["cleanup".to_owned(), "--kube-proxy".to_owned()]);
    assert!(report.contains("removed kube-proxy's"), "{report}");
    let saved = in_node(&node, "iptables-save", &[]);
    let left = kube_proxy_names(&saved);
    assert!(left.is_empty(), "kube-proxy chains left: {left:?}\n{saved}");
    for line in REMAINING {
        assert!(
            saved.lines().any(|l| l.starts_with(line)),
            "{line:?} was removed:\n{saved}"
        );
    }
    let tables = in_node(&node, "nft", &["list", "tables"]);
    assert!(!tables.contains("kube-proxy"), "{tables}");
    assert!(tables.contains("table inet someone-else"), "{tables}");
    assert_eq!(pins(&node).len(), links_before, "weir's links changed");
    assert_eq!(links_before, 4);

    let again = weir_agent(&node, &["cleanup".to_owned(), "--kube-proxy".to_owned()]);
    assert!(again.contains("no kube-proxy chains or tables found"), "{again}");
    // A restarted agent has nothing to warn about.
    let stopped = node.stop_agent();
    node.expect(stopped, "stopping weir-agent");
    let started = node.start_agent();
    node.expect(started, "restarting weir-agent");
    let log = std::fs::read_to_string(&log_path).expect("reading the agent log");
    assert_eq!(log.matches(warning).count(), 1, "{log}");
}
