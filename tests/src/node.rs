//! A node: its netns, cgroup subtree, bpffs and work directory, the pods
//! attached by `weir-cni`, and the processes (agent, servers) that run on it.
//!
//! ```text
//!   root netns (untouched)
//!   ┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄
//!   weir-<tag>-node   lo, ip_forward=1, weir-agent, one host veth + /32 route per pod
//!      ├─ weirXXXX ══ eth0  weir-<tag>-pod-default_echo-a   10.244.1.2/32
//!      └─ …
//!   cgroup weir-<tag>/ (agent attaches its socket-LB programs here)
//!      ├─ weir-agent/   ├─ host/ (the node's own probes)   ├─ default_echo-a/   └─ …
//! ```
//!
//! [`Node::new`] builds a standalone node: no link to the outside (nothing a
//! test sends can leave it), a fixed CNI config for [`POD_SUBNET`], an agent
//! without `--node-name`. A [`Cluster`](crate::Cluster) builds its members with
//! the same code, adds their uplink to the fabric, and gives their agents
//! `--node-name` — pods are then created with the conflist that agent wrote.
//! Everything is removed by [`Node::teardown`], which [`Drop`] runs on every
//! exit path, panics included (the persistent lab's nodes excepted).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::agent::{Agent, AgentOptions};
use crate::bins::Binaries;
use crate::bpffs::BpfFs;
use crate::cgroup::Cgroup;
use crate::cni::Cni;
use crate::manifests::ManifestDir;
use crate::netns::Netns;
use crate::pod::{Pod, split_key};
use crate::probe::Server;
use crate::tag::{Naming, RunKind, RunTag};
use crate::{leftovers, teardown};

/// The standalone node's pod CIDR (its IPAM hands out .2, .3, … in order).
pub const POD_SUBNET: &str = "10.244.1.0/24";

/// The gateway `weir-cni` gives every pod; it exists on no interface.
pub const POD_GATEWAY: &str = "169.254.1.1";

/// How long the agent gets to load its programs and report a reconcile.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the agent's own cgroup below the node cgroup.
pub(crate) const AGENT_CGROUP: &str = "weir-agent";

/// Cgroup of the node's own processes (probes "from the node"): below the
/// node cgroup, so socket-LB applies to them as to any host process.
pub(crate) const HOST_CGROUP: &str = "host";

/// A node and everything on it; see the module docs.
#[derive(Debug)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) naming: Naming,
    pub(crate) bins: Binaries,
    pub(crate) dir: PathBuf,
    pub(crate) netns: Netns,
    pub(crate) cgroup: Cgroup,
    pub(crate) bpffs: BpfFs,
    pub(crate) cni: Option<Cni>,
    pub(crate) ipam_dir: PathBuf,
    pub(crate) manifests: ManifestDir,
    pub(crate) agent_options: AgentOptions,
    pub(crate) address: Option<Ipv4Addr>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) sandboxes: Vec<Netns>,
    pub(crate) servers: Vec<(String, Server)>,
    pub(crate) agent: Option<Agent>,
    /// Owns the run: teardown removes the run's work directory too.
    pub(crate) standalone: bool,
    pub(crate) torn_down: bool,
}

impl Node {
    /// Builds an empty standalone node: netns, cgroup, bpffs and work
    /// directory of a fresh run. Leftovers of crashed runs are removed first
    /// (once per process).
    pub fn new(bins: Binaries, kind: RunKind) -> Result<Self> {
        bins.check()?;
        leftovers::cleanup_once();
        let naming = Naming::Run(RunTag::new(kind));
        let run_dir = naming.run_dir();
        crate::create_run_dir(&run_dir)?;
        let netns = Netns::existing(&naming.netns_name("node"));
        let cni = Cni::new(
            &bins.cni,
            bins.dir(),
            &netns.path(),
            POD_SUBNET,
            &run_dir.join("ipam"),
        );
        let mut node = Node::unbuilt(
            "node",
            naming.clone(),
            bins,
            &run_dir,
            naming.cgroup_dir(),
            ManifestDir::new(run_dir.join("manifests"), run_dir.join("scratch")),
        );
        node.standalone = true;
        node.ipam_dir = run_dir.join("ipam");
        node.cni = Some(cni);
        // From here on a failure drops `node`, whose teardown removes whatever
        // of the following was created.
        node.manifests.create_dirs()?;
        node.build()?;
        Ok(node)
    }

