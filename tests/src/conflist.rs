//! The node's CNI config as its agent wrote it (`10-weir.conflist`), turned
//! into the plugin call a runtime makes.
//!
//! A runtime (libcni) runs each plugin of a conflist with that plugin's object
//! on stdin, `name` and `cniVersion` copied in from the list. weir's list has a
//! single plugin, so the lab's runtime stand-in does exactly that with it.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use crate::bins::Binaries;
use crate::cni::Cni;

/// The conflist's file name (the agent's `CONFLIST_NAME`).
pub const CONFLIST_NAME: &str = "10-weir.conflist";

/// The plugin as the runtime of the node whose netns is `node_netns` calls it,
/// configured by the conflist at `path`.
pub(crate) fn cni_from_conflist(bins: &Binaries, node_netns: &Path, path: &Path) -> Result<Cni> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let list: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let plugins = list["plugins"].as_array().map(Vec::as_slice).unwrap_or_default();
    ensure!(
        plugins.len() == 1 && plugins[0]["type"] == "weir-cni",
        "{}: expected one weir-cni plugin, found {plugins:?}",
        path.display()
    );
    ensure!(
        list["name"] == "weir" && list["cniVersion"] == crate::cni::CNI_VERSION,
        "{}: unexpected network name or version",
        path.display()
    );
    let plugin = &plugins[0];
    let subnet = plugin["subnet"].as_str().context("the plugin has no subnet")?;
    let data_dir = plugin["dataDir"].as_str().context("the plugin has no dataDir")?;
    Ok(Cni::new(
        &bins.cni,
        bins.dir(),
        node_netns,
        subnet,
        Path::new(data_dir),
    ))
}
