//! Per-run names: every netns, cgroup and directory a run creates carries its tag.
//!
//! A tag is `<kind><owner pid>-<sequence>`, e.g. `t4242-3` for the fourth topology
//! a test process with pid 4242 built. Everything derived from it starts with
//! [`PREFIX`] (`weir-t4242-3-node`, `/sys/fs/cgroup/unified/weir-t4242-3`), so a
//! later run can recognise what a crashed run left behind and, from the pid in the
//! name, whether its owner is still alive. Parallel tests in one process differ by
//! sequence number; the lab and a test run differ by pid.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every netns and cgroup name a run creates.
pub const PREFIX: &str = "weir-";

/// Root of the per-run work directories (tmpfs, so a reboot clears it too).
pub const RUN_ROOT: &str = "/run/weir-test";

/// Root of the cgroup v2 hierarchy on this machine (the other mounts are v1).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";

/// Work directory of the persistent lab (`cargo xtask lab up`).
pub const LAB_ROOT: &str = "/run/weir-lab";

/// Stem of every netns and cgroup name of the persistent lab (`weir-lab-node-1`,
/// cgroup `weir-lab`). It carries no owner pid, so [`RunTag::parse`] rejects it
/// and the tests' dead-owner cleanup never touches a lab whose `up` has exited.
pub const LAB_STEM: &str = "weir-lab";

/// How the names of one topology are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Owned by a running process: names carry its [`RunTag`], and the
    /// topology goes when the process ends (or with the next run's leftover
    /// cleanup, if the process died).
    Run(RunTag),
    /// The persistent lab: fixed names, lives until `cargo xtask lab down`.
    PersistentLab,
}

impl Naming {
    /// What every name starts with: `weir-<tag>` or `weir-lab`.
    #[must_use]
    pub fn stem(&self) -> String {
        match self {
            Naming::Run(tag) => format!("{PREFIX}{tag}"),
            Naming::PersistentLab => LAB_STEM.to_owned(),
        }
    }

    /// Name of a netns: `<stem>-<what>`.
    #[must_use]
    pub fn netns_name(&self, what: &str) -> String {
        format!("{}-{what}", self.stem())
    }

    /// The topology's cgroup: `/sys/fs/cgroup/unified/<stem>`.
    #[must_use]
    pub fn cgroup_dir(&self) -> PathBuf {
        Path::new(CGROUP_ROOT).join(self.stem())
    }

    /// The topology's work directory.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        match self {
            Naming::Run(tag) => tag.run_dir(),
            Naming::PersistentLab => PathBuf::from(LAB_ROOT),
        }
    }

    /// Whether this is the persistent lab.
    #[must_use]
    pub fn is_persistent(&self) -> bool {
        matches!(self, Naming::PersistentLab)
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Naming::Run(tag) => tag.fmt(f),
            Naming::PersistentLab => f.write_str("lab"),
        }
    }
}

/// Who owns a run: tells the names of test topologies and lab topologies apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// A privileged integration test (`t` in names).
    Test,
    /// `cargo xtask lab` (`lab` in names).
    Lab,
}

impl RunKind {
    fn letters(self) -> &'static str {
        match self {
            RunKind::Test => "t",
            RunKind::Lab => "lab",
        }
    }
}

/// The unique name of one topology: kind, owner pid and a per-process sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTag {
    kind: RunKind,
    pid: u32,
    seq: u32,
}

static NEXT_SEQ: AtomicU32 = AtomicU32::new(0);

