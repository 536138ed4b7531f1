//! Loading the eBPF programs into the kernel: maps pinned in bpffs, the
//! socket-LB programs attached to the node's cgroup and the per-packet
//! programs to its uplink, through links pinned in bpffs (see [`links`]).

pub mod links;
pub mod migrate;
pub mod pods;

use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt as _;

use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use tracing::warn;
use weir_common::lb::{AFFINITY_MAP, BACKENDS_MAP, MAGLEV_MAP, REVERSE_SK_MAP, SERVICES_MAP};
use weir_common::nat::{MASQ_CONFIG_MAP, MASQ_SKIP_MAP, NAT_MAP};
use weir_common::policy::{
    POLICY_CONFIG_MAP, POLICY_ENDPOINTS_MAP, POLICY_HOSTS_MAP, POLICY_RULES_MAP, POLICY_VERDICTS_MAP,
};

use crate::maps::{self, PinnedLbMaps, PinnedMasqMaps, PinnedPolicyMaps};
use links::{Attached, LinkPins};
use migrate::Plan;

/// The eBPF object built into this binary by `cargo xtask build` (empty when
/// the agent was built without the BPF toolchain).
pub static EMBEDDED_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/weir.bpf.o"));

/// The socket-LB programs, all attached to the node's cgroup.
const SOCK_PROGRAMS: [&str; 4] = [
    "weir_connect4",
    "weir_sendmsg4",
    "weir_recvmsg4",
    "weir_getpeername4",
];
/// Names of the uplink TC programs in the object.
const TC_EGRESS: &str = "weir_tc_egress";
const TC_INGRESS: &str = "weir_tc_ingress";

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
    /// A device name with a NUL byte in it.
    #[error("invalid device name {0:?}")]
    DeviceName(String),
    /// The pinned maps could not be opened.
    #[error(transparent)]
    Maps(#[from] maps::Error),
    /// A pinned map of an older layout or capacity could not be carried
    /// over; its old pin is left in place for the next start.
    #[error("cannot migrate the pinned maps under {bpffs}")]
    Migrate {
        /// The pin directory.
        bpffs: PathBuf,
        /// Why.
        #[source]
        source: Box<migrate::Error>,
    },
    /// A link could not be attached, adopted or pinned.
    #[error("cannot set up the link pinned at {pin}")]
    Link {
        /// The link's pin.
        pin: PathBuf,
        /// Why.
        #[source]
        source: links::PinError,
    },
}

/// Result of datapath operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Capacities of the maps that grow with the cluster. A map already pinned
/// with another capacity is migrated into one of this size at load (see
/// [`migrate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Service map entries: frontends × (backends + 1).
    pub services: u32,
    /// Backends.
    pub backends: u32,
    /// Session-affinity entries (clients × frontends with affinity).
    pub affinity: u32,
    /// NAT / connection-tracking entries (two per translated flow).
    pub nat: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            services: weir_common::lb::SERVICES_MAP_CAPACITY,
            backends: weir_common::lb::BACKENDS_MAP_CAPACITY,
            affinity: weir_common::lb::AFFINITY_MAP_CAPACITY,
            nat: weir_common::nat::NAT_MAP_CAPACITY,
        }
    }
}

/// The maps the agent writes, taken out of the loaded object.
pub struct DatapathMaps {
    /// Service and backend maps.
    pub lb: PinnedLbMaps,
    /// Masquerade configuration and skip trie.
    pub masq: PinnedMasqMaps,
    /// The socket-LB reverse-translation map (read to find the sockets
    /// weir connected to a backend).
    pub reverse_sk: aya::maps::Map,
    /// The NetworkPolicy maps the agent writes.
    pub policy: PinnedPolicyMaps,
    /// The policy verdict ring buffer (`aya::maps::RingBuf::try_from` it to
    /// read the verdicts).
    pub verdicts: aya::maps::Map,
}

/// The loaded programs. Dropping it leaves them attached: the links are
/// pinned, so the datapath outlives the agent; the maps stay pinned so a
/// restarted agent finds them.
pub struct Datapath {
    ebpf: Ebpf,
    /// Where the maps and links are pinned (pod links are attached later).
    bpffs: PathBuf,
}

/// What [`Datapath::load`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Attachments of an earlier run now running this run's programs.
    pub adopted: usize,
    /// New attachments.
    pub attached: usize,
    /// Pins of an earlier configuration removed (detached).
    pub pruned: Vec<PathBuf>,
    /// Pinned maps of an older layout or capacity carried over.
    pub migrated: Vec<migrate::Migrated>,
}

