//! Removing what crashed runs left behind.
//!
//! A run killed with SIGKILL (or a machine reset mid-test) cannot clean up after
//! itself; the next run does it. Only runs whose owner process is dead are
//! touched: parallel tests of this process and a lab running beside them are
//! alive and keep everything. The persistent lab (`weir-lab-*`) has no owner
//! pid in its names and is never touched here: `lab up` and `lab down` clean
//! up after it.

use std::io::Write as _;
use std::path::Path;
use std::sync::Once;

use anyhow::{Context as _, Result, bail};

use crate::bpffs;
use crate::cgroup::Cgroup;
use crate::netns::Netns;
use crate::tag::{CGROUP_ROOT, PREFIX, RUN_ROOT, RunTag};

/// Removes the netns, cgroups, mounts and work directories of every run whose
/// owner is dead. Returns a line per thing removed.
pub fn cleanup_leftovers() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    let mut record = |what: String, result: Result<()>| match result {
        Ok(()) => removed.push(what),
        Err(err) => errors.push(format!("{what}: {err:#}")),
    };

    // Cgroups first: killing the subtree stops a dead run's agent and servers
    // before their netns and bpffs go.
    for name in dead_entries(Path::new(CGROUP_ROOT), true)? {
        let path = Path::new(CGROUP_ROOT).join(&name);
        record(
            format!("cgroup {}", path.display()),
            Cgroup::existing(&path).remove(),
        );
    }
    for name in Netns::list_names()? {
        if name.starts_with(PREFIX) && is_dead(&name) {
            record(format!("netns {name}"), Netns::existing(&name).delete());
        }
    }
    for name in dead_entries(Path::new(RUN_ROOT), false)? {
        let dir = Path::new(RUN_ROOT).join(&name);
        for point in bpffs::mount_points()? {
            if point.starts_with(&dir) {
                record(
                    format!("mount {}", point.display()),
                    bpffs::unmount_if_mounted(&point),
                );
            }
        }
        let removal = std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()));
        record(format!("directory {}", dir.display()), removal);
    }

    // Only succeeds when no live run has a directory there.
    let _ = std::fs::remove_dir(RUN_ROOT);

    if errors.is_empty() {
        Ok(removed)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

/// [`cleanup_leftovers`] once per process, reporting on stderr. Tests call it
/// from every topology they build, so the first one does the work.
pub fn cleanup_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut stderr = std::io::stderr();
        let _ = match cleanup_leftovers() {
            Ok(removed) if removed.is_empty() => Ok(()),
            Ok(removed) => writeln!(
                stderr,
                "removed leftovers of crashed runs: {}",
                removed.join(", ")
            ),
            Err(err) => writeln!(stderr, "could not remove all leftovers of crashed runs: {err:#}"),
        };
    });
}

/// Names in `dir` that belong to runs with a dead owner. Cgroup names carry the
/// `weir-` prefix, work directories do not.
fn dead_entries(dir: &Path, prefixed: bool) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if entry.file_type()?.is_dir() && name.starts_with(PREFIX) == prefixed && is_dead(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether `name` is one of ours and its owner is gone.
fn is_dead(name: &str) -> bool {
    RunTag::parse(name).is_some_and(|tag| !tag.owner_alive())
}
