//! The lab that stays up: `up`, `apply`, `delete`, `down`.
//!
//! `up` builds the cluster under fixed names and exits, leaving the agents
//! running in sessions of their own; every later command re-attaches from
//! `/run/weir-lab/state.json`. A Ctrl-C during `up` removes the half-built lab
//! again; during `apply` or `delete` the command finishes its pass first, so
//! the state file always matches what runs.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use weir_tests::{Access, Binaries, Cluster, ClusterConfig, EXTERNAL_ADDRESS, LAB_ROOT, kube};

use super::{agent_summary, count, install_interrupt_handler, print_changes, step};

/// `cargo xtask lab up`.
pub fn up(bins: &Binaries, nodes: usize) -> Result<()> {
    let interrupted = install_interrupt_handler()?;
    println!("\nweir lab up: {} on one fabric\n", count(nodes, "node"));
    let config = ClusterConfig {
        nodes,
        ..ClusterConfig::default()
    };
    let (cluster, removed) = Cluster::create_persistent_lab(bins.clone(), config)?;
    if !removed.is_empty() {
        step(&format!("leftovers of an earlier lab: {}", removed.join(", ")));
    }
    if interrupted.load(Ordering::SeqCst) {
        drop(cluster);
        Cluster::down_persistent_lab()?;
        bail!("interrupted; the lab was removed again");
    }
    step(&format!(
        "fabric {} (bridge br0); external client {} {EXTERNAL_ADDRESS}",
        cluster.fabric_netns().name(),
        cluster.external_netns().name()
    ));
    for node in cluster.nodes() {
        // `up` returns only once every agent reported its podCIDR and routes.
        let (pod_cidr, routes) = node
            .agent_status()
            .map(|status| (status.pod_cidr.unwrap_or_default(), status.node_routes))
            .unwrap_or_default();
        step(&format!(
            "{:<7} netns {}  {}  podCIDR {pod_cidr}  agent: conflist written, {}",
            node.name(),
            node.netns().name(),
            node.address().map(|ip| ip.to_string()).unwrap_or_default(),
            count(routes, "node route"),
        ));
    }
    step(&format!(
        "Node objects in {}; state in {LAB_ROOT}/state.json",
        cluster.manifests().path().display()
    ));
    println!("\n  next:  cargo xtask lab apply examples/lab");
    println!("         cargo xtask lab probe demo/client 10.96.0.10:80 --count 5");
    println!("         cargo xtask lab status");
    println!("         cargo xtask lab down\n");
    Ok(())
}

/// `cargo xtask lab down`.
pub fn down() -> Result<()> {
    let done = Cluster::down_persistent_lab()?;
    if done.is_empty() {
        println!("no lab was up; nothing to remove");
    } else {
        for line in done {
            step(&line);
        }
    }
    Ok(())
}

/// `cargo xtask lab apply`.
pub fn apply(paths: &[PathBuf]) -> Result<()> {
    change(paths, Verb::Apply)
}

/// `cargo xtask lab delete`.
pub fn delete(paths: &[PathBuf]) -> Result<()> {
    change(paths, Verb::Delete)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Apply,
    Delete,
}

fn change(paths: &[PathBuf], verb: Verb) -> Result<()> {
    // Read (and check) the files before touching the lab.
    let objects = kube::read_paths(paths)?;
    let interrupted = install_interrupt_handler()?;
    let mut cluster = Cluster::attach_persistent_lab(Access::Write)?;
    let before = cluster.generations();
    let applied = match verb {
        Verb::Apply => cluster.apply(objects)?,
        Verb::Delete => cluster.delete(&objects)?,
    };
    print_changes(&applied);
    if !applied.manifests_changed {
        println!("  (nothing changed)");
        return Ok(());
    }
    let statuses = cluster.wait_settled(&before)?;
    let summaries: Vec<String> = cluster
        .nodes()
        .iter()
        .zip(&statuses)
        .map(|(node, status)| agent_summary(node.name(), status))
        .collect();
    step(&format!("agents in sync: {}", summaries.join("; ")));
    if interrupted.load(Ordering::SeqCst) {
        println!("  (interrupted: the pass was finished first; the lab is consistent)");
    }
    Ok(())
}