impl Datapath {
    /// Loads `object`, pinning its maps under `bpffs` (re-using maps already
    /// pinned there), attaches the socket-LB programs to `cgroup` and, given
    /// the node's `uplink` device, the per-packet NAT programs to it (TCX) —
    /// adopting the links an earlier run pinned, so the hooks never go
    /// without a program.
    pub fn load(
        object: &[u8],
        bpffs: &Path,
        sizes: &MapSizes,
        cgroup: &Path,
        uplink: Option<&str>,
    ) -> Result<(Self, DatapathMaps, LoadReport)> {
        let (mut datapath, maps, plan) = Self::open_migrating(object, bpffs, sizes)?;
        let pin_error = |pin: &Path| {
            let pin = pin.to_owned();
            move |source| Error::Link { pin, source }
        };
        let mut pins = LinkPins::new(bpffs).map_err(pin_error(&bpffs.join("links")))?;
        let mut report = LoadReport::default();
        let mut count = |attached| match attached {
            Attached::Adopted => report.adopted += 1,
            Attached::New => report.attached += 1,
        };
        for attached in datapath.attach_socket_lb(cgroup, &mut pins)? {
            count(attached);
        }
        if let Some(device) = uplink {
            for attached in datapath.attach_uplink(device, &mut pins)? {
                count(attached);
            }
        }
        // Pod veth links are pruned by `attach_pod_interfaces`, which knows the pods.
        pins.keep_prefixed(pods::PIN_PREFIX)
            .map_err(pin_error(&bpffs.join("links")))?;
        report.pruned = pins.prune().map_err(pin_error(&bpffs.join("links")))?;
        // The new programs run now: the old maps' last entries can follow.
        report.migrated = plan.finish().map_err(migrate_error(bpffs))?;
        Ok((datapath, maps, report))
    }

    /// Loads `object` into the kernel and pins its maps under `bpffs`,
    /// attaching nothing: the maps can be written and the programs run with
    /// `BPF_PROG_TEST_RUN` (tests, benchmarks). Pinned maps of an older
    /// layout or capacity are migrated.
    pub fn open(object: &[u8], bpffs: &Path, sizes: &MapSizes) -> Result<(Self, DatapathMaps)> {
        let (datapath, maps, plan) = Self::open_migrating(object, bpffs, sizes)?;
        plan.finish().map_err(migrate_error(bpffs))?;
        Ok((datapath, maps))
    }

    /// [`Self::open`], with the migrations copied but their old pins kept
    /// until the caller's [`Plan::finish`].
    fn open_migrating(object: &[u8], bpffs: &Path, sizes: &MapSizes) -> Result<(Self, DatapathMaps, Plan)> {
        if object.is_empty() {
            return Err(Error::NoObject);
        }
        let mut plan = Plan::prepare(bpffs, sizes).map_err(migrate_error(bpffs))?;
        let opened = Self::open_object(object, bpffs, sizes).and_then(|opened| {
            plan.copy().map_err(migrate_error(bpffs))?;
            Ok(opened)
        });
        match opened {
            Ok((datapath, maps)) => Ok((datapath, maps, plan)),
            Err(e) => {
                for pin in plan.rollback() {
                    warn!(pin = %pin.display(), "cannot put a map moved aside for a resize back");
                }
                Err(e)
            }
        }
    }

