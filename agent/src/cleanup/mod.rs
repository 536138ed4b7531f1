//! `weir-agent cleanup`: takes weir off a node — the uninstall step after
//! the agent has been stopped for good. The agent itself never detaches
//! anything on exit (the datapath outlives it, see
//! [`crate::datapath::links`]), so this is the only way its state goes.
//!
//! An agent that still answers on its verdict socket makes the cleanup
//! refuse (`--force` overrides): unpinning its links would pull the
//! datapath from under it. Then, in order:
//! 1. the links pinned under `{bpffs}/links/` are unpinned: no process
//!    holds them once the agent is gone, so the kernel detaches the
//!    socket-LB programs from the cgroup and the tcx programs from the
//!    uplink and the pod veths — Service traffic now takes the kernel's
//!    path (and kube-proxy's, if it runs again);
//! 2. the pinned maps (`weir_*` under `{bpffs}`) are unpinned, and the pin
//!    directory removed when empty and not itself a mount point;
//! 3. the routes marked with weir's protocol ([`crate::routes::ROUTE_PROTOCOL`])
//!    are deleted — the host-gw routes to other nodes' pods and the
//!    unreachable Service CIDR route; no other route is looked at;
//! 4. the conflist the agent wrote is removed (other files in the
//!    directory stay), and with `--cni-bin-dir` the plugin binary;
//! 5. the status file and the verdict socket are removed.
//!
//! `weir-agent cleanup --kube-proxy` is the other cleanup: kube-proxy's
//! chains and tables ([`kube_proxy`]), and nothing of weir's — it is what
//! replacing a running kube-proxy needs, while weir's agent keeps running.
//!
//! Every step is idempotent: a second run finds nothing and succeeds.
//! What is not undone: `net.ipv4.ip_forward` (the agent turns it on; what it
//! was before is unknown) and the CNI plugin's IPAM store, which belongs to
//! the pods still running.

pub mod cni;
pub mod kube_proxy;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;

use crate::routes::{self, NetlinkRoutes, RouteTable as _};

/// Errors taking weir off the node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An agent still serves its verdict socket: unpinning its links now
    /// would pull the datapath from under it.
    #[error("a weir-agent is running (it answers on {socket}); stop it first (or pass --force)")]
    AgentRunning {
        /// Its verdict socket.
        socket: PathBuf,
    },
    /// A pin or file could not be listed or removed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The pin or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CNI file could not be removed.
    #[error(transparent)]
    Cni(#[from] cni::Error),
    /// The routes could not be listed or deleted.
    #[error("cannot remove weir's routes")]
    Routes(#[from] routes::Error),
}

/// Result of the cleanup.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to clean: the agent's own settings.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The pin directory (`bpffs`).
    pub bpffs: PathBuf,
    /// Where the conflist was written (`cniConfDir`).
    pub cni_conf_dir: PathBuf,
    /// The plugin's directory, if the plugin is to go too.
    pub cni_bin_dir: Option<PathBuf>,
    /// The status file, if one was configured.
    pub status_file: Option<PathBuf>,
    /// The verdict socket, if one was configured.
    pub verdict_socket: Option<PathBuf>,
    /// Clean even though an agent seems to run.
    pub force: bool,
}

/// What the cleanup removed.
#[derive(Debug, Default)]
pub struct Report {
    /// Link pins removed (each one a detached program).
    pub links: Vec<PathBuf>,
    /// Map pins removed.
    pub maps: Vec<PathBuf>,
    /// Directories removed.
    pub directories: Vec<PathBuf>,
    /// Routes deleted.
    pub routes: Vec<Ipv4Network>,
    /// Files removed (conflist, plugin, status file, verdict socket).
    pub files: Vec<PathBuf>,
}

impl std::fmt::Display for Report {
    /// One line per thing removed, for the operator.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for pin in &self.links {
            writeln!(f, "detached and unpinned link {}", pin.display())?;
        }
        for pin in &self.maps {
            writeln!(f, "unpinned map {}", pin.display())?;
        }
        for route in &self.routes {
            writeln!(f, "deleted route {route} (proto {})", routes::ROUTE_PROTOCOL)?;
        }
        for file in &self.files {
            writeln!(f, "removed {}", file.display())?;
        }
        for dir in &self.directories {
            writeln!(f, "removed directory {}", dir.display())?;
        }
        Ok(())
    }
}

impl Report {
    /// Nothing was there to remove.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.maps.is_empty()
            && self.directories.is_empty()
            && self.routes.is_empty()
            && self.files.is_empty()
    }
}

