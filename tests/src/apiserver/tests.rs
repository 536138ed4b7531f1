//! Unit tests of the stand-in, in-process: hyper's client over a
//! `tokio::io::duplex` pipe to [`ApiServer::serve_connection`] — no socket.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::resources::find;
use super::{ApiServer, Config, FieldSelector, LabelSelector, merge_patch};

pub(super) fn server() -> ApiServer {
    ApiServer::new(Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    })
}

/// Sends one request over a fresh in-memory connection.
pub(super) async fn send(
    server: &ApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> hyper::Response<Incoming> {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_connection(server_io).await });
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "stand-in")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap();
    sender.send_request(request).await.expect("request")
}

/// One request, the whole answer as (code, JSON).
pub(super) async fn call(server: &ApiServer, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let response = send(server, method, path, content_type, body).await;
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub(super) fn service(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": app}},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}})
}

pub(super) const SERVICES: &str = "/api/v1/namespaces/demo/services";

pub(super) fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn label_selectors_parse_and_match_as_kubernetes() {
    let object = json!({"metadata": {"labels": {"app": "echo", "tier": "web", "example.com/x": "1"}}});
    let matches = |selector: &str| LabelSelector::parse(selector).unwrap().matches(&object);
    for selector in [
        "",
        "app=echo",
        "app==echo",
        "app!=db",
        "missing!=x",
        "tier in (web, api)",
        "tier notin (db)",
        "missing notin (x)",
        "app",
        "!missing",
        "app=echo,tier in (web),!missing",
        "example.com/x=1",
    ] {
        assert!(matches(selector), "{selector:?} should match");
    }
    for selector in [
        "app=db",
        "app!=echo",
        "tier in (db)",
        "tier notin (web,db)",
        "missing",
        "!app",
        "app=echo,missing",
    ] {
        assert!(!matches(selector), "{selector:?} should not match");
    }
    for bad in ["app in (a", "app=(x)", "a b in (x)", "=x", "app>1", "app=x y"] {
        let err = LabelSelector::parse(bad).expect_err(bad);
        assert_eq!(err.code, 400, "{bad:?}");
    }
}

#[test]
fn field_selectors_know_each_resources_fields() {
    let pods = find("", "v1", "pods").unwrap();
    let pod = json!({"metadata": {"name": "p", "namespace": "demo"}, "spec": {"nodeName": "node-1"}});
    let matches = |selector: &str| FieldSelector::parse(selector, pods).unwrap().matches(&pod);
    assert!(matches("spec.nodeName=node-1,metadata.namespace==demo"));
    assert!(matches("metadata.name!=q"));
    assert!(!matches("spec.nodeName=node-2"));
    assert!(!matches("status.phase=Running"));
    assert!(
        FieldSelector::parse("status.phase=", pods).unwrap().matches(&pod),
        "a missing field is empty"
    );
    let services = find("", "v1", "services").unwrap();
    assert_eq!(
        FieldSelector::parse("spec.nodeName=x", services)
            .unwrap_err()
            .code,
        400
    );
    assert_eq!(FieldSelector::parse("nonsense", pods).unwrap_err().code, 400);
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]});
    merge_patch(
        &mut target,
        &json!({"a": "z", "c": {"f": null}, "list": [3], "new": {"x": 1}}),
    );
    assert_eq!(
        target,
        json!({"a": "z", "c": {"d": "e"}, "list": [3], "new": {"x": 1}})
    );
}

