//! Calling `weir-cni` exactly as a container runtime does.
//!
//! The plugin runs in the node netns (where the runtime lives), gets the CNI
//! variables in a clean environment and the network config on stdin, and answers
//! with a result or an error object on stdout (CNI spec 1.1, "Execution protocol").

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cmd;

/// CNI spec version weir speaks.
pub const CNI_VERSION: &str = "1.1.0";

/// The operations a runtime asks of a plugin (the ones tests use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach a container to the network.
    Add,
    /// Detach it; must succeed when already detached.
    Del,
    /// Verify an attachment is as ADD left it.
    Check,
    /// Is the plugin ready for ADD?
    Status,
    /// Release everything not in `cni.dev/valid-attachments`.
    Gc,
}

impl CniCommand {
    fn as_env(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
            CniCommand::Status => "STATUS",
            CniCommand::Gc => "GC",
        }
    }
}

/// How to run the plugin for one node: binary, `CNI_PATH`, node netns, config.
#[derive(Clone, Debug)]
pub struct Cni {
    plugin: PathBuf,
    search_path: PathBuf,
    node_netns: PathBuf,
    config: String,
}

/// What one plugin run printed and how it exited.
#[derive(Clone, Debug)]
pub struct CniOutput {
    /// Whether the plugin exited with status 0.
    pub success: bool,
    /// Its stdout: a result (success) or an error object (failure).
    pub stdout: String,
    /// Its stderr (logs; not part of the protocol).
    pub stderr: String,
}

/// A successful ADD result (the fields tests look at).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// Spec version of the result.
    pub cni_version: String,
    /// Host veth first, then the pod's interface (with `sandbox`).
    pub interfaces: Vec<CniInterface>,
    /// Addresses handed to the pod.
    pub ips: Vec<CniIp>,
    /// Routes installed in the pod.
    #[serde(default)]
    pub routes: Vec<CniRoute>,
}

/// One interface of a result.
#[derive(Clone, Debug, Deserialize)]
pub struct CniInterface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[serde(default)]
    pub mac: String,
    /// The netns path, for interfaces inside the container.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Clone, Debug, Deserialize)]
pub struct CniIp {
    /// Address with prefix length (`10.244.1.2/32`).
    pub address: String,
    /// Gateway the pod routes through.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Clone, Debug, Deserialize)]
pub struct CniRoute {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop.
    #[serde(default)]
    pub gw: Option<String>,
}

/// The CNI error object (`{"code": N, "msg": …}`).
#[derive(Clone, Debug, Deserialize)]
pub struct CniError {
    /// Error code (the CNI spec reserves 1–99 for its well-known errors).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    #[serde(default)]
    pub details: Option<String>,
}

impl Cni {
    /// The plugin for the node whose netns file is `node_netns`, with a network
    /// config for pod CIDR `subnet` and an IPAM store in `ipam_dir`.
    #[must_use]
    pub fn new(plugin: &Path, cni_path: &Path, node_netns: &Path, subnet: &str, ipam_dir: &Path) -> Self {
        let config = serde_json::json!({
            "cniVersion": CNI_VERSION,
            "name": "weir",
            "type": "weir-cni",
            "subnet": subnet,
            "dataDir": ipam_dir,
            "mtu": 1500,
        });
        Cni {
            plugin: plugin.to_owned(),
            search_path: cni_path.to_owned(),
            node_netns: node_netns.to_owned(),
            config: config.to_string(),
        }
    }

    /// The network config JSON sent on stdin.
    #[must_use]
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Runs the plugin with `stdin` as config (tests feed it garbage, too).
    pub fn exec(
        &self,
        command: CniCommand,
        container_id: &str,
        pod_netns: &Path,
        stdin: &[u8],
    ) -> Result<CniOutput> {
        let mut process = cmd::nsenter(&self.node_netns, &self.plugin);
        // A runtime hands the plugin only the CNI variables (and PATH): nothing of
        // the test's environment may change how it behaves.
        cmd::shielded(&mut process)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", command.as_env())
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", pod_netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.search_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("`{}` (CNI_COMMAND={})", cmd::describe(&process), command.as_env());
        let mut child = process.spawn().with_context(|| what.clone())?;
        let mut pipe = child.stdin.take().context("plugin stdin")?;
        // A plugin that rejects its input early may close stdin: not our error.
        let _ = pipe.write_all(stdin);
        drop(pipe);
        let output = child.wait_with_output().with_context(|| what)?;
        Ok(CniOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// ADD: attaches `pod_netns` and returns the parsed result.
    pub fn add(&self, container_id: &str, pod_netns: &Path) -> Result<CniResult> {
        let output = self.exec(CniCommand::Add, container_id, pod_netns, self.config.as_bytes())?;
        output.ok("ADD")?;
        serde_json::from_str(&output.stdout)
            .with_context(|| format!("weir-cni ADD printed no valid result: {}", output.stdout))
    }

    /// DEL: detaches `pod_netns` (idempotent by spec).
    pub fn del(&self, container_id: &str, pod_netns: &Path) -> Result<()> {
        self.exec(CniCommand::Del, container_id, pod_netns, self.config.as_bytes())?
            .ok("DEL")
    }
}

impl CniOutput {
    /// The error object on stdout, if it holds one.
    #[must_use]
    pub fn error(&self) -> Option<CniError> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// Fails with the plugin's own error object unless it succeeded.
    pub fn ok(&self, what: &str) -> Result<()> {
        if self.success {
            return Ok(());
        }
        match self.error() {
            Some(error) => bail!(
                "weir-cni {what} failed: code {}: {} {}\n  stderr: {}",
                error.code,
                error.msg,
                error.details.unwrap_or_default(),
                self.stderr.trim()
            ),
            None => bail!(
                "weir-cni {what} failed without an error object\n  stdout: {}\n  stderr: {}",
                self.stdout.trim(),
                self.stderr.trim()
            ),
        }
    }
}

impl CniResult {
    /// The pod's IPv4 address (the first `ips` entry, prefix length dropped).
    pub fn pod_ip(&self) -> Result<Ipv4Addr> {
        let ip = self.ips.first().context("CNI result has no ips")?;
        let address = ip.address.split('/').next().unwrap_or_default();
        address
            .parse()
            .with_context(|| format!("CNI result address {:?}", ip.address))
    }

    /// The host-side interface (the one without a `sandbox`).
    pub fn host_interface(&self) -> Result<&CniInterface> {
        self.interfaces
            .iter()
            .find(|interface| interface.sandbox.is_none())
            .context("CNI result has no host interface")
    }
}
