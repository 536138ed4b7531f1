//! Termination of connected UDP sockets whose backend left.
//!
//! Socket-LB rewrites a UDP socket's `connect()` to the backend itself, so
//! every later datagram of that socket goes straight to it: no NAT entry to
//! forget, nothing the datapath sees again. kube-proxy's answer for the same
//! situation is a conntrack flush, after which the next datagram picks a live
//! backend; with socket-LB the equivalent is to abort the socket
//! (`ECONNABORTED` on its next call), so the application opens a new one —
//! which `connect4` sends to a live backend. Cilium does the same.
//!
//! The sockets live in the pods' network namespaces, and `sock_diag` only
//! sees the namespace of the netlink socket asking. So the agent visits the
//! namespace of every process below the socket-LB cgroup (the only processes
//! whose sockets the hooks translated), on a short-lived thread of its own,
//! and destroys there the connected UDP sockets to the backend whose cookie
//! has a reverse entry in `weir_lb4_reverse_sk_v1`: only sockets weir itself
//! pointed at the backend, never one an application dialled directly.

pub mod diag;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use weir_common::Backend4;
use weir_common::lb::{REVERSE_SK_MAP, ReverseSockKey, ReverseSockValue};

use diag::{Reply, SocketId};

/// Errors of socket termination.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroup tree could not be read.
    #[error("cannot list the processes below cgroup {path}")]
    Cgroup {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A network namespace could not be entered or queried.
    #[error("socket diagnostics in network namespace {path}")]
    Netns {
        /// The namespace file (`/proc/PID/ns/net`).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reverse-translation map could not be opened.
    #[error("opening map {REVERSE_SK_MAP}")]
    Map(#[source] aya::maps::MapError),
}

/// Result of socket termination.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Finds and aborts the connected UDP sockets socket-LB sent to a backend.
pub struct SocketTerminator {
    cgroup: PathBuf,
    reverse: HashMap<MapData, ReverseSockKey, ReverseSockValue>,
}

impl SocketTerminator {
    /// For the processes below `cgroup`, judged by the reverse map `reverse`.
    pub fn new(cgroup: &Path, reverse: Map) -> Result<Self> {
        Ok(Self {
            cgroup: cgroup.to_owned(),
            reverse: HashMap::try_from(reverse).map_err(Error::Map)?,
        })
    }

    /// Aborts every connected UDP socket that socket-LB pointed at
    /// `backend`; returns how many. A namespace that vanished meanwhile is
    /// skipped (its sockets went with it).
    pub fn terminate(&self, backend: &Backend4) -> Result<usize> {
        let target = SocketAddrV4::new(
            Ipv4Addr::from(backend.address.to_ne_bytes()),
            u16::from_be(backend.port),
        );
        let mut total = 0;
        for (path, netns) in namespaces(&self.cgroup)? {
            let translated = |id: &SocketId| {
                let key = ReverseSockKey {
                    cookie: id.cookie,
                    address: backend.address,
                    port: backend.port,
                    pad: 0,
                };
                self.reverse.get(&key, 0).is_ok()
            };
            total += std::thread::scope(|scope| {
                scope
                    .spawn(|| destroy_in(&netns, target, translated))
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("socket termination thread panicked")))
            })
            .map_err(|source| Error::Netns { path, source })?;
        }
        Ok(total)
    }
}

/// The distinct network namespaces of the processes below `cgroup`, each
/// held open (so it cannot be recycled before it is visited).
fn namespaces(cgroup: &Path) -> Result<Vec<(PathBuf, File)>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![cgroup.to_owned()];
    while let Some(dir) = dirs.pop() {
        let read = |source| Error::Cgroup {
            path: dir.clone(),
            source,
        };
        let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
            // A cgroup removed while walking had no processes left.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != cgroup => continue,
            other => other.map_err(read)?,
        };
        for pid in procs.lines().filter(|line| !line.is_empty()) {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            // A process that exited since the read is simply gone.
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            found.entry((meta.dev(), meta.ino())).or_insert((path, file));
        }
        for entry in std::fs::read_dir(&dir).map_err(read)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    Ok(found.into_values().collect())
}

/// Runs on a thread of its own: enters `netns` (only this thread moves) and
/// destroys the connected UDP sockets to `target` that `translated` accepts.
fn destroy_in(
    netns: &File,
    target: SocketAddrV4,
    translated: impl Fn(&SocketId) -> bool,
) -> std::io::Result<usize> {
    // SAFETY: setns(2) reads the descriptor, which `netns` keeps open for the
    // call; CLONE_NEWNET makes the kernel check it is a network namespace. It
    // switches the calling thread only — a thread that ends right after.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    let kernel = SocketAddr::new(0, 0);
    socket.send_to(&diag::dump_connected_udp(1), &kernel, 0)?;
    let mut doomed = Vec::new();
    'dump: loop {
        let (buffer, _) = socket.recv_from_full()?;
        for reply in diag::parse(&buffer) {
            match reply {
                Reply::Socket(id) if id.remote == target && translated(&id) => doomed.push(id),
                Reply::Done => break 'dump,
                Reply::Ack(errno) if errno != 0 => return Err(std::io::Error::from_raw_os_error(errno)),
                _ => {}
            }
        }
    }
    let mut destroyed = 0;
    for (sequence, id) in (2..).zip(&doomed) {
        socket.send_to(&diag::destroy_udp(sequence, id), &kernel, 0)?;
        let (buffer, _) = socket.recv_from_full()?;
        match diag::parse(&buffer).first() {
            Some(Reply::Ack(0)) => destroyed += 1,
            // Closed by its owner since the dump.
            Some(Reply::Ack(libc::ENOENT)) => {}
            Some(Reply::Ack(errno)) => return Err(std::io::Error::from_raw_os_error(*errno)),
            _ => return Err(std::io::Error::other("no answer to SOCK_DESTROY")),
        }
    }
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_found_below_the_cgroup_once_each() {
        let root = std::env::temp_dir().join(format!("weir-sockterm-{}", std::process::id()));
        let child = root.join("pod");
        std::fs::create_dir_all(&child).unwrap();
        let me = std::process::id().to_string();
        // Two processes (here: this one twice, and a pid that does not exist)
        // in two cgroups of one namespace.
        std::fs::write(root.join("cgroup.procs"), format!("{me}\n")).unwrap();
        std::fs::write(child.join("cgroup.procs"), format!("{me}\n999999999\n")).unwrap();
        let found = namespaces(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, PathBuf::from(format!("/proc/{me}/ns/net")));
        assert!(matches!(namespaces(&root), Err(Error::Cgroup { .. })));
    }
}
