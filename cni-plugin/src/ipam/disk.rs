//! [`Store`] on disk: one file per allocated address.
//!
//! Layout of `<dataDir>/<network>/`:
//!
//! - `lock`: empty; `flock`ed exclusively for the whole of every allocate and
//!   release, so parallel plugin runs (different pods, same node) serialise.
//! - `10.244.1.2`, …: one per allocated address, created with `O_EXCL`, holding
//!   `<containerid>\n<ifname>\n`. `O_EXCL` is a second line of defence: even a
//!   writer that ignores the lock cannot take an address that is already held.
//! - `last_reserved_ip`: the last address handed out; the next scan starts after
//!   it, so a released address is not reused at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{Error, Owner, Pool, Result, Store};

/// Name of the lock file.
const LOCK_FILE: &str = "lock";
/// Name of the cursor file.
const CURSOR_FILE: &str = "last_reserved_ip";

/// The on-disk store of one network.
#[derive(Clone, Debug)]
pub struct DiskStore {
    dir: PathBuf,
    /// `None`: the node has no podCIDR yet; releasing and GC still work.
    pool: Option<Pool>,
}

/// Holds the directory lock; dropping it closes the file, which releases the
/// `flock` (also if the plugin dies, so a crash never wedges the node).
struct DirLock {
    _file: File,
}

impl DiskStore {
    /// The store of network `network` under `data_dir`, allocating from `pool`.
    ///
    /// Nothing is touched on disk until the first allocate.
    #[must_use]
    pub fn new(data_dir: &Path, network: &str, pool: Option<Pool>) -> Self {
        DiskStore {
            dir: data_dir.join(network),
            pool,
        }
    }

    /// The network's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every allocation (address, owner; `None` for a file without one: an
    /// ADD in progress or one that crashed), by address. Read-only and
    /// lock-free, for inspection (`weir ipam list`): a listing is a snapshot.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        let mut all = self.allocations()?;
        all.sort_unstable_by_key(|(ip, _)| *ip);
        Ok(all)
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_owned();
        move |source| Error::Io { action, path, source }
    }

    fn lock(&self) -> Result<DirLock> {
        fs::create_dir_all(&self.dir).map_err(Self::io("create directory", &self.dir))?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Self::io("open", &path))?;
        file.lock().map_err(Self::io("lock", &path))?;
        Ok(DirLock { _file: file })
    }

    /// The cursor; unreadable or garbled cursors count as none, since the
    /// cursor only steers where the scan starts.
    fn cursor(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(CURSOR_FILE))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Every address file with its owner, in directory order.
    fn allocations(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("list", &self.dir)(e)),
        };
        let mut allocations = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io("list", &self.dir))?;
            // Only files named by an address are allocations; `lock`, the cursor
            // and anything an operator left there are not.
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let path = entry.path();
            match fs::read_to_string(&path) {
                Ok(text) => allocations.push((ip, parse_owner(&text))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::io("read", &path)(e)),
            }
        }
        Ok(allocations)
    }

    /// Under the lock, removes every allocation whose owner `doomed` picks;
    /// returns the addresses freed.
    fn remove_where(&self, doomed: impl Fn(Option<&Owner>) -> bool) -> Result<Vec<Ipv4Addr>> {
        let _lock = self.lock()?;
        let mut released = Vec::new();
        for (ip, held_by) in self.allocations()? {
            if !doomed(held_by.as_ref()) {
                continue;
            }
            let path = self.dir.join(ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::io("remove", &path)(e)),
            }
        }
        released.sort_unstable();
        Ok(released)
    }

    /// Creates the file for `ip`; `Ok(false)` if someone holds it already.
    fn reserve(&self, ip: Ipv4Addr, owner: &Owner) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(Self::io("create", &path)(e)),
        };
        let content = format!("{}\n{}\n", owner.container_id, owner.ifname);
        let written = file
            .write_all(content.as_bytes())
            .map_err(Self::io("write", &path))
            .and_then(|()| {
                let cursor = self.dir.join(CURSOR_FILE);
                fs::write(&cursor, ip.to_string()).map_err(Self::io("write", &cursor))
            });
        if let Err(e) = written {
            // A half-written reservation would leak the address for good.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(true)
    }
}

/// Reads `<containerid>\n<ifname>\n`; tolerates `\r\n` (as host-local writes).
fn parse_owner(text: &str) -> Option<Owner> {
    let mut lines = text.lines().map(str::trim);
    let container_id = lines.next().filter(|l| !l.is_empty())?;
    let ifname = lines.next().filter(|l| !l.is_empty())?;
    Some(Owner::new(container_id, ifname))
}

impl Store for DiskStore {
    fn allocate(&self, owner: &Owner) -> Result<Ipv4Addr> {
        let _lock = self.lock()?;
        let held = self
            .allocations()?
            .into_iter()
            .find(|(_, held_by)| held_by.as_ref() == Some(owner));
        if let Some((ip, _)) = held {
            return Err(Error::AlreadyAllocated {
                owner: owner.clone(),
                ip,
            });
        }
        let pool = self.pool.ok_or(Error::NoSubnet)?;
        for ip in pool.scan_after(self.cursor()) {
            if self.reserve(ip, owner)? {
                return Ok(ip);
            }
        }
        Err(Error::Exhausted {
            subnet: pool.subnet(),
            size: pool.size(),
        })
    }

    fn owners(&self) -> Result<Vec<Owner>> {
        let mut owners: Vec<Owner> = self.allocations()?.into_iter().filter_map(|(_, by)| by).collect();
        owners.sort_unstable();
        owners.dedup();
        Ok(owners)
    }

    fn held_by(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>> {
        let mut held: Vec<Ipv4Addr> = self
            .allocations()?
            .into_iter()
            .filter(|(_, by)| by.as_ref() == Some(owner))
            .map(|(ip, _)| ip)
            .collect();
        held.sort_unstable();
        Ok(held)
    }

    fn collect_garbage(&self, valid: &std::collections::HashSet<Owner>) -> Result<Vec<Ipv4Addr>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        // Under the lock: an ADD between creating its file and writing its
        // owner holds the lock, so an empty file seen here is a crashed ADD.
        self.remove_where(|held_by| !held_by.is_some_and(|owner| valid.contains(owner)))
    }

    fn ready(&self) -> Result<()> {
        self.pool.ok_or(Error::NoSubnet)?;
        self.lock().map(drop)
    }

    fn release(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>> {
        // DEL on a node that never ran an ADD (or whose dataDir was wiped) has
        // nothing to release; do not create the directory just to say so.
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        self.remove_where(|held_by| held_by == Some(owner))
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
