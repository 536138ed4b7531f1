//! The load-balancer desired state, kept between passes and brought up to
//! date by recomputing only the Services whose objects changed.
//!
//! A one-endpoint change in a cluster of 10k Services must not cost a pass
//! over all of them (kube-proxy's change trackers exist for the same
//! reason). Both sources hand out the same `Arc` for an object that did not
//! change, so "changed" is pointer identity: a Service is recomputed when
//! its own object or one of its slices is new or gone, or when the scope
//! (this node's name, addresses, podCIDR, settings) changed. The merged
//! state and the list of touched frontends tell the reconciler what to
//! write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::source::slim::{EndpointSlice, Service};

use super::service::{self, Contribution};
use super::{
    DesiredState, FrontendState, HealthCheck, L4Addr, ObjectError, ObjectRef, Reason, Scope, ServiceName,
};

/// What one [`ServiceCache::update`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Everything may have changed (first pass, or the scope changed).
    pub full: bool,
    /// Services recomputed.
    pub services: BTreeSet<ServiceName>,
    /// Frontends whose entry was added, changed or removed.
    pub frontends: BTreeSet<L4Addr>,
    /// Addresses that became, or stopped being, local backends.
    pub local: BTreeSet<Ipv4Addr>,
}

/// A Service's contribution as kept between passes: its frontends' entries
/// live in the state (or among the shadowed claims) only, not twice.
#[derive(Debug, Default)]
struct Kept {
    frontends: Vec<L4Addr>,
    /// Sorted.
    local_backends: Vec<Ipv4Addr>,
    /// The `healthCheckNodePort` and its local endpoints.
    health_check: Option<(u16, usize)>,
    errors: Vec<ObjectError>,
}

impl Kept {
    fn of(contribution: Contribution) -> Self {
        Self {
            frontends: contribution.frontends.into_iter().map(|(f, _)| f).collect(),
            local_backends: contribution.local_backends.into_iter().collect(),
            health_check: contribution
                .health_check
                .map(|(port, check)| (port, check.local_endpoints)),
            errors: contribution.errors,
        }
    }

    fn is_empty(&self) -> bool {
        self.frontends.is_empty()
            && self.local_backends.is_empty()
            && self.health_check.is_none()
            && self.errors.is_empty()
    }
}

/// One Service as the cache holds it.
pub struct ServiceEntry<'a> {
    /// The Service.
    pub service: &'a Arc<Service>,
    /// Its IPv4 slices.
    pub slices: Vec<&'a Arc<EndpointSlice>>,
    /// The frontends it holds in the state, by address.
    pub frontends: Vec<(&'a L4Addr, &'a FrontendState)>,
}

/// Objects as last seen, by identity (where their `Arc` points). Holding
/// the `Arc`s keeps an address from being reused by a new object that
/// would then look unchanged.
struct Seen<T> {
    /// By address: the object and the call that last saw it.
    objects: HashMap<usize, (Arc<T>, u64)>,
    calls: u64,
}

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            calls: 0,
        }
    }
}

impl<T> Seen<T> {
    /// Notes `objects` as the current ones; returns those not seen before
    /// and those seen before but not now.
    fn update<'a>(&mut self, objects: &'a [Arc<T>]) -> (Vec<&'a Arc<T>>, Vec<Arc<T>>) {
        self.calls += 1;
        let call = self.calls;
        let mut new = Vec::new();
        for object in objects {
            let entry = self.objects.entry(Arc::as_ptr(object).addr());
            entry.and_modify(|(_, seen)| *seen = call).or_insert_with(|| {
                new.push(object);
                (Arc::clone(object), call)
            });
        }
        let gone = self
            .objects
            .extract_if(|_, (_, seen)| *seen != call)
            .map(|(_, (object, _))| object)
            .collect();
        (new, gone)
    }
}

/// The desired load-balancer state, maintained per Service.
#[derive(Default)]
pub struct ServiceCache {
    /// The scope the contributions were computed for.
    scope: Option<Scope>,
    services: Seen<Service>,
    slices: Seen<EndpointSlice>,
    /// The current Service of each name, and the slices naming each Service.
    by_name: BTreeMap<ServiceName, Arc<Service>>,
    slices_of: HashMap<ServiceName, Vec<Arc<EndpointSlice>>>,
    contributions: BTreeMap<ServiceName, Kept>,
    state: DesiredState,
    /// Frontends claimed by more than one Service: the claims that lost.
    /// The Service first by namespace/name keeps a frontend, as the API
    /// server would have refused the later one.
    shadowed: BTreeMap<L4Addr, BTreeMap<ServiceName, FrontendState>>,
    /// How many Services count each address as a local backend.
    local_refs: HashMap<Ipv4Addr, usize>,
    /// Every claim on each `healthCheckNodePort`; the first Service keeps it.
    health_claims: BTreeMap<u16, BTreeMap<ServiceName, HealthCheck>>,
}

