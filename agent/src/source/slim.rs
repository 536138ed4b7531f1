//! Services and EndpointSlices as the agent keeps them: only the fields the
//! load balancer and the API view read.
//!
//! A node agent holds every Service and EndpointSlice of the cluster. The
//! generated k8s-openapi types carry every field of the API (an `Endpoint`
//! is 352 bytes before its strings, most of it `None`); at 10k Services and
//! 100k endpoints they alone would hold more memory than the whole agent
//! is allowed. These types read the same JSON and YAML (unknown fields are
//! ignored, as the generated types ignore them) and keep the field names of
//! the generated types, so code reads them the same way. Cilium keeps
//! "slim" copies of the Kubernetes types for the same reason.
//!
//! They are real Kubernetes resources to kube-rs: the watchers list and
//! watch them from the API server like the generated types.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};

/// The label an EndpointSlice carries to say which Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A `null` list reads as empty: the API server writes `null` for a nil
/// slice of a field without `omitempty` (an EndpointSlice's `endpoints`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// core/v1 `Service`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Name, namespace, resourceVersion, weir's annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: Option<ServiceSpec>,
    /// The status (LoadBalancer ingress addresses).
    pub status: Option<ServiceStatus>,
}

/// core/v1 `ServiceSpec`, the fields kube-proxy's Service handling reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// `clusterIP`.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// `clusterIPs`.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Vec<String>>,
    /// `externalIPs`.
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<Vec<String>>,
    /// Ports.
    pub ports: Option<Vec<ServicePort>>,
    /// `Cluster` or `Local`.
    pub internal_traffic_policy: Option<String>,
    /// `Cluster` or `Local`.
    pub external_traffic_policy: Option<String>,
    /// `None` or `ClientIP`.
    pub session_affinity: Option<String>,
    /// The ClientIP affinity timeout.
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// `healthCheckNodePort`.
    pub health_check_node_port: Option<i32>,
}

/// core/v1 `ServicePort`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Name (matches the slice port of the same name).
    pub name: Option<String>,
    /// The Service port.
    pub port: i32,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
    /// `nodePort`.
    pub node_port: Option<i32>,
}

/// core/v1 `SessionAffinityConfig`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// `clientIP`.
    #[serde(rename = "clientIP")]
    pub client_ip: Option<ClientIPConfig>,
}

/// core/v1 `ClientIPConfig`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIPConfig {
    /// Seconds.
    pub timeout_seconds: Option<i32>,
}

/// core/v1 `ServiceStatus`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The load balancer's status.
    pub load_balancer: Option<LoadBalancerStatus>,
}

/// core/v1 `LoadBalancerStatus`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct LoadBalancerStatus {
    /// Ingress points.
    pub ingress: Option<Vec<LoadBalancerIngress>>,
}

/// core/v1 `LoadBalancerIngress`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct LoadBalancerIngress {
    /// The IP (hostnames are not served).
    pub ip: Option<String>,
}

/// discovery.k8s.io/v1 `EndpointSlice`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name, namespace, the `kubernetes.io/service-name` label.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Endpoints.
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<Endpoint>,
    /// Ports.
    pub ports: Option<Vec<EndpointPort>>,
    /// The Service it belongs to, moved out of its label when the object
    /// is trimmed: a map of one label costs a 540-byte tree node.
    #[serde(skip)]
    pub service_name: Option<String>,
}

impl EndpointSlice {
    /// The name of the Service it belongs to: the `kubernetes.io/service-name`
    /// label, kept or moved.
    #[must_use]
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref().or_else(|| {
            let labels = self.metadata.labels.as_ref()?;
            labels.get(SERVICE_NAME_LABEL).map(String::as_str)
        })
    }
}

/// discovery.k8s.io/v1 `Endpoint`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses.
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: Vec<String>,
    /// Conditions.
    pub conditions: Option<EndpointConditions>,
    /// The node it runs on.
    pub node_name: Option<String>,
}

/// discovery.k8s.io/v1 `EndpointConditions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EndpointConditions {
    /// Ready.
    pub ready: Option<bool>,
    /// Serving.
    pub serving: Option<bool>,
    /// Terminating.
    pub terminating: Option<bool>,
}

/// discovery.k8s.io/v1 `EndpointPort`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct EndpointPort {
    /// Name (matches the Service port of the same name).
    pub name: Option<String>,
    /// Port; `None`: all ports.
    pub port: Option<i32>,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
}

/// Makes a slim type a Kubernetes resource of the same API path as the
/// generated type it stands for.
macro_rules! resource {
    ($slim:ty, $generated:ty, $list:literal) => {
        impl k8s_openapi::Resource for $slim {
            const API_VERSION: &'static str = <$generated as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$generated as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$generated as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$generated as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$generated as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$generated as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::ListableResource for $slim {
            const LIST_KIND: &'static str = $list;
        }

        impl k8s_openapi::Metadata for $slim {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(Service, k8s_openapi::api::core::v1::Service, "ServiceList");
resource!(
    EndpointSlice,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    "EndpointSliceList"
);

/// Keeps only `keep` of a map of labels or annotations; `None` when
/// nothing is left (an empty map still costs its node).
pub(super) fn keep_only(
    map: Option<BTreeMap<String, String>>,
    keep: impl Fn(&str) -> bool,
) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = map?.into_iter().filter(|(k, _)| keep(k)).collect();
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_servers_json_reads_with_what_is_unknown_ignored() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "x", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                           "nodeName": "n1", "zone": "a", "targetRef": {"kind": "Pod", "name": "p"}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        }))
        .unwrap();
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("n1"));
        let empty: EndpointSlice =
            serde_json::from_value(serde_json::json!({"addressType": "IPv4", "endpoints": null})).unwrap();
        assert_eq!(empty.endpoints, []);
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                     "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}],
                     "selector": {"app": "web"}, "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9", "ipMode": "VIP"}]}}
        }))
        .unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.5"));
        assert_eq!(spec.ports.unwrap()[0].node_port, Some(30080));
        assert_eq!(
            spec.session_affinity_config
                .and_then(|c| c.client_ip?.timeout_seconds),
            Some(60)
        );
    }

    #[test]
    fn a_wrong_type_is_an_error() {
        let bad =
            serde_json::from_value::<Service>(serde_json::json!({"spec": {"ports": [{"port": "banana"}]}}));
        assert!(bad.is_err());
    }
}
