//! The Kubernetes API access the agent needs — its RBAC rules — derived
//! from the very types it watches and writes, so the `ClusterRole` in
//! `deploy/` can be checked against the code (`tests/tests/deploy.rs`)
//! rather than against a second hand-kept list.
//!
//! - every kind the watchers follow ([`Kind::ALL`], each bound to its
//!   object type by [`super::apiserver::Watched`]): `get`, `list`, `watch`;
//! - `events.k8s.io/v1` Events, the type kube-rs's event `Recorder` writes
//!   (a new Event is created, a repeat of it patched): `create`, `patch`.

use k8s_openapi::api::events::v1::Event;

use super::apiserver::Kind;

/// What a watched resource needs: read access, as a reflector lists and
/// watches (and `kubectl`-style tools expect `get` alongside).
pub const READ: [&str; 3] = ["get", "list", "watch"];

/// What the Warning Events need (see `crate::kubernetes::events`).
pub const EVENTS: [&str; 2] = ["create", "patch"];

/// One RBAC rule: verbs on a resource of an API group (`""`: core).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Verbs, sorted.
    pub verbs: Vec<&'static str>,
}

impl Access {
    /// `verbs` on the resource of object type `K`.
    #[must_use]
    pub fn of<K: k8s_openapi::Resource>(verbs: &[&'static str]) -> Self {
        let mut verbs = verbs.to_vec();
        verbs.sort_unstable();
        Self {
            group: K::GROUP,
            resource: K::URL_PATH_SEGMENT,
            verbs,
        }
    }
}

/// Every rule the agent needs in Kubernetes mode, sorted by group and
/// resource: exactly what the `ClusterRole` must grant.
#[must_use]
pub fn required() -> Vec<Access> {
    let mut rules: Vec<Access> = Kind::ALL.iter().map(|kind| kind.access()).collect();
    rules.push(Access::of::<Event>(&EVENTS));
    rules.sort();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_watched_kind_and_one_for_events() {
        let rules = required();
        let names: Vec<(&str, &str)> = rules.iter().map(|r| (r.group, r.resource)).collect();
        assert_eq!(
            names,
            [
                ("", "namespaces"),
                ("", "nodes"),
                ("", "pods"),
                ("", "services"),
                ("discovery.k8s.io", "endpointslices"),
                ("events.k8s.io", "events"),
                ("networking.k8s.io", "networkpolicies"),
            ]
        );
        assert!(
            rules
                .iter()
                .all(|r| r.verbs == ["get", "list", "watch"] || r.resource == "events")
        );
    }
}
