//! `cargo xtask lab`: a one-node cluster in network namespaces, and a ClusterIP
//! answered by weir's eBPF `connect4` program.
//!
//! The node is a netns with no link to the outside; echo-a, echo-b, echo-c and a
//! client pod are attached to it by the real `weir-cni`, the agent loads
//! `examples/lab/*.yaml`, and the client dials the Service ten times. The table it
//! prints shows which pod answered each connection. Everything is torn down at
//! the end — after an error or Ctrl-C too.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use weir_tests::{Binaries, Node, Replies, RunKind, cleanup_leftovers};

/// Requests the client makes.
const REQUESTS: u32 = 10;

/// Per-request limit; a rewritten connect is answered at once.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// Fewest distinct backends that show the load balancing works.
const MIN_BACKENDS: usize = 2;

/// The pod the requests come from.
const CLIENT: &str = "client";

/// What the lab reads from `examples/lab`.
struct Example {
    /// `default/echo`.
    service: String,
    cluster_ip: Ipv4Addr,
    port: u16,
    port_name: String,
    target_port: u16,
    /// Backend pods and the addresses the EndpointSlice gives them, in order.
    backends: Vec<(String, Ipv4Addr)>,
}

/// Runs the lab; see the module docs.
pub fn run(workspace_root: &Path, bin_dir: &Path) -> Result<()> {
    let interrupted = install_interrupt_handler()?;
    let examples = workspace_root.join("examples/lab");
    let example = read_example(&examples)?;

    println!(
        "\nweir lab: one node, {}, a ClusterIP through eBPF\n",
        count(example.backends.len(), "backend")
    );
    let removed = cleanup_leftovers().context("removing leftovers of crashed runs")?;
    if !removed.is_empty() {
        step(&format!(
            "removed leftovers of crashed runs: {}",
            removed.join(", ")
        ));
    }

    let mut node = Node::new(Binaries::in_dir(bin_dir), RunKind::Lab)?;
    let outcome = run_on(&mut node, &example, &examples, &interrupted);
    if outcome.is_err() && !interrupted.load(Ordering::SeqCst) {
        println!("\n{}\n", node.diagnostics());
    }
    let teardown = node.teardown();
    match &teardown {
        Ok(()) => step("torn down: pods (CNI DEL), netns, cgroups, bpffs, work directory"),
        Err(err) => println!("  ✗ teardown incomplete: {err:#}"),
    }
    println!();
    // A Ctrl-C also kills the agent and probes, so the step that failed may
    // blame them; the interrupt is the real reason.
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted; the lab was torn down");
    }
    outcome?;
    teardown
}

/// Everything between building the node and tearing it down.
fn run_on(node: &mut Node, example: &Example, examples: &Path, interrupted: &AtomicBool) -> Result<()> {
    let check = || -> Result<()> {
        ensure!(!interrupted.load(Ordering::SeqCst), "interrupted");
        Ok(())
    };
    step(&format!(
        "node netns {} (ip_forward on, no uplink), cgroup {}",
        node.netns().name(),
        node.cgroup().path().display()
    ));
    check()?;

    let pods = example
        .backends
        .iter()
        .map(|(name, ip)| (name.as_str(), Some(*ip)));
    for (name, expected) in pods.chain([(CLIENT, None)]) {
        let pod = node.add_pod(name)?;
        if let Some(expected) = expected {
            ensure!(
                pod.ip == expected,
                "weir-cni gave {name} {}, but examples/lab/endpointslice.yaml expects {expected}",
                pod.ip
            );
        }
        let host = pod
            .cni_result
            .host_interface()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        step(&format!(
            "pod {name:<8} {:<12} eth0 ⇄ {host} (weir-cni ADD)",
            pod.ip
        ));
        check()?;
    }

    for (name, _) in &example.backends {
        node.serve(name, name, example.target_port)?;
        check()?;
    }
    let names: Vec<&str> = example.backends.iter().map(|(name, _)| name.as_str()).collect();
    step(&format!(
        "echo servers on 0.0.0.0:{} in {}",
        example.target_port,
        names.join(", ")
    ));

    let copied = node.manifests().copy_from(examples)?;
    step(&format!(
        "manifests {} → {}",
        copied.join(", "),
        node.manifests().path().display()
    ));
    check()?;
    let status = node.start_agent()?;
    step(&format!(
        "weir-agent reconciled generation {}: {}, {}; connect4 on the node cgroup",
        status.generation,
        count(status.frontends, "frontend"),
        count(status.backends, "backend")
    ));
    check()?;

    let target = SocketAddrV4::new(example.cluster_ip, example.port);
    println!(
        "\n  {CLIENT} → {target}  (Service {}, port {} → targetPort {})\n",
        example.service, example.port_name, example.target_port
    );
    let replies = node.connect(CLIENT, target, REQUESTS, REQUEST_TIMEOUT)?;
    check()?;
    report(&replies, &example.backends, example.target_port)
}

