//! The Kubernetes API server stand-in on the fabric, for agents that watch
//! the API instead of reading the manifest directory.
//!
//! ```text
//!   weir-<tag>-api   eth0 198.18.0.2/24 on br0, weir-apiserver on :6443
//! ```
//!
//! A netns of its own rather than the external client's, so a test that
//! takes the external client's connectivity apart leaves the API alone and
//! the API server's port never collides with a probe server there. The
//! process joins the cgroup `weir-<tag>/apiserver`, so the cluster's
//! teardown kills it even when its handle outlives the cluster; the netns
//! goes with the fabric.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};

use super::Cluster;
use crate::apiserver::{ApiServerHandle, ApiServerOptions};
use crate::netns::Netns;

/// The stand-in's address on the fabric.
pub const API_SERVER_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The stand-in's port (kube-apiserver's secure port; here plain HTTP).
pub const API_SERVER_PORT: u16 = 6443;

/// Name of its port on the bridge.
const API_PORT_NAME: &str = "api";

impl Cluster {
    /// The `weir-apiserver` next to the other binaries.
    #[must_use]
    pub fn api_server_binary(&self) -> PathBuf {
        self.bins.dir().join("weir-apiserver")
    }

    /// Starts the API server stand-in in netns `weir-<tag>-api` at
    /// `198.18.0.2:6443` on the fabric, reachable from every node, and
    /// writes a kubeconfig for it in `<run dir>/apiserver/`
    /// ([`ApiServerHandle::kubeconfig`]). One per cluster.
    pub fn start_api_server(&mut self, options: &ApiServerOptions) -> Result<ApiServerHandle> {
        ensure!(
            !self.fabric.api.exists(),
            "cluster {} already has an API server",
            self.naming
        );
        self.fabric.api = Netns::create(self.fabric.api.name())?;
        self.fabric
            .wire(&self.fabric.api, API_PORT_NAME, API_SERVER_ADDRESS)?;
        let dir = self.run_dir.join("apiserver");
        let listen = SocketAddr::from((API_SERVER_ADDRESS, API_SERVER_PORT));
        let handle = ApiServerHandle::start(options, &self.fabric.api.path(), listen, &dir)
            .with_context(|| format!("starting the API server in {}", self.fabric.api.name()))?;
        let cgroup = self.cgroup.create_child("apiserver")?;
        cgroup.add_process(handle.pid())?;
        Ok(handle)
    }
}
