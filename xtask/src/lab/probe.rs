//! `cargo xtask lab probe FROM TO:PORT[/PROTO]`: who answered, from which
//! address the server saw the connection, how long it took — or why nobody
//! answered.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use weir_tests::{Access, Answer, Attempt, Cluster, EXTERNAL_ADDRESS, Origin, Protocol, Replies};

use super::Output;

/// Runs the probe against the persistent lab.
pub fn run(from: &str, to: &str, count: u32, timeout_ms: u64, output: Output) -> Result<()> {
    let cluster = Cluster::attach_persistent_lab(Access::Read)?;
    let origin = cluster.origin(from)?;
    let target = parse_target(&cluster, to)?;
    let replies = cluster.probe(
        &origin,
        target,
        count.max(1),
        Duration::from_millis(timeout_ms.max(1)),
    )?;
    match output {
        Output::Text => print_text(&cluster, &origin, target, &replies),
        Output::Json => println!("{}", to_json(&cluster, &origin, target, &replies)),
    }
    let failed = replies.failures().len();
    if failed > 0 {
        bail!("{failed} of {} attempt(s) got no answer", replies.attempts.len());
    }
    Ok(())
}

/// Reads `ADDRESS:PORT[/tcp|udp]`, where ADDRESS is an IPv4 address, a node
/// name or a pod (`namespace/name`).
pub fn parse_target(cluster: &Cluster, text: &str) -> Result<(SocketAddrV4, Protocol)> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, suffix)) if suffix.parse::<Protocol>().is_ok() => (rest, suffix.parse()?),
        _ => (text, Protocol::Tcp),
    };
    let (address, port) = rest
        .rsplit_once(':')
        .with_context(|| format!("{text:?}: expected ADDRESS:PORT[/tcp|udp]"))?;
    let port: u16 = port.parse().with_context(|| format!("{text:?}: port {port:?}"))?;
    let ip = if let Ok(ip) = address.parse::<Ipv4Addr>() {
        ip
    } else if let Ok(node) = cluster.node(address) {
        node.address().context("a node without an address")?
    } else if let Some((_, pod)) = cluster.find_pod(address) {
        pod.ip
    } else {
        bail!("{address:?} is neither an IPv4 address, a node nor a pod");
    };
    Ok((SocketAddrV4::new(ip, port), protocol))
}

/// The address `origin`'s connections leave with, before any rewriting.
pub fn source_address(cluster: &Cluster, origin: &Origin) -> Option<Ipv4Addr> {
    match origin {
        Origin::Pod(key) => cluster.pod(key).ok().map(|pod| pod.ip),
        Origin::Node(name) => cluster.node(name).ok().and_then(weir_tests::Node::address),
        Origin::External => Some(EXTERNAL_ADDRESS),
    }
}

/// The server behind an answer: `(pod or node, node)`; servers answer with
/// their pod's name, or a node's name for one on a node itself.
pub fn server_of(cluster: &Cluster, answer: &Answer) -> (String, String) {
    if cluster.node(&answer.name).is_ok() {
        return (format!("{} (host)", answer.name), answer.name.clone());
    }
    cluster
        .pods()
        .find(|(_, pod)| pod.name == answer.name)
        .map_or_else(
            || (answer.name.clone(), "?".to_owned()),
            |(node, pod)| (pod.key(), node.name().to_owned()),
        )
}

/// `0.41 ms`.
pub fn millis(elapsed: Duration) -> String {
    format!("{:.2} ms", elapsed.as_secs_f64() * 1000.0)
}

fn print_text(cluster: &Cluster, origin: &Origin, target: (SocketAddrV4, Protocol), replies: &Replies) {
    let source = source_address(cluster, origin);
    let from = match (origin, source) {
        (Origin::Pod(key), Some(ip)) => {
            let node = cluster
                .pod_node(key)
                .map(|n| n.name().to_owned())
                .unwrap_or_default();
            format!("{key} ({ip} on {node})")
        }
        (_, Some(ip)) => format!("{origin} ({ip})"),
        (_, None) => origin.to_string(),
    };
    println!("\n  {from} → {}/{}\n", target.0, target.1);
    println!("      #  answered by                   on node   server saw             time");
    println!("    ---  ----------------------------  --------  ---------------------  ----------");
    for (index, attempt) in replies.attempts.iter().enumerate() {
        match attempt {
            Ok(answer) => {
                let (server, node) = server_of(cluster, answer);
                let seen = answer
                    .peer
                    .map_or_else(|| "?".to_owned(), |peer| peer.to_string());
                println!(
                    "    {:>3}  {server:<28}  {node:<8}  {seen:<21}  {}",
                    index + 1,
                    millis(answer.elapsed)
                );
            }
            Err(failure) => println!(
                "    {:>3}  ✗ {:<26}  {:<8}  {:<21}  {}   {}",
                index + 1,
                failure.kind,
                "",
                "",
                millis(failure.elapsed),
                failure.message
            ),
        }
    }
    let answered = replies.answers().count();
    let mut summary = format!("\n  {answered}/{} answered", replies.attempts.len());
    if let (Some(source), false) = (source, replies.peer_ips().is_empty()) {
        if replies.peer_ips() == [source] {
            let _ = write!(
                summary,
                "; servers saw the client's own address {source} (no NAT)"
            );
        } else {
            let _ = write!(
                summary,
                "; servers saw {:?}, not the client's {source} (source rewritten)",
                replies.peer_ips()
            );
        }
    }
    println!("{summary}\n");
}

fn to_json(cluster: &Cluster, origin: &Origin, target: (SocketAddrV4, Protocol), replies: &Replies) -> Value {
    let attempts: Vec<Value> = replies
        .attempts
        .iter()
        .map(|attempt: &Attempt| match attempt {
            Ok(answer) => {
                let (server, node) = server_of(cluster, answer);
                json!({
                    "answered": true,
                    "name": answer.name,
                    "server": server,
                    "node": node,
                    "seen_from": answer.peer.map(|peer| peer.to_string()),
                    "local": answer.local.map(|local| local.to_string()),
                    "micros": answer.elapsed.as_micros(),
                })
            }
            Err(failure) => json!({
                "answered": false,
                "kind": failure.kind.to_string(),
                "error": failure.message,
                "micros": failure.elapsed.as_micros(),
            }),
        })
        .collect();
    json!({
        "from": origin.to_string(),
        "source": source_address(cluster, origin).map(|ip| ip.to_string()),
        "to": target.0.to_string(),
        "protocol": target.1.to_string(),
        "attempts": attempts,
    })
}
