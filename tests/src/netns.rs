//! Named network namespaces (`/run/netns/NAME`) and what tests look at in them.
//!
//! Every address, route and link a topology has lives in one of these; the root
//! netns is never touched. Links and routes are read with `ip -json` so assertions
//! compare data, not screen-scraped text.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::cmd;

/// Where `ip netns add` bind-mounts namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A named network namespace. Deleting it is explicit ([`Netns::delete`]) because
/// the order of teardown matters (CNI DEL needs the pod netns to still exist).
#[derive(Clone, Debug)]
pub struct Netns {
    name: String,
}

/// One link as `ip -json link show` reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct Link {
    /// Interface name.
    pub ifname: String,
    /// Administrative and operational flags (`UP`, `LOWER_UP`, …).
    #[serde(default)]
    pub flags: Vec<String>,
    /// MAC address, for links that have one.
    #[serde(default)]
    pub address: Option<String>,
}

/// One route as `ip -json route show` reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct Route {
    /// Destination (`default`, `10.244.1.2`, `10.0.0.0/8`).
    pub dst: String,
    /// Gateway, if the route has one.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Output device.
    #[serde(default)]
    pub dev: Option<String>,
}

impl Netns {
    /// Creates the namespace and brings its loopback up (a runtime's loopback
    /// plugin would; servers listening on 0.0.0.0 and local probes rely on it).
    pub fn create(name: &str) -> Result<Self> {
        cmd::run("ip", ["netns", "add", name]).with_context(|| format!("creating netns {name}"))?;
        let netns = Netns {
            name: name.to_owned(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Refers to an existing namespace by name (used for leftovers).
    #[must_use]
    pub fn existing(name: &str) -> Self {
        Netns {
            name: name.to_owned(),
        }
    }

    /// The namespace's name under `/run/netns`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (what `CNI_NETNS` and `nsenter --net` take).
    #[must_use]
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Whether the namespace still exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Deletes the namespace; one that is already gone is success. Links inside it
    /// (and the veth peers they pair with) disappear with it.
    pub fn delete(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        cmd::run("ip", ["netns", "delete", &self.name])
            .with_context(|| format!("deleting netns {}", self.name))?;
        Ok(())
    }

    /// Runs `ip -n <netns> args…`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::run("ip", ["-n", self.name.as_str()].iter().chain(args))
    }

    /// Sets a sysctl inside the namespace (`net.*` sysctls are per netns, and
    /// `/proc/sys/net` shows the writer's own netns, hence `nsenter`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        cmd::run_in_netns(&self.path(), "sysctl", ["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// The links in the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        let json = self.ip(&["-json", "link", "show"])?;
        serde_json::from_str(&json).with_context(|| format!("parsing links of {}: {json}", self.name))
    }

    /// The link called `name`, if there is one.
    pub fn link(&self, name: &str) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|link| link.ifname == name))
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&self) -> Result<Vec<Route>> {
        let json = self.ip(&["-json", "-4", "route", "show"])?;
        // `ip -json` prints nothing at all (not `[]`) for an empty table.
        if json.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&json).with_context(|| format!("parsing routes of {}: {json}", self.name))
    }

    /// Names of every existing netns (for leftover cleanup).
    pub fn list_names() -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(NETNS_DIR) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).context("listing /run/netns"),
        };
        Ok(entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect())
    }
}
