//! NetworkPolicy ports: parsing, and the set of port ranges one prefix
//! allows as the datapath holds it.

use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_common::policy::{IPPROTO_SCTP, POLICY_MAX_PORT_RANGES, PROTO_ANY, PortRange};
use weir_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::desired::Reason;

/// One entry of a rule's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// Numbers `first..=last` of `proto` ([`PROTO_ANY`] with 0–65535 for
    /// a rule without ports).
    Range {
        /// IP protocol.
        proto: u8,
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
    /// A container port name, resolved against the pod that owns the port
    /// (the selected pod for ingress, the peer for egress).
    Named {
        /// IP protocol.
        proto: u8,
        /// The port's name.
        name: String,
    },
}

/// The IP protocol of a policy or container port; absent is TCP.
pub fn protocol_number(protocol: Option<&str>) -> Result<u8, Reason> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Ok(IPPROTO_TCP),
        "UDP" => Ok(IPPROTO_UDP),
        "SCTP" => Ok(IPPROTO_SCTP),
        other => Err(Reason::UnsupportedProtocol(other.into())),
    }
}

/// A rule's `ports`: absent or empty allows every port of every protocol.
pub fn parse_ports(ports: Option<&[NetworkPolicyPort]>) -> Result<Vec<PortSpec>, Reason> {
    let ports = ports.unwrap_or_default();
    if ports.is_empty() {
        return Ok(vec![PortSpec::Range {
            proto: PROTO_ANY,
            first: 0,
            last: u16::MAX,
        }]);
    }
    ports.iter().map(parse_port).collect()
}

fn parse_port(port: &NetworkPolicyPort) -> Result<PortSpec, Reason> {
    let proto = protocol_number(port.protocol.as_deref())?;
    match (&port.port, port.end_port) {
        // No port: every port of the protocol.
        (None, None) => Ok(PortSpec::Range {
            proto,
            first: 0,
            last: u16::MAX,
        }),
        (None, Some(end_port)) => Err(Reason::BadEndPort {
            port: "-".into(),
            end_port,
        }),
        (Some(IntOrString::Int(n)), end_port) => {
            let first = number(*n)?;
            let last = match end_port {
                None => first,
                Some(end) => number(end)
                    .ok()
                    .filter(|last| *last >= first)
                    .ok_or(Reason::BadEndPort {
                        port: n.to_string(),
                        end_port: end,
                    })?,
            };
            Ok(PortSpec::Range { proto, first, last })
        }
        (Some(IntOrString::String(name)), None) => {
            if !is_port_name(name) {
                return Err(Reason::BadPortName(name.clone()));
            }
            Ok(PortSpec::Named {
                proto,
                name: name.clone(),
            })
        }
        (Some(IntOrString::String(name)), Some(end_port)) => Err(Reason::BadEndPort {
            port: name.clone(),
            end_port,
        }),
    }
}

fn number(n: i32) -> Result<u16, Reason> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n != 0)
        .ok_or(Reason::PortOutOfRange(n))
}

/// An IANA service name (RFC 6335), as Kubernetes validates port names:
/// 1–15 lowercase letters, digits and inner single hyphens, with a letter.
fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Whether `outer` allows everything `inner` does.
fn covers(outer: PortRange, inner: PortRange) -> bool {
    (outer.proto == PROTO_ANY || outer.proto == inner.proto)
        && outer.first <= inner.first
        && inner.last <= outer.last
}

