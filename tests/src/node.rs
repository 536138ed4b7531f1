//! A one-node topology: the node netns, pods attached by `weir-cni`, and the
//! processes (agent, servers) that run on it.
//!
//! ```text
//!   root netns (untouched)
//!   ┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄
//!   weir-<tag>-node   lo, ip_forward=1, weir-agent, one host veth + /32 route per pod
//!      ├─ weirXXXX ══ eth0  weir-<tag>-echo-a   10.244.1.2/32
//!      ├─ weirXXXX ══ eth0  weir-<tag>-echo-b   10.244.1.3/32
//!      └─ …
//!   cgroup weir-<tag>/ (agent attaches connect4 here)
//!      ├─ weir-agent/   ├─ echo-a/   ├─ echo-b/   └─ …
//! ```
//!
//! The node is a netns too, and it has no link to the outside: nothing a test
//! sends can leave the topology. Everything is removed by [`Node::teardown`],
//! which [`Drop`] runs on every exit path, panics included.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::agent::{Agent, AgentPaths, AgentStatus};
use crate::bins::Binaries;
use crate::bpffs::BpfFs;
use crate::cgroup::Cgroup;
use crate::cni::{Cni, CniResult};
use crate::manifests::ManifestDir;
use crate::netns::Netns;
use crate::probe::{self, Replies, Server};
use crate::tag::{RunKind, RunTag};
use crate::{leftovers, teardown};

/// The node's pod CIDR (its IPAM hands out .2, .3, … in order).
pub const POD_SUBNET: &str = "10.244.1.0/24";

/// The gateway `weir-cni` gives every pod; it exists on no interface.
pub const POD_GATEWAY: &str = "169.254.1.1";

/// How long the agent gets to load its programs and report a reconcile.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the agent's own cgroup below the node cgroup.
const AGENT_CGROUP: &str = "weir-agent";

/// A pod attached to the node by `weir-cni ADD`.
#[derive(Debug)]
pub struct Pod {
    /// Pod name (also its cgroup's name).
    pub name: String,
    /// The pod's netns (`eth0` lives here).
    pub netns: Netns,
    /// The pod's cgroup, a child of the node cgroup.
    pub cgroup: Cgroup,
    /// `CNI_CONTAINERID` used for ADD and DEL.
    pub container_id: String,
    /// What ADD returned.
    pub cni_result: CniResult,
    /// The pod's address from the result.
    pub ip: Ipv4Addr,
}

/// A node and everything on it; see the module docs.
#[derive(Debug)]
pub struct Node {
    pub(crate) tag: RunTag,
    pub(crate) bins: Binaries,
    pub(crate) run_dir: PathBuf,
    pub(crate) netns: Netns,
    pub(crate) cgroup: Cgroup,
    pub(crate) bpffs: BpfFs,
    pub(crate) cni: Cni,
    pub(crate) manifests: ManifestDir,
    pub(crate) pods: Vec<Pod>,
    pub(crate) sandboxes: Vec<Netns>,
    pub(crate) servers: Vec<(String, Server)>,
    pub(crate) agent: Option<Agent>,
    pub(crate) torn_down: bool,
}

impl Node {
    /// Builds an empty node: netns, cgroup, bpffs and work directory of a fresh
    /// run. Leftovers of crashed runs are removed first (once per process).
    pub fn new(bins: Binaries, kind: RunKind) -> Result<Self> {
        bins.check()?;
        leftovers::cleanup_once();
        let tag = RunTag::new(kind);
        let run_dir = tag.run_dir();
        create_run_dir(&run_dir)?;
        let netns = Netns::existing(&tag.netns_name("node"));
        let cni = Cni::new(
            &bins.cni,
            bins.dir(),
            &netns.path(),
            POD_SUBNET,
            &run_dir.join("ipam"),
        );
        let mut node = Node {
            cgroup: Cgroup::existing(tag.cgroup_dir()),
            bpffs: BpfFs::unmounted(run_dir.join("bpffs")),
            manifests: ManifestDir::new(run_dir.join("manifests"), run_dir.join("scratch")),
            netns,
            cni,
            run_dir,
            tag,
            bins,
            pods: Vec::new(),
            sandboxes: Vec::new(),
            servers: Vec::new(),
            agent: None,
            torn_down: false,
        };
        // From here on a failure drops `node`, whose teardown removes whatever
        // of the following was created.
        node.manifests.create_dirs()?;
        node.netns = Netns::create(node.netns.name())?;
        // The node routes between its pods' host veths.
        node.netns.sysctl("net.ipv4.ip_forward", "1")?;
        // No uplink and no default route: a VIP nobody rewrote fails fast
        // ("network unreachable"). Pods still reach their gateway: weir-cni
        // pins 169.254.1.1 to the host veth's MAC in each pod.
        node.cgroup = Cgroup::create(node.cgroup.path())?;
        node.cgroup.create_child(AGENT_CGROUP)?;
        node.bpffs = BpfFs::mount(node.bpffs.path())?;
        Ok(node)
    }

