//! `cargo xtask build`: the eBPF object, then the binaries with it embedded.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::cmd::run;
use crate::toolchain;

/// Build profile of the userspace binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev`: what the lab and the tests use (shares artifacts with `cargo test`).
    Dev,
    /// `release`.
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }
}

/// What a build produced.
pub struct Built {
    /// The eBPF object.
    pub object: PathBuf,
    /// Directory holding [`BINARIES`].
    pub bin_dir: PathBuf,
}

/// Installs missing tools, builds the eBPF object and the userspace binaries.
pub fn build(root: &Path, profile: Profile) -> Result<Built> {
    toolchain::ensure()?;
    let object = build_ebpf(root)?;
    let mut cargo = stable_cargo(root, &object);
    cargo.args([
        "build",
        "--bins",
        "-p",
        "weir-agent",
        "-p",
        "weir-cni",
        "-p",
        "weir-cli",
        "-p",
        "weir-tests",
    ]);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    run(&mut cargo)?;
    Ok(Built {
        object,
        bin_dir: root.join("target").join(profile.dir()),
    })
}

/// Builds the eBPF programs (always optimised: the verifier needs it).
fn build_ebpf(root: &Path) -> Result<PathBuf> {
    let mut cargo = toolchain::nightly_cargo()?;
    cargo.current_dir(root).args([
        "build",
        "--release",
        "-p",
        "weir-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ]);
    run(&mut cargo)?;
    Ok(root.join("target/bpfel-unknown-none/release/weir-ebpf"))
}

/// A stable-toolchain `cargo` in `root` that embeds `object` into the agent.
/// Every stable build passes the same object path, so switching between
/// `build` and `test` never rebuilds the agent for nothing.
pub fn stable_cargo(root: &Path, object: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).env("WEIR_BPF_OBJECT", object);
    cmd
}
