//! Unit tests of watches, in-process like [`super::tests`]: replay,
//! compaction, bookmarks, initial events, selector transitions.

use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::ApiServer;
use super::tests::{SERVICES, call, rv, send, server, service};

/// What the reader of a watch saw next.
#[derive(Debug, PartialEq)]
enum Next {
    Event(String, Value),
    /// The response ended with its terminating chunk.
    End,
    /// The connection broke mid-stream.
    Aborted,
    Nothing,
}

struct Watch {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Watch {
    async fn open(server: &ApiServer, path: &str) -> Self {
        let response = send(server, "GET", path, "application/json", &Value::Null).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["transfer-encoding"], "chunked");
        Watch {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }

    async fn next(&mut self, wait: Duration) -> Next {
        loop {
            if let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line).expect("a JSON line");
                return Next::Event(
                    event["type"].as_str().unwrap().to_owned(),
                    event["object"].clone(),
                );
            }
            match tokio::time::timeout(wait, self.body.frame()).await {
                Err(_) => return Next::Nothing,
                Ok(None) => return Next::End,
                Ok(Some(Err(_))) => return Next::Aborted,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that is not a bookmark: (type, name).
    async fn event(&mut self) -> (String, String) {
        loop {
            match self.next(Duration::from_secs(5)).await {
                Next::Event(kind, _) if kind == "BOOKMARK" => {}
                Next::Event(kind, object) => {
                    return (
                        kind,
                        object["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                    );
                }
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn watches_replay_from_a_version_then_stream_live_events() {
    let server = server();
    let (_, a) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    call(&server, "POST", SERVICES, &service("b", "echo")).await;
    call(
        &server,
        "POST",
        "/api/v1/namespaces/other/services",
        &service("elsewhere", "echo"),
    )
    .await;
    let mut watch = Watch::open(&server, &format!("{SERVICES}?watch=1&resourceVersion={}", rv(&a))).await;
    assert_eq!(watch.event().await, ("ADDED".to_owned(), "b".to_owned()));
    call(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        &json!({"spec": {"ports": [{"port": 81}]}}),
    )
    .await;
    assert_eq!(watch.event().await, ("MODIFIED".to_owned(), "a".to_owned()));
    call(&server, "DELETE", &format!("{SERVICES}/b"), &Value::Null).await;
    let Next::Event(kind, object) = watch.next(Duration::from_secs(5)).await else {
        panic!("no event")
    };
    assert_eq!(
        (kind.as_str(), object["kind"].as_str()),
        ("DELETED", Some("Service")),
        "watch objects carry their kind"
    );
    assert_eq!(
        watch.next(Duration::from_millis(300)).await,
        Next::Nothing,
        "no bookmarks unless asked"
    );

    // resourceVersion 0: the current objects first.
    let mut watch = Watch::open(&server, &format!("{SERVICES}?watch=true&resourceVersion=0")).await;
    assert_eq!(watch.event().await, ("ADDED".to_owned(), "a".to_owned()));
    assert_eq!(watch.next(Duration::from_millis(200)).await, Next::Nothing);

    // close-watches ends every watch without the terminating chunk.
    call(&server, "POST", "/weir-test/close-watches", &Value::Null).await;
    assert_eq!(watch.next(Duration::from_secs(5)).await, Next::Aborted);
}

#[tokio::test]
async fn watches_from_before_a_compaction_get_a_410_error_event() {
    let server = server();
    let (_, a) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    call(&server, "POST", SERVICES, &service("b", "echo")).await;
    call(&server, "POST", "/weir-test/compact", &Value::Null).await;
    let mut watch = Watch::open(&server, &format!("{SERVICES}?watch=1&resourceVersion={}", rv(&a))).await;
    let Next::Event(kind, status) = watch.next(Duration::from_secs(5)).await else {
        panic!("no event")
    };
    assert_eq!(kind, "ERROR");
    assert_eq!(
        (
            status["kind"].as_str(),
            status["code"].as_u64(),
            status["reason"].as_str()
        ),
        (Some("Status"), Some(410), Some("Expired"))
    );
    assert_eq!(watch.next(Duration::from_secs(5)).await, Next::End);
    // The current version is still fine.
    let (_, list) = call(&server, "GET", SERVICES, &Value::Null).await;
    let current = list["metadata"]["resourceVersion"].as_str().unwrap();
    let mut watch = Watch::open(&server, &format!("{SERVICES}?watch=1&resourceVersion={current}")).await;
    assert_eq!(watch.next(Duration::from_millis(200)).await, Next::Nothing);
}

#[tokio::test]
async fn watches_send_bookmarks_when_quiet_and_end_at_their_timeout() {
    let server = server();
    let (_, a) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    // Writes to other resources move the global version on.
    call(
        &server,
        "POST",
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "demo"}}),
    )
    .await;
    let mut watch = Watch::open(
        &server,
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=1",
            rv(&a)
        ),
    )
    .await;
    let Next::Event(kind, object) = watch.next(Duration::from_secs(2)).await else {
        panic!("no bookmark")
    };
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(
        object,
        json!({"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": (rv(&a) + 1).to_string()}})
    );
    loop {
        match watch.next(Duration::from_secs(3)).await {
            Next::Event(kind, _) if kind == "BOOKMARK" => {}
            Next::End => break,
            other => panic!("expected bookmarks then the end, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn initial_events_end_with_an_annotated_bookmark() {
    let server = server();
    call(&server, "POST", SERVICES, &service("a", "echo")).await;
    let path = format!(
        "{SERVICES}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
    );
    let mut watch = Watch::open(&server, &path).await;
    assert_eq!(watch.event().await, ("ADDED".to_owned(), "a".to_owned()));
    let Next::Event(kind, object) = watch.next(Duration::from_secs(2)).await else {
        panic!("no bookmark")
    };
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(
        object["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn objects_leaving_a_selection_are_deleted_for_the_watch() {
    let server = server();
    let (_, a) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    let mut watch = Watch::open(
        &server,
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}&labelSelector=app%3Decho",
            rv(&a)
        ),
    )
    .await;
    call(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        &json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    let Next::Event(kind, object) = watch.next(Duration::from_secs(5)).await else {
        panic!("no event")
    };
    assert_eq!(kind, "DELETED");
    assert_eq!(
        object["metadata"]["labels"]["app"], "echo",
        "the state that matched, at the new version"
    );
    assert_eq!(rv(&object), rv(&a) + 1);
    call(&server, "POST", SERVICES, &service("b", "db")).await;
    call(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        &json!({"metadata": {"labels": {"app": "echo"}}}),
    )
    .await;
    assert_eq!(watch.event().await, ("ADDED".to_owned(), "a".to_owned()));
}
