//! CNI error codes: the spec's well-known ones (1–99) and weir's own (100+).

use std::fmt;

/// The numeric `code` of a CNI error reply.
///
/// Codes 1–99 are fixed by the CNI spec ("Well-known Error Codes"); the spec
/// leaves 100 and up to plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: the config's `cniVersion` is not one this plugin speaks.
    IncompatibleVersion,
    /// 4: a `CNI_*` variable is missing or malformed (the message names it).
    InvalidEnvironment,
    /// 5: reading the network config from stdin failed.
    Io,
    /// 6: stdin is not a JSON object (garbage, truncated, too large).
    Decode,
    /// 7: the JSON decoded but the network config is invalid.
    InvalidConfig,
    /// 11: a transient condition (e.g. a netlink dump kept being interrupted,
    /// or the node has no podCIDR yet).
    TryAgainLater,
    /// 50: STATUS — the plugin cannot serve ADD right now.
    NotAvailable,
    /// 100: netlink, netns or sysctl work on the pod's interfaces failed.
    Setup,
    /// 101: every address of the subnet is allocated.
    IpamExhausted,
    /// 102: the IPAM store on disk could not be read or written.
    IpamStore,
    /// 103: the container already holds an address for this interface (ADD
    /// without DEL; the runtime must not do that).
    IpamDuplicate,
    /// 104: CHECK found the attachment not as ADD left it.
    CheckFailed,
    /// 110: the command is valid CNI but this plugin version does not do it yet.
    NotImplemented,
}

impl Code {
    /// The number that goes on the wire.
    #[must_use]
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::Setup => 100,
            Code::IpamExhausted => 101,
            Code::IpamStore => 102,
            Code::IpamDuplicate => 103,
            Code::CheckFailed => 104,
            Code::NotImplemented => 110,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}
