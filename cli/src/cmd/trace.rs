//! `weir trace SRC DST:PORT/PROTO [--probe]`: what the datapath would do with
//! a new connection, predicted from the live maps.
//!
//! The load-balancer and policy maps are read from `--bpffs` (so the
//! prediction works while the agent is down); the agent only adds names
//! (`/v1/endpoints`) and, for a destination pod on another node, that
//! node's agent evaluates its own maps (`/v1/policy/verdict`, at the other
//! node's address with the port of `--agent`). Which node owns an address
//! comes from this node's routes. Exit codes: 0 every candidate delivered,
//! 6 none (dropped, refused or unreachable), 7 mixed or unknown.

mod live;
mod pick;
mod predict;
mod probe;
mod report;
mod routes;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use anyhow::Context as _;
use weir_agent::maps::dump_pinned;
use weir_agent::maps::policy_eval::{Direction, Flow, PolicySnapshot};
use weir_agent::ops::api::EndpointDoc;
use weir_agent::ops::trace::{VerdictDoc, protocol_name, protocol_number};

use crate::exit::Failure;
use report::ProbeResult;

/// What to trace.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source: a pod IP of this node, one of the node's addresses, or
    /// an external client (then only the per-packet path applies).
    pub source: Ipv4Addr,
    /// The destination: `IP:PORT/PROTO` (`tcp`, `udp`, `sctp`).
    pub destination: String,
    /// Also send a real connection from the source (TCP connect, or a UDP
    /// datagram and its answer, 2 s timeout) and show the outcome.
    #[arg(long)]
    pub probe: bool,
    /// The source's netns, for `--probe` and for reading its session
    /// affinity (default: found from the processes on the node, by the
    /// address they hold).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// The client's source port. An external client's connection to a
    /// Maglev frontend goes to the backend its tuple hashes to: with the
    /// port, the trace names it (and `--probe` connects from that port).
    #[arg(long)]
    pub source_port: Option<u16>,
}

/// Runs the command.
pub fn run(args: &crate::Args, trace: &Args) -> anyhow::Result<u8> {
    let flow = parse_destination(trace.source, &trace.destination)?;
    let unreachable = |e: weir_agent::maps::Error| Failure::MapsUnreachable {
        bpffs: args.bpffs.display().to_string(),
        reason: format!("{e:#}"),
    };
    let lb = dump_pinned(&args.bpffs, false).map_err(unreachable)?;
    let policy = PolicySnapshot::read_pinned(&args.bpffs).map_err(unreachable)?;
    let routes = routes::read()?;
    // Names only: without the agent the trace still works, with ids.
    let endpoints: Vec<EndpointDoc> =
        crate::agent::get_json(&args.agent, "/v1/endpoints").unwrap_or_default();
    let agent_port = args
        .agent
        .rsplit_once(':')
        .map_or("9879", |(_, port)| port)
        .to_owned();
    let remote = |node: Ipv4Addr, flow: &Flow, direction: Direction| -> Result<VerdictDoc, String> {
        let path = format!(
            "/v1/policy/verdict?src={}&dst={}&port={}&proto={}&direction={}",
            flow.src,
            flow.dst,
            flow.port,
            flow.proto,
            match direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            }
        );
        crate::agent::get_json(&format!("{node}:{agent_port}"), &path).map_err(|e| format!("{e:#}"))
    };
    let selection = live::LiveSelection::new(&args.bpffs, flow.src, trace.netns.as_deref());
    let inputs = predict::Inputs {
        policy: &policy,
        lb: &lb,
        routes: &routes,
        endpoints: &endpoints,
        remote: &remote,
        selection: &selection,
        source_port: trace.source_port,
    };
    let mut result = predict::predict(&inputs, &flow);
    if trace.probe {
        let origin = selection.origin()?;
        let target = SocketAddrV4::new(flow.dst, flow.port);
        anyhow::ensure!(
            flow.proto == weir_common::IPPROTO_TCP || flow.proto == weir_common::IPPROTO_UDP,
            "--probe speaks TCP and UDP only, not {}",
            protocol_name(flow.proto)
        );
        let udp = flow.proto == weir_common::IPPROTO_UDP;
        let (outcome, detail) = probe::run(&origin, target, udp, trace.source_port)?;
        let agrees = agrees(&result.summary, &outcome);
        result.probe = Some(ProbeResult {
            outcome,
            detail,
            agrees,
        });
    }
    crate::output::print(&result, args.output)?;
    Ok(result.exit_code())
}

/// Whether a probe's outcome is one the summary allows.
fn agrees(summary: &str, outcome: &str) -> bool {
    match summary {
        "delivered" => outcome == "delivered",
        "mixed" | "unknown" => outcome == "delivered" || outcome == "dropped",
        s if s.starts_with("refused") => outcome == "refused",
        s if s.starts_with("unreachable") => outcome == "unreachable",
        _ => outcome == "dropped",
    }
}

/// `IP:PORT/PROTO` → the flow from `source`.
fn parse_destination(source: Ipv4Addr, destination: &str) -> anyhow::Result<Flow> {
    let usage = || format!("destination {destination:?} is not IP:PORT/PROTO (e.g. 10.96.0.10:80/tcp)");
    let (address, proto) = destination.split_once('/').with_context(usage)?;
    let (ip, port) = address.rsplit_once(':').with_context(usage)?;
    Ok(Flow {
        src: source,
        dst: ip
            .parse()
            .with_context(|| format!("{ip:?} is not an IPv4 address"))?,
        port: port
            .parse()
            .with_context(|| format!("{port:?} is not a port number"))?,
        proto: protocol_number(proto)
            .with_context(|| format!("{proto:?} is not tcp, udp, sctp or a number"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_bad_ones_say_what_is_wrong() {
        let src = Ipv4Addr::new(10, 244, 1, 2);
        let flow = parse_destination(src, "10.96.0.10:80/TCP").unwrap();
        assert_eq!(
            (flow.dst, flow.port, flow.proto),
            (Ipv4Addr::new(10, 96, 0, 10), 80, 6)
        );
        assert_eq!(parse_destination(src, "10.96.0.10:53/udp").unwrap().proto, 17);
        for bad in [
            "10.96.0.10:80",
            "10.96.0.10/tcp",
            "x:80/tcp",
            "10.96.0.10:99999/tcp",
            "10.96.0.10:80/icmpx",
        ] {
            assert!(parse_destination(src, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_probe_agrees_only_with_what_the_summary_allows() {
        assert!(agrees("delivered", "delivered"));
        assert!(!agrees("delivered", "dropped"));
        assert!(agrees("dropped by policy x/deny", "dropped"));
        assert!(agrees("refused (no endpoints)", "refused"));
        assert!(agrees("mixed", "dropped") && agrees("mixed", "delivered"));
    }
}
