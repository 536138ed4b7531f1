//! The Service set as kube-proxy's nftables mode writes it, for `nft -f`.
//!
//! Shapes follow kubernetes `pkg/proxy/nftables/proxier.go` (`setupNFTables`,
//! `syncProxyRules`, `writeServiceToEndpointRules`; KEP-3866): one table
//! `ip kube-proxy`; base chains at kube-proxy's priorities jumping to
//! `services`, which looks the destination up in the `service-ips` verdict
//! map (`ip daddr . meta l4proto . th dport vmap @service-ips`) and, for
//! local destinations, in `service-nodeports`. Each Service port has a
//! chain `service-HASH-ns/name/tcp/port` marking outside traffic for
//! masquerading and choosing an endpoint with `numgen random mod N vmap`;
//! each endpoint a chain `endpoint-HASH-…__IP/PORT` that DNATs. The
//! `filter-*` chains and their maps (`cluster-ips`, `no-endpoint-*`,
//! `firewall-ips`) are there as upstream has them, empty where the
//! bench has nothing to put in them.
//!
//! An endpoint change is one incremental transaction, as kube-proxy's
//! partial syncs are: the new endpoint chain, the service chain rewritten,
//! the stale endpoint chain deleted.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::bench::services::{self, CLUSTER_CIDR, NAMESPACE, PEER_NODE_PORT, PORT, ServiceSet, TARGET_PORT};

/// The table, as kube-proxy names it.
pub const TABLE: &str = "ip kube-proxy";

fn base(i: usize) -> String {
    format!("{NAMESPACE}/{}/tcp/http", ServiceSet::name(i))
}

fn hash8(text: &str) -> String {
    services::chain_hash(text)[..8].to_owned()
}

fn service_chain(i: usize) -> String {
    let base = base(i);
    format!("service-{}-{base}", hash8(&base))
}

fn external_chain(i: usize) -> String {
    let base = base(i);
    format!("external-{}-{base}", hash8(&base))
}

fn endpoint_chain(i: usize, endpoint: Ipv4Addr) -> String {
    let base = format!("{}__{endpoint}/{TARGET_PORT}", base(i));
    format!("endpoint-{}-{base}", hash8(&base))
}

/// The static part: table, base chains, helper chains, maps.
const SKELETON: &str = "\
add table ip kube-proxy { comment \"rules for kube-proxy\" ; }
add chain ip kube-proxy mark-for-masquerade
add rule ip kube-proxy mark-for-masquerade meta mark set meta mark | 0x4000
add chain ip kube-proxy masquerading
add rule ip kube-proxy masquerading meta mark & 0x4000 == 0 return
add rule ip kube-proxy masquerading meta mark set meta mark ^ 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment \"Active ClusterIPs\" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add chain ip kube-proxy cluster-ips-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"
add chain ip kube-proxy firewall-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add chain ip kube-proxy nodeport-endpoints-check
add rule ip kube-proxy nodeport-endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
add chain ip kube-proxy services
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }
add rule ip kube-proxy filter-prerouting ct state new jump firewall-check
add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add chain ip kube-proxy filter-forward { type filter hook forward priority -110 ; }
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add chain ip kube-proxy filter-output { type filter hook output priority -110 ; }
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump firewall-check
add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }
add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add rule ip kube-proxy nat-prerouting jump services
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add rule ip kube-proxy nat-output jump services
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add rule ip kube-proxy nat-postrouting jump masquerading
";

/// Map elements per `add element` command (keeps lines of sane length).
const ELEMENTS_PER_COMMAND: usize = 1000;

