//! The node agent as a child process: started in the node netns, watched through
//! its status file, stopped with SIGTERM like a kubelet-managed pod would be.
//!
//! A cluster member's agent also gets `--node-name` and the CNI directories: it
//! then routes to the other nodes' pods and writes its node's conflist.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cgroup::Cgroup;
use crate::cmd;

/// How often the agent re-reads its manifest directory. Short, so tests that
/// rewrite a manifest wait little; the agent only reconciles when files change.
const POLL_INTERVAL_MS: &str = "100";

/// How long a stopped agent gets to exit before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the agent writes to its status file after each successful reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AgentStatus {
    /// Count of successful reconciles, from 1.
    pub generation: u64,
    /// Frontends (VIP, port, protocol) in the services map.
    pub frontends: u64,
    /// Backends in the backends map.
    pub backends: u64,
    /// Routes weir owns in the node's table (other nodes' podCIDRs); 0
    /// without `--node-name`.
    #[serde(default)]
    pub node_routes: u64,
    /// This node's podCIDR from its Node object, once known.
    #[serde(default)]
    pub pod_cidr: Option<String>,
}

impl AgentStatus {
    /// Reads a status file; `None` while there is none (or a partial one).
    #[must_use]
    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// What makes an agent a cluster member rather than a plain load balancer.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// `--node-name`, with the CNI directories it writes the conflist for.
    pub node: Option<AgentNode>,
    /// More flags, appended as given (e.g. `--device eth0`).
    pub extra_args: Vec<String>,
    /// Watch the API server of this kubeconfig (Kubernetes mode) instead of
    /// reading the manifest directory.
    pub kubeconfig: Option<PathBuf>,
    /// Start it in a session of its own, to outlive this process (the
    /// persistent lab).
    pub detached: bool,
}

/// The flags of an agent that plumbs its node.
#[derive(Clone, Debug)]
pub struct AgentNode {
    /// `--node-name`: its Node object in the manifest directory.
    pub name: String,
    /// `--cni-conf-dir`: where it writes `10-weir.conflist`.
    pub cni_conf_dir: PathBuf,
    /// `--cni-data-dir`: the IPAM store it puts into the conflist.
    pub cni_data_dir: PathBuf,
}

/// Where the agent reads from and writes to.
#[derive(Clone, Debug)]
pub struct AgentPaths {
    /// Directory of Service/EndpointSlice YAML (`--manifests`).
    pub manifests: PathBuf,
    /// The run's bpffs (`--bpffs`).
    pub bpffs: PathBuf,
    /// Cgroup to attach `connect4` to (`--cgroup`).
    pub attach_cgroup: PathBuf,
    /// Status file (`--status-file`).
    pub status: PathBuf,
    /// File receiving its stdout and stderr.
    pub log: PathBuf,
}

/// A running (or stopped) `weir-agent`.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    paths: AgentPaths,
    exited: Option<ExitStatus>,
}

impl Agent {
    /// Starts `binary` inside `node_netns`, and moves it into `own_cgroup` so a
    /// crashed run's agent is found and killed with the rest of the run.
    pub fn start(
        binary: &Path,
        node_netns: &Path,
        paths: AgentPaths,
        options: &AgentOptions,
        own_cgroup: &Cgroup,
    ) -> Result<Self> {
        // Appended to: a restarted agent's log follows its predecessor's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .with_context(|| format!("opening {}", paths.log.display()))?;
        let mut command = cmd::nsenter_command(node_netns, binary, options.detached);
        if let Some(node) = &options.node {
            command
                .arg("--node-name")
                .arg(&node.name)
                .arg("--cni-conf-dir")
                .arg(&node.cni_conf_dir)
                .arg("--cni-data-dir")
                .arg(&node.cni_data_dir);
        }
        command.args(&options.extra_args);
        match &options.kubeconfig {
            Some(kubeconfig) => command.arg("--kubeconfig").arg(kubeconfig),
            None => command.arg("--manifests").arg(&paths.manifests),
        };
        command
            .arg("--bpffs")
            .arg(&paths.bpffs)
            .arg("--cgroup")
            .arg(&paths.attach_cgroup)
            .arg("--status-file")
            .arg(&paths.status)
            // Per node: every agent of a lab shares the mount namespace
            // (`Node::verdict_socket`).
            .arg("--verdict-socket")
            .arg(paths.status.with_file_name("verdicts.sock"))
            .args(["--poll-interval-ms", POLL_INTERVAL_MS])
            // The log goes to a file that people read in failure reports.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", cmd::describe(&command)))?;
        let mut agent = Agent {
            child,
            paths,
            exited: None,
        };
        // nsenter execs the agent in place, so the child pid is the agent's.
        if let Err(err) = own_cgroup.add_process(agent.child.id()) {
            let _ = agent.stop();
            return Err(err);
        }
        Ok(agent)
    }

