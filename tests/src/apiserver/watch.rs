//! Watches: the newline-delimited `{"type","object"}` stream of one
//! resource, as `apiserver/pkg/endpoints/handlers/watch.go` writes it, with
//! the cacher's rules for selectors (an object that stops matching is sent
//! as `DELETED` — its previous state at the event's resourceVersion — one
//! that starts matching as `ADDED`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Event, EventKind, Replay, Store};

/// The parameters of a watch.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// Only this namespace (`None`: all, or cluster-scoped).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`, or the server's default.
    pub timeout: Duration,
}

impl WatchRequest {
    fn matches(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|namespace| object["metadata"]["namespace"].as_str() == Some(namespace))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// What a watcher with `request`'s filter is sent for `event`, if anything.
#[must_use]
pub fn translate(event: &Event, request: &WatchRequest) -> Option<(&'static str, Value)> {
    let old_matched = event.old.as_ref().is_some_and(|old| request.matches(old));
    match event.kind {
        EventKind::Added => request
            .matches(&event.object)
            .then(|| ("ADDED", event.object.clone())),
        EventKind::Deleted => old_matched.then(|| ("DELETED", event.object.clone())),
        EventKind::Modified => match (old_matched, request.matches(&event.object)) {
            (true, true) => Some(("MODIFIED", event.object.clone())),
            (false, true) => Some(("ADDED", event.object.clone())),
            (true, false) => {
                let mut old = event.old.clone().unwrap_or_default();
                old["metadata"]["resourceVersion"] = json!(event.rv.to_string());
                Some(("DELETED", old))
            }
            (false, false) => None,
        },
    }
}

/// One line of the stream.
#[must_use]
pub fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A `BOOKMARK` object: only kind, apiVersion and resourceVersion (and the
/// end-of-initial-events annotation).
#[must_use]
pub fn bookmark(resource: &ResourceType, rv: u64, initial_events_end: bool) -> Value {
    let mut object = json!({
        "kind": resource.kind,
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    object
}

/// The watch's state between two lines.
struct Running {
    store: Arc<Store>,
    resource: &'static ResourceType,
    request: WatchRequest,
    receiver: mpsc::UnboundedReceiver<Arc<Event>>,
    pending: VecDeque<Bytes>,
    deadline: Instant,
    bookmark_interval: Duration,
    last_sent: Instant,
    done: bool,
    /// The store's clean-end count when the watch began.
    clean_ends: u64,
}

/// Starts a watch. A resourceVersion older than the history is not an HTTP
/// error: the stream carries a single `ERROR` event with the 410 Status, as
/// on the real server (kube-rs relists on it). Bad parameters are errors.
pub fn start(
    store: Arc<Store>,
    resource: &'static ResourceType,
    request: WatchRequest,
    bookmark_interval: Duration,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError> {
    if request.send_initial_events && !request.allow_bookmarks {
        return Err(ApiError::invalid(
            resource,
            "",
            "allowWatchBookmarks: Required value: sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let now = Instant::now();
    let mut clean_ends = 0;
    let (pending, receiver, done) = match store.subscribe(
        resource,
        request.resource_version.as_deref(),
        request.send_initial_events,
    ) {
        Ok(subscription) => {
            let mut pending = VecDeque::new();
            match subscription.replay {
                Replay::Snapshot(objects) => {
                    for object in objects.iter().filter(|object| request.matches(object)) {
                        pending.push_back(line("ADDED", object));
                    }
                    if request.send_initial_events {
                        pending.push_back(line("BOOKMARK", &bookmark(resource, subscription.rv, true)));
                    }
                }
                Replay::History(events) => {
                    for event in &events {
                        if let Some((kind, object)) = translate(event, &request) {
                            pending.push_back(line(kind, &object));
                        }
                    }
                }
            }
            clean_ends = subscription.clean_ends;
            (pending, subscription.receiver, false)
        }
        Err(err) if err.code == 410 => {
            let (_, receiver) = mpsc::unbounded_channel();
            (VecDeque::from([line("ERROR", &err.to_status())]), receiver, true)
        }
        Err(err) => return Err(err),
    };
    let running = Running {
        store,
        resource,
        deadline: now + request.timeout,
        request,
        receiver,
        pending,
        bookmark_interval,
        last_sent: now,
        done,
        clean_ends,
    };
    Ok(futures::stream::unfold(running, Running::next))
}

impl Running {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Some((Ok(line), self));
            }
            if self.done {
                return None;
            }
            let wake = if self.request.allow_bookmarks {
                self.deadline.min(self.last_sent + self.bookmark_interval)
            } else {
                self.deadline
            };
            tokio::select! {
                event = self.receiver.recv() => {
                    let Some(event) = event else {
                        self.done = true;
                        if self.store.clean_ends() > self.clean_ends {
                            return None;
                        }
                        // Closed by the test controls: end without the
                        // terminating chunk, as a dropped connection would.
                        let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "watch closed by the stand-in");
                        return Some((Err(error), self));
                    };
                    if let Some((kind, object)) = translate(&event, &self.request) {
                        self.pending.push_back(line(kind, &object));
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= self.deadline {
                        // timeoutSeconds: a clean end of the response.
                        return None;
                    }
                    match self.store.bookmark_rv(&self.receiver) {
                        Some(rv) => self.pending.push_back(line("BOOKMARK", &bookmark(self.resource, rv, false))),
                        // Events are waiting: deliver them first.
                        None => self.last_sent = Instant::now(),
                    }
                }
            }
        }
    }
}
