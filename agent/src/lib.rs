//! weir-agent: turns Kubernetes Services and EndpointSlices into the eBPF
//! maps that weir's datapath reads.
//!
//! Data flows one way (see STYLE.md):
//!
//! ```text
//! source (directory of YAML; kube watchers later)
//!     → desired state (frontends → backends, plain Rust values)
//!     → reconciler (the only writer of the maps: diff, write, prune)
//!     → maps (pinned in bpffs; an in-memory fake for unit tests)
//! ```
//!
//! Sources never touch maps and the reconciler never reads Kubernetes objects.

pub mod datapath;
pub mod desired;
pub mod maps;
pub mod reconcile;
pub mod source;
pub mod standalone;
pub mod status;
