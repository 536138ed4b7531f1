//! Pods: a netns and a cgroup below their node's, attached by `weir-cni`.
//!
//! A pod is known by `namespace/name` (a bare name means namespace
//! `default`). Its netns, cgroup and `CNI_CONTAINERID` are derived from that
//! key, so the persistent lab can find a pod again from a short record.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cgroup::Cgroup;
use crate::cni::{Cni, CniResult};
use crate::netns::Netns;
use crate::probe::{Place, Server};
use crate::tag::Naming;

/// The namespace of a pod named without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A pod attached to a node by `weir-cni ADD`.
#[derive(Debug)]
pub struct Pod {
    /// Its Kubernetes namespace.
    pub namespace: String,
    /// Pod name (what its servers answer with).
    pub name: String,
    /// The pod's netns (`eth0` lives here).
    pub netns: Netns,
    /// The pod's cgroup, a child of the node cgroup.
    pub cgroup: Cgroup,
    /// `CNI_CONTAINERID` used for ADD and DEL.
    pub container_id: String,
    /// What ADD returned.
    pub cni_result: CniResult,
    /// The pod's address from the result.
    pub ip: Ipv4Addr,
}

/// What the persistent lab's state file keeps of a pod.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    /// The ADD result, in CNI's own JSON form.
    pub cni_result: Value,
}

/// Splits `namespace/name` (or a bare `name`, in `default`).
pub fn split_key(key: &str) -> Result<(&str, &str)> {
    let (namespace, name) = key.split_once('/').unwrap_or((DEFAULT_NAMESPACE, key));
    for part in [namespace, name] {
        // Kubernetes names never hold '_' or '/', which keeps the derived
        // netns and cgroup names unambiguous.
        let valid = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            bail!("{key:?} is not a pod name (namespace/name, lowercase letters, digits, '-', '.')");
        }
    }
    Ok((namespace, name))
}

/// Where a pod's names come from.
pub(crate) struct PodNames {
    pub netns: String,
    pub cgroup: String,
    pub container_id: String,
}

impl PodNames {
    /// The names of pod `namespace/name` in a topology named `naming`.
    pub fn new(naming: &Naming, namespace: &str, name: &str) -> Self {
        let joined = format!("{namespace}_{name}");
        PodNames {
            netns: naming.netns_name(&format!("pod-{joined}")),
            container_id: format!("{naming}-{joined}"),
            cgroup: joined,
        }
    }
}

impl Pod {
    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Where the pod's processes run: its netns and cgroup.
    #[must_use]
    pub fn place(&self) -> Place {
        Place {
            netns: self.netns.path(),
            cgroup: Some(self.cgroup.path().to_owned()),
        }
    }

    /// Creates pod `namespace/name` below `node_cgroup` and attaches it with
    /// `cni`. On failure nothing of the pod is left.
    pub(crate) fn create(
        naming: &Naming,
        cni: &Cni,
        node_cgroup: &Path,
        (namespace, name): (&str, &str),
    ) -> Result<Pod> {
        let names = PodNames::new(naming, namespace, name);
        let netns = Netns::create(&names.netns)?;
        let attached = Cgroup::create(node_cgroup.join(&names.cgroup)).and_then(|cgroup| {
            match cni
                .add(&names.container_id, &netns.path())
                .and_then(|result| Ok((result.pod_ip()?, result)))
            {
                Ok((ip, cni_result)) => Ok((cgroup, ip, cni_result)),
                Err(err) => {
                    // ADD must clean up after itself; DEL anyway, as a runtime would.
                    let _ = cni.del(&names.container_id, &netns.path());
                    let _ = cgroup.remove();
                    Err(err)
                }
            }
        });
        match attached {
            Ok((cgroup, ip, cni_result)) => Ok(Pod {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                netns,
                cgroup,
                container_id: names.container_id,
                cni_result,
                ip,
            }),
            Err(err) => {
                let _ = netns.delete();
                Err(err.context(format!("adding pod {namespace}/{name}")))
            }
        }
    }

    /// Detaches the pod and removes it: its processes first (so nothing
    /// answers from a pod being taken apart), CNI DEL while the netns still
    /// exists, then the netns and the cgroup.
    pub(crate) fn remove(&self, cni: Option<&Cni>, servers: &mut Vec<(String, Server)>) -> Result<()> {
        let key = self.key();
        let mut result = Ok(());
        servers.retain_mut(|(owner, server)| {
            if *owner != key {
                return true;
            }
            if let Err(err) = server.stop() {
                result = Err(err);
            }
            false
        });
        let killed = self.cgroup.kill_all();
        let del = match cni {
            Some(cni) => cni.del(&self.container_id, &self.netns.path()),
            None => Err(anyhow::anyhow!("no CNI config to DEL {key} with")),
        };
        // Even after a failed DEL the sandbox goes, as with a runtime; the failure
        // is still reported.
        let netns = self.netns.delete();
        let cgroup = self.cgroup.remove();
        result.and(killed).and(del).and(netns).and(cgroup)
    }

    /// The state file's record of this pod.
    pub(crate) fn record(&self) -> PodRecord {
        PodRecord {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ip: self.ip,
            cni_result: result_json(&self.cni_result),
        }
    }

    /// The pod a record describes, on the node whose cgroup is `node_cgroup`.
    pub(crate) fn from_record(naming: &Naming, node_cgroup: &Path, record: PodRecord) -> Result<Pod> {
        let names = PodNames::new(naming, &record.namespace, &record.name);
        let cni_result = serde_json::from_value(record.cni_result)
            .with_context(|| format!("the state's CNI result of {}/{}", record.namespace, record.name))?;
        Ok(Pod {
            netns: Netns::existing(&names.netns),
            cgroup: Cgroup::existing(node_cgroup.join(&names.cgroup)),
            container_id: names.container_id,
            namespace: record.namespace,
            name: record.name,
            cni_result,
            ip: record.ip,
        })
    }
}

/// A [`CniResult`] back in the JSON form `weir-cni` printed (the fields it has).
fn result_json(result: &CniResult) -> Value {
    json!({
        "cniVersion": result.cni_version,
        "interfaces": result.interfaces.iter().map(|i| json!({
            "name": i.name, "mac": i.mac, "sandbox": i.sandbox,
        })).collect::<Vec<_>>(),
        "ips": result.ips.iter().map(|ip| json!({
            "address": ip.address, "gateway": ip.gateway, "interface": ip.interface,
        })).collect::<Vec<_>>(),
        "routes": result.routes.iter().map(|r| json!({"dst": r.dst, "gw": r.gw})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_with_default_namespace() {
        assert_eq!(split_key("echo-a").unwrap(), ("default", "echo-a"));
        assert_eq!(split_key("demo/echo-a").unwrap(), ("demo", "echo-a"));
        for bad in ["", "demo/", "/x", "a/b/c", "Echo", "a_b"] {
            assert!(split_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cni_results_survive_the_state_file() {
        let text = r#"{"cniVersion":"1.1.0","interfaces":[{"name":"weir1","mac":"aa:bb:cc:dd:ee:ff"},
            {"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/p"}],
            "ips":[{"address":"10.244.1.2/32","gateway":"169.254.1.1","interface":1}],
            "routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]}"#;
        let result: CniResult = serde_json::from_str(text).unwrap();
        let back: CniResult = serde_json::from_value(result_json(&result)).unwrap();
        assert_eq!(back.pod_ip().unwrap(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(back.host_interface().unwrap().name, "weir1");
        assert_eq!(back.routes.len(), 1);
    }
}