/// The ranges of a union as the datapath holds them, sorted: duplicates
/// and ranges another covers dropped (the covering rule is named in the
/// log); only if that is still more than [`POLICY_MAX_PORT_RANGES`],
/// overlapping or adjacent ranges of one protocol merged (the first rule
/// named). `Err(count)` when even that does not fit.
pub fn normalize(mut ranges: Vec<PortRange>) -> Result<Vec<PortRange>, usize> {
    ranges.sort_by_key(|r| (r.proto, r.first, std::cmp::Reverse(r.last), r.rule));
    let mut kept: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        if !kept.iter().any(|k| covers(*k, range)) {
            kept.retain(|k| !covers(range, *k));
            kept.push(range);
        }
    }
    if kept.len() > POLICY_MAX_PORT_RANGES {
        let mut merged: Vec<PortRange> = Vec::with_capacity(kept.len());
        for range in kept {
            match merged.last_mut() {
                Some(last)
                    if last.proto == range.proto && u32::from(range.first) <= u32::from(last.last) + 1 =>
                {
                    last.last = last.last.max(range.last);
                }
                _ => merged.push(range),
            }
        }
        kept = merged;
    }
    if kept.len() > POLICY_MAX_PORT_RANGES {
        return Err(kept.len());
    }
    kept.sort_by_key(|r| (r.proto, r.first, r.last, r.rule));
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(yaml: &str) -> Result<PortSpec, Reason> {
        parse_port(&serde_yaml::from_str(yaml).unwrap())
    }

    use super::super::trie::range;

    #[test]
    fn ports_parse_as_the_api_documents() {
        assert_eq!(
            port("{port: 80}").unwrap(),
            PortSpec::Range {
                proto: IPPROTO_TCP,
                first: 80,
                last: 80
            }
        );
        assert_eq!(
            port("{protocol: UDP, port: 32000, endPort: 32768}").unwrap(),
            PortSpec::Range {
                proto: IPPROTO_UDP,
                first: 32000,
                last: 32768
            }
        );
        assert_eq!(
            port("{protocol: SCTP}").unwrap(),
            PortSpec::Range {
                proto: IPPROTO_SCTP,
                first: 0,
                last: 65535
            }
        );
        assert_eq!(
            port("{port: http}").unwrap(),
            PortSpec::Named {
                proto: IPPROTO_TCP,
                name: "http".into()
            }
        );
        assert_eq!(parse_ports(Some(&[])).unwrap().len(), 1, "empty: all");
    }

    #[test]
    fn bad_ports_are_errors() {
        assert_eq!(port("{port: 0}"), Err(Reason::PortOutOfRange(0)));
        assert_eq!(port("{port: 70000}"), Err(Reason::PortOutOfRange(70000)));
        assert!(matches!(
            port("{port: 80, endPort: 79}"),
            Err(Reason::BadEndPort { .. })
        ));
        assert!(matches!(
            port("{port: 80, endPort: 65536}"),
            Err(Reason::BadEndPort { .. })
        ));
        assert!(matches!(port("{endPort: 90}"), Err(Reason::BadEndPort { .. })));
        assert!(matches!(
            port("{port: http, endPort: 90}"),
            Err(Reason::BadEndPort { .. })
        ));
        assert_eq!(port("{port: Http}"), Err(Reason::BadPortName("Http".into())));
        assert_eq!(port("{port: '8080'}"), Err(Reason::BadPortName("8080".into())));
        assert_eq!(
            port("{protocol: ICMP, port: 1}"),
            Err(Reason::UnsupportedProtocol("ICMP".into()))
        );
    }

    #[test]
    fn normalize_drops_covered_ranges_and_merges_only_when_needed() {
        let got = normalize(vec![
            range(IPPROTO_TCP, 80, 80, 2),
            range(IPPROTO_TCP, 80, 90, 1),
            range(IPPROTO_UDP, 53, 53, 3),
            range(IPPROTO_UDP, 53, 53, 4),
        ])
        .unwrap();
        assert_eq!(
            got,
            [range(IPPROTO_TCP, 80, 90, 1), range(IPPROTO_UDP, 53, 53, 3)]
        );
        let any = normalize(vec![range(IPPROTO_TCP, 1, 2, 1), range(PROTO_ANY, 0, 65535, 2)]).unwrap();
        assert_eq!(any, [range(PROTO_ANY, 0, 65535, 2)]);

        let adjacent: Vec<PortRange> = (0..20).map(|i| range(IPPROTO_TCP, 100 + i, 100 + i, 1)).collect();
        assert_eq!(normalize(adjacent).unwrap(), [range(IPPROTO_TCP, 100, 119, 1)]);
        let apart: Vec<PortRange> = (0..17)
            .map(|i| range(IPPROTO_TCP, 100 + 2 * i, 100 + 2 * i, 1))
            .collect();
        assert_eq!(normalize(apart), Err(17));
    }
}
