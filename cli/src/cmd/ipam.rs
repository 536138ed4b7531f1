//! `weir ipam list`: the node's pod address allocations, read from the CNI
//! plugin's store (`--cni-data-dir`, one file per address) with the
//! plugin's own reader, so it works without the agent. The store does not
//! record the subnet: it comes from the conflist the agent wrote for the
//! plugin (`--cni-conf-dir`). Pod names are not in the store either; they
//! come from the agent when it answers.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ipnetwork::Ipv4Network;
use serde::Serialize;
use weir_agent::cni_config::{CONFLIST_NAME, NETWORK_NAME};
use weir_cni::ipam::{DiskStore, Pool};

use crate::Args;
use crate::cmd::bpf::endpoints;
use crate::exit::{Failure, OK};
use crate::output::{Render, Table, print};

/// The `ipam` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Allocations of the node's podCIDR: IP, container, interface, pod.
    ///
    /// Examples:
    ///   weir ipam list
    ///   weir ipam list --cni-conf-dir /etc/cni/net.d -o json
    #[command(verbatim_doc_comment)]
    List {
        /// Where the agent writes the node's CNI conflist (for the subnet).
        #[arg(long, env = "WEIR_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
        cni_conf_dir: PathBuf,
    },
}

/// `weir ipam list`.
#[derive(Debug, Serialize)]
pub struct IpamList {
    /// The store's directory (`<cni-data-dir>/<network>`).
    pub store: PathBuf,
    /// The node's pod CIDR, from the conflist; `null` if it cannot be read.
    pub subnet: Option<String>,
    /// Pod addresses the subnet has (all but network, node and broadcast).
    pub size: Option<u32>,
    /// Addresses allocated.
    pub allocated: usize,
    /// Addresses still free.
    pub free: Option<u32>,
    /// The allocations, by address.
    pub allocations: Vec<Allocation>,
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// The pod address.
    pub ip: Ipv4Addr,
    /// `CNI_CONTAINERID`; `null` for an ADD in progress (or one that died).
    pub container_id: Option<String>,
    /// `CNI_IFNAME`.
    pub interface: Option<String>,
    /// `namespace/name`, when the agent knows the address.
    pub pod: Option<String>,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<u8> {
    let Command::List { cni_conf_dir } = command;
    if !args.cni_data_dir.is_dir() {
        return Err(Failure::NotFound(format!(
            "IPAM store {} (is --cni-data-dir the plugin's dataDir?)",
            args.cni_data_dir.display()
        ))
        .into());
    }
    let store = DiskStore::new(&args.cni_data_dir, NETWORK_NAME, None);
    let held = store.list().context("reading the IPAM store")?;
    let known = endpoints::fetch_or_none(&args.agent);
    let allocations: Vec<Allocation> = held
        .into_iter()
        .map(|(ip, owner)| Allocation {
            ip,
            container_id: owner.as_ref().map(|o| o.container_id.clone()),
            interface: owner.map(|o| o.ifname),
            pod: endpoints::name_of(&known, ip),
        })
        .collect();
    let subnet = subnet(cni_conf_dir);
    print(&summary(store.dir().to_owned(), subnet, allocations), args.output)?;
    Ok(OK)
}

/// Totals for `allocations` of `subnet`.
pub fn summary(store: PathBuf, subnet: Option<Ipv4Network>, allocations: Vec<Allocation>) -> IpamList {
    let pool = subnet.and_then(Pool::new);
    let size = pool.map(|p| p.size());
    let in_pool = pool.map(|p| allocations.iter().filter(|a| p.contains(a.ip)).count());
    IpamList {
        store,
        subnet: subnet.map(|s| s.to_string()),
        size,
        allocated: allocations.len(),
        free: size
            .zip(in_pool)
            .map(|(size, used)| size.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))),
        allocations,
    }
}

/// The subnet of the weir plugin in the conflist under `conf_dir`.
fn subnet(conf_dir: &Path) -> Option<Ipv4Network> {
    let text = std::fs::read_to_string(conf_dir.join(CONFLIST_NAME)).ok()?;
    subnet_of(&text)
}

/// The subnet of the `weir-cni` plugin of a conflist's text.
pub fn subnet_of(conflist: &str) -> Option<Ipv4Network> {
    let list: serde_json::Value = serde_json::from_str(conflist).ok()?;
    list["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["type"] == "weir-cni")?["subnet"]
        .as_str()?
        .parse()
        .ok()
}

impl Render for IpamList {
    fn table(&self) -> String {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let mut out = format!(
            "subnet {}  allocated {}  free {}  (store {})\n\n",
            dash(self.subnet.clone()),
            self.allocated,
            dash(self.free.map(|f| f.to_string())),
            self.store.display()
        );
        let mut table = Table::new(&["IP", "POD", "CONTAINER", "INTERFACE"]);
        for a in &self.allocations {
            table.row(vec![
                a.ip.to_string(),
                dash(a.pod.clone()),
                a.container_id
                    .clone()
                    .unwrap_or_else(|| "(no owner yet)".to_owned()),
                dash(a.interface.clone()),
            ]);
        }
        out.push_str(&table.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(ip: [u8; 4], container: Option<&str>) -> Allocation {
        Allocation {
            ip: ip.into(),
            container_id: container.map(str::to_owned),
            interface: container.map(|_| "eth0".to_owned()),
            pod: None,
        }
    }

    #[test]
    fn the_subnet_comes_from_the_weir_plugin_of_the_conflist() {
        let text = r#"{"cniVersion":"1.1.0","name":"weir","plugins":[
            {"type":"portmap"},{"type":"weir-cni","subnet":"10.244.2.0/24","dataDir":"/x"}]}"#;
        assert_eq!(subnet_of(text), Some("10.244.2.0/24".parse().unwrap()));
        assert_eq!(subnet_of(r#"{"plugins":[{"type":"weir-cni"}]}"#), None);
        assert_eq!(subnet_of("not json"), None);
    }

    #[test]
    fn free_counts_only_addresses_of_the_pool() {
        let list = summary(
            "/s/weir".into(),
            Some("10.244.1.0/24".parse().unwrap()),
            vec![
                allocation([10, 244, 1, 2], Some("c1")),
                allocation([10, 244, 1, 3], None),
                // Left from an earlier podCIDR: allocated, not in the pool.
                allocation([10, 244, 9, 2], Some("c9")),
            ],
        );
        assert_eq!((list.size, list.allocated, list.free), (Some(253), 3, Some(251)));
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json["allocations"][1]["container_id"], serde_json::Value::Null);
        let table = list.table();
        assert!(
            table.starts_with("subnet 10.244.1.0/24  allocated 3  free 251"),
            "{table}"
        );
        assert!(table.contains("10.244.1.3  -    (no owner yet)  -"), "{table}");
    }

    #[test]
    fn without_a_subnet_there_are_no_totals() {
        let list = summary(
            "/s/weir".into(),
            None,
            vec![allocation([10, 244, 1, 2], Some("c1"))],
        );
        assert_eq!((list.size, list.free), (None, None));
    }
}
