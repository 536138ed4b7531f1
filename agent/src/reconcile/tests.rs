use std::net::Ipv4Addr;

use super::*;
use crate::desired::{FrontendState, L4Addr, Protocol, ServiceName};
use crate::maps::{FakeLbMaps, dump};

fn tcp(ip: [u8; 4], port: u16) -> L4Addr {
    L4Addr {
        ip: Ipv4Addr::from(ip),
        port,
        proto: Protocol::Tcp,
    }
}

fn state(frontends: &[(L4Addr, &[L4Addr])]) -> DesiredState {
    let mut desired = DesiredState::default();
    for (frontend, backends) in frontends {
        let service = ServiceName {
            namespace: "default".into(),
            name: "echo".into(),
        };
        desired.frontends.insert(
            *frontend,
            FrontendState {
                service,
                backends: backends.to_vec(),
                affinity_timeout: None,
                external: false,
                maglev: None,
            },
        );
    }
    desired
}

fn vip() -> L4Addr {
    tcp([10, 96, 0, 10], 80)
}

fn three() -> Vec<L4Addr> {
    vec![
        tcp([10, 244, 1, 2], 8080),
        tcp([10, 244, 1, 3], 8080),
        tcp([10, 244, 1, 4], 8080),
    ]
}

/// Every master count names slots that exist, and every slot names a backend
/// that exists: what the datapath relies on between any two writes.
pub(super) fn assert_consistent(maps: &FakeLbMaps) {
    for (key, value) in maps.services.iter().filter(|(k, _)| k.backend_slot == 0) {
        for slot in 1..=value.count {
            let slot_key = Service4Key {
                backend_slot: slot,
                ..*key
            };
            let slot_value = maps
                .services
                .get(&slot_key)
                .unwrap_or_else(|| panic!("slot {slot} of {key:?} missing"));
            assert!(
                maps.backends.contains_key(&slot_value.backend_id),
                "backend of slot {slot} missing"
            );
        }
    }
}

use weir_common::Service4Key;

#[test]
fn fresh_maps_get_the_expected_entries() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    let summary = rec.reconcile(&state(&[(vip(), &three())])).unwrap();
    assert_eq!((summary.frontends, summary.backends, summary.deleted), (1, 3, 0));
    assert_eq!(
        dump(rec.maps()).unwrap(),
        "svc 10.96.0.10:80/6 count=3\n\
         svc 10.96.0.10:80/6 slot=1 backend=1\n\
         svc 10.96.0.10:80/6 slot=2 backend=2\n\
         svc 10.96.0.10:80/6 slot=3 backend=3\n\
         backend 1 10.244.1.2:8080/6\n\
         backend 2 10.244.1.3:8080/6\n\
         backend 3 10.244.1.4:8080/6\n"
    );
    assert_consistent(rec.maps());
}

#[test]
fn second_pass_writes_nothing() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    let desired = state(&[(vip(), &three())]);
    rec.reconcile(&desired).unwrap();
    let again = rec.reconcile(&desired).unwrap();
    assert_eq!((again.updated, again.deleted), (0, 0));
}

#[test]
fn removed_backend_shrinks_the_count_before_its_slot_and_backend_go() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&state(&[(vip(), &three())])).unwrap();
    rec.maps.log.clear();
    let two = &three()[..2];
    rec.reconcile(&state(&[(vip(), two)])).unwrap();
    assert_eq!(
        rec.maps().log,
        ["put_service", "delete_service", "delete_backend"]
    );
    assert_eq!(rec.maps().services.len(), 3);
    assert_eq!(rec.maps().backends.len(), 2);
}

#[test]
fn restart_adopts_existing_entries_without_writing() {
    let mut first = Reconciler::new(FakeLbMaps::default());
    let desired = state(&[(vip(), &three())]);
    first.reconcile(&desired).unwrap();
    let mut maps = first.maps().clone();
    maps.log.clear();
    let mut second = Reconciler::new(maps);
    let summary = second.reconcile(&desired).unwrap();
    assert_eq!((summary.updated, summary.deleted), (0, 0));
}

