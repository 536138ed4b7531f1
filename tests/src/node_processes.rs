//! What runs on a [`Node`]: `weir-probe` servers and clients (in pods, or in
//! the node itself), and the agent — started with the node's flags, watched
//! through its status, stopped; also when an earlier process started it (the
//! persistent lab's agents, found through their cgroup and status file).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::agent::{Agent, AgentPaths, AgentStatus};
use crate::cgroup::Cgroup;
use crate::conflist;
use crate::node::{AGENT_CGROUP, AGENT_TIMEOUT, HOST_CGROUP, Node};
use crate::probe::{self, Place, Protocol, Replies, Server};

impl Node {
    /// Starts `weir-probe serve --name <name>` in pod `pod` on TCP `0.0.0.0:<port>`.
    pub fn serve(&mut self, pod: &str, name: &str, port: u16) -> Result<()> {
        self.serve_on(pod, name, port, Protocol::Tcp)
    }

    /// Starts `weir-probe serve --name <name>` in pod `pod` on `0.0.0.0:<port>`.
    pub fn serve_on(&mut self, pod: &str, name: &str, port: u16, protocol: Protocol) -> Result<()> {
        let pod = self.pod(pod)?;
        let (key, place) = (pod.key(), pod.place());
        self.start_server(key, &place, name, (port, protocol))
    }

    /// Starts a server in the node netns itself (a host-network process),
    /// answering with `name`.
    pub fn serve_on_host(&mut self, name: &str, port: u16, protocol: Protocol) -> Result<()> {
        let place = self.host_place();
        self.start_server(HOST_CGROUP.to_owned(), &place, name, (port, protocol))
    }

