use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::desired::compute;

/// A small deterministic generator (xorshift): the tests need varied
/// worlds, not a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    pub(crate) fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("below a usize")
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random Service `i`: few ClusterIPs so that Services collide, some
/// NodePort with a Local policy and a health check, some with affinity or
/// Maglev, some invalid.
pub(crate) fn random_service(rng: &mut Rng, i: usize) -> Service {
    let ip = format!("10.96.0.{}", 1 + rng.below(8));
    let mut spec = json!({
        "clusterIP": ip,
        "ports": [{"name": "http", "port": 80}],
    });
    if rng.chance(30) {
        spec["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "dns", "port": 53, "protocol": "UDP"}));
    }
    if rng.chance(40) {
        spec["type"] = json!("NodePort");
        spec["ports"][0]["nodePort"] = json!(30_000 + rng.below(4));
        if rng.chance(50) {
            spec["externalTrafficPolicy"] = json!("Local");
            spec["healthCheckNodePort"] = json!(32_000 + rng.below(3));
        }
    }
    if rng.chance(20) {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    if rng.chance(10) {
        spec["ports"][0]["port"] = json!(70_000);
    }
    let mut metadata = json!({"name": format!("s{i}"), "namespace": "default"});
    if rng.chance(20) {
        metadata["annotations"] = json!({ALGORITHM_ANNOTATION_KEY: "maglev"});
    }
    serde_json::from_value(json!({"metadata": metadata, "spec": spec})).unwrap()
}

const ALGORITHM_ANNOTATION_KEY: &str = crate::desired::ALGORITHM_ANNOTATION;

/// A random slice `j` of Service `i`: endpoints from a small pool, some on
/// this node ("n1"), some not ready.
pub(crate) fn random_slice(rng: &mut Rng, i: usize, j: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..rng.below(4))
        .map(|_| {
            json!({
                "addresses": [format!("10.244.{}.{}", 1 + rng.below(2), 2 + rng.below(5))],
                "nodeName": if rng.chance(50) { "n1" } else { "n2" },
                "conditions": {"ready": rng.chance(80)},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("s{i}-{j}"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080 + rng.below(2)}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

pub(crate) fn scope(rng: &mut Rng) -> Scope {
    Scope {
        node_name: Some("n1".into()),
        node_addresses: vec![format!("198.18.0.{}", 11 + rng.below(2)).parse().unwrap()],
        pod_cidr: Some("10.244.1.0/24".parse().unwrap()),
        ..Scope::default()
    }
}

/// A world of Services and slices that changes a little at each step.
pub(crate) struct World {
    pub(crate) services: Vec<Option<Arc<Service>>>,
    pub(crate) slices: Vec<Option<Arc<EndpointSlice>>>,
    pub(crate) scope: Scope,
}

impl World {
    pub(crate) fn new(rng: &mut Rng, size: usize) -> Self {
        Self {
            services: (0..size)
                .map(|i| Some(Arc::new(random_service(rng, i))))
                .collect(),
            slices: (0..2 * size)
                .map(|j| Some(Arc::new(random_slice(rng, j / 2, j))))
                .collect(),
            scope: scope(rng),
        }
    }

    /// Replaces, removes or restores one or two objects; rarely the scope.
    pub(crate) fn step(&mut self, rng: &mut Rng) {
        for _ in 0..=rng.below(2) {
            if rng.chance(50) {
                let i = rng.index(self.services.len());
                self.services[i] = (!rng.chance(20)).then(|| Arc::new(random_service(rng, i)));
            } else {
                let j = rng.index(self.slices.len());
                self.slices[j] = (!rng.chance(20)).then(|| Arc::new(random_slice(rng, j / 2, j)));
            }
        }
        if rng.chance(5) {
            self.scope = scope(rng);
        }
    }

    pub(crate) fn objects(&self) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        (
            self.services.iter().flatten().cloned().collect(),
            self.slices.iter().flatten().cloned().collect(),
        )
    }
}

fn plain<T: Clone>(objects: &[Arc<T>]) -> Vec<T> {
    objects.iter().map(|o| T::clone(o)).collect()
}

fn error_set(errors: &[ObjectError]) -> BTreeSet<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn kept_state_equals_a_fresh_computation_after_every_change() {
    for seed in 1..=40 {
        let mut rng = Rng::new(seed);
        let mut world = World::new(&mut rng, 10);
        let mut cache = ServiceCache::default();
        for step in 0..60 {
            let (services, slices) = world.objects();
            let before = cache.state().clone();
            let changes = cache.update(&services, &slices, &world.scope);
            let (fresh, errors) = compute(&plain(&services), &plain(&slices), &world.scope);
            assert_eq!(cache.state(), &fresh, "seed {seed} step {step}");
            assert_eq!(
                error_set(&cache.errors()),
                error_set(&errors),
                "seed {seed} step {step}"
            );
            // Every frontend that differs is named as changed.
            if !changes.full {
                let keys: BTreeSet<&L4Addr> = before.frontends.keys().chain(fresh.frontends.keys()).collect();
                for key in keys {
                    if before.frontends.get(key) != fresh.frontends.get(key) {
                        assert!(changes.frontends.contains(key), "seed {seed} step {step}: {key}");
                    }
                }
                let locals: BTreeSet<_> = before
                    .local_backends
                    .symmetric_difference(&fresh.local_backends)
                    .copied()
                    .collect();
                assert!(locals.is_subset(&changes.local), "seed {seed} step {step}");
            }
            world.step(&mut rng);
        }
    }
}

#[test]
fn unchanged_objects_change_nothing() {
    let mut rng = Rng::new(7);
    let world = World::new(&mut rng, 10);
    let (services, slices) = world.objects();
    let mut cache = ServiceCache::default();
    assert!(cache.update(&services, &slices, &world.scope).full);
    let again = cache.update(&services, &slices, &world.scope);
    assert_eq!(again, Changes::default());
}

#[test]
fn a_new_slice_recomputes_its_service_only() {
    let mut rng = Rng::new(3);
    let mut world = World::new(&mut rng, 10);
    let mut cache = ServiceCache::default();
    let (services, slices) = world.objects();
    cache.update(&services, &slices, &world.scope);
    world.slices[4] = Some(Arc::new(random_slice(&mut rng, 2, 4)));
    let (services, slices) = world.objects();
    let changes = cache.update(&services, &slices, &world.scope);
    assert!(!changes.full);
    assert_eq!(
        changes
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["s2"]
    );
}

#[test]
fn the_next_claimant_takes_over_a_frontend_its_owner_leaves() {
    let svc = |name: &str| -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.16", "ports": [{"port": 80}]},
            }))
            .unwrap(),
        )
    };
    let (a, b, c) = (svc("a"), svc("b"), svc("c"));
    let mut cache = ServiceCache::default();
    let scope = Scope::default();
    cache.update(&[c.clone(), a, b.clone()], &[], &scope);
    let owner = |cache: &ServiceCache| {
        cache
            .state()
            .frontends
            .values()
            .next()
            .unwrap()
            .service
            .name
            .clone()
    };
    assert_eq!(owner(&cache), "a");
    assert_eq!(cache.errors().len(), 2);
    let changes = cache.update(&[b, c], &[], &scope);
    assert_eq!(owner(&cache), "b");
    assert_eq!(cache.errors().len(), 1);
    // The new owner's view changes too.
    assert!(changes.services.iter().any(|s| s.name == "b"), "{changes:?}");
}
