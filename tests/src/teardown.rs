//! Taking a [`Node`] apart, in the order the pieces depend on each other.
//!
//! 1. the agent first (SIGTERM), so its link, route and map writes stop before
//!    pods go — through its cgroup when an earlier process started it (the
//!    persistent lab);
//! 2. servers, then `cgroup.kill` for anything else still in the node cgroup;
//! 3. `weir-cni DEL` per pod, newest first, while its netns still exists (a
//!    runtime DELs before destroying the sandbox);
//! 4. pod and node netns (veths die with them), cgroups, bpffs, work directory.
//!
//! Every step runs even when an earlier one failed; the errors are reported
//! together at the end.

use std::fmt::Write as _;

use anyhow::{Result, anyhow};

use crate::agent::STOP_GRACE;
use crate::cgroup::Cgroup;
use crate::node::{AGENT_CGROUP, Node};
use crate::tag::RUN_ROOT;

/// Runs every teardown step of `node`; see the module docs.
pub(crate) fn teardown(node: &mut Node) -> Result<()> {
    if node.torn_down {
        return Ok(());
    }
    node.torn_down = true;
    let mut errors = Vec::new();
    let mut record = |step: &str, result: Result<()>| {
        if let Err(err) = result {
            errors.push(format!("{step}: {err:#}"));
        }
    };

    match node.agent.as_mut() {
        Some(agent) => record("stopping weir-agent", agent.stop().map(drop)),
        None => record(
            "stopping weir-agent",
            Cgroup::existing(node.cgroup.path().join(AGENT_CGROUP)).terminate_all(STOP_GRACE),
        ),
    }
    for (_, server) in &mut node.servers {
        record("stopping a server", server.stop());
    }
    node.servers.clear();
    record("killing the node cgroup", node.cgroup.kill_all());
    while let Some(pod) = node.pods.pop() {
        record(
            &format!("removing pod {}", pod.key()),
            pod.remove(node.cni.as_ref(), &mut Vec::new()),
        );
    }
    for sandbox in node.sandboxes.drain(..) {
        record(&format!("deleting netns {}", sandbox.name()), sandbox.delete());
    }
    record("deleting the node netns", node.netns.delete());
    record("removing the node cgroup", node.cgroup.remove());
    record("unmounting bpffs", node.bpffs.unmount());
    record("removing the work directory", remove_dir(&node.dir));
    if node.standalone {
        // The shared root goes with the last run; another run's directory in
        // it makes this fail, which is fine.
        let _ = std::fs::remove_dir(RUN_ROOT);
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("\n")))
    }
}

/// `rm -r`, where missing is success.
pub(crate) fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
        _ => Ok(()),
    }
}

/// Everything worth reading when a test failed: agent status and log, server
/// logs, links and routes of the node.
pub(crate) fn diagnostics(node: &Node) -> String {
    let mut text = format!("=== diagnostics of node {} ({}) ===\n", node.name, node.naming);
    let _ = writeln!(text, "agent status: {:?}", node.agent_status());
    if node.agent.is_some() {
        let _ = writeln!(text, "{}", node.agent_log());
    }
    if let Ok(entries) = std::fs::read_dir(node.dir.join("logs")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let contents = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if name != "agent.log" && !contents.trim().is_empty() {
                let _ = writeln!(text, "--- {name} ---\n{}", contents.trim_end());
            }
        }
    }
    match node.netns.ip(&["-br", "addr"]) {
        Ok(addrs) => {
            let _ = writeln!(text, "--- node links ---\n{}", addrs.trim_end());
        }
        Err(err) => {
            let _ = writeln!(text, "node links: {err:#}");
        }
    }
    if let Ok(routes) = node.netns.ip(&["route"]) {
        let _ = writeln!(text, "--- node routes ---\n{}", routes.trim_end());
    }
    text.push_str("=== end of diagnostics ===");
    text
}
