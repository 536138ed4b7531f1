//! The persistent lab: a cluster that outlives the command that built it.
//!
//! `lab up` builds it under fixed names (`weir-lab-*`, cgroup `weir-lab`,
//! `/run/weir-lab`) with agents and servers in sessions of their own, and
//! writes `/run/weir-lab/state.json`: the node count, the binaries, every pod
//! (its CNI result) and every applied object. Later commands re-attach from
//! it; all names and paths follow from the node count. A lock file
//! serialises the commands that change the lab.
//!
//! The fixed names carry no owner pid, so the tests' dead-owner cleanup never
//! removes a lab whose `up` has exited; `lab up` and `lab down` sweep the
//! lab's own leftovers instead.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterConfig};
use crate::agent::STOP_GRACE;
use crate::bins::Binaries;
use crate::bpffs;
use crate::cgroup::Cgroup;
use crate::kube::Store;
use crate::netns::Netns;
use crate::pod::{Pod, PodRecord};
use crate::tag::{LAB_ROOT, LAB_STEM, Naming};

/// Layout version of the state file.
const STATE_VERSION: u32 = 1;

/// What a persistent lab's later commands need to find it again.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    nodes: usize,
    bin_dir: PathBuf,
    agent_args: Vec<String>,
    /// Pods per node, by node name.
    pods: Vec<(String, Vec<PodRecord>)>,
    objects: Store,
}

/// How a command uses the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Looks only (`probe`, `status`): shares the lock.
    Read,
    /// Changes it (`apply`, `delete`, `down`): holds the lock alone.
    Write,
}

fn state_path() -> PathBuf {
    Path::new(LAB_ROOT).join("state.json")
}

fn lock_path() -> PathBuf {
    Path::new(LAB_ROOT).join("lock")
}

fn read_state() -> Result<State> {
    let path = state_path();
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: State = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if state.version != STATE_VERSION {
        bail!(
            "{} has layout version {} (this build reads {STATE_VERSION}): `cargo xtask lab down` and up again",
            path.display(),
            state.version
        );
    }
    Ok(state)
}

