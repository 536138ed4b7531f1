//! Embeds the eBPF object built by `cargo xtask build` (passed in
//! `WEIR_BPF_OBJECT`) into the agent, so the agent ships as one binary.
//! Without it (plain `cargo build` / unit tests, no BPF toolchain) an empty
//! object is embedded and the agent asks for `--bpf-object` at run time.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-env-changed=WEIR_BPF_OBJECT");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("weir.bpf.o");
    match std::env::var_os("WEIR_BPF_OBJECT") {
        Some(object) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&object).display());
            std::fs::copy(&object, &out)?;
        }
        None => std::fs::write(&out, [])?,
    }
    Ok(())
}
