//! The NetworkPolicy programs on the pods' host-side veths.
//!
//! Every pod veth (`weir` + 11 hex digits, made by `weir-cni`) carries
//! `weir_pol_from_pod` at its tcx ingress (what the pod sends) and
//! `weir_pol_to_pod` at its tcx egress (what the pod is sent), through links
//! pinned as `weir_pol_from_pod@weirXXXXXXXXXXX` under `{bpffs}/links/` like
//! the node's other links (see [`super::links`]): they outlive the agent, a
//! restarted agent adopts them with `BPF_LINK_UPDATE`. The programs let
//! everything pass for a pod no policy isolates, so attaching them to every
//! pod veth is safe; enforcement starts when the policy maps say so.
//!
//! [`Datapath::attach_pod_interfaces`] is a reconciler over the interfaces
//! [`pod_interfaces`] lists: it attaches what is missing, adopts what an
//! earlier run pinned and removes the pins of veths that are gone (their
//! links died with the device; the pin is all that is left).

use std::collections::BTreeSet;
use std::num::NonZeroI32;
use std::path::PathBuf;

use aya::programs::{LinkOrder, SchedClassifier, TcAttach, TcAttachType};
use futures::StreamExt as _;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};

use super::links::{Attached, LinkPins, PinError};
use super::{Datapath, program_mut};

/// The policy program run on what a pod sends (tcx ingress of its veth).
pub const FROM_POD: &str = "weir_pol_from_pod";
/// The policy program run on what a pod is sent (tcx egress of its veth).
pub const TO_POD: &str = "weir_pol_to_pod";
/// The start of every pod link pin's name: what [`Datapath::load`] leaves
/// to this module when it prunes the node's other links.
pub const PIN_PREFIX: &str = "weir_pol_";

/// The host end of a pod veth: `weir` + this many lowercase hex digits.
const POD_VETH_PREFIX: &str = "weir";
const POD_VETH_HEX_DIGITS: usize = 11;
/// How often a link dump interrupted by concurrent changes is repeated.
const DUMP_ATTEMPTS: usize = 5;

