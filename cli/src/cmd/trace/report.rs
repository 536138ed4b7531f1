//! What `weir trace` prints: the steps of the prediction and its summary
//! (field names are a stable interface), and the exit code it implies.

use std::fmt::Write as _;

use serde::Serialize;
use weir_agent::ops::trace::VerdictDoc;

pub use super::pick::Pick;

use crate::output::{Render, Table};

/// The whole trace.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The source address.
    pub source: String,
    /// `pod` (a pod of this node), `node` (one of this node's addresses) or
    /// `external` (anything else: it enters on the uplink).
    pub source_kind: String,
    /// `ip:port/PROTO` as dialled.
    pub destination: String,
    /// The frontend it matched, if any (`None`: the destination as is).
    pub frontend: Option<FrontendStep>,
    /// Where the connection may go, with each one's policy verdicts.
    pub candidates: Vec<Candidate>,
    /// `delivered`, `dropped by policy X` (or `dropped by policy`, when
    /// the deciding policies are not known), `refused (no endpoints)`,
    /// `unreachable (no route)` (no frontend, and no route but a rejecting
    /// one: e.g. a ClusterIP no Service has),
    /// `mixed` (some candidates delivered, some not) or `unknown` (some
    /// verdict could not be predicted: a remote agent did not answer).
    pub summary: String,
    /// What `--probe` observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
}

/// The load-balancing step.
#[derive(Debug, Clone, Serialize)]
pub struct FrontendStep {
    /// `ip:port/PROTO` of the frontend.
    pub address: String,
    /// `socket` (translated at `connect()`/`sendmsg()` for sources on this
    /// node) or `per_packet` (translated at the uplink for external sources).
    pub path: String,
    /// The frontend's flags (`affinity`, `external`, `maglev`).
    pub flags: Vec<String>,
    /// Backend slots; 0 means the connection is refused.
    pub backends: u16,
    /// How the frontend chooses: `random`, `affinity` (the client's last
    /// backend within the timeout, else random) or `maglev` (per-packet
    /// path: by a hash of the tuple).
    pub selection: String,
    /// What that choice gives for this client, and why.
    pub pick: Pick,
}

/// One place the connection may end up.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// `ip:port` the first packet is sent to after translation.
    pub backend: String,
    /// `local` (a pod of this node), `node ip` (a pod of that node),
    /// `direct` (not a pod weir knows: no ingress policy applies) or
    /// `unreachable` (no route).
    pub location: String,
    /// Source NAT on the way, e.g. `snat to 198.18.0.11` (NodePort to a
    /// remote backend, externalTrafficPolicy Cluster).
    pub nat: Option<String>,
    /// The source pod's egress verdict (`None`: the source is not a pod of
    /// this node).
    pub egress: Option<VerdictDoc>,
    /// The destination pod's ingress verdict (`None`: not a pod).
    pub ingress: Option<VerdictDoc>,
    /// `delivered`, `dropped`, `unreachable` or `unknown`.
    pub outcome: String,
    /// Whether this is the backend the datapath will choose (affinity or
    /// Maglev; then the summary is this candidate's outcome alone).
    pub picked: bool,
}

/// A real connection's outcome next to the prediction.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// `delivered` (connected / answered), `refused`, `dropped` (timed
    /// out), `unreachable` (no route) or `error`.
    pub outcome: String,
    /// What happened, in words (the answer, or the error).
    pub detail: String,
    /// Whether the outcome is one the prediction allows (`mixed` allows
    /// `delivered` and `dropped`).
    pub agrees: bool,
}

/// Exit code of a trace whose candidates are partly delivered, partly not
/// (or not predictable); 0 means all delivered, `exit::DROPPED` (6) none.
pub const MIXED: u8 = 7;

impl Trace {
    /// The exit code of the prediction: 0 all delivered, 6 none (dropped,
    /// refused or unreachable), [`MIXED`] otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self.summary.as_str() {
            "delivered" => crate::exit::OK,
            s if s.starts_with("dropped") || s.starts_with("refused") || s.starts_with("unreachable") => {
                crate::exit::DROPPED
            }
            _ => MIXED,
        }
    }
}

impl Render for Trace {
    fn table(&self) -> String {
        let mut out = format!("{} ({}) → {}\n", self.source, self.source_kind, self.destination);
        match &self.frontend {
            Some(f) => {
                let flags = if f.flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", f.flags.join(","))
                };
                let _ = writeln!(
                    out,
                    "  frontend  {}{flags}: {} backend(s), {} path, {} selection",
                    f.address, f.backends, f.path, f.selection
                );
                let chosen = f.pick.backend.as_deref().unwrap_or("any candidate");
                let _ = writeln!(out, "  pick      {} by {}: {}", chosen, f.pick.by, f.pick.reason);
            }
            None => out.push_str("  frontend  none: the destination as is\n"),
        }
        if !self.candidates.is_empty() {
            let mut table = Table::new(&["  BACKEND", "WHERE", "NAT", "EGRESS", "INGRESS", "OUTCOME"]);
            for c in &self.candidates {
                let mark = if c.picked { "* " } else { "  " };
                table.row(vec![
                    format!("{mark}{}", c.backend),
                    c.location.clone(),
                    c.nat.clone().unwrap_or_else(|| "-".into()),
                    verdict_cell(c.egress.as_ref()),
                    verdict_cell(c.ingress.as_ref()),
                    c.outcome.clone(),
                ]);
            }
            out.push_str(&table.render());
        }
        let _ = writeln!(out, "  summary   {}", self.summary);
        if let Some(p) = &self.probe {
            let agrees = if p.agrees {
                "agrees"
            } else {
                "DISAGREES with the prediction"
            };
            let _ = writeln!(out, "  probe     {} ({}): {agrees}", p.outcome, p.detail);
        }
        out
    }
}

/// `allow (rule 3, x/allow-a)`, `drop (x/deny-all)`, `-`.
fn verdict_cell(verdict: Option<&VerdictDoc>) -> String {
    let Some(v) = verdict else { return "-".into() };
    let mut detail = Vec::new();
    if let Some(rule) = v.rule {
        detail.push(format!("rule {rule}"));
    }
    detail.extend(v.policies.iter().cloned());
    if detail.is_empty() && v.verdict != "unknown" {
        detail.push(v.reason.clone());
    }
    if detail.is_empty() {
        v.verdict.clone()
    } else {
        format!("{} ({})", v.verdict, detail.join(", "))
    }
}
