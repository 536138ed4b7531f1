//! The status file: a small JSON document rewritten after every successful
//! reconcile, so tests, the lab and operators can see what the agent did.

use std::path::Path;

use serde::Serialize;

/// What the status file holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Number of successful reconciles since start (1 after the first).
    pub generation: u64,
    /// Frontends programmed.
    pub frontends: usize,
    /// Backends programmed.
    pub backends: usize,
    /// Routes to other nodes' pods in place.
    pub node_routes: usize,
    /// This node's podCIDR, once known (`null` without `--node-name`).
    pub pod_cidr: Option<String>,
}

/// Writes `status` to `path` atomically (temp file + rename), so a reader
/// never sees a half-written document.
pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}