/// Takes weir off the node (see the module docs). Must run in a tokio
/// runtime (netlink), in the node's network namespace.
pub async fn run(plan: &Plan) -> Result<Report> {
    if let Some(socket) = &plan.verdict_socket
        && !plan.force
        && std::os::unix::net::UnixStream::connect(socket).is_ok()
    {
        return Err(Error::AgentRunning {
            socket: socket.clone(),
        });
    }
    let mut report = Report::default();
    let links = plan.bpffs.join("links");
    report.links = remove_pins(&links, |_| true)?;
    remove_dir_if_empty(&links, &mut report.directories)?;
    report.maps = remove_pins(&plan.bpffs, |name| name.starts_with("weir_"))?;
    if !is_mount_point(&plan.bpffs)? {
        remove_dir_if_empty(&plan.bpffs, &mut report.directories)?;
    }

    let mut table = NetlinkRoutes::new()?;
    let ours = table.list().await?;
    routes::reconcile(&mut table, &BTreeMap::new()).await?;
    report.routes = ours.into_keys().collect();

    report.files = cni::remove_conflist(&plan.cni_conf_dir)?;
    if let Some(dir) = &plan.cni_bin_dir {
        report.files.extend(cni::remove_plugin(dir)?);
    }
    if let Some(status) = &plan.status_file {
        report
            .files
            .extend(cni::remove_files(std::slice::from_ref(status))?);
    }
    if let Some(socket) = &plan.verdict_socket
        && std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket())
    {
        report
            .files
            .extend(cni::remove_files(std::slice::from_ref(socket))?);
    }
    Ok(report)
}

/// Removes the files in `dir` whose name `ours` accepts (a missing `dir`
/// has none). Directories are left: weir pins none below its own.
fn remove_pins(dir: &Path, ours: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { action, path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        let is_file = entry.file_type().map_err(io("inspect", &path))?.is_file();
        if is_file && entry.file_name().to_str().is_some_and(&ours) {
            std::fs::remove_file(&path).map_err(io("unpin", &path))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Removes `dir` if it exists and is empty (something else's files keep it).
fn remove_dir_if_empty(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                action: "list",
                path: dir.to_owned(),
                source,
            });
        }
    };
    if empty {
        std::fs::remove_dir(dir).map_err(|source| Error::Io {
            action: "remove",
            path: dir.to_owned(),
            source,
        })?;
        removed.push(dir.to_owned());
    }
    Ok(())
}

/// Whether `dir` is a mount point (the bpffs mount itself rather than a
/// directory on it): its device differs from its parent's. A missing
/// directory is none.
fn is_mount_point(dir: &Path) -> Result<bool> {
    let dev = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.dev())
            .map_err(|source| Error::Io {
                action: "inspect",
                path: path.to_owned(),
                source,
            })
    };
    if !dir.exists() {
        return Ok(false);
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    Ok(dev(dir)? != dev(parent)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_weirs_pins_and_then_the_empty_directories() {
        let dir = std::env::temp_dir().join(format!("weir-cleanup-{}", std::process::id()));
        let links = dir.join("links");
        std::fs::create_dir_all(&links).unwrap();
        std::fs::write(links.join("weir_connect4@cgroup-7"), b"").unwrap();
        std::fs::write(dir.join("weir_lb4_services_v1"), b"").unwrap();
        std::fs::write(dir.join("someone_elses_map"), b"").unwrap();

        let mut dirs = Vec::new();
        assert_eq!(
            remove_pins(&links, |_| true).unwrap(),
            [links.join("weir_connect4@cgroup-7")]
        );
        remove_dir_if_empty(&links, &mut dirs).unwrap();
        assert_eq!(
            remove_pins(&dir, |n| n.starts_with("weir_")).unwrap(),
            [dir.join("weir_lb4_services_v1")]
        );
        remove_dir_if_empty(&dir, &mut dirs).unwrap();
        assert_eq!(dirs, std::slice::from_ref(&links));
        assert!(
            dir.join("someone_elses_map").exists(),
            "a file that is not weir's stays"
        );
        assert!(!is_mount_point(&dir).unwrap());

        std::fs::remove_file(dir.join("someone_elses_map")).unwrap();
        remove_dir_if_empty(&dir, &mut dirs).unwrap();
        assert!(!dir.exists());
        // Nothing left: nothing to do, no error.
        assert_eq!(remove_pins(&links, |_| true).unwrap(), Vec::<PathBuf>::new());
        remove_dir_if_empty(&dir, &mut dirs).unwrap();
        assert_eq!(dirs.len(), 2);
    }
}