    /// The parts of a node, nothing created yet: what teardown of a node
    /// that failed half-way, and the persistent lab's re-attach, start from.
    pub(crate) fn unbuilt(
        name: &str,
        naming: Naming,
        bins: Binaries,
        dir: &Path,
        cgroup: PathBuf,
        manifests: ManifestDir,
    ) -> Node {
        Node {
            name: name.to_owned(),
            netns: Netns::existing(&naming.netns_name(name)),
            cgroup: Cgroup::existing(cgroup),
            bpffs: BpfFs::unmounted(dir.join("bpffs")),
            cni: None,
            ipam_dir: dir.join("cni/ipam"),
            manifests,
            agent_options: AgentOptions {
                detached: naming.is_persistent(),
                ..AgentOptions::default()
            },
            address: None,
            dir: dir.to_owned(),
            naming,
            bins,
            pods: Vec::new(),
            sandboxes: Vec::new(),
            servers: Vec::new(),
            agent: None,
            standalone: false,
            torn_down: false,
        }
    }

    /// Creates the node's netns, cgroups, bpffs and work directory.
    pub(crate) fn build(&mut self) -> Result<()> {
        crate::create_run_dir(&self.dir)?;
        self.netns = Netns::create(self.netns.name())?;
        // The node routes between its pods' host veths (and, in a cluster, to
        // and from the other nodes).
        self.netns.sysctl("net.ipv4.ip_forward", "1")?;
        // No default route, ever: a VIP nobody rewrote and any stray packet fail
        // fast ("network unreachable"). Pods still reach their gateway: weir-cni
        // pins 169.254.1.1 to the host veth's MAC in each pod.
        self.cgroup = Cgroup::create(self.cgroup.path())?;
        self.cgroup.create_child(AGENT_CGROUP)?;
        self.cgroup.create_child(HOST_CGROUP)?;
        self.bpffs = BpfFs::mount(self.bpffs.path())?;
        Ok(())
    }

    /// The node's name (its Node object's, in a cluster).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the run's names are made.
    #[must_use]
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The node's netns.
    #[must_use]
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The node cgroup (the agent's attach point).
    #[must_use]
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The node's work directory.
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    /// The node's bpffs: the agent pins its maps and links here, and a
    /// test may open them (root only; touches no network).
    #[must_use]
    pub fn bpffs_path(&self) -> &Path {
        self.bpffs.path()
    }

    /// The node's InternalIP on the fabric (`None` for a standalone node).
    #[must_use]
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.address
    }

    /// The IPAM store the plugin writes (`dataDir`).
    #[must_use]
    pub fn ipam_dir(&self) -> PathBuf {
        self.ipam_dir.clone()
    }

    /// The plugin as this node's runtime calls it.
    ///
    /// # Panics
    ///
    /// If the node has no CNI config yet (a cluster member whose agent has not
    /// written its conflist; clusters wait for it before handing nodes out).
    #[must_use]
    pub fn cni(&self) -> &Cni {
        match &self.cni {
            Some(cni) => cni,
            None => panic!("node {} has no CNI config yet", self.name),
        }
    }

    /// The agent's manifest directory.
    #[must_use]
    pub fn manifests(&self) -> &ManifestDir {
        &self.manifests
    }

    /// Creates pod `key` (`namespace/name`, or a name in `default`) and
    /// attaches it with `weir-cni ADD`. On failure nothing of the pod is left.
    pub fn add_pod(&mut self, key: &str) -> Result<&Pod> {
        let (namespace, name) = split_key(key)?;
        if self.find_pod(namespace, name).is_some() {
            bail!("pod {namespace}/{name} exists on {}", self.name);
        }
        let cni = self
            .cni
            .as_ref()
            .with_context(|| format!("node {} has no CNI config yet", self.name))?;
        let pod = Pod::create(&self.naming, cni, self.cgroup.path(), (namespace, name))?;
        self.pods.push(pod);
        self.pods.last().context("pod list empty after a push")
    }

    /// Creates a pod netns `name` without attaching it: for tests that drive
    /// `weir-cni` by hand. Removed at teardown.
    pub fn add_sandbox(&mut self, name: &str) -> Result<Netns> {
        let netns = Netns::create(&self.naming.netns_name(name))?;
        self.sandboxes.push(netns.clone());
        Ok(netns)
    }

