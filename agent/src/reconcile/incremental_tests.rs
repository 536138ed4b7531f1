use super::*;
use crate::desired::ServiceCache;
use crate::desired::cache::tests::{Rng, World};
use crate::maps::FakeLbMaps;
use crate::reconcile::tests::assert_consistent;

/// A full pass over what the incremental passes left: it must find
/// nothing to write.
fn assert_nothing_left(maps: &FakeLbMaps, desired: &DesiredState, context: &str) {
    let mut check = Reconciler::new(maps.clone());
    let summary = check.reconcile(desired).unwrap();
    assert_eq!(
        (summary.updated, summary.deleted),
        (0, 0),
        "{context}: a full pass still changes {:?}",
        check.maps().log
    );
}

#[test]
fn incremental_passes_leave_what_a_full_pass_would() {
    for seed in 1..=30 {
        let mut rng = Rng::new(seed);
        let mut world = World::new(&mut rng, 10);
        let mut cache = ServiceCache::default();
        let mut rec = Reconciler::new(FakeLbMaps::default());
        for step in 0..60 {
            let (services, slices) = world.objects();
            let changes = cache.update(&services, &slices, &world.scope);
            // Now and then a write fails part-way: what the datapath sees
            // then must hold together, and the next pass repairs the rest.
            if rng.chance(15) {
                rec.maps.fail_after_writes = Some(rng.index(6));
                if rec.reconcile_changes(cache.state(), &changes).is_err() {
                    assert_consistent(rec.maps());
                }
                rec.maps.fail_after_writes = None;
                world.step(&mut rng);
                continue;
            }
            rec.maps.log.clear();
            rec.reconcile_changes(cache.state(), &changes).unwrap();
            let context = format!("seed {seed} step {step}");
            assert_consistent(rec.maps());
            assert_nothing_left(rec.maps(), cache.state(), &context);
            world.step(&mut rng);
        }
    }
}

#[test]
fn one_endpoint_change_writes_only_its_entries() {
    let mut rng = Rng::new(11);
    let mut world = World::new(&mut rng, 10);
    let mut cache = ServiceCache::default();
    let mut rec = Reconciler::new(FakeLbMaps::default());
    let (services, slices) = world.objects();
    let changes = cache.update(&services, &slices, &world.scope);
    rec.reconcile_changes(cache.state(), &changes).unwrap();
    // An unchanged pass writes nothing and reads nothing back.
    let changes = cache.update(&services, &slices, &world.scope);
    rec.maps.log.clear();
    let summary = rec.reconcile_changes(cache.state(), &changes).unwrap();
    assert_eq!((summary.updated, summary.deleted), (0, 0));
    // One slice of one Service: at most that Service's entries move.
    world.slices[0] = None;
    let (services, slices) = world.objects();
    let changes = cache.update(&services, &slices, &world.scope);
    rec.maps.log.clear();
    let summary = rec.reconcile_changes(cache.state(), &changes).unwrap();
    let touched: usize = changes
        .frontends
        .iter()
        .map(|f| {
            1 + cache
                .state()
                .frontends
                .get(f)
                .map_or(4, |s| s.backends.len().max(4))
        })
        .sum();
    assert!(summary.updated + summary.deleted <= 2 * touched, "{summary:?}");
    assert_nothing_left(rec.maps(), cache.state(), "after one slice went");
}