/// Opens and locks the lab's lock file.
fn lock(access: Access) -> Result<File> {
    let path = lock_path();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match access {
        Access::Read => file.lock_shared(),
        Access::Write => file.lock(),
    }
    .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

impl Cluster {
    /// Whether a persistent lab is up (its state file is readable).
    #[must_use]
    pub fn persistent_lab_is_up() -> bool {
        read_state().is_ok()
    }

    /// Builds the persistent lab (`lab up`) and leaves it running. Fails if
    /// one is up; leftovers of one whose `up` or `down` did not finish are
    /// removed first, and reported.
    pub fn create_persistent_lab(bins: Binaries, config: ClusterConfig) -> Result<(Self, Vec<String>)> {
        bins.check()?;
        if Path::new(LAB_ROOT).is_dir() {
            let _held = lock(Access::Write)?;
            if let Ok(state) = read_state() {
                bail!(
                    "a lab with {} node(s) is already up (state in {}): use it, or `cargo xtask lab down` first",
                    state.nodes,
                    state_path().display()
                );
            }
        }
        let removed = sweep_persistent_lab()?;
        std::fs::create_dir_all(LAB_ROOT).with_context(|| format!("creating {LAB_ROOT}"))?;
        let mut cluster = Cluster::unbuilt(Naming::PersistentLab, bins, config)?;
        cluster.lock = Some(lock(Access::Write)?);
        if let Err(err) = cluster.build().and_then(|()| cluster.save()) {
            // Drop leaves a persistent lab alone: take it apart here.
            let _ = cluster.teardown();
            let _ = sweep_persistent_lab();
            return Err(err.context("building the lab (it was removed again)"));
        }
        Ok((cluster, removed))
    }

    /// The persistent lab as `lab up` left it and later commands changed it.
    pub fn attach_persistent_lab(access: Access) -> Result<Self> {
        if !Path::new(LAB_ROOT).is_dir() {
            bail!("no lab is up: start one with `cargo xtask lab up`");
        }
        let held = lock(access)?;
        let state =
            read_state().context("no lab is up (`cargo xtask lab down` removes what is left of one)")?;
        let config = ClusterConfig {
            nodes: state.nodes,
            agent_args: state.agent_args,
            api_server: false,
        };
        let mut cluster = Cluster::unbuilt(Naming::PersistentLab, Binaries::in_dir(state.bin_dir), config)?;
        cluster.lock = Some(held);
        let mut records: std::collections::BTreeMap<String, Vec<PodRecord>> =
            state.pods.into_iter().collect();
        for index in 1..=state.nodes {
            let mut node = cluster.member(index);
            // Missing only if `up` failed, which removes the lab again.
            let _ = node.load_conflist();
            for record in records.remove(&node.name).unwrap_or_default() {
                node.pods
                    .push(Pod::from_record(&cluster.naming, node.cgroup.path(), record)?);
            }
            cluster.nodes.push(node);
        }
        cluster.objects = state.objects;
        Ok(cluster)
    }

    /// Takes the persistent lab down (`lab down`): agents stopped, pods
    /// deleted with CNI DEL, then everything named `weir-lab*` removed.
    /// Returns what it did.
    pub fn down_persistent_lab() -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        if state_path().exists() {
            match Cluster::attach_persistent_lab(Access::Write) {
                Ok(mut cluster) => {
                    let pods = cluster.pods().count();
                    match cluster.teardown() {
                        Ok(()) => done.push(format!(
                            "{} node(s) and {pods} pod(s) taken down (agents stopped, CNI DEL per pod)",
                            cluster.nodes.len()
                        )),
                        Err(err) => errors.push(format!("{err:#}")),
                    }
                }
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        match sweep_persistent_lab() {
            Ok(removed) => done.extend(removed),
            Err(err) => errors.push(format!("{err:#}")),
        }
        if errors.is_empty() {
            Ok(done)
        } else {
            bail!("{}", errors.join("\n"))
        }
    }

    /// Writes the state file (atomically); nothing for a cluster owned by a
    /// process.
    pub(crate) fn save(&self) -> Result<()> {
        if !self.naming.is_persistent() {
            return Ok(());
        }
        let state = State {
            version: STATE_VERSION,
            nodes: self.nodes.len(),
            bin_dir: self.bins.dir().to_owned(),
            agent_args: self.config.agent_args.clone(),
            pods: self
                .nodes
                .iter()
                .map(|node| (node.name.clone(), node.pods.iter().map(Pod::record).collect()))
                .collect(),
            objects: self.objects.clone(),
        };
        let path = state_path();
        let temporary = path.with_extension("json.tmp");
        let json = serde_json::to_string_pretty(&state)?;
        std::fs::write(&temporary, json).with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("renaming to {}", path.display()))
    }
}

/// Removes everything named like the persistent lab: its cgroup (processes
/// asked to stop first), its netns, mounts below its directory, the
/// directory. Returns a line per thing removed.
fn sweep_persistent_lab() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let cgroup = Cgroup::existing(Naming::PersistentLab.cgroup_dir());
    if cgroup.path().exists() {
        cgroup.terminate_all(STOP_GRACE)?;
        cgroup.remove()?;
        removed.push(format!("removed cgroup {}", cgroup.path().display()));
    }
    let prefix = format!("{LAB_STEM}-");
    for name in Netns::list_names()? {
        if name.starts_with(&prefix) {
            Netns::existing(&name).delete()?;
            removed.push(format!("removed netns {name}"));
        }
    }
    for point in bpffs::mount_points()? {
        if point.starts_with(LAB_ROOT) {
            bpffs::unmount_if_mounted(&point)?;
            removed.push(format!("unmounted {}", point.display()));
        }
    }
    match std::fs::remove_dir_all(LAB_ROOT) {
        Ok(()) => removed.push(format!("removed directory {LAB_ROOT}")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing {LAB_ROOT}")),
    }
    Ok(removed)
}
