//! `weir-cni`: the CNI plugin that gives each pod on a weir node its interface,
//! address and routes (CNI spec 1.1; results also in 1.0.0 and 0.4.0 format).
//!
//! # Topology (Calico-style point-to-point)
//!
//! Every pod gets a veth pair. The node end, `weir` + 11 hex digits of a hash of
//! the container ID, stays in the node netns with proxy ARP on and a
//! `<podIP>/32 dev <hostif> scope link` route. The pod end is renamed to
//! `CNI_IFNAME` and carries `<podIP>/32`, a link route to the fake gateway
//! [`veth::GATEWAY`] (`169.254.1.1`) and a default route via it. The pod's ARP
//! for the gateway is answered by the node end (proxy ARP), so every packet
//! leaving the pod is routed by the node, where weir's datapath sees it; no
//! bridge, no per-node gateway address.
//!
//! # Network config (stdin)
//!
//! ```json
//! {"cniVersion":"1.1.0","name":"weir","type":"weir-cni","subnet":"10.244.1.0/24",
//!  "dataDir":"/var/lib/cni/weir","mtu":1500}
//! ```
//!
//! `dataDir` (default `/var/lib/cni/weir`) and `mtu` (default 1500) are optional;
//! see [`config`]. Pod addresses come from [`ipam`]: the network address, the
//! first host address (the node's) and the broadcast address are never handed
//! out, so the first pod of `10.244.1.0/24` gets `10.244.1.2`.
//!
//! # Layout
//!
//! [`command::run`] is the whole plugin: environment and stdin in, a JSON reply
//! and a success flag out; `main` only wires it to the process. The commands
//! (`ADD`, `DEL`, `VERSION`; `CHECK`, `STATUS`, `GC` answer "not implemented"
//! for now) build on [`config`], [`env`](mod@env), [`ipam`] and [`veth`], which in turn
//! uses [`netlink`], [`netns`] (the only `unsafe` in the crate) and [`sysctl`].

pub mod code;
pub mod command;
pub mod config;
pub mod env;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod reply;
pub mod result;
pub mod sysctl;
pub mod version;
pub mod veth;

pub use command::{Outcome, run};
