//! `cargo xtask lab` alone: the demo. Two nodes come up, `examples/lab` is
//! applied, the client requests the Service's ClusterIP and the table shows
//! which pod on which node answered each time; then a reachability matrix
//! shows every pod reaching every backend across nodes with its own address.
//! The finale ([`policy`]) applies a NetworkPolicy from
//! `examples/lab/policy` and shows who still gets in, before and after.
//! Everything is torn down at the end — after an error or Ctrl-C too.

mod policy;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use weir_tests::kube::{self, Object};
use weir_tests::{
    Binaries, Cluster, ClusterConfig, DEFAULT_NODES, EXTERNAL_ADDRESS, Origin, Protocol, Replies, RunKind,
    cleanup_leftovers,
};

use super::probe::{server_of, source_address};
use super::{agent_summary, count, install_interrupt_handler, print_changes, step};

/// Requests the client makes to the ClusterIP.
const REQUESTS: u32 = 10;

/// Per-request limit; a rewritten connect is answered at once.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// Fewest distinct backends that show the load balancing works.
const MIN_BACKENDS: usize = 2;

/// What the demo reads out of `examples/lab`.
struct Example {
    /// `demo/echo`.
    service: String,
    vip: SocketAddrV4,
    /// `http → targetPort http`.
    port_text: String,
    /// The pod the requests come from (the first one serving nothing).
    client: String,
    /// Backends (the Service's selected pods) with the TCP port they serve.
    backends: Vec<(String, u16)>,
}

/// Runs the demo; see the module docs.
pub fn run(root: &Path, bins: &Binaries) -> Result<()> {
    let interrupted = install_interrupt_handler()?;
    let examples = root.join("examples/lab");
    let objects = kube::read_paths(std::slice::from_ref(&examples))?;
    let example = Example::read(&objects)?;
    // Read now, so a broken policy file fails before anything is built.
    let policy_objects = kube::read_paths(&[root.join(policy::POLICY_DIR)])?;

    println!(
        "\nweir lab: two nodes on one fabric, an API server, pods by weir-cni, a ClusterIP through eBPF\n"
    );
    let removed = cleanup_leftovers().context("removing leftovers of crashed runs")?;
    if !removed.is_empty() {
        step(&format!(
            "removed leftovers of crashed runs: {}",
            removed.join(", ")
        ));
    }
    // The agents watch the API server stand-in (kube-rs list/watch), as on
    // a real cluster; every object below is applied to it.
    let config = ClusterConfig {
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = match Cluster::new(bins.clone(), RunKind::Lab, config) {
        Ok(cluster) => {
            if let Some(api) = cluster.api_server() {
                step(&format!(
                    "agents watch the API server at {} (kubeconfig {})",
                    api.url(),
                    api.kubeconfig().display()
                ));
            }
            cluster
        }
        // The agents got the terminal's SIGINT too; the half-built cluster
        // has been torn down by its drop.
        Err(_) if interrupted.load(Ordering::SeqCst) => bail!("interrupted; the lab was torn down"),
        Err(err) => return Err(err),
    };
    let outcome = run_on(&mut cluster, (objects, policy_objects), &example, &interrupted);
    if outcome.is_err() && !interrupted.load(Ordering::SeqCst) {
        println!("\n{}\n", cluster.diagnostics());
    }
    let teardown = cluster.teardown();
    match &teardown {
        Ok(()) => step("torn down: agents, pods (CNI DEL), nodes, fabric, cgroups, bpffs, work directory"),
        Err(err) => println!("  ✗ teardown incomplete: {err:#}"),
    }
    println!();
    // A Ctrl-C also kills the agents and probes, so the step that failed may
    // blame them; the interrupt is the real reason.
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted; the lab was torn down");
    }
    outcome?;
    teardown
}

impl Example {
    fn read(objects: &[Object]) -> Result<Self> {
        let services: Vec<_> = objects
            .iter()
            .filter_map(|object| match object {
                Object::Service(service) => Some(service),
                _ => None,
            })
            .collect();
        let service = services.first().context("examples/lab has no Service")?;
        let spec = service.spec.as_ref().context("the Service has no spec")?;
        let vip: Ipv4Addr = spec.cluster_ip.as_deref().context("no clusterIP")?.parse()?;
        let port = spec
            .ports
            .as_ref()
            .and_then(|ports| ports.first())
            .context("no Service port")?;
        let selector = spec.selector.clone().unwrap_or_default();
        let mut backends = Vec::new();
        let mut client = None;
        for object in objects {
            let Object::Pod(pod) = object else { continue };
            let mut pod = pod.clone();
            // Checked against the demo's nodes, before any is built.
            let nodes: Vec<String> = (1..=DEFAULT_NODES).map(|i| format!("node-{i}")).collect();
            kube::pods::schedule(&mut pod, &nodes)?;
            let plan = kube::pods::plan(&pod)?;
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let tcp = plan.ports.iter().find(|p| p.protocol == Protocol::Tcp);
            if !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                backends.push((
                    plan.key.clone(),
                    tcp.context("a backend serves no TCP port")?.port,
                ));
            } else if plan.ports.is_empty() && client.is_none() {
                client = Some(plan.key);
            }
        }
        ensure!(!backends.is_empty(), "examples/lab: the Service selects no pod");
        let target = port.target_port.as_ref().map_or_else(
            || port.port.to_string(),
            |target| match target {
                kube::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                kube::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
            },
        );
        Ok(Example {
            service: kube::key_of(&service.metadata),
            vip: SocketAddrV4::new(vip, u16::try_from(port.port)?),
            port_text: format!(
                "port {} → targetPort {target}",
                port.name.as_deref().unwrap_or("-")
            ),
            client: client.context("examples/lab has no client pod (one without ports)")?,
            backends,
        })
    }
}

