//! The NetworkPolicy verdict log: the datapath's ring buffer of
//! [`PolicyVerdict`]s, attributed to pods, policies and rules, counted as
//! metrics and streamed as JSON lines to whoever listens on the verdict
//! socket (the `weir` CLI).
//!
//! The datapath only knows endpoint and rule ids; what they mean comes from
//! the last policy compilation ([`Context`], replaced after every policy
//! reconcile). A verdict whose ids the context no longer knows (the pod or
//! policy changed in between) is still reported, unattributed.

mod socket;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::broadcast;
use weir_common::policy::{POLICY_INGRESS, PolicyVerdict, RULE_NONE, VERDICT_ALLOW};

pub use socket::serve;

use crate::desired::protocol_name;
use crate::ops::Ops;

/// A local pod the policy programs know by endpoint id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Policies (`namespace/name`) isolating it for ingress.
    pub ingress: Vec<String>,
    /// Policies isolating it for egress.
    pub egress: Vec<String>,
}

/// A rule the datapath names by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// `namespace/name` of its policy.
    pub policy: String,
    /// Its index in the policy's `ingress` or `egress` list.
    pub index: usize,
}

/// What the ids in verdicts mean, as of the last policy compilation.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Endpoint id → pod.
    pub endpoints: BTreeMap<u16, EndpointInfo>,
    /// Rule id → rule.
    pub rules: BTreeMap<u16, RuleInfo>,
}

/// One verdict as operators read it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// `drop` or `allow`.
    pub verdict: &'static str,
    /// `ingress` (to `pod`) or `egress` (from `pod`).
    pub direction: &'static str,
    /// The pod whose policy decided (`namespace/name`), if known.
    pub pod: Option<String>,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// `TCP`, `UDP`, `SCTP`, `ICMP` or the number.
    pub protocol: String,
    /// For a drop: the policies that isolate the pod (none of their rules
    /// matched); for an allow: the policy whose rule matched.
    pub policies: Vec<String>,
    /// For an allow: the index of the matching rule in that policy.
    pub rule: Option<usize>,
    /// One line saying why.
    pub reason: String,
}

impl Verdict {
    /// Decodes and attributes one ring-buffer record.
    #[must_use]
    pub fn attribute(raw: &PolicyVerdict, context: &Context) -> Self {
        let direction = if raw.direction == POLICY_INGRESS {
            "ingress"
        } else {
            "egress"
        };
        let endpoint = context.endpoints.get(&raw.endpoint);
        let allow = raw.verdict == VERDICT_ALLOW;
        let rule = (raw.rule != RULE_NONE)
            .then(|| context.rules.get(&raw.rule))
            .flatten();
        let policies: Vec<String> = match (allow, rule, endpoint) {
            (true, Some(rule), _) => vec![rule.policy.clone()],
            (false, _, Some(ep)) if direction == "ingress" => ep.ingress.clone(),
            (false, _, Some(ep)) => ep.egress.clone(),
            _ => Vec::new(),
        };
        let reason = match (allow, rule) {
            (true, Some(rule)) => format!("allowed by {direction} rule {} of {}", rule.index, rule.policy),
            (true, None) => "allowed".to_owned(),
            (false, _) if policies.is_empty() => format!("dropped: no {direction} rule matched"),
            (false, _) => format!("dropped: no {direction} rule of {} matched", policies.join(", ")),
        };
        Verdict {
            verdict: if allow { "allow" } else { "drop" },
            direction,
            pod: endpoint.map(|ep| ep.pod.clone()),
            src: Ipv4Addr::from(u32::from_be(raw.saddr)),
            sport: u16::from_be(raw.sport),
            dst: Ipv4Addr::from(u32::from_be(raw.daddr)),
            dport: u16::from_be(raw.dport),
            protocol: protocol_name(raw.proto),
            policies,
            rule: rule.map(|r| r.index),
            reason,
        }
    }
}

/// Where verdicts go: the context to attribute them, the metrics, and the
/// socket's subscribers.
#[derive(Clone)]
pub struct Hub {
    context: Arc<RwLock<Context>>,
    lines: broadcast::Sender<Arc<str>>,
    ops: Ops,
}

impl Hub {
    /// A hub counting into `ops`.
    #[must_use]
    pub fn new(ops: Ops) -> Self {
        Self {
            context: Arc::default(),
            // A slow reader loses old lines, never blocks the datapath reader.
            lines: broadcast::channel(4096).0,
            ops,
        }
    }

    /// Replaces the id meanings (after a policy reconcile).
    pub fn set_context(&self, context: Context) {
        *self
            .context
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = context;
    }

    /// Attributes, counts, logs and broadcasts one record.
    pub fn report(&self, raw: &PolicyVerdict) -> Verdict {
        let verdict = {
            let context = self
                .context
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Verdict::attribute(raw, &context)
        };
        if verdict.policies.is_empty() {
            self.ops.verdict_unattributed();
        }
        for policy in &verdict.policies {
            self.ops
                .policy_verdict(policy, verdict.direction, verdict.verdict);
        }
        tracing::debug!(
            verdict = verdict.verdict,
            direction = verdict.direction,
            pod = verdict.pod.as_deref().unwrap_or("?"),
            src = %verdict.src,
            dst = %verdict.dst,
            dport = verdict.dport,
            protocol = %verdict.protocol,
            "{}",
            verdict.reason
        );
        // Drops come per packet: serialise only when someone listens.
        if self.lines.receiver_count() > 0
            && let Ok(line) = serde_json::to_string(&verdict)
        {
            let _ = self.lines.send(line.into());
        }
        verdict
    }

    /// A receiver of every later verdict as a JSON line.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.lines.subscribe()
    }
}

/// Reads the verdict ring buffer until the task is dropped.
pub async fn read(ring: aya::maps::RingBuf<aya::maps::MapData>, hub: Hub) {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and its as_raw_fd always returns that fd.
    let registered =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll the verdict ring buffer; no verdict log");
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(raw) = decode(&item) {
                hub.report(&raw);
            }
        }
        guard.clear_ready();
    }
}

/// A record as the program wrote it (`None`: not one of ours).
fn decode(bytes: &[u8]) -> Option<PolicyVerdict> {
    if bytes.len() < std::mem::size_of::<PolicyVerdict>() {
        return None;
    }
    // SAFETY: PolicyVerdict is repr(C) plain integers (any bit pattern is a
    // value) and the length was checked; read_unaligned copes with any
    // alignment of the ring buffer's data.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<PolicyVerdict>()) })
}

#[cfg(test)]
mod tests;