#[tokio::test]
async fn writes_stamp_metadata_and_errors_are_status_objects() {
    let server = server();
    let (code, created) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "demo");
    assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(
        created["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(created["status"], json!({"loadBalancer": {}}));

    let (code, status) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    assert_eq!(
        (code, status["kind"].as_str(), status["reason"].as_str()),
        (409, Some("Status"), Some("AlreadyExists"))
    );
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["details"]["name"], "a");
    let (code, status) = call(&server, "GET", &format!("{SERVICES}/missing"), &Value::Null).await;
    assert_eq!(
        (code, status["reason"].as_str(), status["code"].as_u64()),
        (404, Some("NotFound"), Some(404))
    );
    let (code, _) = call(&server, "POST", "/api/v1/services", &service("b", "echo")).await;
    assert_eq!(code, 405, "namespaced objects are created under their namespace");
    let (code, _) = call(&server, "GET", "/api/v1/configmaps", &Value::Null).await;
    assert_eq!(code, 404);

    // Status is the status subresource's: ignored on the main resource.
    let mut update = created.clone();
    update["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
    update["metadata"]["labels"]["new"] = json!("yes");
    let (code, updated) = call(&server, "PUT", &format!("{SERVICES}/a"), &update).await;
    assert_eq!(code, 200);
    assert_eq!(updated["status"], json!({"loadBalancer": {}}));
    assert_eq!(updated["metadata"]["generation"], 1, "labels are not spec");
    let mut update = updated.clone();
    update["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
    let (code, updated) = call(&server, "PUT", &format!("{SERVICES}/a/status"), &update).await;
    assert_eq!(code, 200);
    assert_eq!(updated["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");

    let (code, deleted) = call(&server, "DELETE", &format!("{SERVICES}/a"), &Value::Null).await;
    assert_eq!((code, deleted["metadata"]["name"].as_str()), (200, Some("a")));
    assert!(rv(&deleted) > rv(&updated));
    let (code, _) = call(&server, "DELETE", &format!("{SERVICES}/a"), &Value::Null).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_stale_resource_version_conflicts_and_no_ops_write_nothing() {
    let server = server();
    let (_, first) = call(&server, "POST", SERVICES, &service("a", "echo")).await;
    let mut change = first.clone();
    change["spec"]["ports"][0]["port"] = json!(81);
    let (code, second) = call(&server, "PUT", &format!("{SERVICES}/a"), &change).await;
    assert_eq!(code, 200);
    assert_eq!(second["metadata"]["generation"], 2);
    // `change` still carries the first resourceVersion.
    change["spec"]["ports"][0]["port"] = json!(82);
    let (code, status) = call(&server, "PUT", &format!("{SERVICES}/a"), &change).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    let (code, status) = call(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        &json!({"metadata": {"resourceVersion": rv(&first).to_string()}}),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("Conflict")),
        "a resourceVersion in a patch is a precondition"
    );

    let (code, same) = call(&server, "PUT", &format!("{SERVICES}/a"), &second).await;
    assert_eq!(
        (code, rv(&same)),
        (200, rv(&second)),
        "a no-op update writes nothing"
    );
    let (code, patched) = call(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        &json!({"metadata": {"labels": {"app": null, "x": "y"}}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(patched["metadata"]["labels"], json!({"x": "y"}));
    assert_eq!(patched["spec"]["ports"][0]["port"], 81);
    let response = send(
        &server,
        "PATCH",
        &format!("{SERVICES}/a"),
        "application/strategic-merge-patch+json",
        &json!({}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 415);
    let (code, status) = call(
        &server,
        "DELETE",
        &format!("{SERVICES}/a"),
        &json!({"preconditions": {"resourceVersion": "1"}}),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
}

#[tokio::test]
async fn lists_page_a_consistent_snapshot_and_old_tokens_expire() {
    let server = server();
    for name in ["a", "b", "c", "d", "e"] {
        let app = if name == "c" { "other" } else { "echo" };
        call(&server, "POST", SERVICES, &service(name, app)).await;
    }
    let (code, page) = call(
        &server,
        "GET",
        &format!("{SERVICES}?limit=2&labelSelector=app%3Decho"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        (page["kind"].as_str(), page["apiVersion"].as_str()),
        (Some("ServiceList"), Some("v1"))
    );
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page), ["a", "b"]);
    assert!(page["items"][0].get("kind").is_none(), "list items carry no kind");
    let snapshot_rv = page["metadata"]["resourceVersion"].clone();
    let token = page["metadata"]["continue"].as_str().unwrap().to_owned();

    // Changes after the first page do not show in later pages.
    call(&server, "DELETE", &format!("{SERVICES}/d"), &Value::Null).await;
    call(&server, "POST", SERVICES, &service("bb", "echo")).await;
    let (code, page) = call(
        &server,
        "GET",
        &format!("{SERVICES}?limit=2&labelSelector=app%3Decho&continue={token}"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(names(&page), ["d", "e"]);
    assert_eq!(page["metadata"]["resourceVersion"], snapshot_rv);
    assert!(
        page["metadata"].get("continue").is_none(),
        "the last page has no continue token"
    );

    // A list at resourceVersion 0 ("any") is the current state.
    let (_, all) = call(
        &server,
        "GET",
        &format!("{SERVICES}?resourceVersion=0&resourceVersionMatch=NotOlderThan&limit=500"),
        &Value::Null,
    )
    .await;
    assert_eq!(names(&all), ["a", "b", "bb", "c", "e"]);
    let (_, everywhere) = call(
        &server,
        "GET",
        "/api/v1/services?fieldSelector=metadata.name%3Dbb",
        &Value::Null,
    )
    .await;
    assert_eq!(names(&everywhere), ["bb"]);

    call(&server, "POST", "/weir-test/compact", &Value::Null).await;
    let (code, status) = call(
        &server,
        "GET",
        &format!("{SERVICES}?limit=2&continue={token}"),
        &Value::Null,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (410, Some("Expired")));
    let (code, _) = call(
        &server,
        "GET",
        &format!("{SERVICES}?continue=garbage"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn discovery_lists_the_served_resources() {
    let server = server();
    let (_, core) = call(&server, "GET", "/api/v1", &Value::Null).await;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["name"].as_str())
        .collect();
    for name in [
        "services",
        "services/status",
        "pods",
        "nodes",
        "namespaces",
        "events",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let (_, groups) = call(&server, "GET", "/apis", &Value::Null).await;
    assert_eq!(groups["kind"], "APIGroupList");
    let (slices_code, slices) = call(&server, "GET", "/apis/discovery.k8s.io/v1", &Value::Null).await;
    assert_eq!(
        (slices_code, slices["resources"][0]["kind"].as_str()),
        (200, Some("EndpointSlice"))
    );
    let (version_code, version) = call(&server, "GET", "/version", &Value::Null).await;
    assert_eq!((version_code, version["major"].as_str()), (200, Some("1")));
}
