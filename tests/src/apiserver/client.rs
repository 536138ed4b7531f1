//! A small blocking client of the stand-in for tests: the API verbs over
//! real HTTP, from a thread that entered the stand-in's netns (the test
//! process itself stays in the root netns, where nothing of the lab is
//! reachable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::resources::{self, ResourceType};
use super::status::ApiError;
use super::{Error, Result, enter_netns, seed};

/// An HTTP answer: status code and body.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status code.
    pub code: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON if the code is a success, else the `Status` as an
    /// [`ApiError`].
    pub fn into_json(self) -> Result<Value> {
        if self.code >= 400 {
            return Err(ApiError::from_body(self.code, &self.body).into());
        }
        serde_json::from_slice(&self.body).map_err(|err| Error::parse("the response body", err))
    }
}

/// A client of the stand-in at `address`, reached from `netns`.
#[derive(Clone, Debug)]
pub struct ApiClient {
    address: SocketAddr,
    netns: Option<PathBuf>,
    timeout: Duration,
}

fn resource(kind: &str) -> Result<&'static ResourceType> {
    resources::by_name(kind)
        .ok_or_else(|| Error::parse("a resource name", format!("the stand-in serves no {kind:?}")))
}

fn object_path(resource: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    let namespace = resource.namespaced.then(|| namespace.unwrap_or("default"));
    format!("{}/{name}", resource.collection_path(namespace))
}

impl ApiClient {
    /// A client of `address`, dialling from the netns file `netns` (`None`:
    /// from the caller's netns).
    #[must_use]
    pub fn new(address: SocketAddr, netns: Option<PathBuf>) -> Self {
        ApiClient {
            address,
            netns,
            timeout: Duration::from_secs(10),
        }
    }