    /// The run's tag.
    #[must_use]
    pub fn tag(&self) -> &RunTag {
        &self.tag
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

    /// The run's work directory.
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The IPAM store the plugin writes (`dataDir`).
    #[must_use]
    pub fn ipam_dir(&self) -> PathBuf {
        self.run_dir.join("ipam")
    }

    /// The plugin as this node's runtime calls it.
    #[must_use]
    pub fn cni(&self) -> &Cni {
        &self.cni
    }

    /// The agent's manifest directory.
    #[must_use]
    pub fn manifests(&self) -> &ManifestDir {
        &self.manifests
    }

    /// Creates pod `name` (netns, cgroup) and attaches it with `weir-cni ADD`.
    /// On failure nothing of the pod is left.
    pub fn add_pod(&mut self, name: &str) -> Result<&Pod> {
        if name == AGENT_CGROUP || self.pods.iter().any(|pod| pod.name == name) {
            bail!("pod name {name:?} is taken");
        }
        let netns = Netns::create(&self.tag.netns_name(name))?;
        let container_id = self.container_id(name);
        let attached = Cgroup::create(self.cgroup.path().join(name)).and_then(|cgroup| {
            match self
                .cni
                .add(&container_id, &netns.path())
                .and_then(|result| Ok((result.pod_ip()?, result)))
            {
                Ok((ip, cni_result)) => Ok((cgroup, ip, cni_result)),
                Err(err) => {
                    // ADD must clean up after itself; DEL anyway, as a runtime would.
                    let _ = self.cni.del(&container_id, &netns.path());
                    let _ = cgroup.remove();
                    Err(err)
                }
            }
        });
        let (cgroup, ip, cni_result) = match attached {
            Ok(parts) => parts,
            Err(err) => {
                let _ = netns.delete();
                return Err(err.context(format!("adding pod {name}")));
            }
        };
        let pod = Pod {
            name: name.to_owned(),
            netns,
            cgroup,
            container_id,
            cni_result,
            ip,
        };
        self.pods.push(pod);
        self.pods.last().context("pod list empty after a push")
    }

    /// Creates a pod netns `name` without attaching it: for tests that drive
    /// `weir-cni` by hand. Removed at teardown.
    pub fn add_sandbox(&mut self, name: &str) -> Result<Netns> {
        let netns = Netns::create(&self.tag.netns_name(name))?;
        self.sandboxes.push(netns.clone());
        Ok(netns)
    }

    /// `CNI_CONTAINERID` for a container called `name` on this node (unique
    /// across runs, so parallel tests never share one).
    #[must_use]
    pub fn container_id(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods
            .iter()
            .find(|pod| pod.name == name)
            .with_context(|| format!("no pod {name} on node {}", self.tag))
    }

    /// Every pod, in creation order.
    #[must_use]
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Detaches pod `name` with `weir-cni DEL` and removes its netns and cgroup
    /// (and the servers in it).
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let index = self
            .pods
            .iter()
            .position(|pod| pod.name == name)
            .with_context(|| format!("no pod {name}"))?;
        let pod = self.pods.remove(index);
        teardown::remove_pod(&self.cni, &pod, &mut self.servers)
    }

    /// Starts `weir-probe serve --name <name>` in pod `pod` on `0.0.0.0:<port>`.
    pub fn serve(&mut self, pod: &str, name: &str, port: u16) -> Result<()> {
        let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let log = self.run_dir.join(format!("logs/serve-{pod}-{port}.log"));
        let pod = self.pod(pod)?;
        let server = Server::start(
            &self.bins.probe,
            &pod.netns.path(),
            pod.cgroup.path(),
            name,
            listen,
            &log,
        )?;
        let pod_name = pod.name.clone();
        self.servers.push((pod_name, server));
        Ok(())
    }