/// Errors listing pod interfaces or attaching the policy programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    /// The kernel refused the link dump.
    #[error("cannot list the node's links")]
    Dump(#[source] rtnetlink::Error),
    /// The link dump kept being interrupted by concurrent changes.
    #[error("the link dump was interrupted {0} times in a row")]
    DumpInterrupted(usize),
    /// A name that is not a pod veth's (it would also be unsafe in a pin name).
    #[error("{0:?} is not a pod interface (weir + 11 hex digits)")]
    NotAPodInterface(String),
    /// A policy program is missing from the object or not loaded.
    #[error(transparent)]
    Program(#[from] Box<super::Error>),
    /// A link could not be attached, adopted or pinned.
    #[error("cannot set up the link pinned at {pin}")]
    Link {
        /// The link's pin.
        pin: PathBuf,
        /// Why.
        #[source]
        source: PinError,
    },
    /// The pin directory could not be read or a pin removed.
    #[error("cannot prune the pod link pins in {dir}")]
    Prune {
        /// The pin directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result of pod attachment.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What [`Datapath::attach_pod_interfaces`] did.
#[derive(Debug, Default)]
pub struct PodAttachReport {
    /// Links of an earlier run now running this run's programs.
    pub adopted: usize,
    /// New links.
    pub attached: usize,
    /// Pins of interfaces no longer listed, removed (detached).
    pub pruned: Vec<PathBuf>,
    /// Interfaces that could not be set up (typically deleted since they
    /// were listed); the others are set up all the same.
    pub failed: Vec<(String, Error)>,
}

/// Whether `name` is the host end of a pod veth made by `weir-cni`.
#[must_use]
pub fn is_pod_interface(name: &str) -> bool {
    name.strip_prefix(POD_VETH_PREFIX).is_some_and(|hex| {
        hex.len() == POD_VETH_HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The pod veths of the current network namespace (the node's): `(name,
/// ifindex)`, sorted by name. Must run inside a tokio runtime (the netlink
/// connection is a task on it). A dump interrupted by a concurrent change
/// (pods starting) is repeated, so no veth is missed — a missed one would
/// lose its policy links.
pub async fn pod_interfaces() -> Result<Vec<(String, u32)>> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let task = tokio::spawn(connection);
    let result = dump_pod_links(&handle).await;
    task.abort();
    result
}

async fn dump_pod_links(handle: &rtnetlink::Handle) -> Result<Vec<(String, u32)>> {
    for _ in 0..DUMP_ATTEMPTS {
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut replies = handle.clone().request(request).map_err(Error::Dump)?;
        let mut links = Vec::new();
        let mut interrupted = false;
        // Read to the end even once interrupted, so nothing of this answer
        // is left queued for the next request.
        while let Some(reply) = replies.next().await {
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            let code = match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    links.extend(pod_link(&link));
                    None
                }
                NetlinkPayload::Error(error) => error.code,
                NetlinkPayload::Done(done) => NonZeroI32::new(done.code),
                _ => None,
            };
            match code {
                // Some kernels say EINTR instead of setting the flag.
                Some(code) if code.get() == -libc::EINTR => interrupted = true,
                Some(code) => {
                    let mut message = rtnetlink::packet_core::ErrorMessage::default();
                    message.code = Some(code);
                    return Err(Error::Dump(rtnetlink::Error::NetlinkError(message)));
                }
                None => {}
            }
        }
        if !interrupted {
            links.sort();
            return Ok(links);
        }
    }
    Err(Error::DumpInterrupted(DUMP_ATTEMPTS))
}

/// `(name, ifindex)` of a link message that is a pod veth.
fn pod_link(link: &LinkMessage) -> Option<(String, u32)> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::IfName(name) if is_pod_interface(name) => Some((name.clone(), link.header.index)),
        _ => None,
    })
}

impl Datapath {
    /// Makes exactly `interfaces` (pod veths: name, ifindex) carry both
    /// policy programs: adopts pinned links, attaches missing ones (TCX)
    /// and removes the pins of pod interfaces not listed. An interface that
    /// cannot be set up is reported in [`PodAttachReport::failed`] and keeps
    /// its pin; the others are set up all the same.
    pub fn attach_pod_interfaces(&mut self, interfaces: &[(String, u32)]) -> Result<PodAttachReport> {
        let mut pins = LinkPins::new(&self.bpffs).map_err(|source| Error::Link {
            pin: self.bpffs.join("links"),
            source,
        })?;
        let mut used = BTreeSet::new();
        let mut report = PodAttachReport::default();
        for (name, ifindex) in interfaces {
            if !is_pod_interface(name) {
                report
                    .failed
                    .push((name.clone(), Error::NotAPodInterface(name.clone())));
                continue;
            }
            for (program_name, attach_type) in
                [(FROM_POD, TcAttachType::Ingress), (TO_POD, TcAttachType::Egress)]
            {
                let pin = pins.path(program_name, name);
                used.insert(pin.clone());
                let program: &mut SchedClassifier =
                    program_mut(&mut self.ebpf, program_name).map_err(Box::new)?;
                let attach = TcAttach::Tcx {
                    attach_type,
                    order: LinkOrder::default(),
                };
                match pins.attach(program, &pin, |program| program.attach(*ifindex, attach)) {
                    Ok(Attached::Adopted) => report.adopted += 1,
                    Ok(Attached::New) => report.attached += 1,
                    Err(source) => {
                        report.failed.push((name.clone(), Error::Link { pin, source }));
                        break;
                    }
                }
            }
        }
        report.pruned = prune(&self.bpffs.join("links"), &used)?;
        Ok(report)
    }

    /// The policy program `name` ([`FROM_POD`] or [`TO_POD`]), loaded, e.g.
    /// for `BPF_PROG_TEST_RUN`.
    pub fn policy_program(&mut self, name: &'static str) -> super::Result<&mut SchedClassifier> {
        program_mut(&mut self.ebpf, name)
    }
}

/// Removes the pod link pins in `dir` not in `used`; returns them.
fn prune(dir: &std::path::Path, used: &BTreeSet<PathBuf>) -> Result<Vec<PathBuf>> {
    let error = |source| Error::Prune {
        dir: dir.to_owned(),
        source,
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        let ours = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(PIN_PREFIX));
        if ours && !used.contains(&path) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(error(e)),
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_interfaces_are_weir_and_eleven_lowercase_hex_digits() {
        assert!(is_pod_interface("weir0123456789a"));
        assert!(is_pod_interface("weirabcdef01234"));
        for name in [
            "weir",
            "weir0",
            "weir0123456789",
            "weir0123456789ab",
            "weir0123456789A",
            "weir012345678g9",
            "eth0",
            "weir/12345678ab",
            "tmp0123456789a",
        ] {
            assert!(!is_pod_interface(name), "{name}");
        }
    }

    #[test]
    fn prune_removes_only_unused_pod_pins() {
        let dir = std::env::temp_dir().join(format!("weir-pods-prune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "weir_pol_to_pod@weir0123456789a",
            "weir_pol_from_pod@weir0123456789a",
            "weir_pol_to_pod@weirbbbbbbbbbbb",
            "weir_tc_ingress@eth0",
            "weir_connect4@cgroup-7",
        ];
        for name in names {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let used: BTreeSet<PathBuf> = names[..2].iter().map(|n| dir.join(n)).collect();
        let removed = prune(&dir, &used).unwrap();
        assert_eq!(removed, vec![dir.join(names[2])]);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "weir_connect4@cgroup-7",
                "weir_pol_from_pod@weir0123456789a",
                "weir_pol_to_pod@weir0123456789a",
                "weir_tc_ingress@eth0"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_message_is_a_pod_link_by_its_name() {
        let mut message = LinkMessage::default();
        message.header.index = 42;
        message
            .attributes
            .push(LinkAttribute::IfName("weir0123456789a".into()));
        assert_eq!(pod_link(&message), Some(("weir0123456789a".into(), 42)));
        message.attributes[0] = LinkAttribute::IfName("eth0".into());
        assert_eq!(pod_link(&message), None);
    }
}