/// Everything between building the cluster and tearing it down.
fn run_on(
    cluster: &mut Cluster,
    (objects, policy_objects): (Vec<Object>, Vec<Object>),
    example: &Example,
    interrupted: &AtomicBool,
) -> Result<()> {
    let check = || -> Result<()> {
        ensure!(!interrupted.load(Ordering::SeqCst), "interrupted");
        Ok(())
    };
    step(&format!(
        "fabric {} (bridge br0), external client {EXTERNAL_ADDRESS}; no default route anywhere",
        cluster.fabric_netns().name()
    ));
    for node in cluster.nodes() {
        // The cluster is built only once every agent reported these.
        let (pod_cidr, routes) = node
            .agent_status()
            .map(|status| (status.pod_cidr.unwrap_or_default(), status.node_routes))
            .unwrap_or_default();
        step(&format!(
            "{}  {}  podCIDR {pod_cidr}  weir-agent: conflist written, {}",
            node.name(),
            node.address().map(|ip| ip.to_string()).unwrap_or_default(),
            count(routes, "route to the other node's pods")
        ));
    }
    check()?;

    let before = cluster.generations();
    let applied = cluster.apply(objects)?;
    step("applied examples/lab:");
    print_changes(&applied);
    check()?;
    let statuses = cluster.wait_settled(&before)?;
    let summaries: Vec<String> = cluster
        .nodes()
        .iter()
        .zip(&statuses)
        .map(|(node, status)| agent_summary(node.name(), status))
        .collect();
    step(&format!("agents in sync: {}", summaries.join("; ")));
    check()?;

    let client = Origin::Pod(example.client.clone());
    let client_ip = source_address(cluster, &client).context("the client has no address")?;
    let client_node = cluster.pod_node(&example.client)?.name().to_owned();
    println!(
        "\n  {} ({client_ip} on {client_node}) → {}  (Service {}, {})\n",
        example.client, example.vip, example.service, example.port_text
    );
    let replies = cluster.probe(&client, (example.vip, Protocol::Tcp), REQUESTS, REQUEST_TIMEOUT)?;
    check()?;
    report_requests(cluster, example, &replies, client_ip)?;
    check()?;
    report_node_port(cluster)?;
    check()?;
    reachability(cluster, example)?;
    check()?;
    policy::finale(cluster, policy_objects, example)
}

/// The example Service's nodePort (examples/lab/service.yaml).
const DEMO_NODE_PORT: u16 = 30080;

/// The external client dials the NodePort on node-1: a backend on node-1 sees
/// the client's own address; one on node-2 sees node-1, which SNATed the
/// connection so the reply comes back through it (externalTrafficPolicy
/// Cluster, as with kube-proxy).
fn report_node_port(cluster: &Cluster) -> Result<()> {
    let node = &cluster.nodes()[0];
    let node_ip = node.address().context("node-1 has no address")?;
    let target = std::net::SocketAddrV4::new(node_ip, DEMO_NODE_PORT);
    println!(
        "  external ({EXTERNAL_ADDRESS}) → {target}  (NodePort of the same Service on {})\n",
        node.name()
    );
    let replies = cluster.probe(&Origin::External, (target, Protocol::Tcp), 6, REQUEST_TIMEOUT)?;
    print_attempts(cluster, &replies, |peer| match peer {
        Some(ip) if ip == EXTERNAL_ADDRESS => "client kept (local backend)",
        Some(ip) if ip == node_ip => "SNAT to the node (backend on another node)",
        _ => "",
    });
    ensure!(
        replies.all_answered(),
        "the NodePort did not answer every request: {:?}",
        replies.failures()
    );
    Ok(())
}

/// Prints one row per attempt: who answered, on which node, the address it
/// saw (with `note` about that address). Returns answers per node.
fn print_attempts(
    cluster: &Cluster,
    replies: &Replies,
    note: impl Fn(Option<Ipv4Addr>) -> &'static str,
) -> BTreeMap<String, usize> {
    println!("      #  answered by      on node   backend saw the client as");
    println!("    ---  ---------------  --------  -------------------------");
    let mut nodes_answering = BTreeMap::new();
    for (index, attempt) in replies.attempts.iter().enumerate() {
        match attempt {
            Ok(answer) => {
                let (server, on) = server_of(cluster, answer);
                let seen = answer
                    .peer
                    .map_or_else(|| "?".to_owned(), |peer| peer.to_string());
                let why = note(answer.peer.map(|p| *p.ip()));
                let row = format!("    {:>3}  {server:<15}  {on:<8}  {seen:<21}  {why}", index + 1);
                println!("{}", row.trim_end());
                *nodes_answering.entry(on.clone()).or_insert(0) += 1;
            }
            Err(failure) => println!(
                "    {:>3}  ✗ {:<13}  {}",
                index + 1,
                failure.kind,
                failure.message
            ),
        }
    }
    println!();
    nodes_answering
}

