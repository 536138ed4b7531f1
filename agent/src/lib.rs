//! weir-agent: turns Kubernetes Services and EndpointSlices into the eBPF
//! maps that weir's datapath reads.
//!
//! Data flows one way (see STYLE.md):
//!
//! ```text
//! source (directory of YAML, or the API server via kube-rs watchers)
//!     → desired state (frontends → backends, plain Rust values)
//!     → reconcilers (the only writers: diff, write, prune)
//!     → maps (pinned in bpffs; an in-memory fake for unit tests),
//!       routes to other nodes' pods, the node's CNI conflist
//! ```
//!
//! Sources never touch maps and the reconciler never reads Kubernetes objects.

pub mod backoff;
pub mod cleanup;
pub mod cni_config;
pub mod config;
pub mod datapath;
pub mod desired;
pub mod healthcheck;
pub mod kubernetes;
pub mod maps;
pub mod ops;
pub mod reconcile;
pub mod routes;
pub mod sockterm;
pub mod source;
pub mod standalone;
pub mod status;
pub mod sync;
pub mod verdicts;
