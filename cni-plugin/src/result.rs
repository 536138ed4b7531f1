//! The ADD result, written in the format of the caller's `cniVersion`.

use std::fmt::Display;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Serialize, Serializer};

use crate::version::SpecVersion;

/// `0.0.0.0/0`.
const DEFAULT_ROUTE: Ipv4Network = match Ipv4Network::new_checked(Ipv4Addr::UNSPECIFIED, 0) {
    Some(network) => network,
    None => panic!("a prefix length of 0 is valid"),
};

/// One interface of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Netns path for interfaces inside the container; absent for host ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// `"4"`: only in 0.4.0 results, which required it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    /// Address with prefix length.
    #[serde(serialize_with = "as_string")]
    pub address: Ipv4Network,
    /// The gateway the interface routes through.
    pub gateway: Ipv4Addr,
    /// Index into [`AddResult::interfaces`].
    pub interface: usize,
}

/// One route of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination prefix.
    #[serde(serialize_with = "as_string")]
    pub dst: Ipv4Network,
    /// Next hop.
    pub gw: Ipv4Addr,
}

/// DNS settings: weir leaves DNS to the runtime (kubelet writes resolv.conf),
/// so this is always the empty object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dns {}

/// The success reply to `ADD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    /// Format version: the `cniVersion` of the config.
    pub cni_version: SpecVersion,
    /// Host veth first, then the pod's interface.
    pub interfaces: Vec<Interface>,
    /// Addresses given to the pod.
    pub ips: Vec<IpConfig>,
    /// Routes installed in the pod.
    pub routes: Vec<Route>,
    /// Always empty; see [`Dns`].
    pub dns: Dns,
}

/// Writes a prefix as `a.b.c.d/n` (ipnetwork's own serde support is an
/// optional feature the workspace does not turn on).
fn as_string<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What ADD set up, independent of the result format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Node-side veth.
    pub host: Interface,
    /// Pod-side interface (with `sandbox` set).
    pub pod: Interface,
    /// The pod's address (a /32).
    pub ip: Ipv4Addr,
    /// The pod's gateway, also the next hop of its default route.
    pub gateway: Ipv4Addr,
}

impl AddResult {
    /// The result for `attachment` in the format of `version`.
    #[must_use]
    pub fn new(version: SpecVersion, attachment: Attachment) -> Self {
        let ip_version = (version == SpecVersion::V0_4_0).then_some("4");
        AddResult {
            cni_version: version,
            ips: vec![IpConfig {
                version: ip_version,
                address: Ipv4Network::from(attachment.ip),
                gateway: attachment.gateway,
                // The pod's interface is the second entry of `interfaces`.
                interface: 1,
            }],
            routes: vec![Route {
                dst: DEFAULT_ROUTE,
                gw: attachment.gateway,
            }],
            interfaces: vec![attachment.host, attachment.pod],
            dns: Dns {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            host: Interface {
                name: "weir0123456789a".into(),
                mac: "aa:bb:cc:dd:ee:01".into(),
                sandbox: None,
            },
            pod: Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:02".into(),
                sandbox: Some("/run/netns/pod".into()),
            },
            ip: Ipv4Addr::new(10, 244, 1, 2),
            gateway: Ipv4Addr::new(169, 254, 1, 1),
        }
    }

    #[test]
    fn v1_result_is_exact() {
        let json = serde_json::to_string(&AddResult::new(SpecVersion::V1_1_0, attachment())).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"cniVersion":"1.1.0","interfaces":[{"name":"weir0123456789a","mac":"aa:bb:cc:dd:ee:01"},"#,
                r#"{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/pod"}],"#,
                r#""ips":[{"address":"10.244.1.2/32","gateway":"169.254.1.1","interface":1}],"#,
                r#""routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}],"dns":{}}"#
            )
        );
    }

    #[test]
    fn v0_4_result_tags_ip_version() {
        let json = serde_json::to_string(&AddResult::new(SpecVersion::V0_4_0, attachment())).unwrap();
        assert!(json.starts_with(r#"{"cniVersion":"0.4.0","#), "{json}");
        assert!(
            json.contains(r#""ips":[{"version":"4","address":"10.244.1.2/32""#),
            "{json}"
        );
    }
}
