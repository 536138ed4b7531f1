//! A multi-node cluster: N nodes on one L2 fabric, an external client, one
//! shared manifest directory, and an agent per node.
//!
//! ```text
//!   weir-<tag>-fabric   br0 ── node-1, node-2, …, external        (198.18.0.0/24)
//!   weir-<tag>-node-<i> eth0 198.18.0.(10+i), pods from 10.244.<i>.0/24, weir-agent
//!   weir-<tag>-external eth0 198.18.0.100 (on the fabric, not a node)
//!   cgroup weir-<tag>/  node-1/{weir-agent,host,<ns>_<pod>…}  node-2/…  external/
//!   /run/weir-test/<tag>/manifests   Node objects + what `apply` wrote, read by every agent
//! ```
//!
//! Each agent runs with `--node-name`: it finds its podCIDR in its Node object,
//! writes the node's conflist — pods are created with that file, as a kubelet
//! waits for it — and routes every other node's podCIDR via that node's
//! InternalIP (host-gw). Nothing is masqueraded: a pod's address is what every
//! server sees.
//!
//! A cluster named for a process ([`Cluster::new`]) goes with [`Drop`]; the
//! persistent lab ([`Cluster::create_persistent_lab`]) stays until
//! [`Cluster::down_persistent_lab`] and is found again with
//! [`Cluster::attach_persistent_lab`].

mod apiserver;
mod apply;
mod fabric;
mod ops;
mod state;

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};

pub use self::apiserver::{API_SERVER_ADDRESS, API_SERVER_PORT};
pub use self::apply::{Applied, Change};
use self::fabric::Fabric;
pub use self::fabric::{EXTERNAL_ADDRESS, MAX_NODES, NODE_PREFIX_LEN, UPLINK, node_address, node_pod_cidr};
pub use self::ops::Origin;
pub use self::state::Access;
use crate::agent::AgentNode;
use crate::apiserver::{ApiServerHandle, ApiServerOptions};
use crate::bins::Binaries;
use crate::cgroup::Cgroup;
use crate::kube::Store;
use crate::manifests::ManifestDir;
use crate::node::Node;
use crate::tag::{Naming, RUN_ROOT, RunKind, RunTag};
use crate::{leftovers, teardown};

/// Nodes of a cluster unless told otherwise.
pub const DEFAULT_NODES: usize = 2;

/// Cgroup of the external client's processes (no agent attaches there).
const EXTERNAL_CGROUP: &str = "external";

/// What to build.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of nodes, 1 to [`MAX_NODES`].
    pub nodes: usize,
    /// More agent flags, for every node (e.g. `--device eth0`).
    pub agent_args: Vec<String>,
    /// Kubernetes mode: an API server stand-in on the fabric holds the
    /// objects, and the agents watch it (`--kubeconfig`) instead of reading
    /// the manifest directory. Everything that changes objects works the
    /// same in both modes.
    pub api_server: bool,
}

/// The agent flags of a full datapath on a lab node: the per-packet
/// programs on the uplink (NodePort, externalIPs), masquerading of pods
/// leaving the cluster, and the Service CIDR routed unreachable.
pub const DATAPATH_AGENT_ARGS: [&str; 7] = [
    "--device",
    fabric::UPLINK,
    "--cluster-cidr",
    "10.244.0.0/16",
    "--masquerade",
    "--service-cidr",
    "10.96.0.0/12",
];

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: DEFAULT_NODES,
            agent_args: DATAPATH_AGENT_ARGS.iter().map(ToString::to_string).collect(),
            api_server: false,
        }
    }
}

/// A cluster and everything in it; see the module docs.
#[derive(Debug)]
pub struct Cluster {
    naming: Naming,
    bins: Binaries,
    config: ClusterConfig,
    run_dir: PathBuf,
    cgroup: Cgroup,
    fabric: Fabric,
    manifests: ManifestDir,
    nodes: Vec<Node>,
    objects: Store,
    /// The persistent lab's lock, held for as long as this value lives.
    lock: Option<File>,
    /// The API server stand-in of a Kubernetes-mode cluster.
    api: Option<ApiServerHandle>,
    torn_down: bool,
}

