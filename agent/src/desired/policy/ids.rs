//! Endpoint and rule ids: kept across passes and restarts so live map
//! entries are not rewritten and the verdict log keeps naming the same rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weir_common::policy::{PolicyEndpoint, RULE_NONE};

use super::{PolicyState, RuleRef};

/// Ids an earlier pass handed out: endpoint ids from the endpoint map (the
/// truth after a restart or a failed pass), rule ids from the last
/// [`PolicyState`] (the maps do not name rules).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdHints {
    /// Pod IP → endpoint id.
    pub endpoints: BTreeMap<Ipv4Addr, u16>,
    /// Rule → rule id.
    pub rules: BTreeMap<RuleRef, u16>,
}

impl IdHints {
    /// The endpoint ids in the endpoint map (`PolicyMaps::endpoints`: pod
    /// IP in network byte order → endpoint).
    #[must_use]
    pub fn from_maps(endpoints: &[(u32, PolicyEndpoint)]) -> Self {
        Self {
            endpoints: endpoints
                .iter()
                .map(|(ip, ep)| (Ipv4Addr::from(ip.to_ne_bytes()), ep.id))
                .collect(),
            rules: BTreeMap::new(),
        }
    }

    /// Adds the rule ids of `previous`.
    #[must_use]
    pub fn with_rules_of(mut self, previous: &PolicyState) -> Self {
        self.rules = previous
            .rule_table
            .iter()
            .map(|(id, rule)| (rule.clone(), *id))
            .collect();
        self
    }
}

/// Endpoint ids for `ips`: the hinted id when no other pod of this pass
/// took it, else the lowest id that no pod and no hint uses (an id that
/// just left is not handed to another pod in the same pass, so stale rule
/// entries of the old pod never apply to the new one). Ids start at 1.
pub fn endpoint_ids(ips: impl IntoIterator<Item = Ipv4Addr>, hints: &IdHints) -> BTreeMap<Ipv4Addr, u16> {
    let ips: BTreeSet<Ipv4Addr> = ips.into_iter().collect();
    let mut used: BTreeSet<u16> = hints.endpoints.values().copied().collect();
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    let mut pending = Vec::new();
    for ip in ips {
        match hints.endpoints.get(&ip) {
            Some(id) if *id != 0 && taken.insert(*id) => {
                out.insert(ip, *id);
            }
            _ => pending.push(ip),
        }
    }
    let mut next: u16 = 1;
    for ip in pending {
        while used.contains(&next) || taken.contains(&next) {
            // More than 65535 local pods cannot happen (the endpoint map
            // holds 4096); stop rather than wrap onto id 0.
            let Some(n) = next.checked_add(1) else {
                return out;
            };
            next = n;
        }
        used.insert(next);
        out.insert(ip, next);
    }
    out
}

/// Hands out rule ids: a rule keeps its hinted id; a new rule gets the
/// lowest id no hint and no other rule uses, from 1. Should the id space
/// run out (65534 rules), further rules get [`RULE_NONE`]: still allowed,
/// only unnamed in the verdict log.
#[derive(Debug)]
pub struct RuleIds<'a> {
    hints: &'a BTreeMap<RuleRef, u16>,
    used: BTreeSet<u16>,
    next: u16,
    table: BTreeMap<u16, RuleRef>,
}

impl<'a> RuleIds<'a> {
    /// An allocator that keeps `hints`.
    pub fn new(hints: &'a BTreeMap<RuleRef, u16>) -> Self {
        Self {
            hints,
            used: hints.values().copied().collect(),
            next: 1,
            table: BTreeMap::new(),
        }
    }

    /// The id of `rule`.
    pub fn id(&mut self, rule: RuleRef) -> u16 {
        let id = match self.hints.get(&rule) {
            Some(id) if *id != RULE_NONE && !self.table.contains_key(id) => *id,
            _ => {
                while self.used.contains(&self.next) && self.next < RULE_NONE {
                    self.next += 1;
                }
                if self.next == RULE_NONE {
                    return RULE_NONE;
                }
                self.used.insert(self.next);
                self.next
            }
        };
        self.table.insert(id, rule);
        id
    }

    /// Rule id → rule.
    pub fn into_table(self) -> BTreeMap<u16, RuleRef> {
        self.table
    }
}
