//! `cargo xtask test`: unit tests, then the privileged integration tests
//! (which need root: they build network namespaces, cgroups and bpffs).

use std::path::Path;

use anyhow::{Result, bail};

use crate::build::{Profile, build, stable_cargo};
use crate::cmd::{is_root, run};

/// Runs the whole suite; `unit_only` skips the privileged part.
pub fn test(root: &Path, unit_only: bool, filter: Option<&str>) -> Result<()> {
    if !unit_only && !is_root() {
        bail!(
            "the privileged integration tests need root: run `sudo ./x test`, or `./x test --unit` for unit tests only"
        );
    }
    let built = build(root, Profile::Dev)?;
    eprintln!("xtask: unit tests");
    let mut unit = stable_cargo(root, &built.object);
    unit.args(["test", "--workspace", "--exclude", "weir-ebpf"]);
    run(&mut unit)?;
    if unit_only {
        return Ok(());
    }
    eprintln!("xtask: privileged integration tests");
    let mut privileged = stable_cargo(root, &built.object);
    privileged
        .args([
            "test",
            "-p",
            "weir-tests",
            "--test",
            "privileged",
            "--",
            "--ignored",
            // One at a time: several tests assert zero failed requests with
            // 1 s attempt timeouts, and two clusters loading programs at once
            // saturate a 2-core machine enough to stall a probe past that.
            "--test-threads=1",
        ])
        .args(filter)
        .env("WEIR_BIN_DIR", &built.bin_dir);
    run(&mut privileged)
}
