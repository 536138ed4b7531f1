//! [`PolicyMaps`] over the pinned NetworkPolicy maps (layouts in
//! `weir_common::policy`).

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData};
use weir_common::policy::{
    POLICY_CONFIG_MAP, POLICY_ENDPOINTS_MAP, POLICY_HOSTS_MAP, POLICY_RULES_MAP, PolicyConfig,
    PolicyEndpoint, PolicyRuleKey, PolicyRuleValue,
};

use super::pinned::{ignore_missing, map_err};
use super::policy::{PolicyMaps, RuleKey};
use super::{Error, Result};

/// The bits of a rule trie key before the peer address: endpoint (16),
/// direction (8) and padding (8).
const KEY_HEADER_BITS: u32 = 32;

/// The pinned policy maps the agent writes (the conntrack table and the
/// verdict ring buffer belong to the datapath).
pub struct PinnedPolicyMaps {
    endpoints: HashMap<MapData, u32, PolicyEndpoint>,
    rules: LpmTrie<MapData, PolicyRuleKey, PolicyRuleValue>,
    hosts: HashMap<MapData, u32, u8>,
    config: Array<MapData, PolicyConfig>,
}

impl PinnedPolicyMaps {
    /// Wraps the maps taken out of a loaded eBPF object.
    pub fn new(
        endpoints: Option<Map>,
        rules: Option<Map>,
        hosts: Option<Map>,
        config: Option<Map>,
    ) -> Result<Self> {
        let endpoints = endpoints.ok_or(Error::Missing(POLICY_ENDPOINTS_MAP))?;
        let rules = rules.ok_or(Error::Missing(POLICY_RULES_MAP))?;
        let hosts = hosts.ok_or(Error::Missing(POLICY_HOSTS_MAP))?;
        let config = config.ok_or(Error::Missing(POLICY_CONFIG_MAP))?;
        Ok(Self {
            endpoints: HashMap::try_from(endpoints).map_err(map_err(POLICY_ENDPOINTS_MAP, "open"))?,
            rules: LpmTrie::try_from(rules).map_err(map_err(POLICY_RULES_MAP, "open"))?,
            hosts: HashMap::try_from(hosts).map_err(map_err(POLICY_HOSTS_MAP, "open"))?,
            config: Array::try_from(config).map_err(map_err(POLICY_CONFIG_MAP, "open"))?,
        })
    }
}

impl PinnedPolicyMaps {
    /// Opens the maps pinned under `bpffs` (read-only use: the `weir` CLI
    /// reads them while the agent may be down).
    pub fn from_pins(bpffs: &std::path::Path) -> Result<Self> {
        let open = |name| super::pinned::open_pinned(bpffs, name);
        Self::new(
            Some(open(POLICY_ENDPOINTS_MAP)?),
            Some(open(POLICY_RULES_MAP)?),
            Some(open(POLICY_HOSTS_MAP)?),
            Some(open(POLICY_CONFIG_MAP)?),
        )
    }
}

/// The trie key of a [`RuleKey`]: the trie matches the endpoint and
/// direction in full, then `peer_prefix_len` bits of the peer.
pub(crate) fn trie_key(key: &RuleKey) -> Key<PolicyRuleKey> {
    Key::new(KEY_HEADER_BITS + u32::from(key.peer_prefix_len.min(32)), key.data)
}

/// The [`RuleKey`] of a trie key, `None` for one no agent writes (shorter
/// than the endpoint and direction).
pub(crate) fn rule_key(key: &Key<PolicyRuleKey>) -> Option<RuleKey> {
    let peer_prefix_len = key.prefix_len().checked_sub(KEY_HEADER_BITS)?;
    Some(RuleKey {
        peer_prefix_len: u8::try_from(peer_prefix_len).ok().filter(|len| *len <= 32)?,
        data: key.data(),
    })
}

impl PolicyMaps for PinnedPolicyMaps {
    fn endpoints(&self) -> Result<Vec<(u32, PolicyEndpoint)>> {
        self.endpoints
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(POLICY_ENDPOINTS_MAP, "iterate"))
    }

    fn put_endpoint(&mut self, pod_ip: u32, endpoint: &PolicyEndpoint) -> Result<()> {
        self.endpoints
            .insert(&pod_ip, endpoint, 0)
            .map_err(map_err(POLICY_ENDPOINTS_MAP, "update"))
    }

    fn delete_endpoint(&mut self, pod_ip: u32) -> Result<()> {
        ignore_missing(self.endpoints.remove(&pod_ip)).map_err(map_err(POLICY_ENDPOINTS_MAP, "delete"))
    }

    fn rules(&self) -> Result<Vec<(RuleKey, PolicyRuleValue)>> {
        let mut rules = Vec::new();
        for entry in &self.rules {
            let (key, value) = entry.map_err(map_err(POLICY_RULES_MAP, "iterate"))?;
            // A key no agent writes (too short) is not one of ours to list.
            if let Some(key) = rule_key(&key) {
                rules.push((key, value));
            }
        }
        Ok(rules)
    }

    fn put_rule(&mut self, key: &RuleKey, value: &PolicyRuleValue) -> Result<()> {
        self.rules
            .insert(&trie_key(key), value, 0)
            .map_err(map_err(POLICY_RULES_MAP, "update"))
    }

    fn delete_rule(&mut self, key: &RuleKey) -> Result<()> {
        ignore_missing(self.rules.remove(&trie_key(key))).map_err(map_err(POLICY_RULES_MAP, "delete"))
    }

    fn hosts(&self) -> Result<Vec<u32>> {
        self.hosts
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(POLICY_HOSTS_MAP, "iterate"))
    }

    fn put_host(&mut self, address: u32) -> Result<()> {
        self.hosts
            .insert(&address, &1, 0)
            .map_err(map_err(POLICY_HOSTS_MAP, "update"))
    }

    fn delete_host(&mut self, address: u32) -> Result<()> {
        ignore_missing(self.hosts.remove(&address)).map_err(map_err(POLICY_HOSTS_MAP, "delete"))
    }

    fn set_config(&mut self, config: &PolicyConfig) -> Result<()> {
        self.config
            .set(0, config, 0)
            .map_err(map_err(POLICY_CONFIG_MAP, "update"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_keys_cover_endpoint_and_direction_then_the_peer_prefix() {
        let key = RuleKey {
            peer_prefix_len: 24,
            data: PolicyRuleKey {
                endpoint: 7u16.to_be_bytes(),
                direction: 1,
                pad: 0,
                peer: u32::from_ne_bytes([10, 0, 1, 0]),
            },
        };
        let trie = trie_key(&key);
        assert_eq!(trie.prefix_len(), 56);
        assert_eq!(rule_key(&trie), Some(key));
    }

    #[test]
    fn a_peer_prefix_is_at_most_32_bits_and_short_trie_keys_are_not_rules() {
        let key = RuleKey {
            peer_prefix_len: 40,
            data: PolicyRuleKey::default(),
        };
        assert_eq!(trie_key(&key).prefix_len(), 64);
        assert_eq!(rule_key(&Key::new(16, PolicyRuleKey::default())), None);
        assert_eq!(rule_key(&Key::new(65, PolicyRuleKey::default())), None);
        assert_eq!(
            rule_key(&Key::new(32, PolicyRuleKey::default())).map(|k| k.peer_prefix_len),
            Some(0)
        );
    }
}
