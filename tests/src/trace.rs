//! `weir trace` next to what probes observed (issue #7): for a flow the
//! harness dialled, the CLI's prediction — run on the node the flow starts
//! from (a pod's or node's own; for the external client, the node whose
//! address it dials) — must allow the outcome the probe saw. Grids of the
//! NetworkPolicy tables and rows of the Service tables call this on every
//! cell they check, so the prediction is held to the whole test tables.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::cluster::{Cluster, EXTERNAL_ADDRESS, Origin};
use crate::node::Node;
use crate::probe::Protocol;

/// A prediction, reduced to what a probe can tell apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The trace's `summary`.
    pub summary: String,
    /// `Some(true)`: every (or the picked) candidate delivered;
    /// `Some(false)`: none can be; `None`: `mixed`/`unknown`, either.
    pub connects: Option<bool>,
    /// Backend addresses (`ip`) of the candidates, or only the picked one.
    pub backends: Vec<Ipv4Addr>,
    /// The whole JSON document, for messages.
    pub json: serde_json::Value,
}

impl Prediction {
    /// Whether a probe that did (`connected`) or did not connect agrees.
    #[must_use]
    pub fn allows(&self, connected: bool) -> bool {
        self.connects.is_none_or(|c| c == connected)
    }
}

/// Where `weir trace` runs for a flow from `origin` to `target`, and the
/// source address it names; `None` for a flow no node's maps decide (the
/// external client dialling something other than a node address).
fn vantage<'a>(
    cluster: &'a Cluster,
    origin: &Origin,
    target: Ipv4Addr,
) -> Result<Option<(&'a Node, Ipv4Addr)>> {
    Ok(match origin {
        Origin::Pod(key) => Some((cluster.pod_node(key)?, cluster.pod(key)?.ip)),
        Origin::Node(name) => {
            let node = cluster.node(name)?;
            let address = node
                .address()
                .with_context(|| format!("node {name} has no address"))?;
            Some((node, address))
        }
        Origin::External => {
            // The node it dials, or the one its route to the address leads
            // to (an externalIP routed to a node, as an upstream router would).
            let entry = if cluster.nodes().iter().any(|n| n.address() == Some(target)) {
                Some(target)
            } else {
                gateway(cluster, target)
            };
            cluster
                .nodes()
                .iter()
                .find(|n| entry.is_some() && n.address() == entry)
                .map(|n| (n, EXTERNAL_ADDRESS))
        }
    })
}

/// The next hop of the external client's route to `target`, if it has one.
fn gateway(cluster: &Cluster, target: Ipv4Addr) -> Option<Ipv4Addr> {
    let netns = cluster.external_netns().path();
    let route = crate::cmd::run_in_netns(&netns, "ip", ["-o", "route", "get", &target.to_string()])
        .unwrap_or_default();
    let mut words = route.split_whitespace();
    words.by_ref().find(|w| *w == "via")?;
    words.next()?.parse().ok()
}

/// Starts `weir trace -o json` for one flow; `None` when no node decides it.
fn start(
    cluster: &Cluster,
    origin: &Origin,
    (target, protocol): (SocketAddrV4, Protocol),
) -> Result<Option<Child>> {
    let Some((node, source)) = vantage(cluster, origin, *target.ip())? else {
        return Ok(None);
    };
    let source = source.to_string();
    let destination = format!("{target}/{protocol}");
    let mut args = vec!["trace", "-o", "json", source.as_str(), destination.as_str()];
    // The pod's own netns, named: other clusters on this machine (tests run
    // side by side, the lab) have pods with the same address, which on a
    // real node could not happen.
    let netns = match origin {
        Origin::Pod(_) => Some(cluster.place(origin)?.netns.to_string_lossy().into_owned()),
        _ => None,
    };
    if let Some(netns) = &netns {
        args.extend(["--netns", netns.as_str()]);
    }
    let mut command = node.weir_command(&args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .with_context(|| format!("starting weir trace {source} {destination}"))?;
    Ok(Some(child))
}

/// Reads a finished trace.
fn finish(child: Child, what: &str) -> Result<Prediction> {
    let output = child
        .wait_with_output()
        .with_context(|| format!("weir trace {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "weir trace {what}: not JSON: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok(prediction(json))
}

/// The parts of a trace's JSON a probe can check.
#[must_use]
pub fn prediction(json: serde_json::Value) -> Prediction {
    let summary = json["summary"].as_str().unwrap_or_default().to_owned();
    let connects = match summary.as_str() {
        "delivered" => Some(true),
        "mixed" | "unknown" => None,
        _ => Some(false),
    };
    let candidates = json["candidates"].as_array().cloned().unwrap_or_default();
    let picked: Vec<&serde_json::Value> = candidates.iter().filter(|c| c["picked"] == true).collect();
    let chosen: Vec<&serde_json::Value> = if picked.is_empty() {
        candidates.iter().collect()
    } else {
        picked
    };
    let backends = chosen
        .iter()
        .filter_map(|c| c["backend"].as_str()?.split(':').next()?.parse().ok())
        .collect();
    Prediction {
        summary,
        connects,
        backends,
        json,
    }
}

/// The prediction for one flow (`None`: no node decides it).
pub fn predict(
    cluster: &Cluster,
    origin: &Origin,
    target: (SocketAddrV4, Protocol),
) -> Result<Option<Prediction>> {
    let what = format!("{origin} → {}/{}", target.0, target.1);
    start(cluster, origin, target)?
        .map(|child| finish(child, &what))
        .transpose()
}

/// Checks a grid: `connected(row, column)` is what the probes observed for
/// the flow from each source to each target; cells `skip` names are not
/// judged. Each source's traces run side by side. Fails listing every cell
/// whose prediction does not allow the observation.
pub fn check_grid(
    cluster: &Cluster,
    sources: &[(String, Origin)],
    targets: &[(String, SocketAddrV4)],
    protocol: Protocol,
    connected: impl Fn(&str, &str) -> bool,
    skip: impl Fn(&str, &str) -> bool,
) -> Result<()> {
    let mut wrong = Vec::new();
    for (row, origin) in sources {
        let mut running = Vec::new();
        for (column, address) in targets {
            if skip(row, column) {
                continue;
            }
            if let Some(child) = start(cluster, origin, (*address, protocol))? {
                running.push((column, child));
            }
        }
        for (column, child) in running {
            let what = format!("{row} → {column}");
            let prediction = finish(child, &what)?;
            let observed = connected(row, column);
            if !prediction.allows(observed) {
                let seen = if observed { "connected" } else { "no connection" };
                wrong.push(format!(
                    "  {what}: predicted {:?}, probes saw {seen}",
                    prediction.summary
                ));
            }
        }
    }
    if !wrong.is_empty() {
        bail!(
            "weir trace disagrees with the probes on {} cell(s) ({protocol}):\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
    Ok(())
}
