//! rtnetlink plumbing: one [`Session`] per network namespace, and small async
//! operations on links, addresses and routes.
//!
//! Everything goes through netlink; nothing shells out to `ip`.

pub mod dump;
pub mod link;
pub mod route;

use std::future::Future;
use std::io;

use rtnetlink::Handle;
use tokio::runtime::{Builder, Runtime};

use crate::code::Code;

pub use link::Link;

/// Errors of netlink work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket or its runtime could not be set up.
    #[error("cannot open a netlink socket")]
    Socket(#[source] io::Error),
    /// The kernel refused a request (or the connection broke).
    #[error("cannot {action}")]
    Request {
        /// What was asked, e.g. "create veth pair weirX/weirpX".
        action: String,
        /// What came back.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link that was just created or moved is not there.
    #[error("link {name} vanished")]
    LinkVanished {
        /// Its name.
        name: String,
    },
    /// A dump kept being interrupted by concurrent changes.
    #[error("{what}: dump interrupted {attempts} times by concurrent changes")]
    DumpInterrupted {
        /// What was dumped.
        what: &'static str,
        /// How many times it was tried.
        attempts: usize,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code: 11 for a dump that may succeed on a retry, 100 otherwise.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::DumpInterrupted { .. } => Code::TryAgainLater,
            _ => Code::Setup,
        }
    }

    /// The errno of a kernel refusal, if that is what this is.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Request { source, .. } => errno(source),
            _ => None,
        }
    }

    fn request(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
        let action = action.into();
        move |source| Error::Request { action, source }
    }
}

/// The (positive) errno of a netlink error reply.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

/// A netlink connection in the namespace of the thread that opened it, with the
/// single-threaded runtime that drives it.
///
/// The runtime is current-thread on purpose: it runs on the caller's thread
/// only, so work on a [`crate::netns::NetNs::run`] thread never leaks onto a
/// thread in another namespace.
///
/// The connection forwards `NLMSG_DONE` to requesters so that [`dump`] can see
/// `NLM_F_DUMP_INTR` on it; use [`dump`] for dumps, not rtnetlink's own
/// `get()` dump streams, which take `NLMSG_DONE` for an unexpected message.
pub struct Session {
    runtime: Runtime,
    handle: Handle,
}

impl Session {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let runtime = Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(Error::Socket)?;
        // The socket registers with the runtime's reactor, so it must be made
        // inside the runtime's context.
        let handle = {
            let _context = runtime.enter();
            let (mut connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
            connection.set_forward_done(true);
            runtime.spawn(connection);
            handle
        };
        Ok(Session { runtime, handle })
    }

    /// The request handle.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` (which may use [`Self::handle`]) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}
