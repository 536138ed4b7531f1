//! Masquerade state → the masquerade maps.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use weir_common::MasqConfig;
use weir_common::nat::MASQ_ENABLED;

use crate::maps::{self, MasqMaps};

/// What masquerading should look like on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredMasq {
    /// The record the TC programs read.
    pub config: MasqConfig,
    /// Destinations that keep the pod's source address.
    pub skipped: BTreeSet<Ipv4Network>,
}

/// The uplink programs' node settings: the node address (NodePort SNAT
/// needs it even without masquerading) and, with `masquerade` (the
/// cluster's pod CIDR), masquerading of those pods except towards the
/// cluster itself and any node. Everything off without a node address.
#[must_use]
pub fn desired(
    masquerade: Option<Ipv4Network>,
    node_ip: Option<Ipv4Addr>,
    node_ips: &BTreeSet<Ipv4Addr>,
) -> DesiredMasq {
    let Some(node_ip) = node_ip else {
        return DesiredMasq::default();
    };
    let be = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
    let mut want = DesiredMasq {
        config: MasqConfig {
            node_ip: be(node_ip),
            ..MasqConfig::default()
        },
        skipped: BTreeSet::new(),
    };
    if let Some(cluster_cidr) = masquerade {
        want.config.pod_cidr = be(cluster_cidr.network());
        want.config.pod_mask = be(cluster_cidr.mask());
        want.config.flags = MASQ_ENABLED;
        want.skipped = node_ips
            .iter()
            .filter_map(|ip| Ipv4Network::new(*ip, 32).ok())
            .collect();
        want.skipped.insert(cluster_cidr);
    }
    want
}

/// Brings the maps to `want`: new skip entries first (never masquerade what
/// should not be, even for a moment), then the configuration, then stale
/// skip entries.
pub fn reconcile(maps: &mut impl MasqMaps, want: &DesiredMasq) -> maps::Result<()> {
    let current = maps.skipped()?;
    for net in want.skipped.difference(&current) {
        maps.add_skipped(*net)?;
    }
    if maps.config()? != want.config {
        maps.set_config(&want.config)?;
    }
    for net in current.difference(&want.skipped) {
        maps.delete_skipped(*net)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake(MasqConfig, BTreeSet<Ipv4Network>);

    impl MasqMaps for Fake {
        fn config(&self) -> maps::Result<MasqConfig> {
            Ok(self.0)
        }
        fn set_config(&mut self, config: &MasqConfig) -> maps::Result<()> {
            self.0 = *config;
            Ok(())
        }
        fn skipped(&self) -> maps::Result<BTreeSet<Ipv4Network>> {
            Ok(self.1.clone())
        }
        fn add_skipped(&mut self, net: Ipv4Network) -> maps::Result<()> {
            self.1.insert(net);
            Ok(())
        }
        fn delete_skipped(&mut self, net: Ipv4Network) -> maps::Result<()> {
            self.1.remove(&net);
            Ok(())
        }
        fn forget_udp_flows(&mut self, _: &[weir_common::Backend4]) -> maps::Result<usize> {
            Ok(0)
        }
    }

    #[test]
    fn skips_the_cluster_and_every_node_and_follows_changes() {
        let cidr: Ipv4Network = "10.244.0.0/16".parse().unwrap();
        let nodes: BTreeSet<Ipv4Addr> =
            ["198.18.0.11".parse().unwrap(), "198.18.0.12".parse().unwrap()].into();
        let want = desired(Some(cidr), Some("198.18.0.11".parse().unwrap()), &nodes);
        assert_eq!(want.config.flags, MASQ_ENABLED);
        assert_eq!(want.config.node_ip.to_ne_bytes(), [198, 18, 0, 11]);
        assert_eq!(want.config.pod_mask.to_ne_bytes(), [255, 255, 0, 0]);
        let mut maps = Fake::default();
        reconcile(&mut maps, &want).unwrap();
        assert_eq!(maps.1.len(), 3);
        let fewer = desired(Some(cidr), Some("198.18.0.11".parse().unwrap()), &BTreeSet::new());
        reconcile(&mut maps, &fewer).unwrap();
        assert_eq!(maps.1, BTreeSet::from([cidr]));
    }

    #[test]
    fn no_node_address_means_disabled() {
        let want = desired(Some("10.244.0.0/16".parse().unwrap()), None, &BTreeSet::new());
        assert_eq!(want.config, MasqConfig::default());
        let node_only = desired(None, Some("198.18.0.11".parse().unwrap()), &BTreeSet::new());
        assert_eq!(
            (node_only.config.flags, node_only.config.node_ip.to_ne_bytes()),
            (0, [198, 18, 0, 11])
        );
    }
}
