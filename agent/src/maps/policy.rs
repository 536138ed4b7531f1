//! The NetworkPolicy maps as the policy reconciler sees them (layouts and
//! design in `weir_common::policy`): one trait, an in-memory fake here, the
//! pinned implementation beside it.

use std::collections::BTreeMap;

use weir_common::policy::{PolicyConfig, PolicyEndpoint, PolicyRuleKey, PolicyRuleValue};

use super::{Error, Result};

/// A rule trie entry: the peer prefix length (0–32) and the key data.
/// (The trie's own prefix length is 32 more: endpoint and direction.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    /// Peer prefix length, 0–32.
    pub peer_prefix_len: u8,
    /// Endpoint, direction and peer address.
    pub data: PolicyRuleKey,
}

/// The policy maps the agent writes.
///
/// Writes are idempotent (an existing value written again, a missing key
/// deleted: success), so a failed pass is simply retried.
pub trait PolicyMaps {
    /// All endpoints: local pod IP (network byte order) → endpoint.
    fn endpoints(&self) -> Result<Vec<(u32, PolicyEndpoint)>>;
    /// Inserts or replaces an endpoint.
    fn put_endpoint(&mut self, pod_ip: u32, endpoint: &PolicyEndpoint) -> Result<()>;
    /// Removes an endpoint; a missing key is success.
    fn delete_endpoint(&mut self, pod_ip: u32) -> Result<()>;
    /// All rule trie entries.
    fn rules(&self) -> Result<Vec<(RuleKey, PolicyRuleValue)>>;
    /// Inserts or replaces a rule trie entry.
    fn put_rule(&mut self, key: &RuleKey, value: &PolicyRuleValue) -> Result<()>;
    /// Removes a rule trie entry; a missing key is success.
    fn delete_rule(&mut self, key: &RuleKey) -> Result<()>;
    /// The node's own addresses (network byte order).
    fn hosts(&self) -> Result<Vec<u32>>;
    /// Adds a node address.
    fn put_host(&mut self, address: u32) -> Result<()>;
    /// Removes a node address; a missing one is success.
    fn delete_host(&mut self, address: u32) -> Result<()>;
    /// Writes the programs' settings.
    fn set_config(&mut self, config: &PolicyConfig) -> Result<()>;
}

/// In-memory [`PolicyMaps`] for unit tests, with a log of writes.
#[derive(Debug, Default, Clone)]
pub struct FakePolicyMaps {
    /// Endpoint map contents.
    pub endpoints: BTreeMap<u32, PolicyEndpoint>,
    /// Rule trie contents.
    pub rules: BTreeMap<RuleKey, PolicyRuleValue>,
    /// Node addresses.
    pub hosts: std::collections::BTreeSet<u32>,
    /// The settings last written.
    pub config: PolicyConfig,
    /// When `Some(n)`, the write after `n` more successful writes fails once.
    pub fail_after_writes: Option<usize>,
    /// Every successful write, in order (`put_rule`, `delete_endpoint`, …).
    pub log: Vec<&'static str>,
}

impl FakePolicyMaps {
    fn write(&mut self, op: &'static str) -> Result<()> {
        match self.fail_after_writes {
            Some(0) => {
                self.fail_after_writes = None;
                return Err(Error::Injected(op));
            }
            Some(n) => self.fail_after_writes = Some(n - 1),
            None => {}
        }
        self.log.push(op);
        Ok(())
    }
}

impl PolicyMaps for FakePolicyMaps {
    fn endpoints(&self) -> Result<Vec<(u32, PolicyEndpoint)>> {
        Ok(self.endpoints.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_endpoint(&mut self, pod_ip: u32, endpoint: &PolicyEndpoint) -> Result<()> {
        self.write("put_endpoint")?;
        self.endpoints.insert(pod_ip, *endpoint);
        Ok(())
    }

    fn delete_endpoint(&mut self, pod_ip: u32) -> Result<()> {
        self.write("delete_endpoint")?;
        self.endpoints.remove(&pod_ip);
        Ok(())
    }

    fn rules(&self) -> Result<Vec<(RuleKey, PolicyRuleValue)>> {
        Ok(self.rules.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_rule(&mut self, key: &RuleKey, value: &PolicyRuleValue) -> Result<()> {
        self.write("put_rule")?;
        self.rules.insert(*key, *value);
        Ok(())
    }

    fn delete_rule(&mut self, key: &RuleKey) -> Result<()> {
        self.write("delete_rule")?;
        self.rules.remove(key);
        Ok(())
    }

    fn hosts(&self) -> Result<Vec<u32>> {
        Ok(self.hosts.iter().copied().collect())
    }

    fn put_host(&mut self, address: u32) -> Result<()> {
        self.write("put_host")?;
        self.hosts.insert(address);
        Ok(())
    }

    fn delete_host(&mut self, address: u32) -> Result<()> {
        self.write("delete_host")?;
        self.hosts.remove(&address);
        Ok(())
    }

    fn set_config(&mut self, config: &PolicyConfig) -> Result<()> {
        self.write("set_config")?;
        self.config = *config;
        Ok(())
    }
}

/// A boxed implementation (the syncer holds the maps as a trait object).
impl<T: PolicyMaps + ?Sized> PolicyMaps for Box<T> {
    fn endpoints(&self) -> Result<Vec<(u32, PolicyEndpoint)>> {
        (**self).endpoints()
    }
    fn put_endpoint(&mut self, pod_ip: u32, endpoint: &PolicyEndpoint) -> Result<()> {
        (**self).put_endpoint(pod_ip, endpoint)
    }
    fn delete_endpoint(&mut self, pod_ip: u32) -> Result<()> {
        (**self).delete_endpoint(pod_ip)
    }
    fn rules(&self) -> Result<Vec<(RuleKey, PolicyRuleValue)>> {
        (**self).rules()
    }
    fn put_rule(&mut self, key: &RuleKey, value: &PolicyRuleValue) -> Result<()> {
        (**self).put_rule(key, value)
    }
    fn delete_rule(&mut self, key: &RuleKey) -> Result<()> {
        (**self).delete_rule(key)
    }
    fn hosts(&self) -> Result<Vec<u32>> {
        (**self).hosts()
    }
    fn put_host(&mut self, address: u32) -> Result<()> {
        (**self).put_host(address)
    }
    fn delete_host(&mut self, address: u32) -> Result<()> {
        (**self).delete_host(address)
    }
    fn set_config(&mut self, config: &PolicyConfig) -> Result<()> {
        (**self).set_config(config)
    }
}
