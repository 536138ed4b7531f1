//! The network config on stdin, decoded and validated.
//!
//! ```json
//! {"cniVersion":"1.1.0","name":"weir","type":"weir-cni","subnet":"10.244.1.0/24",
//!  "dataDir":"/var/lib/cni/weir","mtu":1500}
//! ```
//!
//! Unknown keys are ignored: runtimes add their own (`runtimeConfig`,
//! `prevResult`, `args`, …). `type` is not checked, so the binary may be
//! installed under another name.

use std::path::PathBuf;

use ipnetwork::{IpNetwork, IpNetworkError, Ipv4Network};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::code::Code;
use crate::ipam::Pool;
use crate::version::SpecVersion;

/// Where the IPAM store lives unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/weir";
/// MTU of both veth ends unless `mtu` says otherwise.
pub const DEFAULT_MTU: u32 = 1500;
/// Largest config accepted on stdin; anything bigger is not a weir config.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Smallest and largest MTU the kernel accepts on a veth (`ETH_MIN_MTU`, 64 KiB - 1).
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65_535;

/// Errors in the network config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Stdin is not JSON.
    #[error("network config on stdin is not valid JSON")]
    Syntax(#[source] serde_json::Error),
    /// Stdin is JSON, but not an object.
    #[error("network config on stdin is not a JSON object")]
    NotAnObject,
    /// Stdin is larger than [`MAX_CONFIG_BYTES`].
    #[error("network config on stdin is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge,
    /// `cniVersion` is missing (libcni reads that as 0.1.0, which weir does not speak).
    #[error("network config has no cniVersion (weir-cni speaks 0.4.0, 1.0.0, 1.1.0)")]
    MissingVersion,
    /// `cniVersion` is not supported.
    #[error("cniVersion {found:?} is not supported (weir-cni speaks 0.4.0, 1.0.0, 1.1.0)")]
    IncompatibleVersion {
        /// The version asked for.
        found: String,
    },
    /// A required key is absent.
    #[error("network config has no {key:?}")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key holds a value of the wrong JSON type.
    #[error("network config key {key:?} has the wrong type")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// `name` cannot name a network (it also names the IPAM directory).
    #[error(
        "network name {name:?} is invalid: it must start with a letter or digit, then hold only letters, digits, '_', '.' or '-'"
    )]
    Name {
        /// The name.
        name: String,
    },
    /// `subnet` does not parse as a CIDR.
    #[error("subnet {subnet:?} is not a CIDR such as 10.244.1.0/24")]
    SubnetSyntax {
        /// The value.
        subnet: String,
        /// What the parser said.
        #[source]
        source: IpNetworkError,
    },
    /// `subnet` is IPv6.
    #[error("subnet {subnet:?} is not IPv4 (weir-cni does IPv4 only for now)")]
    SubnetNotIpv4 {
        /// The value.
        subnet: String,
    },
    /// `subnet` has host bits set.
    #[error("subnet {subnet:?} has host bits set; the network is {network}")]
    SubnetHostBits {
        /// The value.
        subnet: String,
        /// What it probably meant.
        network: Ipv4Network,
    },
    /// `subnet` is too small for network, node, one pod and broadcast.
    #[error(
        "subnet {subnet:?} has fewer than 4 addresses (network, node, at least one pod, broadcast); use a prefix of /30 or shorter"
    )]
    SubnetTooSmall {
        /// The value.
        subnet: String,
    },
    /// `dataDir` is relative or empty.
    #[error("dataDir {path:?} is not an absolute path")]
    DataDir {
        /// The value.
        path: PathBuf,
    },
    /// `mtu` is outside what a veth accepts.
    #[error("mtu {mtu} is outside 68..=65535")]
    Mtu {
        /// The value.
        mtu: u32,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code: 6 when stdin is not a JSON object, 1 for versions,
    /// 7 for everything the config says wrong.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::Syntax(_) | Error::NotAnObject | Error::TooLarge => Code::Decode,
            Error::MissingVersion | Error::IncompatibleVersion { .. } => Code::IncompatibleVersion,
            _ => Code::InvalidConfig,
        }
    }
}

