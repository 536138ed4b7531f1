//! The HTTP side: hyper's HTTP/1.1 server, routing to the store, watches as
//! streamed bodies, the `/weir-test/` controls and the outage switch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch as signal};
use tokio::time::Instant;

use super::route::{self, Target};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{ListRequest, Store};
use super::watch::{self, WatchRequest};
use super::{Error, Result, discovery};

/// Tunables of the stand-in.
#[derive(Clone, Debug)]
pub struct Config {
    /// Quiet time after which a watch with `allowWatchBookmarks` gets a
    /// `BOOKMARK` (the real server: about a minute).
    pub bookmark_interval: Duration,
    /// Events kept for watches to resume from; older ones are compacted.
    pub history_limit: usize,
    /// Watch duration without `timeoutSeconds` (the real server: 30–60 min).
    pub default_watch_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            default_watch_timeout: Duration::from_mins(30),
        }
    }
}

/// The response body type: whole documents and watch streams alike.
type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    config: Config,
    /// End of the current outage, if one was asked for.
    outage_until: Mutex<Option<Instant>>,
    /// Wakes the accept loop to close its listener.
    outage: Notify,
    /// Bumped to drop every open connection.
    epoch: signal::Sender<u64>,
    /// What `/api` reports as the server address.
    address: Mutex<String>,
}

/// The API server stand-in: cheap to clone, every clone serves the same
/// store.
#[derive(Clone, Debug)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let body = Full::new(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> std::result::Result<Option<T>, ApiError> {
    query
        .get(name)
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid {name} {text:?}")))
        })
        .transpose()
}

/// Reads a request body as JSON or YAML (by `Content-Type`).
fn parse_body(content_type: &str, bytes: &[u8]) -> std::result::Result<Value, ApiError> {
    if content_type.contains("yaml") {
        serde_yaml::from_slice(bytes)
            .map_err(|err| ApiError::bad_request(format!("invalid YAML body: {err}")))
    } else {
        serde_json::from_slice(bytes)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
    }
}

impl ApiServer {
    /// A server with an empty store (but for the built-in namespaces).
    #[must_use]
    pub fn new(config: Config) -> Self {
        ApiServer {
            inner: Arc::new(Inner {
                store: Arc::new(Store::new(config.history_limit)),
                config,
                outage_until: Mutex::new(None),
                outage: Notify::new(),
                epoch: signal::channel(0).0,
                address: Mutex::new(String::new()),
            }),
        }
    }

    /// The store, to seed or inspect in-process.
    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Serves HTTP/1.1 on one connection (a TCP stream, or one end of a
    /// `tokio::io::duplex` in unit tests) until the client closes it or an
    /// outage drops it.
    pub async fn serve_connection<I>(&self, io: I) -> Result<()>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        let mut epoch = self.inner.epoch.subscribe();
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
        tokio::select! {
            result = connection => result.map_err(|source| Error::Http { target: "a client".to_owned(), source }),
            // Dropping the connection closes the socket mid-whatever.
            _ = epoch.changed() => Ok(()),
        }
    }