#[test]
fn backend_ids_stay_stable_and_new_backends_fill_the_lowest_free_id() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&state(&[(vip(), &three())])).unwrap();
    let without_first = &three()[1..];
    rec.reconcile(&state(&[(vip(), without_first)])).unwrap();
    let mut with_new = without_first.to_vec();
    with_new.push(tcp([10, 244, 1, 9], 8080));
    rec.reconcile(&state(&[(vip(), &with_new)])).unwrap();
    let backends: Vec<_> = rec
        .maps()
        .backends
        .iter()
        .map(|(id, b)| (*id, b.address.to_ne_bytes()[3]))
        .collect();
    assert_eq!(backends, [(1, 9), (2, 3), (3, 4)]);
}

#[test]
fn frontend_without_backends_is_programmed_with_count_zero() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&state(&[(vip(), &[])])).unwrap();
    assert_eq!(dump(rec.maps()).unwrap(), "svc 10.96.0.10:80/6 count=0\n");
}

#[test]
fn a_failure_at_any_write_leaves_consistent_maps_and_a_retry_converges() {
    let before = state(&[(vip(), &three()), (tcp([10, 96, 0, 11], 53), &three()[..1])]);
    let after = state(&[(vip(), &[tcp([10, 244, 1, 3], 8080), tcp([10, 244, 1, 7], 8080)])]);
    let mut clean = Reconciler::new(FakeLbMaps::default());
    clean.reconcile(&before).unwrap();
    clean.reconcile(&after).unwrap();
    let expected = dump(clean.maps()).unwrap();

    for fail_at in 0..20 {
        let mut rec = Reconciler::new(FakeLbMaps::default());
        rec.reconcile(&before).unwrap();
        rec.maps.fail_after_writes = Some(fail_at);
        let failed = rec.reconcile(&after).is_err();
        assert_consistent(rec.maps());
        rec.reconcile(&after).unwrap();
        assert_eq!(
            dump(rec.maps()).unwrap(),
            expected,
            "fail_at={fail_at} failed={failed}"
        );
    }
}

#[test]
fn affinity_is_programmed_in_the_master_and_stale_sticky_entries_are_pruned() {
    use weir_common::lb::{Affinity4Key, Affinity4Value};
    let mut desired = state(&[(vip(), &three())]);
    desired.frontends.get_mut(&vip()).unwrap().affinity_timeout = Some(30);
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&desired).unwrap();
    let master = rec.maps().services[&layout::service_key(&vip(), 0)];
    assert_eq!((master.flags, master.backend_id, master.count), (1, 30, 3));

    // The datapath made two clients sticky: one to backend 3, one to 1.
    let key = layout::service_key(&vip(), 0);
    let sticky = |client, backend_id| {
        let k = Affinity4Key {
            client,
            address: key.address,
            port: key.port,
            proto: key.proto,
            pad: 0,
        };
        (
            k,
            Affinity4Value {
                last_used_ns: 1,
                backend_id,
                pad: 0,
            },
        )
    };
    rec.maps.affinity.extend([sticky(7, 3), sticky(8, 1)]);
    // Backend 3 (10.244.1.4) leaves: only the entry naming it goes.
    desired.frontends.get_mut(&vip()).unwrap().backends.pop();
    rec.reconcile(&desired).unwrap();
    assert_eq!(
        rec.maps().affinity.keys().map(|k| k.client).collect::<Vec<_>>(),
        [8]
    );
    // Affinity switched off: every entry goes.
    desired.frontends.get_mut(&vip()).unwrap().affinity_timeout = None;
    rec.reconcile(&desired).unwrap();
    assert!(rec.maps().affinity.is_empty());
}

