//! The node agent as a child process: started in the node netns, watched through
//! its status file, stopped with SIGTERM like a kubelet-managed pod would be.

use std::fs::File;
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
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the agent writes to its status file after each successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct AgentStatus {
    /// Count of successful reconciles, from 1.
    pub generation: u64,
    /// Frontends (VIP, port, protocol) in the services map.
    pub frontends: u64,
    /// Backends in the backends map.
    pub backends: u64,
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
    pub fn start(binary: &Path, node_netns: &Path, paths: AgentPaths, own_cgroup: &Cgroup) -> Result<Self> {
        let log = File::create(&paths.log).with_context(|| format!("creating {}", paths.log.display()))?;
        let mut command = cmd::nsenter(node_netns, binary);
        command
            .arg("--manifests")
            .arg(&paths.manifests)
            .arg("--bpffs")
            .arg(&paths.bpffs)
            .arg("--cgroup")
            .arg(&paths.attach_cgroup)
            .arg("--status-file")
            .arg(&paths.status)
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
        let text = std::fs::read_to_string(&self.paths.status).ok()?;
        serde_json::from_str(&text).ok()
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
