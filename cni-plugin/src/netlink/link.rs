//! Links: create the veth pair, look up, rename, move, bring up, delete.

use std::fmt::Write as _;
use std::os::fd::RawFd;

use futures::TryStreamExt as _;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{Error, Result};

/// `ENODEV`: the kernel's answer for a link that does not exist.
const ENODEV: i32 = libc::ENODEV;

/// What the plugin needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index in its namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MAC address as `aa:bb:cc:dd:ee:ff`; empty for links without one.
    pub mac: String,
    /// The same hardware address as raw bytes (for neighbour entries).
    pub hw_addr: Vec<u8>,
    /// `IFLA_IFALIAS`: weir records the attachment a host veth belongs to.
    pub alias: Option<String>,
    /// Administratively up.
    pub up: bool,
}

impl Link {
    pub(crate) fn from_message(message: &LinkMessage) -> Self {
        let mut name = String::new();
        let mut mac = String::new();
        let mut hw_addr = Vec::new();
        let mut alias = None;
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Address(bytes) => {
                    mac = format_mac(bytes);
                    hw_addr.clone_from(bytes);
                }
                LinkAttribute::IfAlias(text) => alias = Some(text.clone()),
                _ => {}
            }
        }
        Link {
            index: message.header.index,
            name,
            mac,
            hw_addr,
            alias,
            up: message
                .header
                .flags
                .contains(netlink_packet_route::link::LinkFlags::Up),
        }
    }
}

/// Formats a hardware address the way `ip link` and CNI results do.
#[must_use]
pub fn format_mac(bytes: &[u8]) -> String {
    let mut mac = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            mac.push(':');
        }
        let _ = write!(mac, "{byte:02x}");
    }
    mac
}

/// The link called `name`, or `None` if there is none.
///
/// This is a targeted `RTM_GETLINK` (by `IFLA_IFNAME`), not a dump, so it
/// cannot be interrupted by concurrent changes.
pub async fn by_name(handle: &Handle, name: &str) -> Result<Option<Link>> {
    let mut replies = handle.link().get().match_name(name).execute();
    match replies.try_next().await {
        Ok(Some(message)) => Ok(Some(Link::from_message(&message))),
        Ok(None) => Ok(None),
        Err(e) if super::errno(&e) == Some(ENODEV) => Ok(None),
        Err(source) => Err(Error::Request {
            action: format!("look up link {name}"),
            source,
        }),
    }
}

/// Like [`by_name`], for a link that must exist because we just made or moved it.
pub async fn expect(handle: &Handle, name: &str) -> Result<Link> {
    by_name(handle, name).await?.ok_or_else(|| Error::LinkVanished {
        name: name.to_owned(),
    })
}

/// Creates the veth pair `name` ↔ `peer`, both ends with `mtu`, both down.
pub async fn create_veth(handle: &Handle, name: &str, peer: &str, mtu: u32) -> Result<()> {
    // LinkVeth::new names the peer but cannot give it an MTU; the kernel would
    // then create it with 1500 whatever the host end has, so build the peer
    // message ourselves.
    let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer)
        .mtu(mtu)
        .build();
    let message = LinkVeth::new(name, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message)))
        .mtu(mtu)
        .build();
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(Error::request(format!(
            "create veth pair {name}/{peer} (mtu {mtu})"
        )))
}

/// Moves link `index` into the network namespace open as `netns_fd`.
pub async fn move_to_netns(handle: &Handle, link: &Link, netns_fd: RawFd) -> Result<()> {
    let message = LinkUnspec::new_with_index(link.index)
        .setns_by_fd(netns_fd)
        .build();
    handle
        .link()
        .change(message)
        .execute()
        .await
        .map_err(Error::request(format!(
            "move link {} into the pod netns",
            link.name
        )))
}

/// Renames link `index` (which must be down) to `name`.
pub async fn rename(handle: &Handle, link: &Link, name: &str) -> Result<()> {
    let message = LinkUnspec::new_with_index(link.index).name(name).build();
    handle
        .link()
        .change(message)
        .execute()
        .await
        .map_err(Error::request(format!("rename link {} to {name}", link.name)))
}

/// Sets link `index` up.
/// Sets `IFLA_IFALIAS` (the kernel ignores it when a link is created, so it
/// takes a change of its own).
pub async fn set_alias(handle: &Handle, link: &Link, alias: &str) -> Result<()> {
    let message = LinkUnspec::new_with_index(link.index).alias(alias).build();
    handle
        .link()
        .change(message)
        .execute()
        .await
        .map_err(Error::request(format!("set alias of link {}", link.name)))
}

pub async fn set_up(handle: &Handle, link: &Link) -> Result<()> {
    let message = LinkUnspec::new_with_index(link.index).up().build();
    handle
        .link()
        .change(message)
        .execute()
        .await
        .map_err(Error::request(format!("set link {} up", link.name)))
}

/// Deletes the link called `name`; `Ok(false)` if there was none.
///
/// Deleting one end of a veth pair deletes the other, wherever it is, and the
/// kernel drops the routes through the link with it.
pub async fn delete_by_name(handle: &Handle, name: &str) -> Result<bool> {
    let Some(link) = by_name(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.index).execute().await {
        Ok(()) => Ok(true),
        // Gone between lookup and delete (a concurrent DEL): same outcome.
        Err(e) if super::errno(&e) == Some(ENODEV) => Ok(false),
        Err(source) => Err(Error::Request {
            action: format!("delete link {name}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_macs() {
        assert_eq!(format_mac(&[0x0a, 0xbc, 0, 1, 0xff, 0x10]), "0a:bc:00:01:ff:10");
        assert_eq!(format_mac(&[]), "");
    }
}
