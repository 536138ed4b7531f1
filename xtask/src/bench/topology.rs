//! The bench's lab: one node of the tests' cluster harness (netns, cgroup,
//! bpffs, weir-agent with the full datapath), a client pod, backend pods
//! running `weir-probe bench serve`, and the external client netns.
//!
//! ```text
//!   fabric ── node-1 (198.18.0.11, weir-agent; the peers' rules go here)
//!         │     ├─ bench/client     10.244.1.2   the pod that dials ClusterIPs
//!         │     └─ bench/backend-k  10.244.1.x   :8080, the probed Service's endpoints
//!         └─ external (198.18.0.100)             dials the NodePort
//! ```
//!
//! The same client pod dials through weir and through the peers: weir's
//! socket-LB sees only processes below the node cgroup, so a client placed
//! in the pod's own cgroup goes through weir, and the same netns with a
//! cgroup outside the node (the cluster's `external` cgroup) sends plain
//! SYNs to the ClusterIP that iptables/nftables DNAT in the node netns.
//! Everything is the harness's: it is torn down on drop, on errors too.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use weir_tests::{AgentStatus, Binaries, Cluster, ClusterConfig, EXTERNAL_ADDRESS, Node, Place, RunKind};

use super::services::TARGET_PORT;

/// The node's name in the harness.
const NODE: &str = "node-1";

/// Map capacities given to the agent: 30k Services × 10 endpoints need
/// 330k service-map entries (frontends × (backends + 1)) and 300k
/// backends. Also what the packet-cost worker declares when it opens the
/// same pinned maps.
pub const MAP_SIZES: MapSizes = MapSizes {
    services: 524_288,
    backends: 524_288,
    affinity: 65_536,
    nat: 262_144,
};

/// Capacities of the resizable maps.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    /// `mapSizes.services`.
    pub services: u32,
    /// `mapSizes.backends`.
    pub backends: u32,
    /// `mapSizes.affinity`.
    pub affinity: u32,
    /// `mapSizes.nat`.
    pub nat: u32,
}

/// The bench lab; see the module docs.
pub struct Topology {
    /// The harness's cluster (one node).
    pub cluster: Cluster,
    /// The client pod's netns file.
    pub client_netns: PathBuf,
    /// The client pod's cgroup (below the node's: weir's socket-LB applies).
    pub client_cgroup: PathBuf,
    /// A cgroup outside the node's subtree (no socket-LB).
    pub outside_cgroup: PathBuf,
    /// The backend pods' addresses.
    pub backends: Vec<Ipv4Addr>,
    /// The node's address.
    pub node_ip: Ipv4Addr,
    servers: Vec<Child>,
}

impl Topology {
    /// Builds the cluster, the pods and their servers.
    pub fn new(bin_dir: &Path, backends: usize) -> Result<Self> {
        let mut config = ClusterConfig {
            nodes: 1,
            ..ClusterConfig::default()
        };
        config.agent_args.extend(
            [
                "--map-size-services",
                &MAP_SIZES.services.to_string(),
                "--map-size-backends",
                &MAP_SIZES.backends.to_string(),
                "--map-size-affinity",
                &MAP_SIZES.affinity.to_string(),
                "--map-size-nat",
                &MAP_SIZES.nat.to_string(),
            ]
            .map(str::to_owned),
        );
        let mut cluster = Cluster::new(Binaries::in_dir(bin_dir), RunKind::Test, config)?;
        let probe = cluster.binaries().probe.clone();
        let outside_cgroup = cluster
            .nodes()
            .first()
            .and_then(|node| node.cgroup().path().parent())
            .context("the node cgroup has no parent")?
            .join("external");
        let node = cluster.node_mut(NODE)?;
        let node_ip = node.address().context("a cluster node has an address")?;
        let client = node.add_pod("bench/client")?;
        let (client_netns, client_cgroup) = (client.netns.path(), client.cgroup.path().to_owned());
        let mut topology = Topology {
            client_netns,
            client_cgroup,
            outside_cgroup,
            backends: Vec::new(),
            node_ip,
            servers: Vec::new(),
            cluster,
        };
        for k in 0..backends {
            let node = topology.cluster.node_mut(NODE)?;
            let pod = node.add_pod(&format!("bench/backend-{k}"))?;
            let (ip, place) = (pod.ip, pod.place());
            topology.backends.push(ip);
            let server = start_server(&probe, &place)?;
            topology.servers.push(server);
        }
        topology.tune()?;
        Ok(topology)
    }

