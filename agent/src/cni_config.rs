//! The node's CNI network configuration, written by the agent once it knows
//! the node's podCIDR: container runtimes pick up the first conflist in
//! their config directory, so until this file exists no pod is created on
//! the node — which is exactly right while there is no podCIDR to give out.

use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde_json::json;

/// File name of the conflist. "10-" sorts it ahead of the usual defaults.
pub const CONFLIST_NAME: &str = "10-weir.conflist";
/// The network name, also the IPAM store's subdirectory.
pub const NETWORK_NAME: &str = "weir";

/// Where and how the conflist is written.
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// The runtime's CNI config directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The plugin's IPAM store (`dataDir`).
    pub data_dir: PathBuf,
    /// Pod interface MTU.
    pub mtu: u32,
}

impl CniConfig {
    /// The conflist's path.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.conf_dir.join(CONFLIST_NAME)
    }

    /// The conflist for a node with `pod_cidr`.
    #[must_use]
    pub fn render(&self, pod_cidr: Ipv4Network) -> String {
        let conflist = json!({
            "cniVersion": "1.1.0",
            "name": NETWORK_NAME,
            "plugins": [{
                "type": "weir-cni",
                "subnet": pod_cidr.to_string(),
                "dataDir": self.data_dir,
                "mtu": self.mtu,
            }],
        });
        let mut text = serde_json::to_string_pretty(&conflist).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the conflist for `pod_cidr` atomically (temp file + rename in
    /// the same directory), unless it already says exactly that. Returns
    /// whether the file changed.
    pub fn write(&self, pod_cidr: Ipv4Network) -> std::io::Result<bool> {
        let text = self.render(pod_cidr);
        let path = self.path();
        if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.conf_dir)?;
        // A dot-name: runtimes ignore it while it is being written.
        let tmp = self.conf_dir.join(format!(".{CONFLIST_NAME}.tmp"));
        write_synced(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(true)
    }
}

fn write_synced(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_rewrites_only_on_change() {
        let dir = std::env::temp_dir().join(format!("weir-cni-config-{}", std::process::id()));
        let config = CniConfig {
            conf_dir: dir.clone(),
            data_dir: "/var/lib/cni/weir".into(),
            mtu: 1500,
        };
        assert!(config.write("10.244.1.0/24".parse().unwrap()).unwrap());
        assert!(!config.write("10.244.1.0/24".parse().unwrap()).unwrap());
        assert!(config.write("10.244.2.0/24".parse().unwrap()).unwrap());
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config.path()).unwrap()).unwrap();
        assert_eq!(written["plugins"][0]["subnet"], "10.244.2.0/24");
        assert_eq!(written["plugins"][0]["type"], "weir-cni");
        assert_eq!(written["name"], "weir");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