impl Cluster {
    /// Builds a cluster owned by this process: fabric, nodes, agents (each
    /// has written its conflist and routes to all other nodes on return).
    /// Leftovers of crashed runs are removed first (once per process).
    pub fn new(bins: Binaries, kind: RunKind, config: ClusterConfig) -> Result<Self> {
        bins.check()?;
        leftovers::cleanup_once();
        let mut cluster = Cluster::unbuilt(Naming::Run(RunTag::new(kind)), bins, config)?;
        // A failure drops `cluster`, whose teardown removes what was built.
        cluster.build()?;
        Ok(cluster)
    }

    /// The parts of a cluster, nothing created yet.
    fn unbuilt(naming: Naming, bins: Binaries, config: ClusterConfig) -> Result<Self> {
        ensure!(
            (1..=MAX_NODES).contains(&config.nodes),
            "a cluster has 1 to {MAX_NODES} nodes, not {}",
            config.nodes
        );
        let run_dir = naming.run_dir();
        Ok(Cluster {
            cgroup: Cgroup::existing(naming.cgroup_dir()),
            fabric: Fabric::named(&naming),
            manifests: ManifestDir::new(run_dir.join("manifests"), run_dir.join("scratch")),
            run_dir,
            naming,
            bins,
            config,
            nodes: Vec::new(),
            objects: Store::default(),
            lock: None,
            api: None,
            torn_down: false,
        })
    }

    /// Node `index` (1-based), nothing created.
    fn member(&self, index: usize) -> Node {
        let name = format!("node-{index}");
        let dir = self.run_dir.join(&name);
        let mut node = Node::unbuilt(
            &name,
            self.naming.clone(),
            self.bins.clone(),
            &dir,
            self.cgroup.path().join(&name),
            self.manifests.clone(),
        );
        node.address = Some(node_address(index));
        node.agent_options.node = Some(AgentNode {
            name,
            cni_conf_dir: dir.join("cni/net.d"),
            cni_data_dir: node.ipam_dir.clone(),
        });
        node.agent_options.extra_args.clone_from(&self.config.agent_args);
        node.agent_options.kubeconfig = self.api.as_ref().map(|api| api.kubeconfig().to_owned());
        node
    }

    fn build(&mut self) -> Result<()> {
        crate::create_run_dir(&self.run_dir)?;
        self.manifests.create_dirs()?;
        self.cgroup = Cgroup::create(self.cgroup.path())?;
        self.cgroup.create_child(EXTERNAL_CGROUP)?;
        self.fabric.create()?;
        if self.config.api_server {
            let options = ApiServerOptions {
                // Watches stay quiet unless something changes: a test that
                // makes an agent miss events (and relist after a 410) must
                // not have a bookmark move it past them.
                bookmark_interval: Some(std::time::Duration::from_secs(3600)),
                ..ApiServerOptions::new(self.api_server_binary())
            };
            let api = self.start_api_server(&options)?;
            self.manifests = self.manifests.clone().mirrored_to(api.client().clone());
            self.api = Some(api);
        }
        for index in 1..=self.config.nodes {
            let node = self.member(index);
            // Pushed before it is built, so teardown covers a half-built node.
            self.nodes.push(node);
            let node = self.nodes.last_mut().context("no node after a push")?;
            node.build()?;
            self.fabric.wire(&node.netns, &node.name, node_address(index))?;
        }
        for node in &self.nodes {
            self.write_node_object(node.name())?;
        }
        // All agents load at once; then each must report its podCIDR (so its
        // conflist is written) and a route to every other node.
        for node in &mut self.nodes {
            node.launch_agent()?;
        }
        let others = self.nodes.len() as u64 - 1;
        for node in &mut self.nodes {
            node.wait_for_status(&format!("its podCIDR and {others} node route(s)"), |status| {
                status.pod_cidr.is_some() && status.node_routes == others
            })?;
            node.load_conflist()?;
        }
        Ok(())
    }

