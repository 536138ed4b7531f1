//! The BPF toolchain: the pinned nightly with `rust-src` and bpf-linker built
//! against that nightly's own LLVM. Installed on first use into a stable
//! per-user directory, checked (cheaply) on every later use.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd::run;

/// Nightly used for the eBPF programs (rustc 1.101, LLVM 23).
pub const NIGHTLY: &str = "nightly-2026-10-01";
/// bpf-linker release, and the LLVM feature matching [`NIGHTLY`].
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-23";

/// Where weir keeps the tools it installs (bpf-linker and the LLVM link
/// directory its rpath points at): `$WEIR_TOOLS`, else
/// `$XDG_DATA_HOME/weir-tools`, else `~/.local/share/weir-tools`.
pub fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_TOOLS") {
        return Ok(dir.into());
    }
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share"),
    };
    Ok(data.join("weir-tools"))
}

/// A `cargo` command run with [`NIGHTLY`], with the variables the outer
/// (stable) cargo set for us removed so they do not leak into it.
pub fn nightly_cargo() -> Result<Command> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, "cargo"]);
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER"] {
        cmd.env_remove(var);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_dir()?.join("bin")];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?);
    Ok(cmd)
}

/// Installs whatever is missing: the nightly with `rust-src`, bpf-linker.
pub fn ensure() -> Result<()> {
    ensure_nightly()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .context("running rustup (is it installed?)")?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    if installed.status.success() && listed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing {NIGHTLY} with rust-src (for the eBPF programs)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn ensure_bpf_linker() -> Result<()> {
    let tools = tools_dir()?;
    let linker = tools.join("bin/bpf-linker");
    // The linker loads the nightly's libLLVM through this directory (its rpath).
    let llvm = tools.join("llvm/lib");
    let sysroot = String::from_utf8(
        Command::new("rustup")
            .args(["run", NIGHTLY, "rustc", "--print", "sysroot"])
            .output()?
            .stdout,
    )?;
    let libllvm = std::fs::read_dir(PathBuf::from(sysroot.trim()).join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("the nightly toolchain has no libLLVM.so")?;
    std::fs::create_dir_all(&llvm)?;
    for name in [
        PathBuf::from("libLLVM.so"),
        PathBuf::from(libllvm.file_name().context("libLLVM name")?),
    ] {
        let link = llvm.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(libllvm.as_path()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&libllvm, &link)?;
        }
    }
    let current = Command::new(&linker).arg("--version").output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {NIGHTLY}'s LLVM (about a minute)");
    let mut install = nightly_cargo()?;
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            BPF_LINKER_LLVM_FEATURE,
            "--root",
        ])
        .arg(&tools)
        .env("LLVM_PREFIX", tools.join("llvm"));
    run(&mut install)?;
    if !linker.exists() {
        bail!("bpf-linker did not appear at {}", linker.display());
    }
    Ok(())
}