#[test]
fn maglev_frontends_get_a_table_of_their_backend_ids_and_lose_it_with_them() {
    let mut desired = state(&[(vip(), &three())]);
    let frontend = desired.frontends.get_mut(&vip()).unwrap();
    frontend.external = true;
    frontend.maglev = Some(251);
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&desired).unwrap();
    let key = layout::service_key(&vip(), 0);
    let master = rec.maps().services[&key];
    assert_eq!(
        master.flags,
        weir_common::lb::SVC_FLAG_EXTERNAL | weir_common::lb::SVC_FLAG_MAGLEV
    );
    let table = rec.maps().maglev[&key];
    assert_eq!(table.size, 251);
    let mut ids: Vec<u32> = table.backends[..251].to_vec();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [1, 2, 3]);
    assert!(table.backends[251..].iter().all(|id| *id == 0));
    desired.frontends.clear();
    rec.reconcile(&desired).unwrap();
    assert!(rec.maps().maglev.is_empty());
}

#[test]
fn one_frontend_changing_writes_only_that_frontends_entries() {
    // An EndpointSlice of one Service changes: the pass must not rewrite the
    // other Services (at 10k Services a full rewrite per event would be the
    // whole cost of an event).
    let other_vip = tcp([10, 96, 0, 20], 443);
    let others = [tcp([10, 244, 2, 2], 8443), tcp([10, 244, 2, 3], 8443)];
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&state(&[(vip(), &three()), (other_vip, &others)]))
        .unwrap();
    let untouched = |maps: &FakeLbMaps| {
        maps.services
            .iter()
            .filter(|(k, _)| k.address == u32::from(other_vip.ip).to_be())
            .map(|(k, v)| (*k, *v))
            .collect::<Vec<_>>()
    };
    let before = untouched(rec.maps());
    rec.maps_mut().log.clear();

    let mut grown = three();
    grown.push(tcp([10, 244, 1, 5], 8080));
    let summary = rec
        .reconcile(&state(&[(vip(), &grown), (other_vip, &others)]))
        .unwrap();
    // The new backend, its slot, and the master's count: nothing else.
    assert_eq!((summary.updated, summary.deleted), (3, 0));
    assert_eq!(rec.maps().log, ["put_backend", "put_service", "put_service"]);
    assert_eq!(untouched(rec.maps()), before);
}

#[test]
fn passes_diff_against_what_they_wrote_and_read_the_maps_back_periodically() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    let desired = state(&[(vip(), &three())]);
    rec.reconcile(&desired).unwrap();
    // Someone else writes a stale frontend, behind the reconciler's back.
    let stale = layout::service_key(&tcp([10, 96, 0, 99], 80), 0);
    let value = rec.maps.services.values().next().copied().unwrap();
    rec.maps.services.insert(stale, value);
    for _ in 1..FULL_READ_EVERY {
        rec.reconcile(&desired).unwrap();
        assert!(
            rec.maps.services.contains_key(&stale),
            "no read between full reads"
        );
    }
    rec.reconcile(&desired).unwrap();
    assert!(
        !rec.maps.services.contains_key(&stale),
        "the periodic read prunes it"
    );
    assert_consistent(rec.maps());
}

#[test]
fn a_pass_after_a_failed_one_converges() {
    let mut rec = Reconciler::new(FakeLbMaps::default());
    rec.reconcile(&state(&[(vip(), &three())])).unwrap();
    rec.maps_mut().fail_after_writes = Some(1);
    let other = state(&[(tcp([10, 96, 0, 11], 80), &three()[..1])]);
    assert!(rec.reconcile(&other).is_err());
    rec.maps_mut().fail_after_writes = None;
    rec.reconcile(&other).unwrap();
    assert_consistent(rec.maps());
    assert_eq!(rec.maps().services.len(), 2, "one master and its one slot");
    assert_eq!(rec.maps().backends.len(), 1);
}
