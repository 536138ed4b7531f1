//! Per-interface IPv4 sysctls.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the
//! file, so these must be written from a thread in the namespace that owns the
//! interface — for the host veth, the plugin's main thread in the node netns.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::code::Code;

/// Errors writing sysctls.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The interface name would escape its sysctl directory.
    #[error("interface name {name:?} cannot be used in a sysctl path")]
    BadName {
        /// The name.
        name: String,
    },
    /// Writing failed.
    #[error("cannot write {value:?} to {}", path.display())]
    Write {
        /// The sysctl file.
        path: PathBuf,
        /// What was written.
        value: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code (100: part of setting up the interfaces).
    #[must_use]
    pub fn code(&self) -> Code {
        Code::Setup
    }
}

/// Makes `ifname` answer ARP requests for any address the node routes
/// elsewhere — in particular for the pods' fake gateway `169.254.1.1`, which
/// exists on no interface — and answer them at once.
///
/// `proxy_delay` is 0 because the kernel otherwise queues proxied replies to
/// broadcast requests for a random delay of up to 0.8 s, which every new pod
/// would pay on its first packet.
pub fn enable_proxy_arp(ifname: &str) -> Result<()> {
    write(Path::new("/proc/sys/net/ipv4/conf"), ifname, "proxy_arp", "1")?;
    write(Path::new("/proc/sys/net/ipv4/neigh"), ifname, "proxy_delay", "0")
}

fn write(table: &Path, ifname: &str, key: &str, value: &'static str) -> Result<()> {
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains('/') {
        return Err(Error::BadName {
            name: ifname.to_owned(),
        });
    }
    let path = table.join(ifname).join(key);
    fs::write(&path, value).map_err(|source| Error::Write { path, value, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_names_that_escape_the_table() {
        for name in ["", ".", "..", "../all", "a/b"] {
            assert!(matches!(
                write(Path::new("/nonexistent"), name, "proxy_arp", "1"),
                Err(Error::BadName { .. })
            ));
        }
    }

    #[test]
    fn reports_the_path() {
        let err = write(Path::new("/nonexistent"), "weir0", "proxy_arp", "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write \"1\" to /nonexistent/weir0/proxy_arp"
        );
        assert_eq!(err.code(), Code::Setup);
    }
}