    /// `CNI_CONTAINERID` for a container called `name` on this node (unique
    /// across runs, so parallel tests never share one).
    #[must_use]
    pub fn container_id(&self, name: &str) -> String {
        format!("{}-{name}", self.naming)
    }

    /// The pod `key` (`namespace/name`, or a name in `default`).
    pub fn pod(&self, key: &str) -> Result<&Pod> {
        let (namespace, name) = split_key(key)?;
        self.find_pod(namespace, name).with_context(|| {
            format!(
                "no pod {namespace}/{name} on node {} ({})",
                self.name, self.naming
            )
        })
    }

    pub(crate) fn find_pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|pod| pod.namespace == namespace && pod.name == name)
    }

    /// Every pod, in creation order.
    #[must_use]
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Detaches pod `key` with `weir-cni DEL` and removes its netns and cgroup
    /// (and the servers in it).
    pub fn remove_pod(&mut self, key: &str) -> Result<()> {
        let (namespace, name) = split_key(key)?;
        let index = self
            .pods
            .iter()
            .position(|pod| pod.namespace == namespace && pod.name == name)
            .with_context(|| format!("no pod {namespace}/{name} on {}", self.name))?;
        let pod = self.pods.remove(index);
        pod.remove(self.cni.as_ref(), &mut self.servers)
    }

    /// The agent's flags beyond the paths and node flags the harness
    /// passes (e.g. `--map-size-services 6`, `--config FILE`); they apply
    /// from the next start.
    pub fn agent_args_mut(&mut self) -> &mut Vec<String> {
        &mut self.agent_options.extra_args
    }

    /// Starts the agent and returns without waiting for a reconcile (e.g.
    /// to see it refuse its configuration).
    pub fn start_agent_nowait(&mut self) -> Result<()> {
        self.launch_agent()
    }

    /// Waits for the agent to exit on its own; see [`Agent::wait_for_exit`].
    pub fn wait_for_agent_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        self.agent
            .as_mut()
            .context("the agent was never started")?
            .wait_for_exit(timeout)
    }

    /// `GET http://127.0.0.1:<port><path>` from inside the node netns (curl,
    /// as an HTTP probe of the kubelet would ask): the status code and body.
    /// The node's own loopback: nothing leaves the node netns.
    pub fn http_get(&self, port: u16, path: &str) -> Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let out = crate::cmd::nsenter(&self.netns.path(), "curl")
            .args(["-s", "-m", "5", "-w", "\n%{http_code}", &url])
            .output()
            .with_context(|| format!("running curl {url} in {}", self.name))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let code = code
            .trim()
            .parse()
            .with_context(|| format!("curl {url}: no status ({text:?})"))?;
        Ok((code, body.to_owned()))
    }

    /// Unwraps `result` or panics with the error: the way privileged tests fail.
    /// The unwinding then drops the node, which prints its diagnostics (agent
    /// status and log, server logs, links, routes) before tearing it down.
    ///
    /// # Panics
    ///
    /// If `result` is an error.
    #[track_caller]
    pub fn expect<T>(&self, result: Result<T>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(err) => panic!("{what} (node {}, {}): {err:#}", self.name, self.naming),
        }
    }

    /// Everything worth reading when something failed: agent status and log,
    /// server logs, the node's links and routes.
    #[must_use]
    pub fn diagnostics(&self) -> String {
        teardown::diagnostics(self)
    }

    /// Stops every process and removes everything the node created. Idempotent;
    /// reports every step that failed, after trying all of them.
    pub fn teardown(&mut self) -> Result<()> {
        teardown::teardown(self)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The persistent lab lives on after the process that built it.
        if self.naming.is_persistent() || self.torn_down {
            return;
        }
        // `eprintln!` would panic if stderr is a closed pipe, and a panic during
        // an unwind aborts before teardown: write and ignore errors instead.
        let mut stderr = std::io::stderr();
        if std::thread::panicking() {
            // Captured by the test harness and shown with the failure.
            let _ = writeln!(stderr, "{}", self.diagnostics());
        }
        if let Err(err) = self.teardown() {
            let _ = writeln!(
                stderr,
                "teardown of {} ({}) incomplete: {err:#}",
                self.name, self.naming
            );
        }
    }
}
