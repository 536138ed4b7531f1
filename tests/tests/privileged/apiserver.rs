//! The API server stand-in against the real kube-rs client, from a node
//! netns across the fabric: a list, a raw watch seeing ADDED, MODIFIED and
//! DELETED, and a `kube::runtime::watcher` that relists (`Init`, `InitApply`,
//! `InitDone` again) after the history is compacted and its watch is cut.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use weir_tests::apiserver::{ApiClient, ApiServerOptions, enter_netns};
use weir_tests::{API_SERVER_ADDRESS, API_SERVER_PORT, Cluster};

use crate::common::cluster;

const NAMESPACE_AND_A: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: demo, labels: {app: echo}}
spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
";

fn service_b(port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: b, namespace: demo}}
spec: {{clusterIP: 10.96.0.21, ports: [{{port: {port}}}]}}
"
    )
}

/// What the kube-rs side saw, as text the test compares: lines from two
/// concurrent streams (`raw …`, `watcher …`), each in its own order.
struct Seen {
    receiver: mpsc::Receiver<String>,
    pending: VecDeque<String>,
    log: Vec<String>,
}

impl Seen {
    /// Waits for the line `wanted` and returns the lines of the same stream
    /// (first word) that came before it; panics after 20 s.
    fn expect(&mut self, wanted: &str) -> Vec<String> {
        let stream = format!("{} ", wanted.split(' ').next().unwrap_or_default());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut before = Vec::new();
        loop {
            while let Some(index) = self.pending.iter().position(|line| line.starts_with(&stream)) {
                let line = self.pending.remove(index).unwrap_or_default();
                if line == wanted {
                    return before;
                }
                before.push(line);
            }
            match self
                .receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.log.push(line.clone());
                    self.pending.push_back(line);
                }
                Err(err) => panic!(
                    "no {wanted:?} within 20 s ({err}); the kube-rs side saw:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }
}

/// Runs the kube-rs client on a thread that entered `netns`: lists the
/// Services of `demo`, then watches them twice — a raw watch from the
/// list's version and a runtime watcher — reporting everything on the
/// channel until `stop` fires.
fn kube_client_in(
    netns: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let (sender, seen) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        enter_netns(&netns).expect("entering the node netns");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig).expect("reading the kubeconfig"),
                &KubeConfigOptions::default(),
            )
            .await
            .expect("a kube config");
            let client = Client::try_from(config).expect("a kube client");
            let services: Api<Service> = Api::namespaced(client, "demo");
            let list = services
                .list(&ListParams::default())
                .await
                .expect("listing Services");
            let names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
            let _ = sender.send(format!("list {}", names.join(",")));
            let version = list.metadata.resource_version.unwrap_or_default();

            let raw_sender = sender.clone();
            let raw_services = services.clone();
            let raw = async move {
                let mut stream = raw_services
                    .watch(&WatchParams::default(), &version)
                    .await
                    .expect("starting a raw watch")
                    .boxed();
                while let Some(event) = stream.next().await {
                    let line = match event {
                        Ok(WatchEvent::Added(service)) => format!("raw ADDED {}", service.name_any()),
                        Ok(WatchEvent::Modified(service)) => format!("raw MODIFIED {}", service.name_any()),
                        Ok(WatchEvent::Deleted(service)) => format!("raw DELETED {}", service.name_any()),
                        Ok(WatchEvent::Bookmark(_)) => continue,
                        Ok(WatchEvent::Error(status)) => format!("raw ERROR {}", status.code),
                        Err(err) => format!("raw failed {err}"),
                    };
                    let _ = raw_sender.send(line);
                }
                let _ = raw_sender.send("raw ended".to_owned());
            };
            let watched = async move {
                let mut stream = watcher(services, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let line = match event {
                        Ok(watcher::Event::Init) => "watcher Init".to_owned(),
                        Ok(watcher::Event::InitApply(service)) => {
                            format!("watcher InitApply {}", service.name_any())
                        }
                        Ok(watcher::Event::InitDone) => "watcher InitDone".to_owned(),
                        Ok(watcher::Event::Apply(service)) => format!("watcher Apply {}", service.name_any()),
                        Ok(watcher::Event::Delete(service)) => {
                            format!("watcher Delete {}", service.name_any())
                        }
                        Err(err) => format!("watcher error {err}"),
                    };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = stop => {}
                () = async { tokio::join!(raw, watched); } => {}
            }
        });
    });
    (seen, thread)
}

