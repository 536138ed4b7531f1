//! The masquerade maps (layouts in `weir_common::nat`): one configuration
//! record and the trie of destinations that keep the pod's address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData};
use ipnetwork::Ipv4Network;
use weir_common::nat::{MASQ_CONFIG_MAP, MASQ_SKIP_MAP, NAT_MAP};
use weir_common::{Backend4, IPPROTO_UDP, MasqConfig, Nat4Entry, Nat4Key, NatRewrite};

use super::pinned::{ignore_missing, map_err};
use super::{Error, Result};

/// The masquerade configuration and skip trie, as the reconciler sees them.
pub trait MasqMaps {
    /// The current configuration.
    fn config(&self) -> Result<MasqConfig>;
    /// Replaces the configuration.
    fn set_config(&mut self, config: &MasqConfig) -> Result<()>;
    /// The destinations that are not masqueraded.
    fn skipped(&self) -> Result<BTreeSet<Ipv4Network>>;
    /// Adds a destination that is not masqueraded.
    fn add_skipped(&mut self, net: Ipv4Network) -> Result<()>;
    /// Removes one; a missing entry is success.
    fn delete_skipped(&mut self, net: Ipv4Network) -> Result<()>;
    /// Forgets the UDP flows of the NAT table that involve any of
    /// `backends` (either direction); returns how many entries went.
    fn forget_udp_flows(&mut self, backends: &[Backend4]) -> Result<usize>;
}

/// The pinned masquerade maps.
pub struct PinnedMasqMaps {
    config: Array<MapData, MasqConfig>,
    skip: LpmTrie<MapData, u32, u8>,
    nat: HashMap<MapData, Nat4Key, Nat4Entry>,
}

impl PinnedMasqMaps {
    /// Wraps the maps taken out of a loaded eBPF object.
    pub fn new(config: Option<Map>, skip: Option<Map>, nat: Option<Map>) -> Result<Self> {
        let nat = nat.ok_or(Error::Missing(NAT_MAP))?;
        let config = config.ok_or(Error::Missing(MASQ_CONFIG_MAP))?;
        let skip = skip.ok_or(Error::Missing(MASQ_SKIP_MAP))?;
        Ok(Self {
            config: Array::try_from(config).map_err(map_err(MASQ_CONFIG_MAP, "open"))?,
            skip: LpmTrie::try_from(skip).map_err(map_err(MASQ_SKIP_MAP, "open"))?,
            // An LRU hash: aya's HashMap wrapper serves both hash flavours.
            nat: HashMap::try_from(nat).map_err(map_err(NAT_MAP, "open"))?,
        })
    }
}

fn trie_key(net: Ipv4Network) -> Key<u32> {
    Key::new(
        u32::from(net.prefix()),
        u32::from_ne_bytes(net.network().octets()),
    )
}

impl MasqMaps for PinnedMasqMaps {
    fn config(&self) -> Result<MasqConfig> {
        self.config.get(&0, 0).map_err(map_err(MASQ_CONFIG_MAP, "lookup"))
    }

    fn set_config(&mut self, config: &MasqConfig) -> Result<()> {
        self.config
            .set(0, config, 0)
            .map_err(map_err(MASQ_CONFIG_MAP, "update"))
    }

    fn skipped(&self) -> Result<BTreeSet<Ipv4Network>> {
        let mut nets = BTreeSet::new();
        for key in self.skip.keys() {
            let key = key.map_err(map_err(MASQ_SKIP_MAP, "iterate"))?;
            #[expect(clippy::cast_possible_truncation, reason = "IPv4 prefixes are at most 32")]
            let prefix = key.prefix_len() as u8;
            if let Ok(net) = Ipv4Network::new(Ipv4Addr::from(key.data().to_ne_bytes()), prefix) {
                nets.insert(net);
            }
        }
        Ok(nets)
    }

    fn add_skipped(&mut self, net: Ipv4Network) -> Result<()> {
        self.skip
            .insert(&trie_key(net), &1, 0)
            .map_err(map_err(MASQ_SKIP_MAP, "update"))
    }

    fn delete_skipped(&mut self, net: Ipv4Network) -> Result<()> {
        ignore_missing(self.skip.remove(&trie_key(net))).map_err(map_err(MASQ_SKIP_MAP, "delete"))
    }

    fn forget_udp_flows(&mut self, backends: &[Backend4]) -> Result<usize> {
        // One walk of the table for all of them: it holds every flow.
        let mut stale = Vec::new();
        for entry in &self.nat {
            let (key, value) = entry.map_err(map_err(NAT_MAP, "iterate"))?;
            if key.proto == IPPROTO_UDP && backends.iter().any(|b| involves(&key, &value.rewrite, *b)) {
                stale.push(key);
            }
        }
        for key in &stale {
            ignore_missing(self.nat.remove(key)).map_err(map_err(NAT_MAP, "delete"))?;
        }
        Ok(stale.len())
    }
}

/// Whether a NAT entry belongs to a flow with `backend`: a forward entry
/// rewrites to it, a reply entry is keyed by it.
fn involves(key: &Nat4Key, rewrite: &NatRewrite, backend: Backend4) -> bool {
    (rewrite.daddr == backend.address && rewrite.dport == backend.port)
        || (key.saddr == backend.address && key.sport == backend.port)
}
