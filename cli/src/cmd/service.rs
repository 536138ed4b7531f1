//! `weir service list|get`: the Services as the agent programmed them —
//! shaped like `kubectl get svc`, plus the backends with their state and
//! what the datapath does with them (algorithm, affinity, traffic policies).

use std::fmt::Write as _;

use serde::Serialize;
use weir_agent::ops::api::ServiceDoc;

use crate::Args;
use crate::exit::Failure;
use crate::output::{self, Render, Table};

/// The `service` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every Service the node serves.
    ///
    /// Example: weir service list -o json
    List,
    /// One Service, `NAMESPACE/NAME`, with each frontend's backends.
    ///
    /// Example: weir service get demo/echo
    Get {
        /// `NAMESPACE/NAME`.
        name: String,
    },
}

/// `service list`: the agent's `/v1/services` array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Services(pub Vec<ServiceDoc>);

/// `service get`: one element of it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct OneService(pub ServiceDoc);

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<u8> {
    match command {
        Command::List => {
            let services: Vec<ServiceDoc> = crate::agent::get_json(&args.agent, "/v1/services")?;
            output::print(&Services(services), args.output)?;
        }
        Command::Get { name } => {
            let (namespace, service) = parse_name(name)?;
            let services: Vec<ServiceDoc> = crate::agent::get_json(&args.agent, "/v1/services")?;
            let found = services
                .into_iter()
                .find(|s| s.namespace == namespace && s.name == service)
                .ok_or_else(|| Failure::NotFound(format!("service {namespace}/{service}")))?;
            output::print(&OneService(found), args.output)?;
        }
    }
    Ok(crate::exit::OK)
}

/// `NAMESPACE/NAME`, both non-empty.
fn parse_name(name: &str) -> anyhow::Result<(&str, &str)> {
    match name.split_once('/') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => Ok((ns, n)),
        _ => anyhow::bail!("expected NAMESPACE/NAME, got {name:?}"),
    }
}

/// `None`, or `ClientIP (10800s)`.
fn affinity(s: &ServiceDoc) -> String {
    match s.affinity_timeout_seconds {
        Some(t) => format!("{} ({t}s)", s.session_affinity),
        None => s.session_affinity.clone(),
    }
}

/// A frontend with its kind unless it is the ClusterIP (the common case).
fn frontend(address: &str, kind: &str) -> String {
    if kind == "clusterIP" {
        address.to_owned()
    } else {
        format!("{address} ({kind})")
    }
}

impl Render for Services {
    fn table(&self) -> String {
        let mut t = Table::new(&[
            "NAMESPACE/NAME",
            "TYPE",
            "FRONTENDS",
            "BACKENDS",
            "ALGORITHM",
            "AFFINITY",
            "ETP/ITP",
        ]);
        for s in &self.0 {
            let frontends: Vec<String> = s
                .frontends
                .iter()
                .map(|f| frontend(&f.address, &f.kind))
                .collect();
            let backends: Vec<String> = s
                .backends
                .iter()
                .map(|b| format!("{}({})", b.address, b.state))
                .collect();
            t.row(vec![
                format!("{}/{}", s.namespace, s.name),
                s.service_type.clone(),
                frontends.join(","),
                if backends.is_empty() {
                    "<none>".into()
                } else {
                    backends.join(",")
                },
                s.algorithm.clone(),
                affinity(s),
                format!("{}/{}", s.external_traffic_policy, s.internal_traffic_policy),
            ]);
        }
        t.render()
    }
}

impl Render for OneService {
    fn table(&self) -> String {
        let s = &self.0;
        let mut out = String::new();
        let _ = writeln!(out, "Service:           {}/{}", s.namespace, s.name);
        let _ = writeln!(out, "Type:              {}", s.service_type);
        let _ = writeln!(out, "Algorithm:         {}", s.algorithm);
        let _ = writeln!(out, "Session affinity:  {}", affinity(s));
        let _ = writeln!(out, "External policy:   {}", s.external_traffic_policy);
        let _ = writeln!(out, "Internal policy:   {}", s.internal_traffic_policy);
        let mut frontends = Table::new(&["FRONTEND", "KIND", "SENDS NEW CONNECTIONS TO"]);
        for f in &s.frontends {
            let to = if f.backends.is_empty() {
                "<none: refused>".to_owned()
            } else {
                f.backends.join(", ")
            };
            frontends.row(vec![f.address.clone(), f.kind.clone(), to]);
        }
        out.push('\n');
        out.push_str(&frontends.render());
        let mut backends = Table::new(&["BACKEND", "NODE", "STATE", "IN USE"]);
        for b in &s.backends {
            backends.row(vec![
                b.address.clone(),
                b.node.clone().unwrap_or_else(|| "-".into()),
                b.state.clone(),
                if b.in_use { "yes" } else { "no" }.into(),
            ]);
        }
        out.push('\n');
        out.push_str(&backends.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use weir_agent::ops::api::{BackendDoc, FrontendDoc};

    use super::*;

    fn doc() -> ServiceDoc {
        ServiceDoc {
            namespace: "demo".into(),
            name: "echo".into(),
            service_type: "NodePort".into(),
            frontends: vec![
                FrontendDoc {
                    address: "10.96.0.10:80/TCP".into(),
                    kind: "clusterIP".into(),
                    backends: vec!["10.244.1.3:8080/TCP".into()],
                },
                FrontendDoc {
                    address: "198.18.0.11:30080/TCP".into(),
                    kind: "nodePort".into(),
                    backends: vec![],
                },
            ],
            backends: vec![BackendDoc {
                address: "10.244.1.3:8080/TCP".into(),
                node: Some("node-1".into()),
                state: "ready".into(),
                in_use: true,
            }],
            algorithm: "random".into(),
            session_affinity: "ClientIP".into(),
            affinity_timeout_seconds: Some(30),
            external_traffic_policy: "Local".into(),
            internal_traffic_policy: "Cluster".into(),
        }
    }

    #[test]
    fn list_row_shows_frontends_backends_and_policies() {
        let table = Services(vec![doc()]).table();
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row.join(" "),
            "demo/echo NodePort 10.96.0.10:80/TCP,198.18.0.11:30080/TCP (nodePort) \
             10.244.1.3:8080/TCP(ready) random ClientIP (30s) Local/Cluster",
            "{table}"
        );
    }

    #[test]
    fn get_says_when_a_frontend_refuses() {
        let table = OneService(doc()).table();
        assert!(table.contains("<none: refused>"), "{table}");
        assert!(table.contains("node-1"), "{table}");
    }

    #[test]
    fn names_need_a_namespace() {
        assert_eq!(parse_name("demo/echo").unwrap(), ("demo", "echo"));
        assert!(parse_name("echo").is_err());
        assert!(parse_name("/echo").is_err());
        assert!(parse_name("a/b/c").is_err());
    }
}
