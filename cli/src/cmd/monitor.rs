//! `weir monitor`: the agent's NetworkPolicy verdict stream (JSON lines on
//! its verdict socket), filtered here and printed one line per verdict.
//!
//! The agent streams every verdict the datapath logs (drops, and allows when
//! `logAllowedConnections` is on) to every client; filtering in the CLI
//! keeps the socket protocol a plain stream any `nc -U` can read.

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;

use serde::Deserialize;

use crate::exit::Failure;
use crate::output::Format;

/// Filters.
///
/// Examples:
///   weir monitor                       # drops on this node
///   weir monitor --all --namespace x   # drops and allows of pods in x
///   weir monitor -o json --count 1 --pod x/a
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Allowed connections too (needs the agent's logAllowedConnections).
    #[arg(long)]
    pub all: bool,
    /// Only verdicts of this pod (`NAMESPACE/NAME`).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only verdicts of pods in this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only flows with this source or destination port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only this verdict (overrides --all).
    #[arg(long, value_enum)]
    pub verdict: Option<Kind>,
    /// Exit after this many matching verdicts.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A verdict kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Dropped.
    Drop,
    /// Allowed.
    Allow,
}

/// One verdict as the agent streams it (`weir_agent::verdicts::Verdict`).
#[derive(Debug, Deserialize)]
#[expect(clippy::struct_field_names, reason = "the agent's field names")]
struct Verdict {
    verdict: String,
    direction: String,
    pod: Option<String>,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    protocol: String,
    reason: String,
}

impl Args {
    /// Whether `v` passes every filter.
    fn matches(&self, v: &Verdict) -> bool {
        let verdict_ok = match self.verdict {
            Some(Kind::Drop) => v.verdict == "drop",
            Some(Kind::Allow) => v.verdict == "allow",
            None => self.all || v.verdict == "drop",
        };
        let pod = v.pod.as_deref().unwrap_or("");
        verdict_ok
            && self.pod.as_deref().is_none_or(|p| p == pod)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| pod.split_once('/').is_some_and(|(n, _)| n == ns))
            && self.port.is_none_or(|p| v.sport == p || v.dport == p)
    }
}

/// Runs the command.
pub fn run(args: &crate::Args, monitor: &Args) -> anyhow::Result<u8> {
    if let Some(pod) = &monitor.pod {
        anyhow::ensure!(
            pod.split_once('/')
                .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty()),
            "--pod wants NAMESPACE/NAME, got {pod:?}"
        );
    }
    let socket = &args.verdict_socket;
    let unreachable = |reason: String| Failure::AgentUnreachable {
        address: socket.display().to_string(),
        reason,
    };
    let stream = UnixStream::connect(socket).map_err(|e| unreachable(e.to_string()))?;
    if args.output == Format::Table {
        println!(
            "{:<8}  {:<7}  {:<9}  {:<POD_WIDTH$}  {:<FLOW_WIDTH$}  REASON",
            "TIME", "VERDICT", "DIRECTION", "POD", "FLOW"
        );
    }
    let mut matched = 0;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| unreachable(e.to_string()))?;
        let Ok(verdict) = serde_json::from_str::<Verdict>(&line) else {
            // `{"lost":N}`: this reader was too slow and the agent dropped lines.
            eprintln!("weir: {line}");
            continue;
        };
        if !monitor.matches(&verdict) {
            continue;
        }
        match args.output {
            Format::Json => println!("{line}"),
            Format::Yaml => {
                let value: serde_json::Value = serde_json::from_str(&line)?;
                print!("---\n{}", serde_yaml::to_string(&value)?);
            }
            Format::Table => println!("{}", table_line(&verdict)),
        }
        matched += 1;
        if monitor.count.is_some_and(|n| matched >= n) {
            return Ok(crate::exit::OK);
        }
    }
    Err(unreachable("the verdict stream ended; did the agent stop?".into()).into())
}

/// `HH:MM:SS  drop  ingress  x/a  10.244.1.2:40000 → 10.244.2.3:80/TCP  reason`.
fn table_line(v: &Verdict) -> String {
    let now = weir_agent::ops::api::rfc3339(std::time::SystemTime::now());
    let time = now.get(11..19).unwrap_or(&now);
    let flow = format!("{}:{} → {}:{}/{}", v.src, v.sport, v.dst, v.dport, v.protocol);
    format!(
        "{time:<8}  {:<7}  {:<9}  {:<POD_WIDTH$}  {flow:<FLOW_WIDTH$}  {}",
        v.verdict,
        v.direction,
        v.pod.as_deref().unwrap_or("?"),
        v.reason
    )
}

/// Column widths of the streamed table (rows are printed as they come, so
/// the widths cannot follow the data; longer cells push the rest right).
const POD_WIDTH: usize = 24;
const FLOW_WIDTH: usize = 44;

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn verdict(kind: &str, pod: &str, dport: u16) -> Verdict {
        Verdict {
            verdict: kind.into(),
            direction: "ingress".into(),
            pod: Some(pod.into()),
            src: Ipv4Addr::new(10, 244, 1, 2),
            sport: 40_000,
            dst: Ipv4Addr::new(10, 244, 2, 3),
            dport,
            protocol: "TCP".into(),
            reason: "dropped: no ingress rule of x/deny matched".into(),
        }
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["weir", "monitor"];
        argv.extend_from_slice(extra);
        match crate::Args::parse_from(argv).command {
            crate::Command::Monitor(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drops_only_unless_all() {
        assert!(args(&[]).matches(&verdict("drop", "x/a", 80)));
        assert!(!args(&[]).matches(&verdict("allow", "x/a", 80)));
        assert!(args(&["--all"]).matches(&verdict("allow", "x/a", 80)));
        assert!(!args(&["--all", "--verdict", "drop"]).matches(&verdict("allow", "x/a", 80)));
    }

    #[test]
    fn pod_namespace_and_port_filter() {
        let v = verdict("drop", "x/a", 80);
        assert!(args(&["--namespace", "x", "--port", "80"]).matches(&v));
        assert!(!args(&["--namespace", "xy"]).matches(&v));
        assert!(args(&["--pod", "x/a"]).matches(&v));
        assert!(!args(&["--pod", "x/b"]).matches(&v));
        assert!(!args(&["--port", "81"]).matches(&v));
        assert!(args(&["--port", "40000"]).matches(&v));
    }

    #[test]
    fn table_line_names_pod_flow_and_reason() {
        let line = table_line(&verdict("drop", "x/a", 80));
        let pod = format!("{:<POD_WIDTH$}", "x/a");
        let flow = format!("{:<FLOW_WIDTH$}", "10.244.1.2:40000 → 10.244.2.3:80/TCP");
        assert!(
            line.contains(&format!("drop     ingress    {pod}  {flow}  dropped")),
            "{line}"
        );
        // The header's columns start where the rows' do.
        let header = format!(
            "{:<8}  {:<7}  {:<9}  {:<POD_WIDTH$}  ",
            "TIME", "VERDICT", "DIRECTION", "POD"
        );
        assert_eq!(line.find("10.244.1.2"), Some(header.chars().count()));
    }
}
