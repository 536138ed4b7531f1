//! The agent's `GET /v1/endpoints` (which local pod has which address and
//! policy endpoint id) and `GET /v1/pods` (every pod's address). The maps know addresses only; names come from the
//! agent, so they are a best-effort decoration everywhere except where a
//! name is what the operator typed.

use std::net::Ipv4Addr;

use serde::Deserialize;

/// One local pod as the agent lists it (fields beyond these are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentEndpoint {
    /// `namespace/name`.
    pub pod: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The policy endpoint id, if the agent gave it one.
    #[serde(default)]
    pub id: Option<u32>,
}

/// The agent's endpoints; an error (exit 3 when unreachable) otherwise.
pub fn fetch(agent: &str) -> anyhow::Result<Vec<AgentEndpoint>> {
    crate::agent::get_json(agent, "/v1/endpoints")
}

/// The agent's endpoints, or none when it cannot be asked: for decorating
/// output that stands on its own without names.
pub fn fetch_or_none(agent: &str) -> Vec<AgentEndpoint> {
    fetch(agent).unwrap_or_default()
}

/// Every pod with an address the agent knows, on any node (`/v1/pods`),
/// or none when it cannot be asked: names for policy peers.
pub fn fetch_pods_or_none(agent: &str) -> Vec<AgentEndpoint> {
    crate::agent::get_json(agent, "/v1/pods").unwrap_or_default()
}

/// The pod name of `ip` among `endpoints`.
pub fn name_of(endpoints: &[AgentEndpoint], ip: Ipv4Addr) -> Option<String> {
    endpoints.iter().find(|e| e.ip == ip).map(|e| e.pod.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_list_decodes_with_extra_fields_and_without_an_id() {
        let list: Vec<AgentEndpoint> = serde_json::from_str(
            r#"[{"pod":"x/a","ip":"10.244.1.3","id":7,"node":"node-1"},{"pod":"x/b","ip":"10.244.1.4"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].id, Some(7));
        assert_eq!(list[1].id, None);
        assert_eq!(
            name_of(&list, Ipv4Addr::new(10, 244, 1, 4)).as_deref(),
            Some("x/b")
        );
        assert_eq!(name_of(&list, Ipv4Addr::new(10, 244, 1, 5)), None);
    }
}
