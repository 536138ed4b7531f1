//! `--probe`: a real connection from the source, next to the prediction.
//!
//! The connection must be made the way the pod's own would be: from its
//! network namespace (so it leaves through its veth and meets the policy
//! programs) and from its cgroup (so the socket-LB programs, attached to a
//! cgroup subtree, see the `connect()`). The CLI finds a process of the pod
//! — one whose netns holds the source address (or is `--netns PATH`) — and
//! borrows both from it: it joins that process's cgroup (the CLI exits right
//! after) and makes the connection on a thread moved into its netns. With
//! no such process (a pod whose every process is gone, or a source that is
//! the node itself) the connection is made from where `weir` runs.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

/// How long a probe waits for a connection or an answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the probe runs.
#[derive(Debug, Default, Clone)]
pub struct Origin {
    /// The netns to connect from (`None`: the one `weir` runs in).
    pub netns: Option<PathBuf>,
    /// The cgroup to join (`None`: stay).
    pub cgroup: Option<PathBuf>,
}

/// What the probe saw: `delivered`, `refused` or `dropped`, and in words.
pub type Outcome = (String, String);

/// Finds where to probe from for `source`: `netns` if given, else a netns
/// that holds `source` — a process's, or one pinned under `/run/netns`
/// (where CNI runtimes keep pod sandboxes' namespaces, process or not);
/// the cgroup of a process in it, if one runs there.
pub fn origin(source: Ipv4Addr, netns: Option<&Path>) -> anyhow::Result<Origin> {
    let own = inode(Path::new("/proc/self/ns/net"))?;
    let processes = processes();
    let (path, wanted) = match netns {
        Some(path) => {
            let ino = inode(path).with_context(|| format!("--netns {}", path.display()))?;
            (path.to_owned(), ino)
        }
        None if holds(None, source) => return Ok(Origin::default()),
        None => {
            let mut seen = std::collections::BTreeSet::from([own]);
            let pinned = pinned_netns();
            let found = processes
                .iter()
                .map(|(pid, ino)| (netns_of(*pid), *ino))
                .chain(pinned)
                .filter(|(_, ino)| seen.insert(*ino))
                .find(|(path, _)| holds(Some(path), source));
            found.with_context(|| {
                format!(
                    "no network namespace on this node holds {source}; give the pod's one with --netns PATH"
                )
            })?
        }
    };
    if wanted == own {
        return Ok(Origin::default());
    }
    let pid = processes
        .iter()
        .find(|(_, ino)| *ino == wanted)
        .map(|(pid, _)| *pid);
    Ok(Origin {
        netns: Some(path),
        cgroup: pid.and_then(cgroup_of),
    })
}

/// Namespaces pinned by name (`ip netns`, CNI runtimes) and their inodes.
fn pinned_netns() -> Vec<(PathBuf, u64)> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| Some((e.path(), inode(&e.path()).ok()?)))
        .collect()
}

/// Connects (TCP) or exchanges a datagram (UDP) with `target` from `origin`,
/// from `source_port` when given (else one the kernel picks).
pub fn run(
    origin: &Origin,
    target: SocketAddrV4,
    udp: bool,
    source_port: Option<u16>,
) -> anyhow::Result<Outcome> {
    if let Some(cgroup) = &origin.cgroup {
        std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("joining the source's cgroup {}", cgroup.display()))?;
    }
    in_netns(origin.netns.as_deref(), move || {
        let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, source_port.unwrap_or(0));
        if udp {
            udp_exchange(bind, target)
        } else {
            tcp_connect(bind, target)
        }
    })
}

/// The cookie of `origin`'s network namespace (`SO_NETNS_COOKIE`): the
/// client the socket-LB programs key session affinity by.
pub fn netns_cookie(origin: &Origin) -> anyhow::Result<u64> {
    in_netns(origin.netns.as_deref(), || -> anyhow::Result<u64> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("opening a socket")?;
        let mut cookie = 0u64;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<u64>()).unwrap_or_default();
        // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which
        // is that large and lives across the call.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                (&raw mut cookie).cast(),
                &raw mut len,
            )
        };
        anyhow::ensure!(rc == 0, "SO_NETNS_COOKIE: {}", std::io::Error::last_os_error());
        Ok(cookie)
    })?
}

/// Runs `work` on a thread in the netns at `netns` (`None`: ours): setns
/// moves only the calling thread, so the CLI's own thread never leaves.
fn in_netns<T: Send + 'static>(
    netns: Option<&Path>,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let netns = netns.map(Path::to_owned);
    std::thread::spawn(move || -> anyhow::Result<T> {
        if let Some(path) = &netns {
            enter(path)?;
        }
        Ok(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
}

fn tcp_connect(bind: SocketAddrV4, target: SocketAddrV4) -> Outcome {
    let connect = || -> std::io::Result<TcpStream> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(SockProtocol::TCP))?;
        if bind.port() != 0 {
            // A fixed source port may still be in TIME_WAIT from the last run.
            socket.set_reuse_address(true)?;
            socket.bind(&bind.into())?;
        }
        socket.connect_timeout(&target.into(), TIMEOUT)?;
        Ok(socket.into())
    };
    match connect() {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            let _ = stream.write_all(b"trace\n");
            let mut answer = [0u8; 256];
            let n = stream.read(&mut answer).unwrap_or(0);
            let text = String::from_utf8_lossy(&answer[..n]).trim().to_owned();
            let detail = if text.is_empty() {
                "connected".to_owned()
            } else {
                format!("connected, answer {text:?}")
            };
            ("delivered".to_owned(), detail)
        }
        Err(e) => failure(&e),
    }
}

fn udp_exchange(bind: SocketAddrV4, target: SocketAddrV4) -> Outcome {
    let exchange = || -> std::io::Result<String> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        socket.connect(target)?;
        socket.send(b"trace\n")?;
        let mut answer = [0u8; 256];
        let n = socket.recv(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer[..n]).trim().to_owned())
    };
    match exchange() {
        Ok(text) => ("delivered".to_owned(), format!("answer {text:?}")),
        Err(e) => failure(&e),
    }
}

/// A refusal is the socket-LB's answer for a frontend without backends (or
/// a closed port); silence is what a policy drop looks like.
fn failure(error: &std::io::Error) -> Outcome {
    let outcome = match error.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "dropped",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable",
        _ => "error",
    };
    (outcome.to_owned(), error.to_string())
}

/// Moves this thread into the netns at `path`.
fn enter(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening netns {}", path.display()))?;
    // SAFETY: setns(2) only reads the descriptor, which `file` keeps open;
    // it switches the calling thread alone.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    anyhow::ensure!(
        rc == 0,
        "setns {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Whether `source` is an address of the netns at `path` (`None`: ours):
/// only a local address can be bound.
fn holds(path: Option<&Path>, source: Ipv4Addr) -> bool {
    in_netns(path, move || UdpSocket::bind((source, 0)).is_ok()).unwrap_or(false)
}

fn inode(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .ino())
}

fn netns_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Every process and its netns inode (ones that vanish meanwhile are skipped).
fn processes() -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, inode(&netns_of(pid)).ok()?)))
        .collect()
}

/// The cgroup v2 directory of `pid`.
fn cgroup_of(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(cgroup2_root()?.join(path.trim_start_matches('/')))
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one (from `/proc/self/mountinfo`:
/// the mount point is the fifth field, the type follows the ` - `).
fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}