    /// One request; `path` includes the query.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let (address, netns, timeout) = (self.address, self.netns.clone(), self.timeout);
        let what = format!("{method} http://{address}{path}");
        let (method, path, content_type) = (method.to_owned(), path.to_owned(), content_type.to_owned());
        let thread = std::thread::spawn(move || -> Result<Response> {
            if let Some(netns) = &netns {
                enter_netns(netns)?;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| Error::io("starting a tokio runtime", err))?;
            runtime.block_on(async {
                let exchange = exchange(address, &method, &path, &content_type, body.unwrap_or_default());
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| Error::Timeout(format!("{method} {path}")))?
            })
        });
        thread
            .join()
            .unwrap_or_else(|_| Err(Error::parse(what, "the request thread panicked")))
    }

    /// GET of `path`, as JSON.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.request("GET", path, "application/json", None)?.into_json()
    }

    fn send_json(&self, method: &str, path: &str, content_type: &str, body: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(body).map_err(|err| Error::parse("a request body", err))?;
        self.request(method, path, content_type, Some(bytes))?.into_json()
    }

    /// Creates or replaces every object in `yaml` (multi-document, `List`),
    /// as `kubectl apply` would without its three-way merge: created when
    /// missing, else replaced unconditionally. A `status` given for a
    /// resource with a status subresource is then written through it (what
    /// a controller would do) — a convenience, since the API itself ignores
    /// status on create and update. Returns the objects as stored.
    pub fn apply(&self, yaml: &str) -> Result<Vec<Value>> {
        seed::parse_documents(yaml)?
            .into_iter()
            .map(|object| self.apply_object(object))
            .collect()
    }

    /// [`ApiClient::apply`] for one object.
    pub fn apply_object(&self, mut object: Value) -> Result<Value> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let resource = resources::by_kind(&api_version, &kind).ok_or_else(|| {
            Error::parse(
                "an object",
                format!("the stand-in serves no {kind} of {api_version:?}"),
            )
        })?;
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        let status = object.get("status").cloned();
        let path = object_path(resource, namespace.as_deref(), &name);
        let existing = self.request("GET", &path, "application/json", None)?;
        let mut stored = if existing.code == 404 {
            let namespace = resource
                .namespaced
                .then(|| namespace.as_deref().unwrap_or("default"));
            self.send_json(
                "POST",
                &resource.collection_path(namespace),
                "application/json",
                &object,
            )?
        } else {
            existing.into_json()?;
            self.send_json("PUT", &path, "application/json", &object)?
        };
        if let (true, Some(status)) = (resource.status_subresource, status)
            && stored.get("status") != Some(&status)
        {
            let name = stored["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            stored["status"] = status;
            let path = format!("{}/status", object_path(resource, namespace.as_deref(), &name));
            stored = self.send_json("PUT", &path, "application/json", &stored)?;
        }
        Ok(stored)
    }

    /// Object `name` of `kind` (`Service`, `services`, `svc`…) in
    /// `namespace` (`None`: `default`, or cluster-scoped); `None` if missing.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        let response = self.request(
            "GET",
            &object_path(resource(kind)?, namespace, name),
            "application/json",
            None,
        )?;
        if response.code == 404 {
            return Ok(None);
        }
        response.into_json().map(Some)
    }

    /// The items of a list of `kind` in `namespace` (`None`: all), with an
    /// optional label selector.
    pub fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut path = resource(kind)?.collection_path(namespace);
        if let Some(selector) = label_selector {
            path.push_str("?labelSelector=");
            path.extend(form_urlencoded::byte_serialize(selector.as_bytes()));
        }
        let list = self.get_json(&path)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Applies an RFC 7386 merge patch to an object.
    pub fn merge_patch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value> {
        let target = object_path(resource(kind)?, namespace, name);
        self.send_json("PATCH", &target, "application/merge-patch+json", patch)
    }

    /// Deletes an object; `false` if there was none.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<bool> {
        let response = self.request(
            "DELETE",
            &object_path(resource(kind)?, namespace, name),
            "application/json",
            None,
        )?;
        if response.code == 404 {
            return Ok(false);
        }
        response.into_json().map(|_| true)
    }

    /// Deletes every object named in `yaml` (multi-document, `List`), as
    /// `kubectl delete -f`; objects already gone are no error.
    pub fn delete_documents(&self, yaml: &str) -> Result<()> {
        for object in seed::parse_documents(yaml)? {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let resource = resources::by_kind(api_version, kind).ok_or_else(|| {
                Error::parse(
                    "an object",
                    format!("the stand-in serves no {kind} of {api_version:?}"),
                )
            })?;
            let namespace = object["metadata"]["namespace"].as_str();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let response = self.request(
                "DELETE",
                &object_path(resource, namespace, name),
                "application/json",
                None,
            )?;
            if response.code != 404 {
                response.into_json()?;
            }
        }
        Ok(())
    }

    /// Drops the event history (`/weir-test/compact`): watches resuming
    /// from before now get 410 and must relist. Returns the version
    /// compacted to.
    pub fn compact(&self) -> Result<u64> {
        let answer = self.send_json("POST", "/weir-test/compact", "application/json", &json!({}))?;
        Ok(answer["compactedTo"].as_u64().unwrap_or_default())
    }

    /// Ends every open watch cleanly (`/weir-test/end-watches`), as when
    /// their `timeoutSeconds` run out; returns how many were open.
    pub fn end_watches(&self) -> Result<u64> {
        let answer = self.send_json("POST", "/weir-test/end-watches", "application/json", &json!({}))?;
        Ok(answer["ended"].as_u64().unwrap_or_default())
    }

    /// Ends every open watch abruptly (`/weir-test/close-watches`); returns
    /// how many there were.
    pub fn close_watches(&self) -> Result<u64> {
        let answer = self.send_json("POST", "/weir-test/close-watches", "application/json", &json!({}))?;
        Ok(answer["closed"].as_u64().unwrap_or_default())
    }

    /// Takes the server away for `length` (whole seconds): connections
    /// refused, open ones dropped.
    pub fn outage(&self, length: Duration) -> Result<()> {
        let path = format!("/weir-test/outage?seconds={}", length.as_secs());
        self.send_json("POST", &path, "application/json", &json!({}))?;
        Ok(())
    }

    /// How many watches are open (`/weir-test/stats`).
    pub fn open_watches(&self) -> Result<u64> {
        Ok(self.get_json("/weir-test/stats")?["openWatches"]
            .as_u64()
            .unwrap_or_default())
    }

    /// Waits until at least `count` watches are open.
    pub fn wait_for_watches(&self, count: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let open = self.open_watches()?;
            if open >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "waiting for {count} open watch(es), {open} open"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Connects, sends one request, reads the whole answer.
async fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Response> {
    let target = format!("{method} http://{address}{path}");
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|err| Error::io(format!("connecting to {address}"), err))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| Error::Http {
            target: target.clone(),
            source,
        })?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, address.to_string())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| Error::parse(target.clone(), err))?;
    let response = sender.send_request(request).await.map_err(|source| Error::Http {
        target: target.clone(),
        source,
    })?;
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|source| Error::Http { target, source })?
        .to_bytes()
        .to_vec();
    Ok(Response { code, body })
}
