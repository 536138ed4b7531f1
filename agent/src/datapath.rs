//! Loading the eBPF programs into the kernel: maps pinned in bpffs, the
//! socket-LB program attached to the node's cgroup.

use std::path::{Path, PathBuf};

use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use weir_common::lb::{BACKENDS_MAP, SERVICES_MAP};

use crate::maps::{self, PinnedLbMaps};

/// The eBPF object built into this binary by `cargo xtask build` (empty when
/// the agent was built without the BPF toolchain).
pub static EMBEDDED_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/weir.bpf.o"));

/// Name of the cgroup `connect4` program in the object.
const CONNECT4: &str = "weir_connect4";

/// Errors loading or attaching the datapath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary has no eBPF object embedded and none was given.
    #[error(
        "this weir-agent was built without its eBPF object: build it with `cargo xtask build` or pass --bpf-object"
    )]
    NoObject,
    /// The object could not be read from disk.
    #[error("cannot read eBPF object {path}")]
    ReadObject {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the object or a map could not be pinned.
    #[error("cannot load the eBPF object (maps pinned under {bpffs}; is it a mounted bpffs?)")]
    Load {
        /// The pin directory.
        bpffs: PathBuf,
        /// Why.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A program is missing, of the wrong type, or the verifier refused it.
    #[error("cannot load program {name}")]
    Program {
        /// The program.
        name: &'static str,
        /// Why.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The cgroup cannot be opened.
    #[error("cannot open cgroup {path}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pinned maps could not be opened.
    #[error(transparent)]
    Maps(#[from] maps::Error),
}

/// Result of datapath operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The loaded programs. Dropping it detaches them (the cgroup link belongs
/// to this process); the maps stay pinned so a restarted agent finds them.
pub struct Datapath {
    _ebpf: Ebpf,
}

impl Datapath {
    /// Loads `object`, pinning its maps under `bpffs` (re-using maps already
    /// pinned there), and attaches the socket-LB program to `cgroup`.
    pub fn load(object: &[u8], bpffs: &Path, cgroup: &Path) -> Result<(Self, PinnedLbMaps)> {
        if object.is_empty() {
            return Err(Error::NoObject);
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(bpffs)
            .load(object)
            .map_err(|source| Error::Load {
                bpffs: bpffs.to_owned(),
                source: Box::new(source),
            })?;

        let program_error = |source| Error::Program {
            name: CONNECT4,
            source,
        };
        let connect4: &mut CgroupSockAddr = ebpf
            .program_mut(CONNECT4)
            .ok_or(Error::Program {
                name: CONNECT4,
                source: aya::programs::ProgramError::NotLoaded,
            })?
            .try_into()
            .map_err(program_error)?;
        connect4.load().map_err(program_error)?;
        let cgroup_dir = std::fs::File::open(cgroup).map_err(|source| Error::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        // Single: weir is the only socket-LB on this cgroup; a second
        // attachment (another agent on the same node) must fail loudly.
        connect4
            .attach(cgroup_dir, CgroupAttachMode::Single)
            .map_err(program_error)?;

        let maps = PinnedLbMaps::new(ebpf.take_map(SERVICES_MAP), ebpf.take_map(BACKENDS_MAP))?;
        Ok((Self { _ebpf: ebpf }, maps))
    }
}
