//! Where Kubernetes mode reaches the API server when it is not the
//! kubeconfig's server or the in-cluster `KUBERNETES_SERVICE_HOST`.
//!
//! As the kube-proxy replacement, weir is what makes the `kubernetes`
//! Service's ClusterIP work: the in-cluster address the kubelet injects
//! (`KUBERNETES_SERVICE_HOST`) is that ClusterIP, unreachable until weir has
//! programmed it. So the agent takes the API server's real address
//! (a control-plane node or its load balancer) from its configuration, as
//! Cilium's `k8sServiceHost` / `k8sServicePort` do.

use std::fmt;
use std::net::IpAddr;

/// The port kube-apiserver serves on unless told otherwise.
pub const DEFAULT_PORT: u16 = 6443;

/// The API server's address, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    /// An IP address or a DNS name (no scheme, no port).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl ApiServer {
    /// `scheme://host:port` (IPv6 literals in brackets), the cluster URL
    /// handed to the client.
    #[must_use]
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{self}")
    }
}

impl fmt::Display for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Checks a host as given: an IP address (IPv6 with or without brackets)
/// or a DNS name. A URL or `host:port` is refused with a hint, because a
/// silently mangled address would only fail later, at the first watch.
pub fn parse_host(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    if text.contains("://") {
        return Err(format!(
            "{text:?} is a URL: give the host only (the port is apiServerPort)"
        ));
    }
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let is_name = text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if is_name {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is neither an IP address nor a DNS name (the port goes in apiServerPort)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_or_names() {
        assert_eq!(parse_host("192.0.2.10").unwrap(), "192.0.2.10");
        assert_eq!(parse_host("[2001:db8::1]").unwrap(), "2001:db8::1");
        assert_eq!(parse_host("2001:db8::1").unwrap(), "2001:db8::1");
        assert_eq!(parse_host("API.example.com").unwrap(), "api.example.com");
        for bad in [
            "",
            "https://10.0.0.1",
            "10.0.0.1:6443",
            "a..b",
            "-x.example",
            "a b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls_bracket_ipv6() {
        let v4 = ApiServer {
            host: "192.0.2.10".into(),
            port: 6443,
        };
        assert_eq!(v4.url("https"), "https://192.0.2.10:6443");
        let v6 = ApiServer {
            host: "2001:db8::1".into(),
            port: 443,
        };
        assert_eq!(v6.url("https"), "https://[2001:db8::1]:443");
    }
}
