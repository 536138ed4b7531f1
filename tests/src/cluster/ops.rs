//! What runs on a cluster: pods, servers, probes from pods, nodes or the
//! external client, the Node objects, and waiting for the agents.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Node as NodeObject, NodeAddress, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Cluster, EXTERNAL_CGROUP, node_pod_cidr};
use crate::agent::AgentStatus;
use crate::node::{AGENT_TIMEOUT, Node};
use crate::pod::{Pod, split_key};
use crate::probe::{self, Place, Protocol, Replies};

/// Where a probe comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Pod `namespace/name`, from its netns and cgroup.
    Pod(String),
    /// A node itself (its netns; a cgroup below the node's, so socket-LB
    /// applies as to any host process).
    Node(String),
    /// The external client: on the fabric, no agent, no routes to pods.
    External,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Pod(key) | Origin::Node(key) => f.write_str(key),
            Origin::External => f.write_str("external"),
        }
    }
}

impl Cluster {
    /// Reads `external`, a node name, or a pod (`namespace/name`, or a name in
    /// `default`). A node name wins over a pod of the same name in `default`.
    pub fn origin(&self, text: &str) -> Result<Origin> {
        if text == "external" {
            return Ok(Origin::External);
        }
        if self.node(text).is_ok() {
            return Ok(Origin::Node(text.to_owned()));
        }
        let (namespace, name) = split_key(text)?;
        let key = format!("{namespace}/{name}");
        if self.find_pod(&key).is_none() {
            bail!(
                "{text:?} is neither `external`, a node ({}) nor a pod",
                self.node_names().join(", ")
            );
        }
        Ok(Origin::Pod(key))
    }

    /// Where processes of `origin` run.
    pub fn place(&self, origin: &Origin) -> Result<Place> {
        Ok(match origin {
            Origin::Pod(key) => self.pod(key)?.place(),
            Origin::Node(name) => self.node(name)?.host_place(),
            Origin::External => Place {
                netns: self.fabric.external.path(),
                cgroup: Some(self.cgroup.path().join(EXTERNAL_CGROUP)),
            },
        })
    }

    /// `count` attempts from `origin` to `target`.
    pub fn probe(
        &self,
        origin: &Origin,
        target: (SocketAddrV4, Protocol),
        count: u32,
        timeout: Duration,
    ) -> Result<Replies> {
        probe::connect(&self.bins.probe, &self.place(origin)?, target, count, timeout)
    }

    /// A client in `origin` holding one socket to `target` (see
    /// [`probe::Session`]).
    pub fn session(
        &self,
        origin: &Origin,
        target: (SocketAddrV4, Protocol),
        timeout: Duration,
    ) -> Result<probe::Session> {
        probe::Session::start(&self.bins.probe, &self.place(origin)?, target, timeout)
    }

    /// `count` attempts from `origin` to `target`, `interval` apart, in the
    /// background.
    pub fn probe_loop(
        &self,
        origin: &Origin,
        target: (SocketAddrV4, Protocol),
        (count, interval): (u32, Duration),
    ) -> Result<probe::Loop> {
        probe::Loop::start(
            &self.bins.probe,
            &self.place(origin)?,
            target,
            (count, interval),
            Duration::from_secs(1),
        )
    }

    /// Creates pod `key` on node `node` with that node's conflist.
    pub fn add_pod(&mut self, node: &str, key: &str) -> Result<&Pod> {
        let (namespace, name) = split_key(key)?;
        if let Some((other, _)) = self.find_pod(&format!("{namespace}/{name}")) {
            bail!("pod {namespace}/{name} exists on {}", other.name);
        }
        self.node_mut(node)?.add_pod(key)
    }

    /// Removes pod `key` (CNI DEL), wherever it runs.
    pub fn remove_pod(&mut self, key: &str) -> Result<()> {
        let node = self.pod_node(key)?.name.clone();
        self.node_mut(&node)?.remove_pod(key)
    }

