//! The object store: objects by resource, namespace and name, one global
//! resourceVersion (each write gets the next number, as etcd's revision), an
//! event history from which watches resume and old list pages are rebuilt,
//! and the open watches' channels.
//!
//! Everything happens under one lock, so an event is in the history and in
//! every watcher's channel at the moment its write returns: a watch that
//! registers later finds it in the history, one registered earlier in its
//! channel — never both, never neither.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::resources::ResourceType;
use super::status::ApiError;
use super::store_meta::{self as meta, ObjectKey};

pub use super::store_list::ListRequest;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Added,
    /// Replaced or patched.
    Modified,
    /// Deleted.
    Deleted,
}

/// One write, as the history and the watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The resourceVersion the write got.
    pub rv: u64,
    /// What happened.
    pub kind: EventKind,
    /// The resource of the object.
    pub resource: &'static ResourceType,
    /// The object after the write (for a delete, its last state with the
    /// deletion's resourceVersion).
    pub object: Value,
    /// The object before the write (for selector transitions and rebuilding
    /// old snapshots).
    pub old: Option<Value>,
}

/// Where a watch starts.
#[derive(Debug)]
pub enum Replay {
    /// The history after the requested resourceVersion.
    History(Vec<Arc<Event>>),
    /// Every current object of the resource (resourceVersion `""`/`"0"`, or
    /// `sendInitialEvents`), at the store's current resourceVersion.
    Snapshot(Vec<Value>),
}

/// A registered watch: what to send first, then the channel of later events.
#[derive(Debug)]
pub struct Subscription {
    /// What to send first.
    pub replay: Replay,
    /// Every later event of the resource; closed by `close_watches`.
    pub receiver: mpsc::UnboundedReceiver<Arc<Event>>,
    /// The store's resourceVersion when the watch registered.
    pub rv: u64,
    /// [`Store::clean_ends`] when the watch registered: a larger count when
    /// its channel closes means the watch is to end cleanly.
    pub clean_ends: u64,
}

#[derive(Debug)]
struct Watcher {
    resource: &'static ResourceType,
    sender: mpsc::UnboundedSender<Arc<Event>>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub rv: u64,
    /// The history holds every event with a resourceVersion above this.
    pub compacted: u64,
    pub objects: BTreeMap<ObjectKey, Value>,
    pub history: VecDeque<Arc<Event>>,
    watchers: Vec<Watcher>,
    /// How often [`Store::end_watches`] ran.
    clean_ends: u64,
}

/// The stand-in's storage; see the module docs.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    history_limit: usize,
}

