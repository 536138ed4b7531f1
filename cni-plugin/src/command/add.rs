//! ADD: reserve an address, plumb the veth pair, report both.

use super::Result;
use crate::config::NetConf;
use crate::env::{self, Attachment};
use crate::ipam::{DiskStore, Owner, Store};
use crate::netns::NetNs;
use crate::result::AddResult;
use crate::veth::{self, Request};

/// Attaches the container of `attachment` to the network of `conf`.
///
/// The address is released again if anything after its reservation fails
/// ([`veth::attach`] cleans up its own links), so a failed ADD leaves nothing
/// behind even if the runtime never calls DEL for it.
pub(super) fn add(conf: &NetConf, attachment: &Attachment) -> Result<AddResult> {
    // No subnet yet: nothing can be allocated, but soon will be.
    if conf.pool.is_none() {
        return Err(crate::ipam::Error::NoSubnet.into());
    }
    let netns_path = attachment
        .netns
        .as_deref()
        .ok_or(env::Error::Missing { var: "CNI_NETNS" })?;
    // Opened before anything is reserved: a bad CNI_NETNS costs nothing.
    let netns = NetNs::open(netns_path)?;

    let store = DiskStore::new(&conf.data_dir, &conf.name, conf.pool);
    let owner = Owner::new(&attachment.container_id, &attachment.ifname);
    let ip = store.allocate(&owner)?;

    let request = Request {
        network: &conf.name,
        container_id: &attachment.container_id,
        ifname: &attachment.ifname,
        ip,
        mtu: conf.mtu,
    };
    match veth::attach(&netns, &request) {
        Ok(attached) => Ok(AddResult::new(conf.cni_version, attached)),
        Err(error) => {
            // The allocation check in `allocate` guarantees this owner held
            // nothing before, so releasing by owner frees exactly `ip`.
            if let Err(release) = store.release(&owner) {
                eprintln!("weir-cni: cannot release {ip} after a failed ADD: {release}");
            }
            Err(error.into())
        }
    }
}
