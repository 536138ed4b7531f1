//! Throwaway network-namespace topologies for weir's privileged tests and lab.
//!
//! A [`Node`] is a netns standing in for a Kubernetes node, with pods attached by
//! the real `weir-cni` (ADD on creation, DEL on teardown), a cgroup v2 subtree the
//! agent attaches its `connect4` program to, a private bpffs, and the processes
//! that run there: `weir-agent` and `weir-probe` servers and clients. Nothing
//! touches the root netns, and everything is removed on drop — after a panic too.
//! Runs that crashed are recognised by the dead owner pid in their names and
//! removed by [`cleanup_leftovers`].
//!
//! ```no_run
//! use std::net::SocketAddrV4;
//! use std::time::Duration;
//! use weir_tests::{Binaries, Node, RunKind};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut node = Node::new(Binaries::from_env(), RunKind::Test)?;
//! node.add_pod("echo-a")?;
//! node.add_pod("client")?;
//! node.serve("echo-a", "echo-a", 8080)?;
//! node.manifests().copy_from("examples/lab".as_ref())?;
//! node.start_agent()?;
//! let replies = node.connect("client", "10.96.0.10:80".parse()?, 10, Duration::from_secs(1))?;
//! assert!(replies.all_answered());
//! # Ok(()) }
//! ```
//!
//! Errors are `anyhow` (this is test tooling); tests turn them into panics with
//! [`Node::expect`]. A node dropped during a panic first prints its
//! [`Node::diagnostics`] (agent status and log, server logs, links, routes).

mod agent;
mod bins;
mod bpffs;
mod cgroup;
pub mod cmd;
mod cni;
mod leftovers;
mod manifests;
mod netns;
mod node;
mod probe;
mod tag;
mod teardown;

pub use agent::{Agent, AgentPaths, AgentStatus};
pub use bins::{BIN_DIR_ENV, Binaries};
pub use bpffs::BpfFs;
pub use cgroup::Cgroup;
pub use cni::{CNI_VERSION, Cni, CniCommand, CniError, CniInterface, CniIp, CniOutput, CniResult, CniRoute};
pub use leftovers::{cleanup_leftovers, cleanup_once};
pub use manifests::{ManifestDir, ServiceSpec};
pub use netns::{Link, Netns, Route};
pub use node::{AGENT_TIMEOUT, Node, POD_GATEWAY, POD_SUBNET, Pod};
pub use probe::{Attempt, ERROR_PREFIX, Replies, Server, connect};
pub use tag::{CGROUP_ROOT, PREFIX, RUN_ROOT, RunKind, RunTag};