impl RunTag {
    /// A fresh tag owned by this process, unique among all tags it hands out.
    #[must_use]
    pub fn new(kind: RunKind) -> Self {
        RunTag {
            kind,
            pid: std::process::id(),
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Parses the tag out of a name this module produced: `weir-<tag>[-<suffix>]`
    /// (netns, cgroup) or a bare `<tag>` (run directory). `None` for anything else,
    /// so unrelated `weir-…` objects (a real weir's, say) are never touched.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.strip_prefix(PREFIX).unwrap_or(name);
        let (kind, rest) = if let Some(rest) = name.strip_prefix("lab") {
            (RunKind::Lab, rest)
        } else {
            (RunKind::Test, name.strip_prefix('t')?)
        };
        let mut parts = rest.splitn(3, '-');
        let pid = parse_number(parts.next()?)?;
        let seq = parse_number(parts.next()?)?;
        Some(RunTag { kind, pid, seq })
    }

    /// Pid of the process that created this run.
    #[must_use]
    pub fn owner_pid(&self) -> u32 {
        self.pid
    }

    /// Whether the owning process still exists. A reused pid counts as alive: we
    /// would rather leave a leftover than tear down somebody's live topology.
    #[must_use]
    pub fn owner_alive(&self) -> bool {
        if self.pid == std::process::id() {
            return true;
        }
        // A killed owner stays a zombie until its parent reaps it: dead all the same.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
            Err(_) => false,
        }
    }

    /// Name of a netns of this run: `weir-<tag>-<what>`.
    #[must_use]
    pub fn netns_name(&self, what: &str) -> String {
        format!("{PREFIX}{self}-{what}")
    }

    /// The node's cgroup directory: `/sys/fs/cgroup/unified/weir-<tag>`.
    #[must_use]
    pub fn cgroup_dir(&self) -> PathBuf {
        Path::new(CGROUP_ROOT).join(format!("{PREFIX}{self}"))
    }

    /// The run's work directory: `/run/weir-test/<tag>`.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        Path::new(RUN_ROOT).join(self.to_string())
    }
}

impl fmt::Display for RunTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}-{}", self.kind.letters(), self.pid, self.seq)
    }
}

/// Strict decimal parse: `u32::from_str` would also take a leading `+`.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse() {
        let tag = RunTag::new(RunKind::Test);
        assert_eq!(RunTag::parse(&tag.netns_name("echo-a")), Some(tag.clone()));
        assert_eq!(RunTag::parse(&tag.to_string()), Some(tag.clone()));
        let dir = tag.cgroup_dir();
        let base = dir.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(RunTag::parse(base), Some(tag));
    }

    #[test]
    fn lab_tags_parse_and_differ_from_test_tags() {
        let lab = RunTag::parse("weir-lab77-0-node").unwrap();
        assert_eq!(lab.kind, RunKind::Lab);
        assert_eq!(lab.owner_pid(), 77);
        assert_ne!(RunTag::parse("weir-t77-0").unwrap(), lab);
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(RunTag::new(RunKind::Test).owner_alive());
        // Above the kernel's pid_max limit (2^22), so no such process exists.
        assert!(!RunTag::parse("weir-t4194305-0").unwrap().owner_alive());
        let init = RunTag {
            kind: RunKind::Test,
            pid: 1,
            seq: 0,
        };
        assert!(init.owner_alive());
    }

    #[test]
    fn persistent_lab_names_are_not_tags() {
        let lab = Naming::PersistentLab;
        for name in [lab.netns_name("node-1"), lab.netns_name("fabric"), lab.stem()] {
            assert_eq!(RunTag::parse(&name), None, "{name}");
        }
        assert_eq!(lab.cgroup_dir(), Path::new(CGROUP_ROOT).join("weir-lab"));
        // A demo run's names differ from the persistent lab's right after the stem.
        let demo = Naming::Run(RunTag::new(RunKind::Lab)).netns_name("node-1");
        assert!(!demo.starts_with(&format!("{LAB_STEM}-")), "{demo}");
    }

    #[test]
    fn foreign_names_are_not_tags() {
        for name in [
            "weir",
            "weir-agent",
            "weir-t",
            "weir-t12",
            "weir-t+1-2",
            "weirabc",
            "other",
        ] {
            assert_eq!(RunTag::parse(name), None, "{name}");
        }
    }
}
