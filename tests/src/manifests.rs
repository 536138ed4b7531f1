//! Service and EndpointSlice YAML for the agent's manifest directory.
//!
//! The agent polls its directory, so every change is written to a temporary file
//! outside it and renamed in: the agent sees the old file or the new one, never a
//! half-written one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::apiserver::ApiClient;
use serde_json::{Value, json};

/// A ClusterIP Service with one TCP port and the ready endpoints behind it.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Service name (namespace `default`).
    pub name: String,
    /// The virtual IP clients dial.
    pub cluster_ip: Ipv4Addr,
    /// Name of the port; the EndpointSlice's port of the same name is where
    /// the Service's traffic goes.
    pub port_name: String,
    /// Port clients dial on the VIP.
    pub port: u16,
    /// Port the backends listen on.
    pub target_port: u16,
    /// Backend pods: name and IP.
    pub endpoints: Vec<(String, Ipv4Addr)>,
}

impl ServiceSpec {
    /// The Service object, as YAML (rendered as JSON, which is YAML too).
    #[must_use]
    pub fn service_yaml(&self) -> String {
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": "default"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.cluster_ip.to_string(),
                "clusterIPs": [self.cluster_ip.to_string()],
                "selector": {"app": self.name},
                "ports": [{
                    "name": self.port_name,
                    "protocol": "TCP",
                    "port": self.port,
                    "targetPort": self.target_port,
                }],
            },
        });
        to_document(&service)
    }

    /// The EndpointSlice the EndpointSlice controller would write for it.
    #[must_use]
    pub fn endpointslice_yaml(&self) -> String {
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|(pod, ip)| {
                json!({
                    "addresses": [ip.to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": pod},
                })
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-slice", self.name),
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": self.name},
            },
            "addressType": "IPv4",
            "ports": [{"name": self.port_name, "protocol": "TCP", "port": self.target_port}],
            "endpoints": endpoints,
        });
        to_document(&slice)
    }

    /// File name of the Service in a manifest directory.
    #[must_use]
    pub fn service_file(&self) -> String {
        format!("{}-service.yaml", self.name)
    }

    /// File name of the EndpointSlice in a manifest directory.
    #[must_use]
    pub fn endpointslice_file(&self) -> String {
        format!("{}-endpointslice.yaml", self.name)
    }
}

/// A manifest directory plus a scratch directory on the same filesystem, so
/// writes can be renamed in atomically.
#[derive(Clone, Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    scratch: PathBuf,
    /// The API server stand-in every change is also applied to (the
    /// agents of a Kubernetes-mode cluster watch it, not the directory).
    api: Option<ApiClient>,
}

impl ManifestDir {
    /// A manifest directory `dir` with its scratch directory; nothing is
    /// created until [`ManifestDir::create_dirs`].
    #[must_use]
    pub fn new(dir: PathBuf, scratch: PathBuf) -> Self {
        ManifestDir {
            dir,
            scratch,
            api: None,
        }
    }

    /// The same directory, whose every write and removal is also applied to
    /// the API server `api`: one place where objects change, two ways for
    /// agents to see them.
    #[must_use]
    pub fn mirrored_to(mut self, api: ApiClient) -> Self {
        self.api = Some(api);
        self
    }

    /// Creates both directories (empty).
    pub fn create_dirs(&self) -> Result<()> {
        for path in [&self.dir, &self.scratch] {
            std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(())
    }

    /// The directory the agent reads.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `file_name` atomically (temporary file + rename).
    pub fn write(&self, file_name: &str, contents: &str) -> Result<()> {
        let temporary = self.scratch.join(file_name);
        std::fs::write(&temporary, contents).with_context(|| format!("writing {}", temporary.display()))?;
        let target = self.dir.join(file_name);
        std::fs::rename(&temporary, &target)
            .with_context(|| format!("renaming into {}", target.display()))?;
        if let Some(api) = &self.api {
            api.apply(contents)
                .with_context(|| format!("applying {file_name} to the API server"))?;
        }
        Ok(())
    }

    /// The content of `file_name`, if it exists.
    #[must_use]
    pub fn read(&self, file_name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file_name)).ok()
    }

    /// Names of the manifest files in the directory, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))?
        {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let manifest = [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext));
            if manifest && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes `file_name`; missing is success.
    pub fn remove(&self, file_name: &str) -> Result<()> {
        if let Some(api) = &self.api
            && let Some(text) = self.read(file_name)
        {
            api.delete_documents(&text)
                .with_context(|| format!("deleting the objects of {file_name} from the API server"))?;
        }
        match std::fs::remove_file(self.dir.join(file_name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {file_name} from {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }

    /// Writes a Service and its EndpointSlice (EndpointSlice first, so the agent
    /// never sees the Service before its endpoints).
    pub fn write_service(&self, spec: &ServiceSpec) -> Result<()> {
        self.write(&spec.endpointslice_file(), &spec.endpointslice_yaml())?;
        self.write(&spec.service_file(), &spec.service_yaml())
    }

    /// Copies every `*.yaml` of `source` (e.g. `examples/lab`) in; returns the
    /// names copied, sorted.
    pub fn copy_from(&self, source: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(source).with_context(|| format!("listing {}", source.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("manifest name")?
                    .to_owned();
                let contents =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                self.write(&name, &contents)?;
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A YAML document from a JSON value (JSON is a subset of YAML 1.2).
fn to_document(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
