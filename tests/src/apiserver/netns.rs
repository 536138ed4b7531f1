//! Entering a network namespace from the calling thread.

use std::os::fd::AsRawFd as _;
use std::path::Path;

use super::{Error, Result};

/// Moves the calling thread into the network namespace at `path`
/// (`/run/netns/NAME`).
///
/// setns(2) switches only the calling thread, and a socket keeps the netns it
/// was created in: call it on a thread of its own before that thread opens
/// any socket (the binary: before the tokio runtime starts; the client: on
/// the thread it spawns per request).
pub fn enter_netns(path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).map_err(|err| Error::io(format!("opening {}", path.display()), err))?;
    // SAFETY: setns(2) only reads the descriptor, which `file` keeps open for
    // the duration of the call; CLONE_NEWNET makes the kernel check that it
    // really is a network namespace. No memory is shared with the kernel.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::io(
            format!("entering netns {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