    /// How the cluster's names are made.
    #[must_use]
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The binaries the cluster runs.
    #[must_use]
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// The nodes, `node-1` first.
    #[must_use]
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Names of the nodes, `node-1` first.
    #[must_use]
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .with_context(|| format!("no node {name} (nodes: {})", self.node_names().join(", ")))
    }

    /// Node `name`, to change it.
    pub fn node_mut(&mut self, name: &str) -> Result<&mut Node> {
        let names = self.node_names().join(", ");
        self.nodes
            .iter_mut()
            .find(|node| node.name == name)
            .with_context(|| format!("no node {name} (nodes: {names})"))
    }

    /// The API server stand-in of a Kubernetes-mode cluster
    /// ([`ClusterConfig::api_server`]).
    #[must_use]
    pub fn api_server(&self) -> Option<&ApiServerHandle> {
        self.api.as_ref()
    }

    /// The manifest directory every agent reads.
    #[must_use]
    pub fn manifests(&self) -> &ManifestDir {
        &self.manifests
    }

    /// The external client's netns.
    #[must_use]
    pub fn external_netns(&self) -> &crate::Netns {
        &self.fabric.external
    }

    /// The fabric's netns (the bridge).
    #[must_use]
    pub fn fabric_netns(&self) -> &crate::Netns {
        &self.fabric.netns
    }

    /// The cluster's work directory.
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The objects applied so far ([`Cluster::apply`]).
    #[must_use]
    pub fn objects(&self) -> &Store {
        &self.objects
    }

    /// Unwraps `result` or panics with the error: the way privileged tests
    /// fail. The unwinding drops the cluster, which prints its diagnostics.
    ///
    /// # Panics
    ///
    /// If `result` is an error.
    #[track_caller]
    pub fn expect<T>(&self, result: Result<T>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(err) => panic!("{what} (cluster {}): {err:#}", self.naming),
        }
    }

    /// Every node's diagnostics, and the fabric's links.
    #[must_use]
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            text.push_str(&node.diagnostics());
            text.push('\n');
        }
        if let Ok(links) = self.fabric.netns.ip(&["-br", "link"]) {
            let _ = writeln!(text, "--- fabric links ---\n{}", links.trim_end());
        }
        text
    }

    /// Stops every process and removes everything the cluster created:
    /// nodes (agents, pods with CNI DEL), fabric, external client, cgroups,
    /// work directory. Idempotent; reports every step that failed.
    pub fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut errors = Vec::new();
        for node in &mut self.nodes {
            if let Err(err) = node.teardown() {
                errors.push(format!("node {}: {err:#}", node.name));
            }
        }
        let external = Cgroup::existing(self.cgroup.path().join(EXTERNAL_CGROUP));
        let steps = [
            ("killing the external client's processes", external.kill_all()),
            ("deleting the fabric", self.fabric.delete()),
            ("removing the cluster cgroup", self.cgroup.remove()),
            ("removing the work directory", teardown::remove_dir(&self.run_dir)),
        ];
        for (step, result) in steps {
            if let Err(err) = result {
                errors.push(format!("{step}: {err:#}"));
            }
        }
        if !self.naming.is_persistent() {
            // The shared root goes with the last run; fine to fail.
            let _ = std::fs::remove_dir(RUN_ROOT);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("\n"))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The persistent lab lives on after the process that built it.
        if self.naming.is_persistent() || self.torn_down {
            return;
        }
        // See Node's Drop: never panic while unwinding.
        let mut stderr = std::io::stderr();
        if std::thread::panicking() {
            let _ = writeln!(stderr, "{}", self.diagnostics());
        }
        if let Err(err) = self.teardown() {
            let _ = writeln!(stderr, "teardown of cluster {} incomplete: {err:#}", self.naming);
        }
    }
}