impl Store {
    /// An empty store (but for the `default` and `kube-system` Namespaces a
    /// cluster always has) keeping at most `history_limit` events.
    ///
    /// # Panics
    ///
    /// Never: the built-in namespaces are valid objects of a served resource.
    #[must_use]
    pub fn new(history_limit: usize) -> Self {
        let store = Store {
            state: Mutex::new(State::default()),
            history_limit: history_limit.max(1),
        };
        let namespaces = super::resources::find("", "v1", "namespaces").expect("namespaces are served");
        for name in ["default", "kube-system"] {
            let namespace = json!({"metadata": {"name": name}});
            store
                .create(namespaces, None, namespace)
                .expect("a fresh store takes the built-in namespaces");
        }
        store
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock (a bug) must not wedge every later request.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Object `name` of `resource` in `namespace`.
    pub fn get(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = meta::key(resource, namespace, name);
        self.lock()
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// POST: creates `body` in `namespace` (the path's).
    pub fn create(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let object = meta::prepare(resource, body, namespace, None)?;
        let mut state = self.lock();
        self.insert_new(&mut state, resource, object, false)
    }

    /// Loads an object as found in a manifest (a restored etcd): created with
    /// its status as given. Namespaced objects without a namespace go to
    /// `default`.
    pub fn seed(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = super::resources::by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("the stand-in does not serve {kind} of {api_version:?}"))
        })?;
        let namespace = resource.namespaced.then(|| {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        });
        let object = meta::prepare(resource, object, namespace.as_deref(), None)?;
        let mut state = self.lock();
        self.insert_new(&mut state, resource, object, true)
    }

    fn insert_new(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        mut object: Value,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        meta::name_for_create(resource, &mut object, |candidate| {
            let key = meta::key_of(resource, candidate);
            !state.objects.contains_key(&key)
        })?;
        let key = meta::key_of(resource, &object);
        if state.objects.contains_key(&key) {
            return Err(ApiError::already_exists(resource, &key.2));
        }
        if object["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::new(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if !keep_status && let Some(status) = resource.status_on_create() {
            object["status"] = status;
        }
        meta::stamp_create(resource, &mut object);
        Ok(self.commit(state, resource, EventKind::Added, object, None))
    }

    /// PUT: replaces object `name` (or `name/status` when `status_only`).
    /// A `metadata.resourceVersion` in `body` is a precondition (409 when
    /// stale).
    pub fn replace(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let object = meta::prepare(resource, body, namespace, Some(name))?;
        let mut state = self.lock();
        self.update(&mut state, resource, object, status_only)
    }

    /// PATCH with an RFC 7386 merge patch.
    pub fn merge_patch(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        if !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let mut state = self.lock();
        let key = meta::key(resource, namespace, name);
        let mut merged = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        merge_patch(&mut merged, patch);
        let merged = meta::prepare(resource, merged, namespace, Some(name))?;
        self.update(&mut state, resource, merged, status_only)
    }

    fn update(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        mut object: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let key = meta::key_of(resource, &object);
        let Some(current) = state.objects.get(&key).cloned() else {
            if resource.create_on_update && !status_only {
                object["metadata"]
                    .as_object_mut()
                    .map(|metadata| metadata.remove("resourceVersion"));
                return self.insert_new(state, resource, object, false);
            }
            return Err(ApiError::not_found(resource, &key.2));
        };
        let wanted_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        let current_rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !wanted_rv.is_empty() && wanted_rv != current_rv {
            return Err(ApiError::conflict(
                resource,
                &key.2,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let object = meta::carry_over(resource, &current, object, status_only);
        if meta::same_content(&current, &object) {
            // The real server writes nothing for a no-op update: no new
            // resourceVersion, no watch event.
            return Ok(current);
        }
        Ok(self.commit(state, resource, EventKind::Modified, object, Some(current)))
    }

    /// DELETE: removes object `name`; `options` may carry `DeleteOptions`
    /// preconditions (`uid`, `resourceVersion`). Returns its last state.
    pub fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = meta::key(resource, namespace, name);
        let current = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let preconditions = options.map_or(&Value::Null, |options| &options["preconditions"]);
        for (field, path) in [("UID", "uid"), ("ResourceVersion", "resourceVersion")] {
            if let Some(wanted) = preconditions[path].as_str() {
                let found = current["metadata"][path].as_str().unwrap_or_default();
                if wanted != found {
                    return Err(ApiError::conflict(
                        resource,
                        name,
                        &format!(
                            "Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {found}"
                        ),
                    ));
                }
            }
        }
        let object = current.clone();
        Ok(self.commit(&mut state, resource, EventKind::Deleted, object, Some(current)))
    }

    /// Records a write: next resourceVersion, objects, history, watchers.
    fn commit(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        kind: EventKind,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        state.rv += 1;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        let key = meta::key_of(resource, &object);
        if kind == EventKind::Deleted {
            state.objects.remove(&key);
        } else {
            state.objects.insert(key, object.clone());
        }
        let event = Arc::new(Event {
            rv: state.rv,
            kind,
            resource,
            object: object.clone(),
            old,
        });
        state.history.push_back(Arc::clone(&event));
        while state.history.len() > self.history_limit {
            if let Some(dropped) = state.history.pop_front() {
                state.compacted = dropped.rv;
            }
        }
        state.watchers.retain(|watcher| {
            if std::ptr::eq(watcher.resource, resource) {
                watcher.sender.send(Arc::clone(&event)).is_ok()
            } else {
                !watcher.sender.is_closed()
            }
        });
        object
    }

    /// Registers a watch of `resource` from `resource_version` (`None`,
    /// `""` or `"0"`, or `initial_events`: every current object first). A
    /// version older than the compacted history is a 410 `Expired`.
    pub fn subscribe(
        &self,
        resource: &'static ResourceType,
        resource_version: Option<&str>,
        initial_events: bool,
    ) -> Result<Subscription, ApiError> {
        let mut state = self.lock();
        let from = match resource_version {
            _ if initial_events => None,
            None | Some("" | "0") => None,
            Some(text) => Some(meta::parse_rv(text)?),
        };
        let replay = match from {
            None => Replay::Snapshot(meta::of_resource(&state.objects, resource).cloned().collect()),
            Some(from) if from < state.compacted => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {from} ({})",
                    state.compacted + 1
                )));
            }
            Some(from) => Replay::History(
                state
                    .history
                    .iter()
                    .filter(|event| event.rv > from && std::ptr::eq(event.resource, resource))
                    .cloned()
                    .collect(),
            ),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        state.watchers.push(Watcher { resource, sender });
        Ok(Subscription {
            replay,
            receiver,
            rv: state.rv,
            clean_ends: state.clean_ends,
        })
    }

    /// The resourceVersion a bookmark may carry now: the current one, if
    /// `receiver` holds no event the watch has yet to process (checked under
    /// the lock, so no write can slip in between).
    pub fn bookmark_rv(&self, receiver: &mpsc::UnboundedReceiver<Arc<Event>>) -> Option<u64> {
        let state = self.lock();
        receiver.is_empty().then_some(state.rv)
    }

    /// Drops the event history: watches and continue tokens from before now
    /// get 410.
    pub fn compact(&self) -> u64 {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.rv;
        state.rv
    }

    /// Closes every watch's channel; the watches end abruptly. Returns how
    /// many were open.
    pub fn close_watches(&self) -> usize {
        let mut state = self.lock();
        let open = state
            .watchers
            .iter()
            .filter(|watcher| !watcher.sender.is_closed())
            .count();
        state.watchers.clear();
        open
    }

    /// Ends every watch cleanly, with the terminating chunk, as the real
    /// server does when a watch's `timeoutSeconds` runs out: the client
    /// resumes from the last resourceVersion it saw. Returns how many were
    /// open.
    pub fn end_watches(&self) -> usize {
        self.lock().clean_ends += 1;
        self.close_watches()
    }

    /// How often [`Store::end_watches`] ran.
    #[must_use]
    pub fn clean_ends(&self) -> u64 {
        self.lock().clean_ends
    }

    /// Number of open watches.
    #[must_use]
    pub fn open_watches(&self) -> usize {
        let mut state = self.lock();
        state.watchers.retain(|watcher| !watcher.sender.is_closed());
        state.watchers.len()
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes,
/// anything else (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
