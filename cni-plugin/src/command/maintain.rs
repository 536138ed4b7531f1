//! CHECK, STATUS and GC: the commands that look after attachments rather
//! than make them.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{Error, Result};
use crate::config::NetConf;
use crate::env::{self, Attachment};
use crate::ipam::{DiskStore, Owner, Store};
use crate::netns::NetNs;
use crate::veth;

/// CHECK: the attachment is still exactly as ADD made it, or an error says
/// what is not. The address comes from `prevResult`, which the spec makes
/// mandatory for CHECK.
pub(super) fn check(conf: &NetConf, attachment: &Attachment) -> Result<()> {
    let prev = conf.prev_result.as_ref().ok_or(Error::MissingPrevResult)?;
    let ip = result_address(prev).ok_or(Error::MissingPrevResult)?;
    let netns_path = attachment
        .netns
        .as_deref()
        .ok_or(env::Error::Missing { var: "CNI_NETNS" })?;
    let netns = NetNs::open(netns_path)?;
    let store = DiskStore::new(&conf.data_dir, &conf.name, conf.pool);
    let owner = Owner::new(&attachment.container_id, &attachment.ifname);
    if !store.held_by(&owner)?.contains(&ip) {
        return Err(veth::Error::Check(format!("{ip} is not allocated to {owner}")).into());
    }
    veth::check(
        &netns,
        &conf.name,
        &attachment.container_id,
        &attachment.ifname,
        ip,
    )?;
    Ok(())
}

/// The first IPv4 address of a result (`ips[].address`, as `a.b.c.d/n`).
fn result_address(result: &serde_json::Value) -> Option<Ipv4Addr> {
    let first = result.get("ips")?.as_array()?.first()?;
    first.get("address")?.as_str()?.split('/').next()?.parse().ok()
}

/// STATUS: ready when the node's subnet is known and the store is writable.
pub(super) fn status(conf: &NetConf) -> Result<()> {
    DiskStore::new(&conf.data_dir, &conf.name, conf.pool)
        .ready()
        .map_err(Error::NotAvailable)
}

/// GC: releases every address and deletes every host veth of this network
/// whose attachment is not in `cni.dev/valid-attachments`.
pub(super) fn gc(conf: &NetConf) -> Result<()> {
    let valid: HashSet<Owner> = conf.valid_attachments.iter().flatten().cloned().collect();
    let store = DiskStore::new(&conf.data_dir, &conf.name, conf.pool);
    let stale = store.owners()?;
    // Links first, as DEL does: an address stays reserved while anything may
    // still route it.
    veth::collect_garbage(&conf.name, &valid, &stale)?;
    store.collect_garbage(&valid)?;
    Ok(())
}
