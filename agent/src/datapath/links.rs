//! Attachments that outlive the agent.
//!
//! Every cgroup and TCX attachment is a `bpf_link` pinned under
//! `{bpffs}/links/`, so the datapath keeps answering while the agent is down
//! (a crash, `kill -9`, an upgrade) — as iptables rules outlive kube-proxy.
//! A starting agent finds its predecessor's link and swaps in its freshly
//! loaded program with `BPF_LINK_UPDATE`: one atomic step, with no moment in
//! which the hook has no program. Both programs read the same pinned maps,
//! so nothing in flight notices. A link whose target went away (device
//! deleted, cgroup removed) cannot be updated; it is replaced by a new one.
//! Pins this run did not use (a device or cgroup no longer configured) are
//! removed, which detaches them; only `weir-agent cleanup` removes the rest.
//!
//! Pin names carry the target: `weir_connect4@cgroup-{inode}`,
//! `weir_tc_ingress@{device}`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::{CgroupSockAddr, ProgramError, SchedClassifier};
use tracing::{debug, warn};

/// Why a pinned link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin exists but is not a link weir can use.
    #[error("cannot open the pinned link")]
    Open(#[source] LinkError),
    /// The kernel refused the attachment.
    #[error("cannot attach")]
    Attach(#[source] ProgramError),
    /// The link could not be pinned.
    #[error("cannot pin the link")]
    Pin(#[source] aya::pin::PinError),
    /// The pin directory could not be read or a stale pin removed.
    #[error("bpffs")]
    Io(#[source] std::io::Error),
}

/// What happened to one attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A pinned link of an earlier run now runs this run's program.
    Adopted,
    /// A new link (none was pinned, or the pinned one was defunct).
    New,
}

/// The program types weir pins links of.
pub trait Pinnable {
    /// The program's owned link type.
    type Link: TryFrom<FdLink, Error = LinkError> + TryInto<FdLink, Error = LinkError>;
    /// The id of a link held by the program.
    type Id;
    /// Switches `link` to this program (`BPF_LINK_UPDATE`).
    fn update(&mut self, link: Self::Link) -> Result<Self::Id, ProgramError>;
    /// Takes a link out of the program's keeping.
    fn take(&mut self, id: Self::Id) -> Result<Self::Link, ProgramError>;
}

impl Pinnable for CgroupSockAddr {
    type Link = aya::programs::cgroup_sock_addr::CgroupSockAddrLink;
    type Id = aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId;
    fn update(&mut self, link: Self::Link) -> Result<Self::Id, ProgramError> {
        self.attach_to_link(link)
    }
    fn take(&mut self, id: Self::Id) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

impl Pinnable for SchedClassifier {
    type Link = aya::programs::tc::SchedClassifierLink;
    type Id = aya::programs::tc::SchedClassifierLinkId;
    fn update(&mut self, link: Self::Link) -> Result<Self::Id, ProgramError> {
        self.attach_to_link(link)
    }
    fn take(&mut self, id: Self::Id) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

/// The link pins of one run.
#[derive(Debug)]
pub struct LinkPins {
    dir: PathBuf,
    used: BTreeSet<PathBuf>,
}

impl LinkPins {
    /// Link pins under `bpffs/links`.
    pub fn new(bpffs: &Path) -> Result<Self, PinError> {
        let dir = bpffs.join("links");
        std::fs::create_dir_all(&dir).map_err(PinError::Io)?;
        Ok(Self {
            dir,
            used: BTreeSet::new(),
        })
    }

    /// The pin path of `program` attached to `target`.
    #[must_use]
    pub fn path(&self, program: &str, target: &str) -> PathBuf {
        self.dir.join(format!("{program}@{target}"))
    }

    /// Makes `program` the one behind the link pinned at `pin`: adopts and
    /// updates a pinned link, or attaches with `attach` and pins the result.
    pub fn attach<P: Pinnable>(
        &mut self,
        program: &mut P,
        pin: &Path,
        attach: impl FnOnce(&mut P) -> Result<P::Id, ProgramError>,
    ) -> Result<Attached, PinError> {
        self.used.insert(pin.to_owned());
        match PinnedLink::from_pin(pin) {
            Ok(old) => {
                let link = P::Link::try_from(FdLink::from(old)).map_err(PinError::Open)?;
                match program.update(link) {
                    Ok(id) => {
                        // The pin keeps the link; our descriptor can go.
                        program.take(id).map_err(PinError::Attach)?;
                        return Ok(Attached::Adopted);
                    }
                    Err(e) => {
                        warn!(pin = %pin.display(), error = %e, "pinned link is defunct; attaching anew");
                        std::fs::remove_file(pin).map_err(PinError::Io)?;
                    }
                }
            }
            Err(LinkError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PinError::Open(e)),
        }
        let id = attach(program).map_err(PinError::Attach)?;
        let link: FdLink = program
            .take(id)
            .map_err(PinError::Attach)?
            .try_into()
            .map_err(PinError::Open)?;
        link.pin(pin).map_err(PinError::Pin)?;
        Ok(Attached::New)
    }

    /// Counts the pins whose name starts with `prefix` as used, so
    /// [`Self::prune`] leaves them: another reconciler owns them (the pod
    /// veths' policy links, see `super::pods`) and prunes them itself.
    pub fn keep_prefixed(&mut self, prefix: &str) -> Result<(), PinError> {
        for entry in std::fs::read_dir(&self.dir).map_err(PinError::Io)? {
            let path = entry.map_err(PinError::Io)?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
            {
                self.used.insert(path);
            }
        }
        Ok(())
    }

    /// Removes the pins this run did not attach through (detaching them);
    /// returns them.
    pub fn prune(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(PinError::Io)? {
            let path = entry.map_err(PinError::Io)?.path();
            if !self.used.contains(&path) {
                debug!(pin = %path.display(), "removing a link pin of an earlier configuration");
                std::fs::remove_file(&path).map_err(PinError::Io)?;
                removed.push(path);
            }
        }
        Ok(removed)
    }
}
