use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use super::*;
use crate::code::Code;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weir-cni-ipam-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What releasing an owner that holds nothing returns.
const NONE: [Ipv4Addr; 0] = [];

fn store(tmp: &TempDir, cidr: &str) -> DiskStore {
    DiskStore::new(&tmp.0, "weir", Pool::new(cidr.parse().unwrap()))
}

fn owner(id: &str) -> Owner {
    Owner::new(id, "eth0")
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn hands_out_addresses_in_order_from_dot_2() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.244.1.0/24");
    assert_eq!(s.allocate(&owner("a")).unwrap(), ip("10.244.1.2"));
    assert_eq!(s.allocate(&owner("b")).unwrap(), ip("10.244.1.3"));
    assert_eq!(s.allocate(&Owner::new("b", "net1")).unwrap(), ip("10.244.1.4"));
    let dir = tmp.0.join("weir");
    assert_eq!(fs::read_to_string(dir.join("10.244.1.2")).unwrap(), "a\neth0\n");
    assert_eq!(fs::read_to_string(dir.join("10.244.1.4")).unwrap(), "b\nnet1\n");
    assert_eq!(
        fs::read_to_string(dir.join("last_reserved_ip")).unwrap(),
        "10.244.1.4"
    );
    assert!(dir.join("lock").exists());
}

#[test]
fn released_address_is_not_reused_at_once() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.244.1.0/24");
    assert_eq!(s.allocate(&owner("a")).unwrap(), ip("10.244.1.2"));
    assert_eq!(s.release(&owner("a")).unwrap(), [ip("10.244.1.2")]);
    assert_eq!(s.allocate(&owner("b")).unwrap(), ip("10.244.1.3"));
}

#[test]
fn release_is_idempotent_and_exact() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/24");
    // Nothing there at all: success, and no directory created.
    assert_eq!(s.release(&owner("a")).unwrap(), NONE);
    assert!(!s.dir().exists());
    s.allocate(&owner("a")).unwrap();
    s.allocate(&Owner::new("a", "net1")).unwrap();
    s.allocate(&owner("ab")).unwrap();
    assert_eq!(s.release(&owner("a")).unwrap(), [ip("10.0.0.2")]);
    assert_eq!(s.release(&owner("a")).unwrap(), NONE);
    assert!(s.dir().join("10.0.0.3").exists(), "a/net1 must survive");
    assert!(s.dir().join("10.0.0.4").exists(), "ab must survive");
}

#[test]
fn release_reads_host_local_style_files() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/24");
    fs::create_dir_all(s.dir()).unwrap();
    fs::write(s.dir().join("10.0.0.9"), "a\r\neth0").unwrap();
    fs::write(s.dir().join("not-an-ip"), "a\neth0\n").unwrap();
    assert_eq!(s.release(&owner("a")).unwrap(), [ip("10.0.0.9")]);
    assert!(s.dir().join("not-an-ip").exists());
}

#[test]
fn exhaustion_is_code_101_and_release_makes_room() {
    let tmp = TempDir::new();
    // A /29 has 8 addresses: network, node, 5 pods, broadcast.
    let s = store(&tmp, "10.0.0.0/29");
    for n in 0..5 {
        s.allocate(&owner(&format!("c{n}"))).unwrap();
    }
    let err = s.allocate(&owner("c5")).unwrap_err();
    assert!(matches!(err, Error::Exhausted { size: 5, .. }), "{err}");
    assert_eq!(err.code(), Code::IpamExhausted);
    assert!(err.to_string().contains("10.0.0.0/29"), "{err}");
    s.release(&owner("c2")).unwrap();
    assert_eq!(s.allocate(&owner("c5")).unwrap(), ip("10.0.0.4"));
}

#[test]
fn cursor_wraps_around() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/29");
    for n in 0..5 {
        s.allocate(&owner(&format!("c{n}"))).unwrap();
    }
    // .2 and .4 free; the cursor sits on .6, the last pod address.
    s.release(&owner("c0")).unwrap();
    s.release(&owner("c2")).unwrap();
    assert_eq!(s.allocate(&owner("x")).unwrap(), ip("10.0.0.2"));
    assert_eq!(s.allocate(&owner("y")).unwrap(), ip("10.0.0.4"));
}

#[test]
fn garbled_cursor_restarts_from_the_first_address() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/24");
    fs::create_dir_all(s.dir()).unwrap();
    fs::write(s.dir().join("last_reserved_ip"), "banana").unwrap();
    assert_eq!(s.allocate(&owner("a")).unwrap(), ip("10.0.0.2"));
}

#[test]
fn existing_files_are_never_overwritten() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/24");
    fs::create_dir_all(s.dir()).unwrap();
    // Someone else's reservation of .2 (e.g. written by another tool).
    fs::write(s.dir().join("10.0.0.2"), "other\neth0\n").unwrap();
    assert_eq!(s.allocate(&owner("a")).unwrap(), ip("10.0.0.3"));
    assert_eq!(
        fs::read_to_string(s.dir().join("10.0.0.2")).unwrap(),
        "other\neth0\n"
    );
}

#[test]
fn second_add_without_del_is_refused() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.0.0.0/24");
    s.allocate(&owner("a")).unwrap();
    let err = s.allocate(&owner("a")).unwrap_err();
    assert!(matches!(err, Error::AlreadyAllocated { ip: held, .. } if held == ip("10.0.0.2")));
    assert_eq!(err.code(), Code::IpamDuplicate);
}

#[test]
fn unwritable_store_is_an_io_error() {
    let tmp = TempDir::new();
    // The network directory's parent is a file: creating the directory fails
    // even for root.
    let file = tmp.0.join("file");
    fs::write(&file, "").unwrap();
    let s = DiskStore::new(&file, "weir", Pool::new("10.0.0.0/24".parse().unwrap()));
    let err = s.allocate(&owner("a")).unwrap_err();
    assert_eq!(err.code(), Code::IpamStore);
    assert!(err.to_string().contains("cannot create directory"), "{err}");
}

#[test]
fn concurrent_allocations_get_distinct_addresses() {
    let tmp = TempDir::new();
    let s = Arc::new(store(&tmp, "10.0.0.0/24"));
    let handles: Vec<_> = (0..16)
        .map(|n| {
            let s = Arc::clone(&s);
            // Each allocate opens its own lock file description, so the flock
            // serialises these threads exactly like separate plugin processes.
            thread::spawn(move || s.allocate(&owner(&format!("c{n}"))).unwrap())
        })
        .collect();
    let mut ips: Vec<Ipv4Addr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips.len(), 16);
    assert_eq!(ips[0], ip("10.0.0.2"));
    assert_eq!(ips[15], ip("10.0.0.17"));
}

#[test]
fn list_shows_every_allocation_by_address_with_its_owner() {
    let tmp = TempDir::new();
    let s = store(&tmp, "10.244.1.0/24");
    assert!(s.list().unwrap().is_empty(), "no directory yet: nothing allocated");
    s.allocate(&owner("b")).unwrap();
    s.allocate(&owner("a")).unwrap();
    // An ADD that died before writing its owner.
    fs::write(tmp.0.join("weir/10.244.1.9"), "").unwrap();
    assert_eq!(
        s.list().unwrap(),
        [
            (ip("10.244.1.2"), Some(owner("b"))),
            (ip("10.244.1.3"), Some(owner("a"))),
            (ip("10.244.1.9"), None),
        ]
    );
}