    fn open_object(object: &[u8], bpffs: &Path, sizes: &MapSizes) -> Result<(Self, DatapathMaps)> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(bpffs)
            .map_max_entries(SERVICES_MAP, sizes.services)
            .map_max_entries(BACKENDS_MAP, sizes.backends)
            .map_max_entries(AFFINITY_MAP, sizes.affinity)
            .map_max_entries(NAT_MAP, sizes.nat)
            .load(object)
            .map_err(|source| Error::Load {
                bpffs: bpffs.to_owned(),
                source: Box::new(source),
            })?;
        // Programs are loaded before the maps are taken out: loading resolves
        // the maps' file descriptors, and a map handed out may be dropped.
        for name in SOCK_PROGRAMS {
            let program: &mut CgroupSockAddr = program_mut(&mut ebpf, name)?;
            program.load().map_err(program_error(name))?;
        }
        // The policy programs are attached per pod veth later, see `pods`.
        for name in [TC_INGRESS, TC_EGRESS, pods::FROM_POD, pods::TO_POD] {
            let program: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            program.load().map_err(program_error(name))?;
        }
        let maps = DatapathMaps {
            lb: PinnedLbMaps::new(
                ebpf.take_map(SERVICES_MAP),
                ebpf.take_map(BACKENDS_MAP),
                ebpf.take_map(AFFINITY_MAP),
                ebpf.take_map(MAGLEV_MAP),
            )?,
            masq: PinnedMasqMaps::new(
                ebpf.take_map(MASQ_CONFIG_MAP),
                ebpf.take_map(MASQ_SKIP_MAP),
                ebpf.take_map(NAT_MAP),
            )?,
            reverse_sk: ebpf
                .take_map(REVERSE_SK_MAP)
                .ok_or(maps::Error::Missing(REVERSE_SK_MAP))?,
            policy: PinnedPolicyMaps::new(
                ebpf.take_map(POLICY_ENDPOINTS_MAP),
                ebpf.take_map(POLICY_RULES_MAP),
                ebpf.take_map(POLICY_HOSTS_MAP),
                ebpf.take_map(POLICY_CONFIG_MAP),
            )?,
            verdicts: ebpf
                .take_map(POLICY_VERDICTS_MAP)
                .ok_or(maps::Error::Missing(POLICY_VERDICTS_MAP))?,
        };
        Ok((
            Self {
                ebpf,
                bpffs: bpffs.to_owned(),
            },
            maps,
        ))
    }

    /// Attaches the socket-LB programs to the cgroup v2 directory `cgroup`.
    pub fn attach_socket_lb(&mut self, cgroup: &Path, pins: &mut LinkPins) -> Result<Vec<Attached>> {
        let cgroup_error = |source| Error::Cgroup {
            path: cgroup.to_owned(),
            source,
        };
        let cgroup_dir = std::fs::File::open(cgroup).map_err(cgroup_error)?;
        // The cgroup's inode is its id: the pin names the cgroup it is for.
        let inode = cgroup_dir.metadata().map_err(cgroup_error)?.ino();
        let mut attached = Vec::new();
        for name in SOCK_PROGRAMS {
            let program: &mut CgroupSockAddr = program_mut(&mut self.ebpf, name)?;
            let pin = pins.path(name, &format!("cgroup-{inode}"));
            // Single: weir is the only socket-LB on this cgroup; a second
            // attachment (another agent on the same node) must fail loudly.
            let result = pins.attach(program, &pin, |program| {
                program.attach(&cgroup_dir, CgroupAttachMode::Single)
            });
            attached.push(result.map_err(|source| Error::Link { pin, source })?);
        }
        Ok(attached)
    }

    /// Attaches the per-packet programs to the node's uplink `device` with
    /// TCX (a `bpf_link`: no qdisc to install or leave behind).
    pub fn attach_uplink(&mut self, device: &str, pins: &mut LinkPins) -> Result<Vec<Attached>> {
        let device_name = std::ffi::CString::new(device).map_err(|_| Error::DeviceName(device.to_owned()))?;
        let mut attached = Vec::new();
        for (name, direction) in [
            (TC_EGRESS, TcAttachType::Egress),
            (TC_INGRESS, TcAttachType::Ingress),
        ] {
            let program: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
            let pin = pins.path(name, device);
            let result = pins.attach(program, &pin, |program| {
                program.attach(device_name.as_c_str(), direction)
            });
            attached.push(result.map_err(|source| Error::Link { pin, source })?);
        }
        Ok(attached)
    }

    /// The uplink program for `direction` (loaded; attached or not), e.g.
    /// for `BPF_PROG_TEST_RUN`.
    pub fn uplink_program(&mut self, direction: TcAttachType) -> Result<&mut SchedClassifier> {
        let name = match direction {
            TcAttachType::Ingress => TC_INGRESS,
            TcAttachType::Egress => TC_EGRESS,
        };
        program_mut(&mut self.ebpf, name)
    }
}

/// A program of the object, as its type.
fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(Error::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(program_error(name))
}

fn migrate_error(bpffs: &Path) -> impl FnOnce(migrate::Error) -> Error {
    let bpffs = bpffs.to_owned();
    move |source| Error::Migrate {
        bpffs,
        source: Box::new(source),
    }
}

fn program_error(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> Error {
    move |source| Error::Program { name, source }
}
