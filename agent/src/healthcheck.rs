//! `healthCheckNodePort` servers for `externalTrafficPolicy: Local`
//! Services: external load balancers probe every node and send traffic only
//! to those that answer 200, i.e. that have local endpoints (same answers
//! as kube-proxy's pkg/proxy/healthcheck).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::desired::HealthCheck;
use crate::ops::http::{self, Response};

/// One listener per `healthCheckNodePort`, following the desired state.
#[derive(Default)]
pub struct HealthServers {
    servers: BTreeMap<u16, Server>,
}

struct Server {
    check: Arc<Mutex<HealthCheck>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HealthServers {
    /// Starts, updates and stops listeners to match `checks`. Must run
    /// inside a tokio runtime. A port that cannot be bound is reported and
    /// tried again on the next update.
    pub async fn update(&mut self, checks: &BTreeMap<u16, HealthCheck>) {
        self.servers.retain(|port, _| checks.contains_key(port));
        for (port, check) in checks {
            if let Some(server) = self.servers.get(port) {
                *server
                    .check
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = check.clone();
                continue;
            }
            // All node addresses, as kube-proxy does by default.
            let listener = match TcpListener::bind((Ipv4Addr::UNSPECIFIED, *port)).await {
                Ok(listener) => listener,
                Err(e) => {
                    warn!(port, error = %e, "cannot serve healthCheckNodePort");
                    continue;
                }
            };
            let shared = Arc::new(Mutex::new(check.clone()));
            let task = tokio::spawn(serve(listener, Arc::clone(&shared)));
            self.servers.insert(*port, Server { check: shared, task });
        }
    }

    /// The ports being served.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }
}

async fn serve(listener: TcpListener, check: Arc<Mutex<HealthCheck>>) {
    // Any request gets the status, whatever its path (as kube-proxy's).
    let handler = move |_path| {
        let current = check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        async move { answer(&current) }
    };
    http::serve(listener, "healthCheckNodePort", handler).await;
}

fn answer(check: &HealthCheck) -> Response {
    let body = serde_json::json!({
        "service": {"namespace": check.service.namespace, "name": check.service.name},
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if check.local_endpoints > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    Response {
        status,
        content_type: "application/json",
        headers: vec![(
            "X-Load-Balancing-Endpoint-Weight",
            check.local_endpoints.to_string(),
        )],
        body,
    }
}

/// The HTTP response for `check`.
#[must_use]
pub fn response(check: &HealthCheck) -> String {
    answer(check).render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::ServiceName;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    fn check(n: usize) -> HealthCheck {
        HealthCheck {
            service: ServiceName {
                namespace: "ns".into(),
                name: "web".into(),
            },
            local_endpoints: n,
        }
    }

    #[test]
    fn answers_200_with_local_endpoints_and_503_without() {
        let ok = response(&check(2));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.ends_with(
                r#"{"localEndpoints":2,"service":{"name":"web","namespace":"ns"},"serviceProxyHealthy":true}"#
            ),
            "{ok}"
        );
        assert!(response(&check(0)).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }

    #[test]
    fn servers_follow_the_desired_ports_on_a_real_socket() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut servers = HealthServers::default();
            // Port 0 would not be found again; pick a free one first.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            servers.update(&BTreeMap::from([(port, check(1))])).await;
            assert_eq!(servers.ports(), [port]);
            let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            conn.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
            let mut reply = String::new();
            conn.read_to_string(&mut reply).await.unwrap();
            assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
            servers.update(&BTreeMap::new()).await;
            assert_eq!(servers.ports(), Vec::<u16>::new());
        });
    }
}