    /// The pod `key` and its node, if it runs.
    #[must_use]
    pub fn find_pod(&self, key: &str) -> Option<(&Node, &Pod)> {
        let (namespace, name) = split_key(key).ok()?;
        self.nodes
            .iter()
            .find_map(|node| Some((node, node.find_pod(namespace, name)?)))
    }

    /// The pod `key`.
    pub fn pod(&self, key: &str) -> Result<&Pod> {
        Ok(self.find_pod(key).with_context(|| format!("no pod {key}"))?.1)
    }

    /// The node pod `key` runs on.
    pub fn pod_node(&self, key: &str) -> Result<&Node> {
        Ok(self.find_pod(key).with_context(|| format!("no pod {key}"))?.0)
    }

    /// Every pod, with its node, node by node.
    pub fn pods(&self) -> impl Iterator<Item = (&Node, &Pod)> {
        self.nodes
            .iter()
            .flat_map(|node| node.pods.iter().map(move |pod| (node, pod)))
    }

    /// Starts a server in pod `key` on `port`, answering with the pod's name.
    pub fn serve(&mut self, key: &str, port: u16, protocol: Protocol) -> Result<()> {
        let (_, name) = split_key(key)?;
        let name = name.to_owned();
        let node = self.pod_node(key)?.name.clone();
        self.node_mut(&node)?.serve_on(key, &name, port, protocol)
    }

    /// File of node `name`'s Node object in the manifest directory.
    #[must_use]
    pub fn node_object_file(name: &str) -> String {
        format!("node_{name}.yaml")
    }

    /// Writes node `name`'s Node object (podCIDR, InternalIP) into the
    /// manifest directory: every agent routes to it from then on.
    pub fn write_node_object(&self, name: &str) -> Result<()> {
        let index = self
            .nodes
            .iter()
            .position(|node| node.name == name)
            .with_context(|| format!("no node {name}"))?;
        let address = self.nodes[index].address.context("a member without an address")?;
        let cidr = node_pod_cidr(index + 1);
        let object = NodeObject {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [("kubernetes.io/hostname", name), ("kubernetes.io/os", "linux")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(cidr.clone()),
                pod_cidrs: Some(vec![cidr]),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".to_owned(),
                        address: address.to_string(),
                    },
                    NodeAddress {
                        type_: "Hostname".to_owned(),
                        address: name.to_owned(),
                    },
                ]),
                ..NodeStatus::default()
            }),
        };
        let yaml = serde_yaml::to_string(&object).context("rendering a Node object")?;
        self.manifests.write(&Self::node_object_file(name), &yaml)
    }

    /// Removes node `name`'s Node object, as when a node leaves the cluster
    /// (the node itself keeps running).
    pub fn remove_node_object(&self, name: &str) -> Result<()> {
        self.node(name)?;
        self.manifests.remove(&Self::node_object_file(name))
    }

    /// Every agent's generation now (0 before a first status).
    #[must_use]
    pub fn generations(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|node| node.agent_status().map_or(0, |status| status.generation))
            .collect()
    }

    /// Waits until every agent's status satisfies `done` (given the node's
    /// name).
    pub fn wait_for_agents(
        &mut self,
        what: &str,
        done: impl Fn(&str, &AgentStatus) -> bool,
    ) -> Result<Vec<AgentStatus>> {
        let mut statuses = Vec::new();
        for node in &mut self.nodes {
            let name = node.name.clone();
            statuses.push(node.wait_for_status(what, |status| done(&name, status))?);
        }
        Ok(statuses)
    }

    /// After a manifest change: waits until every agent has reconciled past
    /// `before` ([`Cluster::generations`] taken before the change) and then
    /// stayed put for a few poll intervals — a pass that was already running
    /// when the files changed is followed by another one.
    pub fn wait_settled(&mut self, before: &[u64]) -> Result<Vec<AgentStatus>> {
        for (node, before) in self.nodes.iter_mut().zip(before) {
            node.wait_for_status(&format!("a generation after {before}"), |status| {
                status.generation > *before
            })?;
        }
        let deadline = Instant::now() + AGENT_TIMEOUT;
        let mut last = self.generations();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.generations();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        Ok(self.nodes.iter().filter_map(Node::agent_status).collect())
    }
}
