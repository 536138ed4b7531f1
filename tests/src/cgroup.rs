//! The node's cgroup v2 subtree: one directory per run, one child per pod.
//!
//! The agent attaches its `connect4` program to the node cgroup, so it applies to
//! every process in the pod cgroups below it — the way a real node's pods sit
//! below the cgroup the agent attaches to. Teardown uses `cgroup.kill`, which kills
//! every process in the subtree at once, including any a test forgot about.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long teardown waits for killed processes to leave a cgroup.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A cgroup v2 directory this run created (or a leftover one being removed).
#[derive(Clone, Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates the cgroup directory `path` (its parent must exist).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Cgroup { path })
    }

    /// Refers to an existing cgroup directory (used for leftovers).
    #[must_use]
    pub fn existing(path: impl Into<PathBuf>) -> Self {
        Cgroup { path: path.into() }
    }

    /// Creates the child cgroup `name`.
    pub fn create_child(&self, name: &str) -> Result<Self> {
        Self::create(self.path.join(name))
    }

    /// The cgroup's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<()> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving pid {pid} into {}", self.path.display()))
    }

    /// Whether any process is left in this cgroup or below it.
    pub fn populated(&self) -> Result<bool> {
        let events_path = self.path.join("cgroup.events");
        let events = std::fs::read_to_string(&events_path)
            .with_context(|| format!("reading {}", events_path.display()))?;
        Ok(events.lines().any(|line| line == "populated 1"))
    }

    /// Pids of the processes directly in this cgroup (not its children).
    pub fn procs(&self) -> Result<Vec<u32>> {
        let path = self.path.join("cgroup.procs");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().filter_map(|line| line.trim().parse().ok()).collect())
    }

    /// Asks every process in the subtree to stop (SIGTERM), waits up to
    /// `grace` for them to go, then kills what is left. For processes this run
    /// holds no handle of: the persistent lab's agents, started by an earlier
    /// `lab up`, get to detach their programs cleanly.
    pub fn terminate_all(&self, grace: Duration) -> Result<()> {
        if !self.path.exists() || !self.populated()? {
            return Ok(());
        }
        let mut pids = Vec::new();
        collect_procs(&self.path, &mut pids)?;
        if !pids.is_empty() {
            // `kill` the tool rather than kill(2): no unsafe outside netns code.
            // A process that exited meanwhile makes it fail: fine.
            let _ = crate::cmd::run("kill", std::iter::once("-TERM".to_owned()).chain(pids));
        }
        let deadline = Instant::now() + grace;
        while self.populated()? && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_all()
    }

    /// Kills every process in the subtree and waits until they are gone. Processes
    /// the caller spawned must still be reaped by it (`Child::wait`).
    pub fn kill_all(&self) -> Result<()> {
        if !self.path.exists() || !self.populated()? {
            return Ok(());
        }
        std::fs::write(self.path.join("cgroup.kill"), "1")
            .with_context(|| format!("writing cgroup.kill of {}", self.path.display()))?;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.populated()? {
            if Instant::now() > deadline {
                bail!("processes still in {} after cgroup.kill", self.path.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills what is left, then removes the cgroup and all its children (deepest
    /// first: a cgroup with children cannot be removed). Missing is success.
    pub fn remove(&self) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        self.kill_all()?;
        remove_tree(&self.path)
    }
}

/// The pids of `dir` and every cgroup below it, as strings for `kill`.
fn collect_procs(dir: &Path, pids: &mut Vec<String>) -> Result<()> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    pids.extend(procs.lines().map(str::to_owned));
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_procs(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// `rmdir` of a cgroup directory and its child directories. cgroupfs directories
/// hold only interface files, which `rmdir` removes with them, so no `unlink`.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing cgroup {}", dir.display())),
    }
}
