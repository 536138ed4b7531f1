//! DEL: remove the veth pair, then release the address.

use super::Result;
use crate::config::NetConf;
use crate::env::Attachment;
use crate::ipam::{DiskStore, Owner, Store};
use crate::veth;

/// Detaches the container of `attachment` from the network of `conf`.
///
/// Idempotent: a missing netns, link or allocation is success. `CNI_NETNS` is
/// not used at all; the host veth is found by name and deleting it removes the
/// pod end wherever it is.
pub(super) fn del(conf: &NetConf, attachment: &Attachment) -> Result<()> {
    // Link first: while the node still routes the address to this pod it must
    // stay reserved, or a failed DEL could leave it routed to a dead veth while
    // another pod gets it. The runtime retries a failed DEL.
    veth::detach(&attachment.container_id)?;

    let store = DiskStore::new(&conf.data_dir, &conf.name, conf.pool);
    store.release(&Owner::new(&attachment.container_id, &attachment.ifname))?;
    Ok(())
}