    /// The status file's current content, if the agent has written one.
    #[must_use]
    pub fn status(&self) -> Option<AgentStatus> {
        AgentStatus::read(&self.paths.status)
    }

    /// Waits until the status file reports at least `generation`; fails early
    /// (with the agent's log) if the agent exits.
    pub fn wait_for_generation(&mut self, generation: u64, timeout: Duration) -> Result<AgentStatus> {
        self.wait_for_status(&format!("generation {generation}"), timeout, |status| {
            status.generation >= generation
        })
    }

    /// Waits until the status file satisfies `done` (described by `what` in
    /// errors); fails early, with the agent's log, if the agent exits.
    pub fn wait_for_status(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&AgentStatus) -> bool,
    ) -> Result<AgentStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status().filter(&done) {
                return Ok(status);
            }
            if let Some(exit) = self.child.try_wait()? {
                self.exited = Some(exit);
                bail!(
                    "weir-agent exited ({exit}) before reporting {what}\n{}",
                    self.log_excerpt()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "weir-agent did not report {what} within {timeout:?} (status now: {:?})\n{}",
                    self.status(),
                    self.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the agent to exit on its own (e.g. refusing
    /// a bad configuration); kills it and fails if it does not.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.exited.or(self.child.try_wait()?) {
                self.exited = Some(exit);
                return Ok(exit);
            }
            if Instant::now() > deadline {
                let _ = self.kill();
                bail!("weir-agent still ran after {timeout:?}\n{}", self.log_excerpt());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_none()
    }

    /// Stops the agent: SIGTERM, then SIGKILL after a grace period. Returns how it
    /// exited (a graceful stop is a success status).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(exit) = self.exited {
            return Ok(exit);
        }
        let pid = self.child.id().to_string();
        if self.child.try_wait()?.is_none() {
            // `kill` the tool rather than kill(2): no unsafe outside netns code.
            let _ = cmd::run("kill", ["-TERM", pid.as_str()]);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let exit = loop {
            if let Some(exit) = self.child.try_wait()? {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.exited = Some(exit);
        Ok(exit)
    }

    /// Kills the agent with SIGKILL, as a crash or the OOM killer would:
    /// nothing of its own shutdown runs.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(exit) = self.exited {
            return Ok(exit);
        }
        self.child.kill()?;
        let exit = self.child.wait()?;
        self.exited = Some(exit);
        Ok(exit)
    }

    /// Freezes (`false`: SIGSTOP) or thaws (`true`: SIGCONT) the agent: a
    /// frozen agent misses what happens meanwhile, as one stuck on a busy
    /// node would, and catches up when thawed.
    pub fn set_running(&self, running: bool) -> Result<()> {
        let signal = if running { libc::SIGCONT } else { libc::SIGSTOP };
        let pid = libc::pid_t::try_from(self.child.id()).context("agent pid out of range")?;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling the agent");
        }
        Ok(())
    }

    /// The agent's whole log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_else(|err| format!("(no agent log: {err})"))
    }

    /// The log framed for an error message.
    #[must_use]
    pub fn log_excerpt(&self) -> String {
        format!(
            "--- weir-agent log ({}) ---\n{}--- end of agent log ---",
            self.paths.log.display(),
            self.log()
        )
    }

    /// The paths the agent was started with.
    #[must_use]
    pub fn paths(&self) -> &AgentPaths {
        &self.paths
    }
}
