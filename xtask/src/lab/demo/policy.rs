//! The demo's finale: `examples/lab/policy` applied — the echo pods take
//! connections only from the client — and who reaches them, before and
//! after, in one grid. The policy is enforced in eBPF on each echo pod's
//! host-side veth, so the grid is what real connections saw.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use weir_tests::kube::Object;
use weir_tests::netpol::{self, Observation, Target};
use weir_tests::{Cluster, EXTERNAL_ADDRESS, Origin, Protocol};

use super::{DEMO_NODE_PORT, Example, REQUEST_TIMEOUT};
use crate::lab::{print_changes, step};

/// How long the agents get to compile the policy and write the maps.
const SETTLE_TIME: Duration = Duration::from_secs(10);

/// Where the policy of the finale lives, relative to the workspace.
pub(super) const POLICY_DIR: &str = "examples/lab/policy";

/// Applies `objects` (the policy) and shows its effect; fails if what the
/// probes see is not what the policy says.
pub(super) fn finale(cluster: &mut Cluster, objects: Vec<Object>, example: &Example) -> Result<()> {
    let sources = sources(cluster);
    let targets: Vec<Target> = example
        .backends
        .iter()
        .map(|(key, port)| {
            let pod = cluster.pod(key)?;
            let node = cluster.pod_node(key)?.name().to_owned();
            Ok(Target {
                label: format!("{} ({node})", pod.name),
                address: SocketAddrV4::new(pod.ip, *port),
                answers_as: Some(pod.name.clone()),
            })
        })
        .collect::<Result<_>>()?;
    let before = netpol::observe_from(cluster, &sources, &targets, Protocol::Tcp)?;

    let applied = cluster.apply(objects)?;
    step(&format!("applied {POLICY_DIR}:"));
    print_changes(&applied);
    println!(
        "    the echo pods now take port http only from {}; a pod's own node still gets in\n",
        example.client
    );

    // What the policy allows into a backend: the client, the backend
    // itself (its own address never leaves its netns) and its own node.
    let allowed = |origin: &Origin, backend: &str| -> bool {
        let node = cluster.pod_node(backend).map(|n| n.name().to_owned()).ok();
        match origin {
            Origin::Pod(key) => *key == example.client || key == backend,
            Origin::Node(name) => Some(name) == node.as_ref(),
            Origin::External => false,
        }
    };
    let expected = |row: usize, col: usize| allowed(&sources[row].1, &example.backends[col].0);
    let deadline = Instant::now() + SETTLE_TIME;
    let (after, wrong) = loop {
        let after = netpol::observe_from(cluster, &sources, &targets, Protocol::Tcp)?;
        let wrong = wrong_cells(&after, expected);
        if wrong.is_empty() || Instant::now() >= deadline {
            break (after, wrong);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    print_grid(&before, &after, &targets);

    let client = Origin::Pod(example.client.clone());
    let through_vip = cluster.probe(&client, (example.vip, Protocol::Tcp), 3, REQUEST_TIMEOUT)?;
    let node_port = SocketAddrV4::new(
        cluster.nodes()[0].address().context("node-1 has no address")?,
        DEMO_NODE_PORT,
    );
    let external = cluster.probe(&Origin::External, (node_port, Protocol::Tcp), 2, REQUEST_TIMEOUT)?;
    println!(
        "\n  {} → {} (ClusterIP): {}/3 answered; the policy judges the backend socket-LB chose, and the client may reach it",
        example.client,
        example.vip,
        through_vip.answers().count()
    );
    println!(
        "  external ({EXTERNAL_ADDRESS}) → {node_port} (NodePort): {}/2 answered; a backend sees the external client, \
         or node-1 after SNAT: neither may reach it\n",
        external.answers().count()
    );
    if !wrong.is_empty() {
        bail!(
            "the policy is not enforced as written after {} s: {}",
            SETTLE_TIME.as_secs(),
            wrong.join("; ")
        );
    }
    ensure!(
        through_vip.all_answered(),
        "the client lost its Service: {:?}",
        through_vip.failures()
    );
    ensure!(
        external.none_answered(),
        "the external client still reaches an echo pod through the NodePort"
    );
    println!(
        "  only the client, and each echo pod's own node, get in; the drops happened in eBPF on the pods' veths\n"
    );
    Ok(())
}

/// Rows of the grid: every pod, every node, the external client.
fn sources(cluster: &Cluster) -> Vec<(String, Origin)> {
    let mut sources = Vec::new();
    for (node, pod) in cluster.pods() {
        sources.push((format!("{} ({})", pod.key(), node.name()), Origin::Pod(pod.key())));
    }
    for name in cluster.node_names() {
        sources.push((name.clone(), Origin::Node(name)));
    }
    sources.push(("external".to_owned(), Origin::External));
    sources
}

/// Cells where `observed` differs from `expected(row, col)`.
fn wrong_cells(observed: &Observation, expected: impl Fn(usize, usize) -> bool) -> Vec<String> {
    let table = &observed.table;
    let mut wrong = Vec::new();
    for (r, row) in table.rows.iter().enumerate() {
        for (c, col) in table.cols.iter().enumerate() {
            if table.get(row, col) != expected(r, c) {
                let seen = if table.get(row, col) {
                    "answered"
                } else {
                    "no answer"
                };
                wrong.push(format!("{row} → {col}: {seen}"));
            }
        }
    }
    wrong
}

/// One cell: `✓`, or `✗` with why (`timeout`, `unreachable`, …).
fn cell(observation: &Observation, row: &str, col: &str) -> String {
    if observation.table.get(row, col) {
        return "✓".to_owned();
    }
    let why = observation
        .failures
        .get(&(row.to_owned(), col.to_owned()))
        .and_then(|why| why.split(':').next())
        .unwrap_or("failed");
    format!("✗ {why}")
}

/// `before → after` per cell; a cell that did not change shows once.
fn print_grid(before: &Observation, after: &Observation, targets: &[Target]) {
    println!("  reachability of the echo pods (pod IP, port http), before → after the policy\n");
    let rows = &after.table.rows;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            targets
                .iter()
                .map(|target| {
                    let (was, now) = (cell(before, row, &target.label), cell(after, row, &target.label));
                    if was == now && was != "✓" {
                        format!("{now} (both)")
                    } else {
                        format!("{was} → {now}")
                    }
                })
                .collect()
        })
        .collect();
    // Padding counts chars, so ✓ and → take one column each.
    let width = cells
        .iter()
        .flatten()
        .map(|text| text.chars().count())
        .chain(targets.iter().map(|t| t.label.chars().count()))
        .max()
        .unwrap_or(0);
    let mut header = format!("    {:<24}", "from \\ to");
    for target in targets {
        let _ = write!(header, "  {:<width$}", target.label);
    }
    println!("{}", header.trim_end());
    for (row, texts) in rows.iter().zip(&cells) {
        let mut line = format!("    {row:<24}");
        for text in texts {
            let _ = write!(line, "  {text:<width$}");
        }
        println!("{}", line.trim_end());
    }
}
