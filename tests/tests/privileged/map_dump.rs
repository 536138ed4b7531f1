//! Checked-in map dumps: the agent's maps for a set of YAML fixtures
//! (`tests/fixtures/dump/manifests`) must equal `tests/fixtures/dump/expected.txt`
//! after the first reconcile, and again after `kill -9`, stale entries
//! written behind the agent's back, and a restart (restore → reconcile →
//! prune). Backend ids are part of the dump, so the second comparison also
//! proves a restart reuses them. `WEIR_BLESS=1` rewrites the expected file.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData};
use weir_agent::maps::{self, LbMaps as _, MasqMaps as _, PinnedLbMaps, PinnedMasqMaps};
use weir_common::lb::{AFFINITY_MAP, BACKEND_LOCAL, BACKENDS_MAP, MAGLEV_MAP, SERVICES_MAP};
use weir_common::nat::{MASQ_CONFIG_MAP, MASQ_SKIP_MAP, NAT_MAP};
use weir_common::{Backend4, IPPROTO_TCP, Service4Key, Service4Value};
use weir_tests::Cluster;

use crate::common::cluster;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dump")
}

/// The node's maps, opened from their pins.
fn open_maps(bpffs: &Path) -> (PinnedLbMaps, PinnedMasqMaps) {
    let open = |name: &str| {
        let data = MapData::from_pin(bpffs.join(name)).unwrap_or_else(|e| panic!("opening {name}: {e}"));
        Some(Map::from_map_data(data).unwrap_or_else(|e| panic!("{name}: {e}")))
    };
    let lb = PinnedLbMaps::new(
        open(SERVICES_MAP),
        open(BACKENDS_MAP),
        open(AFFINITY_MAP),
        open(MAGLEV_MAP),
    )
    .expect("the LB maps");
    let masq = PinnedMasqMaps::new(open(MASQ_CONFIG_MAP), open(MASQ_SKIP_MAP), open(NAT_MAP))
        .expect("the masquerade maps");
    (lb, masq)
}

fn dump(bpffs: &Path) -> String {
    maps::dump_pinned(bpffs, false)
        .unwrap_or_else(|e| panic!("dumping the maps: {e}"))
        .to_text()
}

/// A line diff: `-` expected, `+` actual, a little context around changes.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // Longest common subsequence, then walk it.
    let mut lcs = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            let _ = writeln!(out, "  {}", e[i]);
            i += 1;
            j += 1;
        } else if j < a.len() && (i == e.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", a[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", e[i]);
            i += 1;
        }
    }
    out
}

/// Waits (a few seconds at most) until the dump equals the expected file,
/// or rewrites the file with `WEIR_BLESS=1`; panics with a diff otherwise.
fn assert_dump(cluster: &Cluster, bpffs: &Path, when: &str) {
    let path = fixtures().join("expected.txt");
    if std::env::var_os("WEIR_BLESS").is_some_and(|v| v == "1") {
        let actual = dump(bpffs);
        std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("blessed {} ({when})", path.display());
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let actual = dump(bpffs);
        if actual == expected {
            return;
        }
        assert!(
            Instant::now() <= deadline,
            "map dump {when} differs from {} (- expected, + actual; WEIR_BLESS=1 rewrites it), cluster {}:\n{}",
            path.display(),
            cluster.naming(),
            diff(&expected, &actual)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Writes what a crashed agent's successor must clean up or repair: a
/// frontend and backend of a Service that no longer exists, a slot of a
/// live frontend pointing at that backend, a live backend with a wrong
/// flag, and a masquerade exception nobody asked for.
fn write_stale_entries(bpffs: &Path) {
    let (mut lb, mut masq) = open_maps(bpffs);
    let stale_backend = 900;
    lb.put_backend(
        stale_backend,
        &Backend4 {
            address: be(Ipv4Addr::new(10, 244, 9, 9)),
            port: 8080u16.to_be(),
            proto: IPPROTO_TCP,
            flags: 0,
        },
    )
    .expect("writing a stale backend");
    let gone = |slot| Service4Key {
        address: be(Ipv4Addr::new(10, 96, 9, 9)),
        port: 80u16.to_be(),
        backend_slot: slot,
        proto: IPPROTO_TCP,
        pad: [0; 3],
    };
    lb.put_service(
        &gone(1),
        &Service4Value {
            backend_id: stale_backend,
            count: 0,
            flags: 0,
        },
    )
    .expect("writing a stale slot");
    lb.put_service(
        &gone(0),
        &Service4Value {
            backend_id: 0,
            count: 1,
            flags: 0,
        },
    )
    .expect("writing a stale frontend");

    // A live frontend's first slot, redirected to the stale backend.
    let services = lb.services().expect("reading the services");
    let (slot, _) = services
        .iter()
        .find(|(k, _)| k.backend_slot == 1 && k.address == be(Ipv4Addr::new(10, 96, 1, 10)))
        .expect("the web Service's first slot");
    lb.put_service(
        slot,
        &Service4Value {
            backend_id: stale_backend,
            count: 0,
            flags: 0,
        },
    )
    .expect("redirecting a live slot");

    // A remote backend claimed local.
    let backends = lb.backends().expect("reading the backends");
    let (id, backend) = backends
        .iter()
        .find(|(_, b)| b.address == be(Ipv4Addr::new(10, 244, 2, 10)))
        .expect("the web Service's backend on node-2");
    let changed = Backend4 {
        flags: backend.flags | BACKEND_LOCAL,
        ..*backend
    };
    lb.put_backend(*id, &changed).expect("changing a live backend");

    masq.add_skipped("192.0.2.0/24".parse().unwrap())
        .expect("writing a stale skip entry");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn map_dump_matches_the_fixture_after_reconcile_and_after_restart_restore_prune() {
    let mut cluster = cluster(1);
    let before = cluster.generations();
    let copied = cluster.manifests().copy_from(&fixtures().join("manifests"));
    let copied = cluster.expect(copied, "copying the fixtures");
    assert!(copied.len() >= 5, "fixtures: {copied:?}");
    let settled = cluster.wait_settled(&before);
    cluster.expect(settled, "waiting for the agent to sync the fixtures");
    let bpffs = cluster.nodes()[0].bpffs_path().to_owned();
    assert_dump(&cluster, &bpffs, "after the first reconcile");

    let node = cluster.node_mut("node-1").unwrap_or_else(|e| panic!("{e:#}"));
    let killed = node.kill_agent();
    node.expect(killed, "killing the agent");
    write_stale_entries(&bpffs);
    assert_ne!(
        dump(&bpffs),
        std::fs::read_to_string(fixtures().join("expected.txt")).unwrap_or_default(),
        "the stale entries must show in the dump"
    );
    let restarted = node.start_agent();
    node.expect(restarted, "restarting the agent");
    assert_dump(&cluster, &bpffs, "after kill -9, stale entries and a restart");
}