    /// Sysctls against the `TIME_WAIT` collapse of connection-rate runs.
    fn tune(&self) -> Result<()> {
        for netns in [self.client_netns.clone(), self.cluster.external_netns().path()] {
            // The client closes first, so TIME_WAIT is the client's: reuse it,
            // and give it the whole port range.
            weir_tests::cmd::run_in_netns(&netns, "sysctl", ["-q", "-w", "net.ipv4.tcp_tw_reuse=1"])?;
            weir_tests::cmd::run_in_netns(
                &netns,
                "sysctl",
                ["-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"],
            )?;
        }
        Ok(())
    }

    /// The node.
    pub fn node(&self) -> Result<&Node> {
        self.cluster.node(NODE)
    }

    /// The node's netns file.
    pub fn node_netns(&self) -> Result<PathBuf> {
        Ok(self.node()?.netns().path())
    }

    /// The client pod as weir serves it (pod cgroup: socket-LB applies).
    #[must_use]
    pub fn client_via_weir(&self) -> Place {
        Place {
            netns: self.client_netns.clone(),
            cgroup: Some(self.client_cgroup.clone()),
        }
    }

    /// The client pod's netns with no socket-LB: plain packets.
    #[must_use]
    pub fn client_plain(&self) -> Place {
        Place {
            netns: self.client_netns.clone(),
            cgroup: Some(self.outside_cgroup.clone()),
        }
    }

    /// The external client.
    #[must_use]
    pub fn external(&self) -> Place {
        Place {
            netns: self.cluster.external_netns().path(),
            cgroup: Some(self.outside_cgroup.clone()),
        }
    }

    /// The external client's address.
    #[must_use]
    pub fn external_ip() -> Ipv4Addr {
        EXTERNAL_ADDRESS
    }

    /// The backend pods, the direct baseline's targets (taken in turn,
    /// as a Service spreads over them).
    #[must_use]
    pub fn direct_targets(&self) -> Vec<SocketAddrV4> {
        self.backends
            .iter()
            .map(|ip| SocketAddrV4::new(*ip, TARGET_PORT))
            .collect()
    }

    /// The agent's status.
    pub fn agent_status(&self) -> Result<Option<AgentStatus>> {
        Ok(self.node()?.agent_status())
    }

    /// Waits up to `timeout` for the agent's status to satisfy `done`.
    pub fn wait_for_agent(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&AgentStatus) -> bool,
    ) -> Result<AgentStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.agent_status()?;
            if let Some(status) = status.as_ref().filter(|s| done(s)) {
                return Ok(status.clone());
            }
            if Instant::now() > deadline {
                bail!("the agent did not report {what} within {timeout:?} (status: {status:?})");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The agent's process id.
    pub fn agent_pid(&self) -> Result<u32> {
        let procs = self.node()?.cgroup().path().join("weir-agent/cgroup.procs");
        let text = std::fs::read_to_string(&procs).with_context(|| format!("reading {}", procs.display()))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .context("the agent's cgroup holds no process")
    }

    /// Stops the servers, then the cluster (pods, agent, netns, cgroups, bpffs).
    pub fn teardown(mut self) -> Result<()> {
        self.stop_servers();
        self.cluster.teardown()
    }

    fn stop_servers(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        self.servers.clear();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The cluster's own drop follows and removes everything else.
        self.stop_servers();
    }
}

/// Starts `weir-probe bench serve` in a backend pod and waits until it listens.
fn start_server(probe: &Path, place: &Place) -> Result<Child> {
    let mut command = Command::new(probe);
    command.arg("--netns").arg(&place.netns);
    if let Some(cgroup) = &place.cgroup {
        command.arg("--cgroup").arg(cgroup);
    }
    command
        .args(["bench", "serve", "--threads", "8", "--listen"])
        .arg(format!("0.0.0.0:{TARGET_PORT}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().context("starting weir-probe bench serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("listening") {
        let _ = child.kill();
        let _ = child.wait();
        bail!("weir-probe bench serve did not start (said {line:?})");
    }
    Ok(child)
}