#[test]
#[ignore = "needs root: builds a cluster in network namespaces"]
fn kube_rs_lists_and_watches_the_stand_in_across_the_fabric() {
    let mut cluster: Cluster = cluster(1);
    let mut options = ApiServerOptions::new(env!("CARGO_BIN_EXE_weir-apiserver"));
    // No bookmark may move the watcher past the compaction below.
    options.bookmark_interval = Some(Duration::from_mins(10));
    let started = cluster.start_api_server(&options);
    let api = cluster.expect(started, "starting the API server stand-in");
    assert_eq!(api.url(), format!("http://{API_SERVER_ADDRESS}:6443"));
    let kubeconfig = std::fs::read_to_string(api.kubeconfig()).expect("reading the kubeconfig");
    assert!(
        kubeconfig.contains("server: http://198.18.0.2:6443"),
        "{kubeconfig}"
    );
    cluster.expect(
        api.apply(NAMESPACE_AND_A).map_err(Into::into),
        "applying the first objects",
    );

    let node_netns = cluster.nodes()[0].netns().path();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (receiver, thread) = kube_client_in(node_netns, api.kubeconfig().to_owned(), stopped);
    let mut seen = Seen {
        receiver,
        pending: VecDeque::new(),
        log: Vec::new(),
    };
    seen.expect("list a");
    let before = seen.expect("watcher InitDone");
    assert_eq!(before, ["watcher Init", "watcher InitApply a"]);
    let watches = api.wait_for_watches(2, Duration::from_secs(10));
    cluster.expect(watches.map_err(Into::into), "waiting for both watches");

    cluster.expect(api.apply(&service_b(80)).map_err(Into::into), "creating b");
    seen.expect("raw ADDED b");
    seen.expect("watcher Apply b");
    cluster.expect(api.apply(&service_b(81)).map_err(Into::into), "changing b");
    seen.expect("raw MODIFIED b");
    seen.expect("watcher Apply b");
    let deleted = api.delete("service", Some("demo"), "b");
    assert!(cluster.expect(deleted.map_err(Into::into), "deleting b"));
    seen.expect("raw DELETED b");
    seen.expect("watcher Delete b");

    // A write the Services watch does not see, then compaction: its version
    // is now older than the history, so resuming must fail with 410 and
    // the watcher must list again.
    let other = api.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n");
    cluster.expect(other.map_err(Into::into), "creating another namespace");
    cluster.expect(api.compact().map_err(Into::into), "compacting");
    let closed = api.close_watches();
    assert_eq!(cluster.expect(closed.map_err(Into::into), "closing watches"), 2);
    seen.expect("raw ended");
    seen.expect("watcher Init");
    let before = seen.expect("watcher InitDone");
    assert_eq!(
        before,
        ["watcher InitApply a"],
        "the relist has exactly a; all seen:\n{}",
        seen.log.join("\n")
    );
    assert!(
        seen.log
            .iter()
            .any(|line| line.contains("Expired") || line.contains("410")),
        "the resumed watch got a 410 before relisting:\n{}",
        seen.log.join("\n")
    );

    let _ = stop.send(());
    thread.join().expect("the kube-rs thread");
    drop(api);
    let torn_down = cluster.teardown();
    cluster.expect(torn_down, "tearing down");
}

#[test]
#[ignore = "needs root: builds a cluster in network namespaces"]
fn an_outage_refuses_connections_then_the_seeded_objects_are_back() {
    let mut cluster: Cluster = cluster(1);
    let seed = cluster.run_dir().join("seed");
    std::fs::create_dir_all(&seed).expect("creating the seed directory");
    std::fs::write(seed.join("objects.yaml"), NAMESPACE_AND_A).expect("writing a seed manifest");
    let mut options = ApiServerOptions::new(env!("CARGO_BIN_EXE_weir-apiserver"));
    options.seed = Some(seed);
    let started = cluster.start_api_server(&options);
    let api = cluster.expect(started, "starting the API server stand-in");
    // A client in the node netns, as an agent would dial.
    let node = ApiClient::new(
        std::net::SocketAddr::from((API_SERVER_ADDRESS, API_SERVER_PORT)),
        Some(cluster.nodes()[0].netns().path()),
    );
    let names = |client: &ApiClient| -> Vec<String> {
        let items = client.list("services", Some("demo"), Some("app=echo"));
        cluster
            .expect(items.map_err(Into::into), "listing Services")
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(&node), ["a"], "the seed is served");

    cluster.expect(
        api.outage(Duration::from_secs(2)).map_err(Into::into),
        "starting an outage",
    );
    std::thread::sleep(Duration::from_millis(300));
    let refused = node.get_json("/version");
    match refused {
        Err(weir_tests::apiserver::Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused, "{source}");
        }
        other => panic!("expected a refused connection during the outage, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.get_json("/version").is_err() {
        assert!(
            Instant::now() < deadline,
            "the stand-in did not come back after its outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(names(&node), ["a"], "nothing is lost in an outage");
}
