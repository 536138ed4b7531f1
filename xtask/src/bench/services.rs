//! The Service set every datapath of one size is programmed with.
//!
//! `count` ClusterIP Services `bench/svc-NNNNN`, each port 80 → 8080 with
//! `endpoints` endpoints. Only the last one — last in every rule order,
//! so iptables walks every other Service's rule before it matches — is
//! probed: its endpoints are the bench's real backend pods, and it is also
//! a NodePort. The other Services' endpoints are addresses no packet is ever
//! sent to (10.128.0.0/10); they exist to be programmed and walked past.
//!
//! An endpoint change replaces the first endpoint of one Service in the
//! middle of the set with a fresh address (`generation` makes it unique),
//! as a rolling update of that Service's pods would.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The Service port every Service declares.
pub const PORT: u16 = 80;
/// The backends' port.
pub const TARGET_PORT: u16 = 8080;
/// The probed Service's nodePort as weir is given it.
pub const NODE_PORT: u16 = 30080;
/// The probed Service's nodePort in the peers' rules: a port weir's TC
/// program has no frontend for, so it hands those packets to the kernel
/// (and to iptables/nftables) untouched.
pub const PEER_NODE_PORT: u16 = 31080;
/// The namespace of every bench Service.
pub const NAMESPACE: &str = "bench";
/// The cluster's pod CIDR (what kube-proxy calls `clusterCIDR`).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// First ClusterIP (10.96.1.0): Service `i` gets this + `i`.
const FIRST_VIP: u32 = u32::from_be_bytes([10, 96, 1, 0]);
/// First address of the endpoints nobody dials.
const FIRST_UNUSED_ENDPOINT: u32 = u32::from_be_bytes([10, 128, 0, 0]);
/// Where changed endpoints come from (outside the range above).
const FIRST_CHANGED_ENDPOINT: u32 = u32::from_be_bytes([10, 200, 0, 0]);

/// One size of the bench.
#[derive(Clone, Debug)]
pub struct ServiceSet {
    /// Number of Services.
    pub count: usize,
    /// Endpoints of every Service but the probed one.
    pub endpoints: usize,
    /// The probed Service's endpoints: real pods.
    pub backends: Vec<Ipv4Addr>,
    /// Endpoint changes applied so far.
    pub generation: u32,
}

impl ServiceSet {
    /// `count` Services (at least 2: the changed one is not the probed one).
    #[must_use]
    pub fn new(count: usize, endpoints: usize, backends: Vec<Ipv4Addr>) -> Self {
        ServiceSet {
            count: count.max(2),
            endpoints: endpoints.max(1),
            backends,
            generation: 0,
        }
    }

    /// The probed Service (the last).
    #[must_use]
    pub fn probed(&self) -> usize {
        self.count - 1
    }

    /// The Service whose endpoints change.
    #[must_use]
    pub fn changed(&self) -> usize {
        self.count / 2
    }

    /// Service `i`'s name.
    #[must_use]
    pub fn name(i: usize) -> String {
        format!("svc-{i:05}")
    }

    /// Service `i`'s ClusterIP.
    #[must_use]
    pub fn vip(i: usize) -> Ipv4Addr {
        Ipv4Addr::from(FIRST_VIP + u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// Service `i`'s endpoint addresses, as of this generation.
    #[must_use]
    pub fn endpoints_of(&self, i: usize) -> Vec<Ipv4Addr> {
        if i == self.probed() {
            return self.backends.clone();
        }
        let base = FIRST_UNUSED_ENDPOINT + u32::try_from(i * self.endpoints).unwrap_or(u32::MAX);
        let mut addresses: Vec<Ipv4Addr> = (0..self.endpoints)
            .map(|j| Ipv4Addr::from(base + u32::try_from(j).unwrap_or(0)))
            .collect();
        if i == self.changed() && self.generation > 0 {
            addresses[0] = Ipv4Addr::from(FIRST_CHANGED_ENDPOINT + self.generation);
        }
        addresses
    }

    /// Total endpoints.
    #[must_use]
    pub fn total_endpoints(&self) -> usize {
        (self.count - 1) * self.endpoints + self.backends.len()
    }

    /// Every Service and its EndpointSlice as the YAML weir's agent reads
    /// (what the API server would hold). Flow style keeps 30k Services to a
    /// file of a few MiB.
    #[must_use]
    pub fn manifest(&self) -> String {
        let mut out = String::with_capacity(self.count * 600);
        for i in 0..self.count {
            let name = Self::name(i);
            let (kind, node_port) = if i == self.probed() {
                ("NodePort", format!(", nodePort: {NODE_PORT}"))
            } else {
                ("ClusterIP", String::new())
            };
            let endpoints = self
                .endpoints_of(i)
                .iter()
                .map(|ip| format!("{{addresses: [{ip}]}}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
                 spec: {{type: {kind}, clusterIP: {vip}, ports: [{{name: http, port: {PORT}, targetPort: {TARGET_PORT}{node_port}}}]}}\n\
                 ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: {name}-a, namespace: {NAMESPACE}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: {TARGET_PORT}}}]\nendpoints: [{endpoints}]\n",
                vip = Self::vip(i),
            );
        }
        out
    }
}

/// A chain-name hash in the form kube-proxy uses: 16 characters of
/// base32. Upstream hashes with SHA-256; any well-mixed hash gives rules
/// of the same length and the same evaluation cost, so this one is FNV-1a.
#[must_use]
pub fn chain_hash(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in text.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    (0..16)
        .map(|k| char::from(ALPHABET[usize::try_from((hash >> (5 * k)) & 31).unwrap_or(0)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probed_service_is_last_and_only_the_changed_one_changes() {
        let backends = vec![Ipv4Addr::new(10, 244, 1, 3)];
        let mut set = ServiceSet::new(100, 4, backends.clone());
        assert_eq!(set.probed(), 99);
        assert_eq!(set.endpoints_of(99), backends);
        let before: Vec<_> = (0..100).map(|i| set.endpoints_of(i)).collect();
        set.generation = 1;
        let after: Vec<_> = (0..100).map(|i| set.endpoints_of(i)).collect();
        let changed: Vec<usize> = (0..100).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(changed, vec![50]);
        assert_eq!(set.total_endpoints(), 99 * 4 + 1);
        assert_eq!(ServiceSet::vip(0), Ipv4Addr::new(10, 96, 1, 0));
        assert_eq!(ServiceSet::vip(29_999), Ipv4Addr::new(10, 96, 118, 47));
    }

    #[test]
    fn chain_hashes_are_sixteen_base32_characters() {
        let hash = chain_hash("bench/svc-00001:http");
        assert_eq!(hash.len(), 16);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_ne!(hash, chain_hash("bench/svc-00002:http"));
    }
}