/// The requests' table and histogram; fails unless backends on every node
/// answered, and only backends, all seeing the client's own address.
fn report_requests(
    cluster: &Cluster,
    example: &Example,
    replies: &Replies,
    client_ip: Ipv4Addr,
) -> Result<()> {
    let nodes_answering = print_attempts(cluster, replies, |_| "");
    println!();
    let counts = replies.counts();
    for (key, _) in &example.backends {
        let (_, name) = weir_tests::split_key(key)?;
        let node = cluster
            .pod_node(key)
            .map(|n| n.name().to_owned())
            .unwrap_or_default();
        let n = counts.get(name).copied().unwrap_or(0);
        println!("    {:<22} {n:>2}  {}", format!("{name} ({node})"), "█".repeat(n));
    }
    let backend_names: Vec<&str> = example
        .backends
        .iter()
        .map(|(key, _)| key.rsplit('/').next().unwrap_or(key))
        .collect();
    let strangers: Vec<&&str> = counts
        .keys()
        .filter(|name| !backend_names.contains(name))
        .collect();
    let answered: usize = counts.values().sum();
    println!(
        "\n  {} on {} answered {answered}/{} requests through eBPF connect4; each saw {client_ip}, the client pod itself\n",
        count(counts.len(), "distinct backend"),
        count(nodes_answering.len(), "node"),
        replies.attempts.len()
    );
    ensure!(
        strangers.is_empty(),
        "servers that are no backend answered: {strangers:?}"
    );
    ensure!(
        replies.peer_ips().iter().all(|ip| *ip == client_ip),
        "backends saw {:?} instead of the client's {client_ip}",
        replies.peer_ips()
    );
    if counts.len() < MIN_BACKENDS || nodes_answering.len() < cluster.nodes().len() {
        bail!(
            "only {} backend(s) on {} node(s) answered (at least {MIN_BACKENDS}, on every node, expected); failures: {:?}",
            counts.len(),
            nodes_answering.len(),
            replies.failures()
        );
    }
    Ok(())
}

/// Every pod, every node and the external client dial every backend's pod
/// IP directly; each cell shows the source address the backend saw. Fails if
/// a pod could not reach a backend or was seen with another address.
fn reachability(cluster: &Cluster, example: &Example) -> Result<()> {
    let mut sources: Vec<Origin> = cluster.pods().map(|(_, pod)| Origin::Pod(pod.key())).collect();
    sources.extend(cluster.node_names().into_iter().map(Origin::Node));
    sources.push(Origin::External);
    println!(
        "  reachability: pod IPs dialled directly (TCP); each cell is the source address the server saw\n"
    );
    let mut header = format!("    {:<24}", "from \\ to");
    for (key, _) in &example.backends {
        let node = cluster.pod_node(key)?.name().to_owned();
        let column = format!("{} ({node})", key.rsplit('/').next().unwrap_or(key));
        let _ = write!(header, "  {column:<17}");
    }
    println!("{}", header.trim_end());
    let mut broken = Vec::new();
    for source in &sources {
        let own = source_address(cluster, source);
        let label = match source {
            Origin::Pod(key) => format!("{key} ({})", cluster.pod_node(key)?.name()),
            other => other.to_string(),
        };
        let mut line = format!("    {label:<24}");
        for (key, port) in &example.backends {
            let target = SocketAddrV4::new(cluster.pod(key)?.ip, *port);
            let replies = cluster.probe(source, (target, Protocol::Tcp), 1, REQUEST_TIMEOUT)?;
            let cell = match &replies.attempts[0] {
                Ok(answer) => {
                    let seen = answer.peer.map(|peer| *peer.ip());
                    if matches!(source, Origin::Pod(_)) && seen != own {
                        broken.push(format!("{source} → {key}: seen as {seen:?}"));
                    }
                    format!("✓ {}", seen.map_or_else(|| "?".to_owned(), |ip| ip.to_string()))
                }
                Err(failure) => {
                    if matches!(source, Origin::Pod(_)) {
                        broken.push(format!("{source} → {key}: {}", failure.message));
                    }
                    format!("✗ {}", failure.kind)
                }
            };
            let _ = write!(line, "  {cell:<17}");
        }
        println!("{}", line.trim_end());
    }
    ensure!(
        broken.is_empty(),
        "pod-to-pod reachability broken: {}",
        broken.join("; ")
    );
    println!(
        "\n  every pod reached every backend on every node with its own address (host-gw routes, no NAT);\n  \
         the external client has no route to pod IPs\n"
    );
    Ok(())
}