    /// `count` fresh connections from pod `pod` to `target`, one attempt each.
    pub fn connect(&self, pod: &str, target: SocketAddrV4, count: u32, timeout: Duration) -> Result<Replies> {
        let pod = self.pod(pod)?;
        probe::connect(
            &self.bins.probe,
            &pod.netns.path(),
            pod.cgroup.path(),
            target,
            count,
            timeout,
        )
    }

    /// Starts the agent on the manifest directory and waits for its first
    /// reconcile.
    pub fn start_agent(&mut self) -> Result<AgentStatus> {
        if self.agent.as_mut().is_some_and(Agent::is_running) {
            bail!("the agent of {} is already running", self.tag);
        }
        let paths = AgentPaths {
            manifests: self.manifests.path().to_owned(),
            bpffs: self.bpffs.path().to_owned(),
            attach_cgroup: self.cgroup.path().to_owned(),
            status: self.run_dir.join("agent-status.json"),
            log: self.run_dir.join("logs/agent.log"),
        };
        // A status file of an earlier agent would look like this one's progress.
        let _ = std::fs::remove_file(&paths.status);
        let agent_cgroup = Cgroup::existing(self.cgroup.path().join(AGENT_CGROUP));
        let agent = self.agent.insert(Agent::start(
            &self.bins.agent,
            &self.netns.path(),
            paths,
            &agent_cgroup,
        )?);
        agent.wait_for_generation(1, AGENT_TIMEOUT)
    }

    /// Waits until the agent has reconciled at least `generation` times.
    pub fn wait_for_generation(&mut self, generation: u64) -> Result<AgentStatus> {
        self.agent
            .as_mut()
            .context("the agent is not running")?
            .wait_for_generation(generation, AGENT_TIMEOUT)
    }

    /// Waits until the agent's status satisfies `done` (`what` describes it).
    pub fn wait_for_status(
        &mut self,
        what: &str,
        done: impl Fn(&AgentStatus) -> bool,
    ) -> Result<AgentStatus> {
        self.agent
            .as_mut()
            .context("the agent is not running")?
            .wait_for_status(what, AGENT_TIMEOUT, done)
    }

    /// The agent's last status, if it wrote one.
    #[must_use]
    pub fn agent_status(&self) -> Option<AgentStatus> {
        self.agent.as_ref().and_then(Agent::status)
    }

    /// Stops the agent (SIGTERM; SIGKILL after a grace period).
    pub fn stop_agent(&mut self) -> Result<ExitStatus> {
        self.agent.as_mut().context("the agent was never started")?.stop()
    }

    /// The agent's log, framed for a failure message (empty if never started).
    #[must_use]
    pub fn agent_log(&self) -> String {
        self.agent.as_ref().map(Agent::log_excerpt).unwrap_or_default()
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
            Err(err) => panic!("{what} (node {}): {err:#}", self.tag),
        }
    }

    /// Everything worth reading when something failed: agent status and log,
    /// server logs, the node's links and routes.
    #[must_use]
    pub fn diagnostics(&self) -> String {
        teardown::diagnostics(self)
    }

    /// Stops every process and removes everything the run created. Idempotent;
    /// reports every step that failed, after trying all of them.
    pub fn teardown(&mut self) -> Result<()> {
        teardown::teardown(self)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // `eprintln!` would panic if stderr is a closed pipe, and a panic during
        // an unwind aborts before teardown: write and ignore errors instead.
        let mut stderr = std::io::stderr();
        if std::thread::panicking() {
            // Captured by the test harness and shown with the failure.
            let _ = writeln!(stderr, "{}", self.diagnostics());
        }
        if let Err(err) = self.teardown() {
            let _ = writeln!(stderr, "teardown of {} incomplete: {err:#}", self.tag);
        }
    }
}

/// Creates the run's work directory. Retried because a finishing run removes the
/// shared root when it looks empty, which can race with creating ours in it.
fn create_run_dir(run_dir: &Path) -> Result<()> {
    let logs = run_dir.join("logs");
    let mut attempt = 0;
    loop {
        match std::fs::create_dir_all(&logs) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && attempt < 3 => attempt += 1,
            result => return result.with_context(|| format!("creating {}", logs.display())),
        }
    }
}