    fn start_server(
        &mut self,
        owner: String,
        place: &Place,
        name: &str,
        port: (u16, Protocol),
    ) -> Result<()> {
        let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port.0);
        let file = format!("serve-{}-{}-{}.log", owner.replace('/', "_"), port.0, port.1);
        let log = self.dir.join("logs").join(file);
        let detached = self.naming.is_persistent();
        let server = Server::start(&self.bins.probe, place, name, (listen, port.1), &log, detached)?;
        // The persistent lab's servers outlive this process: their pod's
        // cgroup is their handle, not the child.
        if !detached {
            self.servers.push((owner, server));
        }
        Ok(())
    }

    /// Where the node's own processes run: the node netns, the host cgroup.
    #[must_use]
    pub fn host_place(&self) -> Place {
        Place {
            netns: self.netns.path(),
            cgroup: Some(self.cgroup.path().join(HOST_CGROUP)),
        }
    }

    /// `count` fresh TCP connections from pod `pod` to `target`, one attempt each.
    pub fn connect(&self, pod: &str, target: SocketAddrV4, count: u32, timeout: Duration) -> Result<Replies> {
        self.probe(pod, (target, Protocol::Tcp), count, timeout)
    }

    /// `count` attempts from pod `pod` to `target` over `protocol`.
    pub fn probe(
        &self,
        pod: &str,
        target: (SocketAddrV4, Protocol),
        count: u32,
        timeout: Duration,
    ) -> Result<Replies> {
        probe::connect(&self.bins.probe, &self.pod(pod)?.place(), target, count, timeout)
    }

    /// `count` attempts from the node itself (its netns and host cgroup).
    pub fn probe_from_host(
        &self,
        target: (SocketAddrV4, Protocol),
        count: u32,
        timeout: Duration,
    ) -> Result<Replies> {
        probe::connect(&self.bins.probe, &self.host_place(), target, count, timeout)
    }

    /// Paths the agent reads and writes.
    pub(crate) fn agent_paths(&self) -> AgentPaths {
        AgentPaths {
            manifests: self.manifests.path().to_owned(),
            bpffs: self.bpffs.path().to_owned(),
            attach_cgroup: self.cgroup.path().to_owned(),
            status: self.dir.join("agent-status.json"),
            log: self.dir.join("logs/agent.log"),
        }
    }

    /// Starts the agent on the manifest directory and waits for its first
    /// reconcile.
    pub fn start_agent(&mut self) -> Result<AgentStatus> {
        self.launch_agent()?;
        self.wait_for_generation(1)
    }

    /// Starts the agent without waiting for it.
    pub(crate) fn launch_agent(&mut self) -> Result<()> {
        if self.agent.as_mut().is_some_and(Agent::is_running) {
            bail!("the agent of {} ({}) is already running", self.name, self.naming);
        }
        let paths = self.agent_paths();
        // A status file of an earlier agent would look like this one's progress.
        let _ = std::fs::remove_file(&paths.status);
        let agent_cgroup = Cgroup::existing(self.cgroup.path().join(AGENT_CGROUP));
        self.agent = Some(Agent::start(
            &self.bins.agent,
            &self.netns.path(),
            paths,
            &self.agent_options,
            &agent_cgroup,
        )?);
        Ok(())
    }

    /// Uses the conflist the agent wrote for this node's pods, as a runtime
    /// picks up the config its CNI directory holds.
    pub(crate) fn load_conflist(&mut self) -> Result<()> {
        let node = self
            .agent_options
            .node
            .as_ref()
            .context("a standalone node has a fixed CNI config")?;
        let path = node.cni_conf_dir.join(conflist::CONFLIST_NAME);
        self.cni = Some(conflist::cni_from_conflist(
            &self.bins,
            &self.netns.path(),
            &path,
        )?);
        Ok(())
    }

    /// Waits until the agent has reconciled at least `generation` times.
    pub fn wait_for_generation(&mut self, generation: u64) -> Result<AgentStatus> {
        self.wait_for_status(&format!("generation {generation}"), |status| {
            status.generation >= generation
        })
    }

    /// Waits until the agent's status satisfies `done` (`what` describes it).
    pub fn wait_for_status(
        &mut self,
        what: &str,
        done: impl Fn(&AgentStatus) -> bool,
    ) -> Result<AgentStatus> {
        if let Some(agent) = self.agent.as_mut() {
            return agent.wait_for_status(what, AGENT_TIMEOUT, done);
        }
        // An agent an earlier process started (the persistent lab's): only
        // its status file can tell.
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            let status = self.agent_status();
            if let Some(status) = status.clone().filter(&done) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent of {} did not report {what} within {AGENT_TIMEOUT:?} (status now: {status:?}; log: {})",
                    self.name,
                    self.agent_paths().log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's last status, if it wrote one (also for an agent an earlier
    /// process started: the persistent lab's).
    #[must_use]
    pub fn agent_status(&self) -> Option<AgentStatus> {
        AgentStatus::read(&self.agent_paths().status)
    }

    /// Whether the agent runs (also one an earlier process started: the
    /// persistent lab's, found in its cgroup).
    #[must_use]
    pub fn agent_running(&self) -> bool {
        Cgroup::existing(self.cgroup.path().join(AGENT_CGROUP))
            .populated()
            .unwrap_or(false)
    }

    /// Stops the agent (SIGTERM; SIGKILL after a grace period).
    pub fn stop_agent(&mut self) -> Result<ExitStatus> {
        self.agent.as_mut().context("the agent was never started")?.stop()
    }

    /// Kills the agent with SIGKILL (a crash).
    pub fn kill_agent(&mut self) -> Result<ExitStatus> {
        self.agent.as_mut().context("the agent was never started")?.kill()
    }

    /// Runs the operator CLI `weir ARGS` on this node (its netns), pointed
    /// at this node's maps, agent, verdict socket and IPAM store, as an
    /// operator on the node would run it. Returns the exit code and stdout;
    /// stderr is in the error of a failed spawn only.
    pub fn weir(&self, args: &[&str]) -> Result<std::process::Output> {
        self.weir_command(args)
            .output()
            .with_context(|| format!("running weir {} on {}", args.join(" "), self.name))
    }

    /// The command [`Self::weir`] runs, not yet started: for a CLI that runs
    /// on while the test acts (`weir monitor`).
    #[must_use]
    pub fn weir_command(&self, args: &[&str]) -> std::process::Command {
        let paths = self.agent_paths();
        let mut command = crate::cmd::nsenter(&self.netns.path(), &self.bins.cli);
        command
            .arg("--bpffs")
            .arg(&paths.bpffs)
            .args(["--agent", "127.0.0.1:9879"])
            .arg("--verdict-socket")
            .arg(self.verdict_socket())
            .arg("--cni-data-dir")
            .arg(&self.ipam_dir)
            .args(args);
        if let Some(node) = &self.agent_options.node {
            // `weir ipam` reads the podCIDR from the conflist the agent wrote.
            command.env("WEIR_CNI_CONF_DIR", &node.cni_conf_dir);
        }
        command
    }

    /// The agent's verdict socket (NetworkPolicy verdicts as JSON lines).
    #[must_use]
    pub fn verdict_socket(&self) -> std::path::PathBuf {
        self.agent_paths().status.with_file_name("verdicts.sock")
    }

    /// Freezes or thaws the agent (see [`Agent::set_running`]).
    pub fn set_agent_running(&self, running: bool) -> Result<()> {
        self.agent
            .as_ref()
            .context("the agent was never started")?
            .set_running(running)
    }

    /// The agent's log, framed for a failure message (empty if never started).
    #[must_use]
    pub fn agent_log(&self) -> String {
        self.agent.as_ref().map(Agent::log_excerpt).unwrap_or_default()
    }
}
