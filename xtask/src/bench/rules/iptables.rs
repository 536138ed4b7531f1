//! The Service set as kube-proxy's iptables mode writes it, for
//! `iptables-restore --noflush`.
//!
//! Shapes follow kubernetes `pkg/proxy/iptables/proxier.go`
//! (`syncProxyRules`, `writeServiceToEndpointRules`, `iptablesJumpChains`):
//! every ClusterIP is one rule in `KUBE-SERVICES` jumping to its
//! `KUBE-SVC-*` chain; that chain marks traffic from outside the cluster
//! CIDR for masquerading (`KUBE-MARK-MASQ`) and picks an endpoint with
//! `-m statistic --mode random --probability 1/(n-i)`; each `KUBE-SEP-*`
//! chain marks hairpin traffic and DNATs. NodePorts go through the
//! `KUBE-NODEPORTS` rule that must be last in `KUBE-SERVICES`, then a
//! `KUBE-EXT-*` chain; `KUBE-POSTROUTING` masquerades marked packets.
//! A new connection to the last Service thus walks every rule of
//! `KUBE-SERVICES` — the linear cost this comparison is about.
//!
//! A partial sync (KEP-3453, `MinimizeIPTablesRestore`) rewrites the
//! top-level chains in full and only the changed Service's own chains;
//! [`partial_restore`] writes exactly that.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::bench::services::{self, CLUSTER_CIDR, NAMESPACE, PEER_NODE_PORT, PORT, ServiceSet, TARGET_PORT};

/// `namespace/name:port` as kube-proxy names a Service port.
fn port_name(i: usize) -> String {
    format!("{NAMESPACE}/{}:http", ServiceSet::name(i))
}

fn svc_chain(i: usize) -> String {
    format!(
        "KUBE-SVC-{}",
        services::chain_hash(&format!("{}tcp", port_name(i)))
    )
}

fn ext_chain(i: usize) -> String {
    format!(
        "KUBE-EXT-{}",
        services::chain_hash(&format!("{}tcp", port_name(i)))
    )
}

fn sep_chain(i: usize, endpoint: Ipv4Addr) -> String {
    let key = format!("{}tcp{endpoint}:{TARGET_PORT}", port_name(i));
    format!("KUBE-SEP-{}", services::chain_hash(&key))
}

