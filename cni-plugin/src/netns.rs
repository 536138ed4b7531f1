//! Network namespaces: open the pod's, and run work inside it.
//!
//! A network namespace belongs to a *thread*, not a process. Switching the main
//! thread would leave every later socket, `/proc/sys/net` access and library
//! call guessing which namespace it is in, so work inside the pod netns always
//! runs on a fresh, dedicated OS thread that enters the namespace first and
//! ends when the work is done ([`NetNs::run`]). Nothing else ever runs on that
//! thread, and no thread is ever switched back — it simply exits. (The reasons
//! are laid out in containernetworking/plugins `pkg/ns/README.md`; they are
//! Go-specific in detail but hold for any threaded program.)
//!
//! This module holds the crate's only `unsafe`: the `setns(2)` call and the
//! `NS_GET_NSTYPE` ioctl that checks `CNI_NETNS` is a network namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread;

use crate::code::Code;

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `CNI_NETNS` cannot be opened.
    #[error("CNI_NETNS {}: cannot open the network namespace", path.display())]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `CNI_NETNS` opens, but is not a network namespace.
    #[error("CNI_NETNS {} is not a network namespace ({what})", path.display())]
    NotANetns {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// The worker thread could not be started.
    #[error("cannot start a thread to work in network namespace {}", path.display())]
    Spawn {
        /// The namespace.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `setns(2)` failed.
    #[error("cannot enter network namespace {}", path.display())]
    Enter {
        /// The namespace.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The work panicked (the panic message went to stderr).
    #[error("the thread working in network namespace {} panicked", path.display())]
    Panicked {
        /// The namespace.
        path: PathBuf,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code: a bad `CNI_NETNS` is an invalid variable (4);
    /// failing to work in a good one is a setup failure (100).
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::Open { .. } | Error::NotANetns { .. } => Code::InvalidEnvironment,
            Error::Spawn { .. } | Error::Enter { .. } | Error::Panicked { .. } => Code::Setup,
        }
    }
}

/// An open network namespace (a `/run/netns/x` bind mount or `/proc/<pid>/ns/net`).
///
/// Holding the file keeps the namespace alive even if its bind mount goes away
/// while the plugin runs.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace at `path` and checks it is one.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        // Checked here because the first use of the descriptor, moving the
        // veth (IFLA_NET_NS_FD), would fail on anything else with a bare EINVAL.
        let not_a_netns = |what: String| Error::NotANetns {
            path: path.to_owned(),
            what,
        };
        match namespace_type(file.as_fd()) {
            Ok(libc::CLONE_NEWNET) => {}
            Ok(other) => return Err(not_a_netns(format!("it is a namespace of type {other:#x}"))),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
                return Err(not_a_netns("it is no namespace file at all".to_owned()));
            }
            Err(source) => {
                return Err(Error::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        Ok(NetNs {
            file,
            path: path.to_owned(),
        })
    }

    /// The path it was opened from (what goes into a result's `sandbox`).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor, for netlink's `IFLA_NET_NS_FD`; valid while `self` lives.
    #[must_use]
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `work` on a new thread inside this namespace and returns its result.
    ///
    /// Sockets `work` opens (netlink included) belong to this namespace, since
    /// a socket is bound to the namespace of the thread that created it.
    pub fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        thread::scope(|scope| {
            let worker = thread::Builder::new()
                .name("weir-cni-netns".to_owned())
                .spawn_scoped(scope, || {
                    enter(self.file.as_fd())?;
                    Ok(work())
                })
                .map_err(|source| Error::Spawn {
                    path: self.path.clone(),
                    source,
                })?;
            match worker.join() {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(source)) => Err(Error::Enter {
                    path: self.path.clone(),
                    source,
                }),
                Err(_) => Err(Error::Panicked {
                    path: self.path.clone(),
                }),
            }
        })
    }
}

/// The `CLONE_NEW*` type of the namespace open as `fd`; `ENOTTY` if `fd` is
/// not a namespace file at all.
fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and writes no memory of ours; it
    // only inspects the file behind `fd`, which the borrow keeps open for the
    // whole call. Files that are no namespace reject it with ENOTTY.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Moves the calling thread into the network namespace `netns`.
///
/// Only call this on a thread dedicated to work in that namespace (see the
/// module docs): the thread is never switched back.
fn enter(netns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) takes a plain integer descriptor and a flag; it does not
    // touch our memory. `netns` is a borrowed, hence open, descriptor for the
    // whole call. With CLONE_NEWNET the call changes the network namespace of
    // the calling thread only (namespaces are per task), and the kernel checks
    // that the descriptor really is a network namespace.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_netns_is_an_invalid_variable() {
        let err = NetNs::open(Path::new("/nonexistent/weir-netns")).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err}");
        assert_eq!(err.code(), Code::InvalidEnvironment);
        assert!(err.to_string().contains("CNI_NETNS"), "{err}");
    }

    #[test]
    fn regular_file_is_not_a_netns() {
        let err = NetNs::open(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, Error::NotANetns { .. }), "{err}");
        assert_eq!(err.code(), Code::InvalidEnvironment);
    }

    #[test]
    fn other_namespace_types_are_not_a_netns() {
        let err = NetNs::open(Path::new("/proc/self/ns/uts")).unwrap_err();
        assert!(err.to_string().contains("namespace of type 0x4000000"), "{err}");
    }

    #[test]
    fn runs_work_in_own_netns() {
        // Entering the namespace we are already in needs no privileges beyond
        // what setns checks for the same namespace (CAP_SYS_ADMIN in its user
        // namespace); skip quietly where that is missing.
        let ns = NetNs::open(Path::new("/proc/self/ns/net")).unwrap();
        match ns.run(|| 7) {
            Ok(value) => assert_eq!(value, 7),
            Err(Error::Enter { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