impl ServiceCache {
    /// The desired state as of the last update.
    #[must_use]
    pub fn state(&self) -> &DesiredState {
        &self.state
    }

    /// Service `name`, its slices and the frontends it holds in the state.
    #[must_use]
    pub fn service(&self, name: &ServiceName) -> Option<ServiceEntry<'_>> {
        let svc = self.by_name.get(name)?;
        let slices = self.slices_of.get(name).into_iter().flatten().collect();
        let mut held: Vec<_> = self
            .contributions
            .get(name)
            .into_iter()
            .flat_map(|c| &c.frontends)
            .filter_map(|frontend| {
                let (key, state) = self.state.frontends.get_key_value(frontend)?;
                (state.service == *name).then_some((key, state))
            })
            .collect();
        held.sort_unstable_by_key(|(frontend, _)| **frontend);
        Some(ServiceEntry {
            service: svc,
            slices,
            frontends: held,
        })
    }

    /// Every Service known, by name.
    pub fn names(&self) -> impl Iterator<Item = &ServiceName> {
        self.by_name.keys()
    }

    /// Services that program at least one frontend.
    #[must_use]
    pub fn programmed_services(&self) -> usize {
        self.contributions
            .values()
            .filter(|c| !c.frontends.is_empty())
            .count()
    }

    /// What the current objects cannot give: invalid Services and slices,
    /// and frontends claimed by a second Service.
    #[must_use]
    pub fn errors(&self) -> Vec<ObjectError> {
        let mut errors: Vec<ObjectError> = self
            .contributions
            .values()
            .flat_map(|c| c.errors.iter().cloned())
            .collect();
        for (frontend, losers) in &self.shadowed {
            let owner = &self.state.frontends[frontend].service;
            errors.extend(losers.keys().map(|loser| ObjectError {
                object: ObjectRef {
                    kind: "Service",
                    namespace: Some(loser.namespace.clone()),
                    name: loser.name.clone(),
                },
                reason: Reason::DuplicateFrontend {
                    frontend: *frontend,
                    owner: owner.clone(),
                },
            }));
        }
        errors
    }

    /// Brings the state to `services` and `slices` for `scope`.
    pub fn update(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        scope: &Scope,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut dirty = self.track_services(services);
        dirty.extend(self.track_slices(slices));
        if self.scope.as_ref() != Some(scope) {
            self.scope = Some(scope.clone());
            changes.full = true;
            dirty.extend(self.contributions.keys().cloned());
            dirty.extend(self.by_name.keys().cloned());
        }
        for name in dirty {
            let new = match self.by_name.get(&name) {
                Some(svc) => {
                    let slices: Vec<&EndpointSlice> = self
                        .slices_of
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .map(AsRef::as_ref)
                        .collect();
                    service::contribution(svc, &slices, scope)
                }
                None => Contribution::default(),
            };
            let old = self.contributions.remove(&name).unwrap_or_default();
            let old = self.expand(&name, old);
            if old != new {
                self.replace(&name, old, &new, &mut changes);
            }
            let kept = Kept::of(new);
            if !kept.is_empty() {
                self.contributions.insert(name.clone(), kept);
            }
            changes.services.insert(name);
        }
        changes
    }

    /// Notes new and gone Services; returns the names to recompute.
    fn track_services(&mut self, services: &[Arc<Service>]) -> Vec<ServiceName> {
        let (new, gone) = self.services.update(services);
        let mut dirty = Vec::with_capacity(new.len() + gone.len());
        for svc in new {
            let name = service::service_name(svc);
            self.by_name.insert(name.clone(), Arc::clone(svc));
            dirty.push(name);
        }
        for old in gone {
            let name = service::service_name(&old);
            // Replaced by a newer object of the same name: that one stays.
            if self.by_name.get(&name).is_some_and(|s| Arc::ptr_eq(s, &old)) {
                self.by_name.remove(&name);
            }
            dirty.push(name);
        }
        dirty
    }

    /// Notes new and gone slices; returns the Services they belong to.
    fn track_slices(&mut self, slices: &[Arc<EndpointSlice>]) -> Vec<ServiceName> {
        let (new, gone) = self.slices.update(slices);
        let mut dirty = Vec::with_capacity(new.len() + gone.len());
        for slice in new {
            if let Some(name) = service::service_of(slice) {
                self.slices_of
                    .entry(name.clone())
                    .or_default()
                    .push(Arc::clone(slice));
                dirty.push(name);
            }
        }
        for old in gone {
            let Some(name) = service::service_of(&old) else {
                continue;
            };
            if let Some(list) = self.slices_of.get_mut(&name) {
                list.retain(|s| !Arc::ptr_eq(s, &old));
                if list.is_empty() {
                    self.slices_of.remove(&name);
                }
            }
            dirty.push(name);
        }
        dirty
    }

    /// Swaps one Service's `old` contribution for `new` in the merged state.
    fn replace(&mut self, name: &ServiceName, old: Contribution, new: &Contribution, changes: &mut Changes) {
        for (frontend, state) in old.frontends {
            if new.frontends.iter().any(|(f, s)| *f == frontend && *s == state) {
                continue;
            }
            self.unclaim(frontend, name, changes);
            changes.frontends.insert(frontend);
        }
        for (frontend, state) in &new.frontends {
            if self.claimed_by(*frontend, name) == Some(state) {
                continue;
            }
            self.unclaim(*frontend, name, changes);
            self.claim(*frontend, state.clone(), changes);
            changes.frontends.insert(*frontend);
        }
        for ip in old.local_backends.difference(&new.local_backends) {
            if let Some(refs) = self.local_refs.get_mut(ip) {
                *refs -= 1;
                if *refs == 0 {
                    self.local_refs.remove(ip);
                    self.state.local_backends.remove(ip);
                    changes.local.insert(*ip);
                }
            }
        }
        for ip in new.local_backends.difference(&old.local_backends) {
            let refs = self.local_refs.entry(*ip).or_default();
            *refs += 1;
            if *refs == 1 {
                self.state.local_backends.insert(*ip);
                changes.local.insert(*ip);
            }
        }
        if old.health_check != new.health_check {
            if let Some((port, _)) = old.health_check {
                self.health_claims.entry(port).or_default().remove(name);
                self.refresh_health(port);
            }
            if let Some((port, check)) = &new.health_check {
                self.health_claims
                    .entry(*port)
                    .or_default()
                    .insert(name.clone(), check.clone());
                self.refresh_health(*port);
            }
        }
    }

    /// The contribution `kept` stands for, with the entries from the state.
    fn expand(&self, name: &ServiceName, kept: Kept) -> Contribution {
        Contribution {
            frontends: kept
                .frontends
                .into_iter()
                .filter_map(|f| Some((f, self.claimed_by(f, name)?.clone())))
                .collect(),
            local_backends: kept.local_backends.into_iter().collect(),
            health_check: kept.health_check.map(|(port, local_endpoints)| {
                let check = HealthCheck {
                    service: name.clone(),
                    local_endpoints,
                };
                (port, check)
            }),
            errors: kept.errors,
        }
    }

    /// The entry `name` holds for `frontend`, kept or shadowed.
    fn claimed_by(&self, frontend: L4Addr, name: &ServiceName) -> Option<&FrontendState> {
        match self.state.frontends.get(&frontend) {
            Some(state) if state.service == *name => Some(state),
            _ => self.shadowed.get(&frontend)?.get(name),
        }
    }

    /// `state.service` claims `frontend`. A Service that loses or gains a
    /// frontend this way is not itself recomputed, but its view changes.
    fn claim(&mut self, frontend: L4Addr, state: FrontendState, changes: &mut Changes) {
        let Some(owner) = self.state.frontends.get_mut(&frontend) else {
            self.state.frontends.insert(frontend, state);
            return;
        };
        let loser = if state.service < owner.service {
            changes.services.insert(owner.service.clone());
            std::mem::replace(owner, state)
        } else {
            state
        };
        self.shadowed
            .entry(frontend)
            .or_default()
            .insert(loser.service.clone(), loser);
    }

    fn unclaim(&mut self, frontend: L4Addr, name: &ServiceName, changes: &mut Changes) {
        if self
            .state
            .frontends
            .get(&frontend)
            .is_some_and(|s| s.service == *name)
        {
            self.state.frontends.remove(&frontend);
            // The next claimant in name order takes the frontend over.
            if let Some(losers) = self.shadowed.get_mut(&frontend)
                && let Some((_, next)) = losers.pop_first()
            {
                if losers.is_empty() {
                    self.shadowed.remove(&frontend);
                }
                changes.services.insert(next.service.clone());
                self.state.frontends.insert(frontend, next);
            }
        } else if let Some(losers) = self.shadowed.get_mut(&frontend) {
            losers.remove(name);
            if losers.is_empty() {
                self.shadowed.remove(&frontend);
            }
        }
    }

    fn refresh_health(&mut self, port: u16) {
        let first = self
            .health_claims
            .get(&port)
            .and_then(|claims| claims.values().next().cloned());
        if let Some(check) = first {
            self.state.health_checks.insert(port, check);
        } else {
            self.health_claims.remove(&port);
            self.state.health_checks.remove(&port);
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
pub(crate) mod tests;
