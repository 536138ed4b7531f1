//! The node's CNI files: the plugin binary (installed by the DaemonSet's
//! init container, `weir-agent install-cni`) and the conflist the agent
//! writes once the node has a podCIDR (see [`crate::cni_config`]).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::cni_config::CONFLIST_NAME;

/// The plugin's file name in the runtime's CNI binary directory.
pub const PLUGIN_NAME: &str = "weir-cni";

/// Errors installing or removing a file.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct Error {
    /// What was being done.
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Copies the plugin at `source` to `{bin_dir}/weir-cni` atomically: a
/// temporary file in `bin_dir`, synced, made executable, then renamed over
/// the old one — a runtime calling the plugin meanwhile runs the old or the
/// new binary, never half of one. Returns the installed path.
pub fn install_plugin(source: &Path, bin_dir: &Path) -> Result<PathBuf, Error> {
    let err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error { action, path, source }
    };
    let bytes = std::fs::read(source).map_err(err("reading", source))?;
    std::fs::create_dir_all(bin_dir).map_err(err("creating", bin_dir))?;
    let target = bin_dir.join(PLUGIN_NAME);
    // A dot-name: never taken for a plugin while it is being written.
    let tmp = bin_dir.join(format!(".{PLUGIN_NAME}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(err("creating", &tmp))?;
    file.write_all(&bytes).map_err(err("writing", &tmp))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(err("making executable", &tmp))?;
    file.sync_all().map_err(err("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &target).map_err(err("renaming into place", &target))?;
    Ok(target)
}

/// Removes the conflist the agent writes in `conf_dir` (and a temporary
/// file of an interrupted write) — no other file there. Returns what was
/// removed; a missing file is success.
pub fn remove_conflist(conf_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    remove_files(&[
        conf_dir.join(CONFLIST_NAME),
        conf_dir.join(format!(".{CONFLIST_NAME}.tmp")),
    ])
}

/// Removes `{bin_dir}/weir-cni` (and a temporary file of an interrupted
/// install).
pub fn remove_plugin(bin_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    remove_files(&[
        bin_dir.join(PLUGIN_NAME),
        bin_dir.join(format!(".{PLUGIN_NAME}.tmp")),
    ])
}

/// Removes each of `paths` that exists; returns those.
pub(super) fn remove_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut removed = Vec::new();
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error {
                    action: "removing",
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_atomically_and_removes_only_its_own_files() {
        let dir = std::env::temp_dir().join(format!("weir-cni-install-{}", std::process::id()));
        let bin = dir.join("bin");
        let conf = dir.join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        let source = dir.join("plugin");
        std::fs::write(&source, b"#!/bin/true\n").unwrap();

        let installed = install_plugin(&source, &bin).unwrap();
        assert_eq!(std::fs::read(&installed).unwrap(), b"#!/bin/true\n");
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!bin.join(".weir-cni.tmp").exists());
        // Over an older binary, too.
        std::fs::write(&source, b"v2").unwrap();
        install_plugin(&source, &bin).unwrap();
        assert_eq!(std::fs::read(&installed).unwrap(), b"v2");

        std::fs::write(conf.join(CONFLIST_NAME), "{}").unwrap();
        std::fs::write(conf.join("05-other.conflist"), "{}").unwrap();
        assert_eq!(remove_conflist(&conf).unwrap(), [conf.join(CONFLIST_NAME)]);
        assert!(conf.join("05-other.conflist").exists());
        assert_eq!(remove_plugin(&bin).unwrap(), [installed]);
        // Twice is success with nothing to do.
        assert_eq!(remove_conflist(&conf).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(remove_plugin(&bin).unwrap(), Vec::<PathBuf>::new());

        let missing = install_plugin(&dir.join("nope"), &bin).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