/// Prints the table and the summary; fails if too few backends answered.
fn report(replies: &Replies, backends: &[(String, Ipv4Addr)], target_port: u16) -> Result<()> {
    let address: BTreeMap<&str, Ipv4Addr> = backends.iter().map(|(name, ip)| (name.as_str(), *ip)).collect();
    println!("      #  answered    backend");
    println!("    ---  ----------  ----------------");
    for (index, attempt) in replies.attempts.iter().enumerate() {
        match attempt {
            Ok(name) => {
                let backend = address.get(name.as_str()).map_or_else(
                    || "(not a backend!)".to_owned(),
                    |ip| format!("{ip}:{target_port}"),
                );
                println!("    {:>3}  {name:<10}  {backend}", index + 1);
            }
            Err(error) => println!("    {:>3}  {:<10}  {error}", index + 1, "✗ failed"),
        }
    }

    let counts = replies.counts();
    println!();
    for (name, _) in backends {
        let count = counts.get(name.as_str()).copied().unwrap_or(0);
        println!("    {name:<10} {count:>2}  {}", "█".repeat(count));
    }
    let answered: usize = counts.values().sum();
    let strangers: Vec<&&str> = counts
        .keys()
        .filter(|name| !address.contains_key(*name))
        .collect();
    println!(
        "\n  {} answered {answered}/{} requests through eBPF connect4\n",
        count(counts.len(), "distinct backend"),
        replies.attempts.len()
    );
    ensure!(
        strangers.is_empty(),
        "servers that are no backend answered: {strangers:?}"
    );
    if counts.len() < MIN_BACKENDS {
        bail!(
            "only {} distinct backend(s) answered (at least {MIN_BACKENDS} expected); failures: {:?}",
            counts.len(),
            replies.failures()
        );
    }
    Ok(())
}

/// `1 backend`, `3 backends`.
fn count<N: Copy + std::fmt::Display + PartialEq + From<u8>>(n: N, noun: &str) -> String {
    if n == N::from(1) {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One line of progress.
fn step(text: &str) {
    println!("  ✓ {text}");
}

/// Ctrl-C (and SIGTERM) set a flag the lab checks between steps; teardown then
/// runs on the normal path. The terminal's SIGINT also reaches the agent and the
/// probes (same process group), so no step waits long for them.
fn install_interrupt_handler() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("\n  … still tearing down, please wait");
        } else {
            eprintln!("\n  interrupted: tearing the lab down");
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

/// Reads the Service and EndpointSlice of `examples/lab`.
fn read_example(dir: &Path) -> Result<Example> {
    let load = |name: &str| -> Result<serde_yaml::Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let service = load("service.yaml")?;
    let slice = load("endpointslice.yaml")?;
    let text = |value: &serde_yaml::Value, what: &str| -> Result<String> {
        value
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("examples/lab: no {what}"))
    };
    let number = |value: &serde_yaml::Value, what: &str| -> Result<u16> {
        let number = value
            .as_u64()
            .with_context(|| format!("examples/lab: no {what}"))?;
        u16::try_from(number).with_context(|| format!("examples/lab: {what} {number}"))
    };
    let port = &service["spec"]["ports"][0];
    let mut backends = Vec::new();
    for endpoint in slice["endpoints"]
        .as_sequence()
        .context("examples/lab: no endpoints")?
    {
        let name = text(&endpoint["targetRef"]["name"], "endpoint targetRef name")?;
        let ip = text(&endpoint["addresses"][0], "endpoint address")?;
        backends.push((
            name,
            ip.parse().with_context(|| format!("endpoint address {ip}"))?,
        ));
    }
    Ok(Example {
        service: format!(
            "{}/{}",
            text(&service["metadata"]["namespace"], "Service namespace")?,
            text(&service["metadata"]["name"], "Service name")?
        ),
        cluster_ip: text(&service["spec"]["clusterIP"], "clusterIP")?
            .parse()
            .context("clusterIP")?,
        port: number(&port["port"], "Service port")?,
        port_name: text(&port["name"], "Service port name")?,
        target_port: number(&slice["ports"][0]["port"], "EndpointSlice port")?,
        backends,
    })
}