/// A validated network config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConf {
    /// The spec version the runtime speaks; results are written in it.
    pub cni_version: SpecVersion,
    /// Network name; the IPAM store is `<data_dir>/<name>/`.
    pub name: String,
    /// The node's pod CIDR, as the addresses pods may get; `None` until the
    /// agent has written it (ADD then asks the runtime to try again later,
    /// STATUS reports not ready).
    pub pool: Option<Pool>,
    /// `prevResult` (CHECK, DEL): the result of this plugin's ADD.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): every attachment still in use.
    pub valid_attachments: Option<Vec<crate::ipam::Owner>>,
    /// Root of the IPAM store.
    pub data_dir: PathBuf,
    /// MTU of both veth ends.
    pub mtu: u32,
}

/// Decodes stdin into a JSON object (no validation yet).
///
/// Split from [`NetConf::from_object`] so that an error found later can still
/// be answered in the caller's `cniVersion` (see [`requested_version`]).
pub fn decode(stdin: &[u8]) -> Result<Map<String, Value>> {
    if stdin.len() > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge);
    }
    match serde_json::from_slice(stdin).map_err(Error::Syntax)? {
        Value::Object(object) => Ok(object),
        _ => Err(Error::NotAnObject),
    }
}

/// The config's `cniVersion`, if it is one weir speaks.
#[must_use]
pub fn requested_version(object: &Map<String, Value>) -> Option<SpecVersion> {
    object
        .get("cniVersion")
        .and_then(Value::as_str)
        .and_then(SpecVersion::parse)
}

impl NetConf {
    /// Decodes and validates stdin in one go.
    pub fn parse(stdin: &[u8]) -> Result<Self> {
        Self::from_object(&decode(stdin)?)
    }

    /// Validates a decoded config.
    pub fn from_object(object: &Map<String, Value>) -> Result<Self> {
        let version: String = field(object, "cniVersion")?.ok_or(Error::MissingVersion)?;
        let cni_version =
            SpecVersion::parse(&version).ok_or(Error::IncompatibleVersion { found: version })?;

        let name: String = field(object, "name")?.ok_or(Error::Missing { key: "name" })?;
        check_name(&name)?;

        let pool = field::<String>(object, "subnet")?
            .map(|subnet| parse_subnet(&subnet))
            .transpose()?;
        let prev_result = object.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = field::<Vec<Attachment>>(object, "cni.dev/valid-attachments")?.map(|list| {
            list.into_iter()
                .map(|a| crate::ipam::Owner::new(&a.container_id, &a.ifname))
                .collect()
        });

        let data_dir =
            field::<PathBuf>(object, "dataDir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if !data_dir.is_absolute() {
            return Err(Error::DataDir { path: data_dir });
        }

        let mtu = field(object, "mtu")?.unwrap_or(DEFAULT_MTU);
        if !MTU_RANGE.contains(&mtu) {
            return Err(Error::Mtu { mtu });
        }

        Ok(NetConf {
            cni_version,
            name,
            pool,
            prev_result,
            valid_attachments,
            data_dir,
            mtu,
        })
    }
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(serde::Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// Reads one key; `null` counts as absent.
fn field<T: DeserializeOwned>(object: &Map<String, Value>, key: &'static str) -> Result<Option<T>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|source| Error::WrongType { key, source }),
    }
}

/// Spec rule for network names; it also keeps `<dataDir>/<name>` inside `dataDir`.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::Name {
            name: name.to_owned(),
        })
    }
}

fn parse_subnet(text: &str) -> Result<Pool> {
    // Parse as either family first, so an IPv6 subnet gets "not IPv4" rather
    // than a syntax error.
    let parsed: IpNetwork = text.parse().map_err(|source| Error::SubnetSyntax {
        subnet: text.to_owned(),
        source,
    })?;
    let IpNetwork::V4(subnet) = parsed else {
        return Err(Error::SubnetNotIpv4 {
            subnet: text.to_owned(),
        });
    };
    if subnet.ip() != subnet.network() {
        return Err(Error::SubnetHostBits {
            subnet: text.to_owned(),
            network: Ipv4Network::new(subnet.network(), subnet.prefix())
                .expect("the prefix came from a valid network"),
        });
    }
    let too_small = || Error::SubnetTooSmall {
        subnet: text.to_owned(),
    };
    // A bare address parses as a /32; demand the prefix be written out.
    if !text.contains('/') {
        return Err(too_small());
    }
    Pool::new(subnet).ok_or_else(too_small)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
