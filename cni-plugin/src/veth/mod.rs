//! The pod's veth pair: names, and setting it up and tearing it down.
//!
//! See the crate docs for the topology; [`attach`] and [`detach`] do the work.

mod attach;
mod inspect;

use std::net::Ipv4Addr;

use crate::code::Code;
use crate::{netlink, netns, sysctl};

pub use attach::{Request, attach, detach};
pub use inspect::{check, collect_garbage};

/// The pod's gateway. It is on no interface anywhere: the node end of the veth
/// answers ARP for it by proxy ARP, and the pod reaches it through a link-scope
/// route. A link-local address is used so that it can never collide with a
/// real address, and is the same on every node, which keeps pods unaware of
/// the node they run on.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Prefix of node-side veth names.
pub const HOST_PREFIX: &str = "weir";
/// Prefix of the pod end's name until it is renamed in the pod netns. `p` is
/// no hex digit, so a temporary name never equals a host name.
const TEMP_PREFIX: &str = "weirp";

/// Errors setting up or tearing down a pod's interfaces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Netlink work failed.
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    /// Entering the pod netns failed.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// Writing the host veth's sysctls failed.
    #[error(transparent)]
    Sysctl(#[from] sysctl::Error),
    /// CHECK found the attachment not as ADD left it.
    #[error("{0}")]
    Check(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code of the underlying failure.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::Netlink(e) => e.code(),
            Error::Netns(e) => e.code(),
            Error::Sysctl(e) => e.code(),
            Error::Check(_) => Code::CheckFailed,
        }
    }
}

/// Prefix of the alias weir gives a host veth: `weir:<network>:<containerid>:<ifname>`.
const ALIAS_PREFIX: &str = "weir:";

/// The alias recording which attachment a host veth belongs to, so GC can
/// find the links of attachments that no longer exist without guessing from
/// hashed names.
#[must_use]
pub fn alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{ALIAS_PREFIX}{network}:{container_id}:{ifname}")
}

/// The (network, container id, ifname) an alias records, if it is weir's.
/// Network names and interface names contain no ':'; container ids may, so
/// the id is what lies between the first and the last separator.
#[must_use]
pub fn parse_alias(alias: &str) -> Option<(&str, &str, &str)> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let (network, rest) = rest.split_once(':')?;
    let (container_id, ifname) = rest.rsplit_once(':')?;
    (!network.is_empty() && !container_id.is_empty() && !ifname.is_empty()).then_some((
        network,
        container_id,
        ifname,
    ))
}

/// FNV-1a, 64 bit: tiny, stable across releases and platforms (unlike std's
/// `DefaultHasher`), and spreads container IDs well enough for 44 bits.
#[must_use]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// [`fnv1a64`] followed by the splitmix64 finaliser. FNV-1a alone barely
/// changes its high bits for IDs that differ only in their last characters
/// (runtimes hand out such IDs), and the names keep the high digits; the
/// finaliser spreads every input bit over the whole word.
#[must_use]
pub fn name_hash(container_id: &str) -> u64 {
    let mut z = fnv1a64(container_id.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The node-side veth name of a container: `weir` followed by the first 11 of
/// the 16 lowercase hex digits of [`name_hash`] of the container ID — 15
/// characters, the most a Linux interface name can have.
///
/// It depends on the container ID alone so that DEL finds it without any
/// stored state, even when the pod netns is already gone.
#[must_use]
pub fn host_name(container_id: &str) -> String {
    let hex = format!("{:016x}", name_hash(container_id));
    format!("{HOST_PREFIX}{}", &hex[..11])
}

/// The temporary name of the pod end while it is still in the node netns.
pub(crate) fn temp_name(container_id: &str) -> String {
    let hex = format!("{:016x}", name_hash(container_id));
    format!("{TEMP_PREFIX}{}", &hex[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_round_trip_even_with_colons_in_the_container_id() {
        let a = alias("weir", "ctr:with:colons", "eth0");
        assert_eq!(parse_alias(&a), Some(("weir", "ctr:with:colons", "eth0")));
        assert_eq!(parse_alias("somebody else's"), None);
        assert_eq!(parse_alias("weir:net::eth0"), None);
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn host_names_are_stable_and_fit_ifnamsiz() {
        // Pinned: DEL of a pod added by an older plugin must find its veth.
        assert_eq!(host_name("a"), "weir02c0bdbf481");
        let name = host_name("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("weir"));
        assert!(
            name[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(host_name("abc"), host_name("abd"));
        // Neighbouring IDs differ in most digits, not in one.
        let (a, b) = (host_name("pod-1"), host_name("pod-2"));
        let same = a.chars().zip(b.chars()).skip(4).filter(|(x, y)| x == y).count();
        assert!(same < 6, "{a} vs {b}");
    }

    #[test]
    fn temp_names_never_clash_with_host_names() {
        let temp = temp_name("a");
        assert_eq!(temp, "weirp02c0bdbf48");
        assert_eq!(temp.len(), 15);
        assert_ne!(&temp[..5], &host_name("a")[..5]);
    }
}
