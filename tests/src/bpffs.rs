//! A private bpffs per run, so pinned maps of parallel runs never meet and
//! unmounting it at teardown drops every pin the agent left.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cmd;

/// A bpffs mounted by this run.
#[derive(Clone, Debug)]
pub struct BpfFs {
    path: PathBuf,
}

impl BpfFs {
    /// Creates `path` and mounts a fresh bpffs on it.
    pub fn mount(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        cmd::run(
            "mount",
            [
                OsStr::new("-t"),
                OsStr::new("bpf"),
                OsStr::new("bpf"),
                path.as_os_str(),
            ],
        )
        .with_context(|| format!("mounting bpffs on {}", path.display()))?;
        Ok(BpfFs { path })
    }

    /// Refers to a mount point that is not mounted yet: unmounting it is a no-op.
    #[must_use]
    pub fn unmounted(path: impl Into<PathBuf>) -> Self {
        BpfFs { path: path.into() }
    }

    /// The mount point (what the agent's `--bpffs` takes).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts it; not mounted is success.
    pub fn unmount(&self) -> Result<()> {
        unmount_if_mounted(&self.path)
    }
}

/// Unmounts whatever is mounted on `path`, if anything. Falls back to a lazy
/// unmount: a straggler holding a pinned map open must not keep the run alive.
pub fn unmount_if_mounted(path: &Path) -> Result<()> {
    if !mount_points()?.iter().any(|point| point == path) {
        return Ok(());
    }
    if cmd::run("umount", [path]).is_err() {
        cmd::run("umount", [Path::new("-l"), path])
            .with_context(|| format!("unmounting {}", path.display()))?;
    }
    Ok(())
}

/// Every mount point of this mount namespace, from `/proc/self/mountinfo`.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_octal(point)))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], code) {
            (b'\\', Some(code)) => {
                out.push(code);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::unescape_octal;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(r"/run/a\040b"), "/run/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }
}
