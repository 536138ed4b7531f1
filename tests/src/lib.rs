//! Throwaway network-namespace topologies for weir's privileged tests and lab.
//!
//! A [`Node`] is a netns standing in for a Kubernetes node, with pods attached by
//! the real `weir-cni` (ADD on creation, DEL on teardown), a cgroup v2 subtree the
//! agent attaches its socket-LB programs to, a private bpffs, and the processes
//! that run there: `weir-agent` and `weir-probe` servers and clients. A
//! [`Cluster`] joins N such nodes on one L2 fabric (a bridge in a netns of its
//! own), adds an external client, gives every agent `--node-name` and one
//! shared manifest directory, and runs Kubernetes objects on them
//! ([`Cluster::apply`]: pods created with the conflist their node's agent
//! wrote, EndpointSlices generated as the controller would). Nothing touches
//! the root netns, and everything is removed on drop — after a panic too.
//! Runs that crashed are recognised by the dead owner pid in their names and
//! removed by [`cleanup_leftovers`]; the persistent lab (`cargo xtask lab up`)
//! has names without a pid and is left alone.
//!
//! ```no_run
//! use std::net::SocketAddrV4;
//! use std::time::Duration;
//! use weir_tests::{Binaries, Cluster, ClusterConfig, Origin, Protocol, RunKind, kube};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut cluster = Cluster::new(Binaries::from_env(), RunKind::Test, ClusterConfig::default())?;
//! cluster.apply(kube::read_paths(&["examples/lab".into()])?)?;
//! let client = Origin::Pod("demo/client".to_owned());
//! let vip: SocketAddrV4 = "10.96.0.10:80".parse()?;
//! let replies = cluster.probe(&client, (vip, Protocol::Tcp), 10, Duration::from_secs(1))?;
//! assert!(replies.all_answered());
//! # Ok(()) }
//! ```
//!
//! Errors are `anyhow` (this is test tooling); tests turn them into panics with
//! [`Node::expect`] / [`Cluster::expect`]. A node or cluster dropped during a
//! panic first prints its diagnostics (agent status and log, server logs,
//! links, routes).

mod agent;
pub mod apiserver;
mod bins;
mod bpffs;
pub mod bpfmap;
mod cgroup;
mod cluster;
pub mod cmd;
mod cni;
mod conflist;
pub mod frame;
pub mod kube;
mod leftovers;
mod manifests;
mod netns;
pub mod netpol;
mod node;
mod node_processes;
mod pod;
mod probe;
mod tag;
mod teardown;
pub mod trace;

pub use agent::{Agent, AgentNode, AgentOptions, AgentPaths, AgentStatus};
pub use bins::{BIN_DIR_ENV, Binaries};
pub use bpffs::BpfFs;
pub use cgroup::Cgroup;
pub use cluster::{
    API_SERVER_ADDRESS, API_SERVER_PORT, Access, Applied, Change, Cluster, ClusterConfig, DEFAULT_NODES,
    EXTERNAL_ADDRESS, MAX_NODES, NODE_PREFIX_LEN, Origin, UPLINK, node_address, node_pod_cidr,
};
pub use cni::{CNI_VERSION, Cni, CniCommand, CniError, CniInterface, CniIp, CniOutput, CniResult, CniRoute};
pub use leftovers::{cleanup_leftovers, cleanup_once};
pub use manifests::{ManifestDir, ServiceSpec};
pub use netns::{Link, Netns, Route};
pub use node::{AGENT_TIMEOUT, Node, POD_GATEWAY, POD_SUBNET};
pub use pod::{DEFAULT_NAMESPACE, Pod, split_key};
pub use probe::{
    Answer, Attempt, ERROR_PREFIX, Failure, FailureKind, Loop, Place, Protocol, Replies, Server, Session,
    connect,
};
pub use tag::{CGROUP_ROOT, LAB_ROOT, LAB_STEM, Naming, PREFIX, RUN_ROOT, RunKind, RunTag};

/// Creates a work directory (with its `logs/`). Retried because a finishing
/// run removes the shared root when it looks empty, which can race with
/// creating ours in it.
pub(crate) fn create_run_dir(run_dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let logs = run_dir.join("logs");
    let mut attempt = 0;
    loop {
        match std::fs::create_dir_all(&logs) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && attempt < 3 => attempt += 1,
            result => return result.with_context(|| format!("creating {}", logs.display())),
        }
    }
}
