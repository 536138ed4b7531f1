//! Where the binaries under test live.
//!
//! `cargo xtask build` puts `weir-agent`, `weir-cni` and `weir-probe` into one
//! directory; `WEIR_BIN_DIR` names it (default `<workspace>/target/debug`). Tests and
//! the lab run exactly those files, the way a node would.

use std::path::{Path, PathBuf};

/// Environment variable naming the directory of the built binaries.
pub const BIN_DIR_ENV: &str = "WEIR_BIN_DIR";

/// Paths of the three executables a topology runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
    /// The node agent (`weir-agent`).
    pub agent: PathBuf,
    /// The CNI plugin (`weir-cni`); also the `CNI_PATH` handed to it.
    pub cni: PathBuf,
    /// The test client/server (`weir-probe`).
    pub probe: PathBuf,
    /// The operator CLI (`weir`).
    pub cli: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`; nothing is checked until [`Binaries::require`].
    #[must_use]
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Binaries {
            agent: dir.join("weir-agent"),
            cni: dir.join("weir-cni"),
            probe: dir.join("weir-probe"),
            cli: dir.join("weir"),
            dir,
        }
    }

    /// The binaries in `$WEIR_BIN_DIR`, or in `<workspace>/target/debug`.
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::in_dir(dir),
            _ => Self::in_dir(default_dir()),
        }
    }

    /// Uses `probe` instead of the `weir-probe` in the directory (tests pass the one
    /// cargo just built for them, `CARGO_BIN_EXE_weir-probe`).
    #[must_use]
    pub fn with_probe(mut self, probe: impl Into<PathBuf>) -> Self {
        self.probe = probe.into();
        self
    }

    /// The directory holding the binaries (what `CNI_PATH` is set to).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fails with a clear message if a binary is missing: every later failure
    /// would otherwise be an obscure "No such file" from `nsenter`.
    pub fn check(&self) -> anyhow::Result<()> {
        for path in [&self.agent, &self.cni, &self.probe] {
            anyhow::ensure!(
                path.is_file(),
                "{} is missing: run `cargo xtask build` first (or set {BIN_DIR_ENV})",
                path.display()
            );
        }
        Ok(())
    }
}

/// `<workspace>/target/debug`, from where this crate sits in the workspace.
fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("target/debug")
}