/// The jumps from the built-in chains, as kube-proxy ensures them at start
/// (`iptablesJumpChains`): appended once, with the first full restore.
const JUMPS: &[(&str, &str)] = &[
    (
        "filter",
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    ),
    (
        "filter",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    ),
    (
        "filter",
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    (
        "filter",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    (
        "nat",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    ),
];

/// Everything: what kube-proxy's first (full) sync writes, plus the jumps.
#[must_use]
pub fn full_restore(set: &ServiceSet) -> String {
    let mut out = String::with_capacity(set.count * (400 + 500 * set.endpoints));
    write_filter(&mut out, true);
    write_nat(&mut out, set, None, true);
    out
}

/// What a partial sync writes after the changed Service's endpoints moved
/// from `old_endpoints` to those of `set`.
#[must_use]
pub fn partial_restore(set: &ServiceSet, old_endpoints: &[Ipv4Addr]) -> String {
    let mut out = String::with_capacity(set.count * 200);
    write_filter(&mut out, false);
    write_nat(&mut out, set, Some(old_endpoints), false);
    out
}

fn write_filter(out: &mut String, jumps: bool) {
    out.push_str("*filter\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    if jumps {
        for (_, rule) in JUMPS.iter().filter(|(table, _)| *table == "filter") {
            let _ = writeln!(out, "{rule}");
        }
    }
    out.push_str(
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n",
    );
}

/// The nat table. `changed`: a partial sync, writing only the changed
/// Service's chains and deleting its stale endpoint chain.
fn write_nat(out: &mut String, set: &ServiceSet, changed: Option<&[Ipv4Addr]>, jumps: bool) {
    out.push_str("*nat\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let written: Vec<usize> = match changed {
        None => (0..set.count).collect(),
        Some(_) => vec![set.changed()],
    };
    for &i in &written {
        let _ = writeln!(out, ":{} - [0:0]", svc_chain(i));
        for endpoint in set.endpoints_of(i) {
            let _ = writeln!(out, ":{} - [0:0]", sep_chain(i, endpoint));
        }
    }
    // A stale chain is declared (which flushes it) and deleted, as upstream
    // does: only an empty chain can be deleted.
    let stale: Vec<String> = changed.map_or_else(Vec::new, |old| {
        let current = set.endpoints_of(set.changed());
        old.iter()
            .filter(|e| !current.contains(e))
            .map(|e| sep_chain(set.changed(), *e))
            .collect()
    });
    for chain in &stale {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let probed = set.probed();
    if changed.is_none() {
        let _ = writeln!(out, ":{} - [0:0]", ext_chain(probed));
    }
    if jumps {
        for (_, rule) in JUMPS.iter().filter(|(table, _)| *table == "nat") {
            let _ = writeln!(out, "{rule}");
        }
    }
    out.push_str(
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n",
    );
    // KUBE-SERVICES is rewritten in full on every sync, partial or not.
    for i in 0..set.count {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {}/32 --dport {PORT} -j {}",
            port_name(i),
            ServiceSet::vip(i),
            svc_chain(i)
        );
    }
    let _ = writeln!(
        out,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    let _ = writeln!(
        out,
        "-A KUBE-NODEPORTS -m comment --comment {} -m tcp -p tcp --dport {PEER_NODE_PORT} -j {}",
        port_name(probed),
        ext_chain(probed)
    );
    if changed.is_none() {
        let _ = writeln!(
            out,
            "-A {ext} -m comment --comment \"masquerade traffic for {} external destinations\" -j KUBE-MARK-MASQ\n-A {ext} -j {}",
            port_name(probed),
            svc_chain(probed),
            ext = ext_chain(probed),
        );
    }
    for &i in &written {
        write_service(out, set, i);
    }
    for chain in &stale {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
}

fn write_service(out: &mut String, set: &ServiceSet, i: usize) {
    let (name, svc, vip) = (port_name(i), svc_chain(i), ServiceSet::vip(i));
    let _ = writeln!(
        out,
        "-A {svc} -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {vip}/32 --dport {PORT} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
    );
    let endpoints = set.endpoints_of(i);
    let n = endpoints.len();
    for (k, endpoint) in endpoints.iter().enumerate() {
        let sep = sep_chain(i, *endpoint);
        let statistic = if k + 1 < n {
            #[expect(clippy::cast_precision_loss, reason = "endpoint counts are small")]
            let probability = 1.0 / (n - k) as f64;
            format!(" -m statistic --mode random --probability {probability:.10}")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "-A {svc} -m comment --comment \"{name} -> {endpoint}:{TARGET_PORT}\"{statistic} -j {sep}"
        );
    }
    for endpoint in &endpoints {
        let sep = sep_chain(i, *endpoint);
        let _ = writeln!(
            out,
            "-A {sep} -m comment --comment {name} -s {endpoint}/32 -j KUBE-MARK-MASQ\n\
             -A {sep} -m comment --comment {name} -m tcp -p tcp -j DNAT --to-destination {endpoint}:{TARGET_PORT}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ServiceSet {
        ServiceSet::new(
            3,
            2,
            vec![Ipv4Addr::new(10, 244, 1, 3), Ipv4Addr::new(10, 244, 1, 4)],
        )
    }

    #[test]
    fn the_probed_service_is_the_last_cluster_ip_rule_before_the_nodeports() {
        let text = full_restore(&set());
        let services: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(services.len(), 4);
        assert!(services[2].contains("-d 10.96.1.2/32"), "{}", services[2]);
        assert!(services[3].contains("KUBE-NODEPORTS"));
        assert!(text.contains("--probability 0.5000000000 -j KUBE-SEP-"));
        assert!(text.contains("-j DNAT --to-destination 10.244.1.4:8080"));
        assert_eq!(text.matches("COMMIT").count(), 2);
    }

    #[test]
    fn a_partial_sync_writes_the_changed_service_and_drops_its_stale_endpoint() {
        let mut set = set();
        let old = set.endpoints_of(set.changed());
        set.generation = 1;
        let text = partial_restore(&set, &old);
        assert_eq!(text.matches("-A KUBE-SERVICES").count(), 4);
        assert_eq!(text.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count(), 1);
        assert_eq!(text.lines().filter(|l| l.starts_with("-X KUBE-SEP-")).count(), 1);
        assert!(text.contains("DNAT --to-destination 10.200.0.1:8080"));
        assert!(!text.contains("-A INPUT"), "jumps are written once");
    }
}