    /// Accepts connections on `listener` forever. An outage
    /// (`/weir-test/outage?seconds=N`) closes the listening socket — new
    /// connections are refused, as with an API server that is down — drops
    /// every open connection and watch, and binds the same address again
    /// when it is over.
    pub async fn serve(&self, listener: TcpListener) -> Result<()> {
        let address = listener
            .local_addr()
            .map_err(|err| Error::io("reading the listening address", err))?;
        *lock(&self.inner.address) = address.to_string();
        let mut listener = Some(listener);
        loop {
            if let Some(bound) = &listener {
                tokio::select! {
                    accepted = bound.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let server = self.clone();
                            tokio::spawn(async move {
                                if let Err(err) = server.serve_connection(stream).await {
                                    tracing::debug!("connection from {peer}: {err}");
                                }
                            });
                        }
                        Err(err) => tracing::warn!("accept: {err}"),
                    },
                    () = self.inner.outage.notified() => {
                        listener = None;
                        tracing::info!("outage: listener closed");
                    }
                }
            } else {
                let until = lock(&self.inner.outage_until).unwrap_or_else(Instant::now);
                tokio::time::sleep_until(until).await;
                listener = Some(rebind(address).await?);
                *lock(&self.inner.outage_until) = None;
                tracing::info!("outage over: listening on {address} again");
            }
        }
    }

    /// Answers one request; every failure is a `Status`.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let response = match self.route(request).await {
            Ok(response) => response,
            Err(err) => json_response(err.code, &err.to_status()),
        };
        tracing::debug!("{method} {uri} -> {}", response.status().as_u16());
        response
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the dispatch table of verbs and paths reads best in one piece"
    )]
    async fn route(&self, request: Request<Incoming>) -> std::result::Result<Response<Body>, ApiError> {
        let query: HashMap<String, String> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        if query.get("dryRun").is_some_and(|value| !value.is_empty()) {
            return Err(ApiError::bad_request("dryRun is not supported by the stand-in"));
        }
        let target = route::parse(request.uri().path()).ok_or_else(ApiError::no_such_path)?;
        let method = request.method().clone();
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let body = request
            .into_body()
            .collect()
            .await
            .map_err(|err| ApiError::bad_request(format!("reading the request body: {err}")))?
            .to_bytes();
        let store = &self.inner.store;
        let ok = |value: Value| Ok(json_response(200, &value));
        match (method, target) {
            (Method::GET, Target::Version) => ok(discovery::version()),
            (Method::GET, Target::CoreVersions) => ok(discovery::api_versions(&lock(&self.inner.address))),
            (Method::GET, Target::Groups) => ok(discovery::api_group_list()),
            (Method::GET, Target::Group(group)) => {
                discovery::api_group(&group).map_or_else(|| Err(ApiError::no_such_path()), ok)
            }
            (Method::GET, Target::Resources(group, version)) => {
                discovery::resource_list(&group, &version).map_or_else(|| Err(ApiError::no_such_path()), ok)
            }
            (Method::GET, Target::Health) => ok(json!("ok")),
            (method, Target::Control(control)) => self.control(&method, &control, &query),
            (Method::GET, Target::Collection { resource, namespace }) => {
                self.read_collection(resource, namespace, &query)
            }
            (Method::POST, Target::Collection { resource, namespace }) => {
                let object =
                    store.create(resource, namespace.as_deref(), parse_body(&content_type, &body)?)?;
                Ok(json_response(201, &object))
            }
            (
                Method::GET,
                Target::Object {
                    resource,
                    namespace,
                    name,
                    ..
                },
            ) => ok(store.get(resource, namespace.as_deref(), &name)?),
            (
                Method::PUT,
                Target::Object {
                    resource,
                    namespace,
                    name,
                    status,
                },
            ) => {
                let existed = store.get(resource, namespace.as_deref(), &name).is_ok();
                let object = store.replace(
                    resource,
                    namespace.as_deref(),
                    &name,
                    parse_body(&content_type, &body)?,
                    status,
                )?;
                Ok(json_response(if existed { 200 } else { 201 }, &object))
            }
            (
                Method::PATCH,
                Target::Object {
                    resource,
                    namespace,
                    name,
                    status,
                },
            ) => {
                if !content_type.starts_with("application/merge-patch+json") {
                    return Err(ApiError::unsupported_media_type(&content_type));
                }
                let patch = parse_body("application/json", &body)?;
                ok(store.merge_patch(resource, namespace.as_deref(), &name, &patch, status)?)
            }
            (
                Method::DELETE,
                Target::Object {
                    resource,
                    namespace,
                    name,
                    status: false,
                },
            ) => {
                let options = if body.is_empty() {
                    None
                } else {
                    Some(parse_body(&content_type, &body)?)
                };
                ok(store.delete(resource, namespace.as_deref(), &name, options.as_ref())?)
            }
            (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
        }
    }

    /// GET of a collection: a list, or a watch with `watch=1`.
    fn read_collection(
        &self,
        resource: &'static super::resources::ResourceType,
        namespace: Option<String>,
        query: &HashMap<String, String>,
    ) -> std::result::Result<Response<Body>, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str), resource)?;
        if flag(query, "watch") {
            let timeout = number::<u64>(query, "timeoutSeconds")?
                .filter(|seconds| *seconds > 0)
                .map_or(self.inner.config.default_watch_timeout, Duration::from_secs);
            let request = WatchRequest {
                namespace,
                labels,
                fields,
                resource_version: query.get("resourceVersion").cloned(),
                allow_bookmarks: flag(query, "allowWatchBookmarks"),
                send_initial_events: flag(query, "sendInitialEvents"),
                timeout,
            };
            let stream = watch::start(
                Arc::clone(&self.inner.store),
                resource,
                request,
                self.inner.config.bookmark_interval,
            )?;
            let body = StreamBody::new(stream.map_ok(Frame::data)).boxed();
            let mut response = Response::new(body);
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        let request = ListRequest {
            namespace,
            labels,
            fields,
            limit: number(query, "limit")?.unwrap_or(0),
            continue_token: query.get("continue").cloned(),
            resource_version: query.get("resourceVersion").cloned(),
            resource_version_match: query.get("resourceVersionMatch").cloned(),
        };
        Ok(json_response(200, &self.inner.store.list(resource, &request)?))
    }

    /// The `/weir-test/` controls.
    fn control(
        &self,
        method: &Method,
        control: &str,
        query: &HashMap<String, String>,
    ) -> std::result::Result<Response<Body>, ApiError> {
        let store = &self.inner.store;
        match (method, control) {
            (&Method::GET, "stats") => Ok(json_response(
                200,
                &json!({"resourceVersion": store.resource_version(), "openWatches": store.open_watches()}),
            )),
            (&Method::POST, "compact") => Ok(json_response(200, &json!({"compactedTo": store.compact()}))),
            (&Method::POST, "close-watches") => {
                Ok(json_response(200, &json!({"closed": store.close_watches()})))
            }
            (&Method::POST, "end-watches") => Ok(json_response(200, &json!({"ended": store.end_watches()}))),
            (&Method::POST, "outage") => {
                let seconds = number::<u64>(query, "seconds")?.unwrap_or(5);
                self.begin_outage(Duration::from_secs(seconds));
                Ok(json_response(200, &json!({"outageSeconds": seconds})))
            }
            (_, "stats" | "compact" | "close-watches" | "end-watches" | "outage") => {
                Err(ApiError::method_not_allowed(method.as_str()))
            }
            _ => Err(ApiError::no_such_path()),
        }
    }

    /// Starts an outage of `length`, a moment from now so that the answer
    /// to the request asking for it still goes out.
    pub fn begin_outage(&self, length: Duration) {
        *lock(&self.inner.outage_until) = Some(Instant::now() + length);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            inner.store.close_watches();
            inner.outage.notify_one();
            inner.epoch.send_modify(|epoch| *epoch += 1);
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Binds `address` again after an outage; the old socket's connections may
/// hold the port for a moment.
async fn rebind(address: SocketAddr) -> Result<TcpListener> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(err) if attempt < 50 => {
                tracing::debug!("rebinding {address}: {err}");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(Error::io(format!("binding {address} after an outage"), err)),
        }
    }
}