/// Everything, as kube-proxy's first sync writes it in one transaction.
#[must_use]
pub fn full_ruleset(set: &ServiceSet) -> String {
    let mut out = String::with_capacity(set.count * (500 + 300 * set.endpoints));
    out.push_str(SKELETON);
    for i in 0..set.count {
        for endpoint in set.endpoints_of(i) {
            write_endpoint(&mut out, i, endpoint);
        }
        let _ = writeln!(out, "add chain {TABLE} {}", service_chain(i));
        write_service_rules(&mut out, set, i);
    }
    let probed = set.probed();
    let external = external_chain(probed);
    let _ = writeln!(
        out,
        "add chain {TABLE} {external}\n\
         add rule {TABLE} {external} jump mark-for-masquerade\n\
         add rule {TABLE} {external} goto {}\n\
         add element {TABLE} service-nodeports {{ tcp . {PEER_NODE_PORT} : goto {external} }}",
        service_chain(probed)
    );
    let indices: Vec<usize> = (0..set.count).collect();
    for chunk in indices.chunks(ELEMENTS_PER_COMMAND) {
        let ips: Vec<String> = chunk.iter().map(|&i| ServiceSet::vip(i).to_string()).collect();
        let _ = writeln!(out, "add element {TABLE} cluster-ips {{ {} }}", ips.join(", "));
        let entries: Vec<String> = chunk
            .iter()
            .map(|&i| {
                format!(
                    "{} . tcp . {PORT} : goto {}",
                    ServiceSet::vip(i),
                    service_chain(i)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "add element {TABLE} service-ips {{ {} }}",
            entries.join(", ")
        );
    }
    out
}

/// The transaction that moves the changed Service from `old_endpoints` to
/// its endpoints in `set`.
#[must_use]
pub fn endpoint_change(set: &ServiceSet, old_endpoints: &[Ipv4Addr]) -> String {
    let i = set.changed();
    let current = set.endpoints_of(i);
    let mut out = String::new();
    for endpoint in current.iter().filter(|e| !old_endpoints.contains(e)) {
        write_endpoint(&mut out, i, *endpoint);
    }
    let _ = writeln!(out, "flush chain {TABLE} {}", service_chain(i));
    write_service_rules(&mut out, set, i);
    for endpoint in old_endpoints.iter().filter(|e| !current.contains(e)) {
        let chain = endpoint_chain(i, *endpoint);
        let _ = writeln!(out, "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}");
    }
    out
}

fn write_endpoint(out: &mut String, i: usize, endpoint: Ipv4Addr) {
    let chain = endpoint_chain(i, endpoint);
    let _ = writeln!(
        out,
        "add chain {TABLE} {chain}\n\
         add rule {TABLE} {chain} ip saddr {endpoint} jump mark-for-masquerade\n\
         add rule {TABLE} {chain} meta l4proto tcp dnat to {endpoint}:{TARGET_PORT}"
    );
}

fn write_service_rules(out: &mut String, set: &ServiceSet, i: usize) {
    let chain = service_chain(i);
    let endpoints = set.endpoints_of(i);
    let verdicts: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(k, endpoint)| format!("{k} : goto {}", endpoint_chain(i, *endpoint)))
        .collect();
    let _ = writeln!(
        out,
        "add rule {TABLE} {chain} ip daddr {} tcp dport {PORT} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade\n\
         add rule {TABLE} {chain} numgen random mod {} vmap {{ {} }}",
        ServiceSet::vip(i),
        endpoints.len(),
        verdicts.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_an_element_of_the_verdict_map() {
        let set = ServiceSet::new(3, 2, vec![Ipv4Addr::new(10, 244, 1, 3)]);
        let text = full_ruleset(&set);
        assert!(text.contains("10.96.1.2 . tcp . 80 : goto service-"));
        assert!(text.contains("numgen random mod 2 vmap { 0 : goto endpoint-"));
        assert!(text.contains("numgen random mod 1 vmap { 0 : goto endpoint-"));
        assert!(text.contains(&format!("tcp . {PEER_NODE_PORT} : goto external-")));
        assert_eq!(text.matches("dnat to").count(), 2 * 2 + 1);
    }

    #[test]
    fn an_endpoint_change_swaps_one_endpoint_chain() {
        let mut set = ServiceSet::new(3, 2, vec![Ipv4Addr::new(10, 244, 1, 3)]);
        let old = set.endpoints_of(set.changed());
        set.generation = 1;
        let text = endpoint_change(&set, &old);
        assert_eq!(text.matches("delete chain").count(), 1);
        assert_eq!(text.matches("dnat to 10.200.0.1:8080").count(), 1);
    }
}
