//! Lists: selectors, resourceVersion semantics and paging with continue
//! tokens. A token names the resourceVersion of the first page and the last
//! key sent; later pages are cut from the snapshot at that version, rebuilt
//! by undoing the history — so paging is consistent, and a token older than
//! the compacted history is a 410, as with etcd compaction.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventKind, State, Store};
use super::store_meta::{self as meta, ObjectKey};

/// The parameters of a list.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Only this namespace (`None`: all, or cluster-scoped).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0: everything).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch` (`NotOlderThan`, `Exact`).
    pub resource_version_match: Option<String>,
}

/// What a continue token carries (base64 of this JSON, as the real one).
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: u64,
    start: (String, String),
}

const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

fn encode_continue(rv: u64, start: (String, String)) -> String {
    let token = Continue {
        v: CONTINUE_VERSION.to_owned(),
        rv,
        start,
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let token: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v == CONTINUE_VERSION {
        Ok(token)
    } else {
        Err(bad())
    }
}

impl State {
    /// The objects of `resource` at resourceVersion `rv`: the current ones
    /// with every later event undone.
    fn snapshot(&self, resource: &ResourceType, rv: u64) -> Result<BTreeMap<ObjectKey, Value>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "The resourceVersion for the provided list is too old (requested {rv}, history starts after {})",
                self.compacted
            )));
        }
        let mut objects: BTreeMap<ObjectKey, Value> = meta::of_resource(&self.objects, resource)
            .map(|object| (meta::key_of(resource, object), object.clone()))
            .collect();
        for event in self.history.iter().rev().take_while(|event| event.rv > rv) {
            if !std::ptr::eq(event.resource, resource) {
                continue;
            }
            let key = meta::key_of(resource, &event.object);
            match (event.kind, &event.old) {
                (EventKind::Added, _) => {
                    objects.remove(&key);
                }
                (_, Some(old)) => {
                    objects.insert(key, old.clone());
                }
                (_, None) => {}
            }
        }
        Ok(objects)
    }
}

impl Store {
    /// GET of a collection: the `…List` object.
    pub fn list(&self, resource: &'static ResourceType, request: &ListRequest) -> Result<Value, ApiError> {
        let state = self.lock();
        let rv_param = request.resource_version.as_deref().unwrap_or("");
        let rv_match = request.resource_version_match.as_deref().unwrap_or("");
        let (rv, start) = if let Some(token) = request
            .continue_token
            .as_deref()
            .filter(|token| !token.is_empty())
        {
            if !rv_param.is_empty() && rv_param != "0" {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let token = decode_continue(token)?;
            if token.rv < state.compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (token.rv, Some(token.start))
        } else {
            (list_rv(&state, rv_param, rv_match)?, None)
        };
        let snapshot = if rv == state.rv {
            meta::of_resource(&state.objects, resource)
                .map(|object| (meta::key_of(resource, object), object.clone()))
                .collect()
        } else {
            state.snapshot(resource, rv)?
        };
        drop(state);

        let mut selected = snapshot.into_iter().filter(|((_, namespace, _), object)| {
            request
                .namespace
                .as_deref()
                .is_none_or(|wanted| wanted == namespace)
                && request.labels.matches(object)
                && request.fields.matches(object)
        });
        if let Some(start) = &start {
            let mut rest = selected
                .skip_while(|((_, namespace, name), _)| (namespace, name) <= (&start.0, &start.1))
                .peekable();
            return Ok(page(resource, rv, &mut rest, request.limit));
        }
        Ok(page(
            resource,
            rv,
            &mut selected.by_ref().peekable(),
            request.limit,
        ))
    }
}

/// The snapshot version a list without continue token reads.
fn list_rv(state: &State, rv_param: &str, rv_match: &str) -> Result<u64, ApiError> {
    match (rv_match, rv_param) {
        ("", "") => Ok(state.rv),
        (_, "") => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        ("Exact", "0") => Err(ApiError::bad_request(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        ("Exact", text) => {
            let rv = meta::parse_rv(text)?;
            if rv > state.rv {
                return Err(too_large(rv, state.rv));
            }
            Ok(rv)
        }
        ("" | "NotOlderThan", text) => {
            let rv = meta::parse_rv(text)?;
            // The real server waits up to 3 s for a newer version, then
            // answers 504; the stand-in's history is all there is.
            if rv > state.rv {
                return Err(too_large(rv, state.rv));
            }
            Ok(state.rv)
        }
        (other, _) => Err(ApiError::bad_request(format!(
            "unsupported resourceVersionMatch {other:?}"
        ))),
    }
}

fn too_large(wanted: u64, current: u64) -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {wanted}, current: {current}"),
    )
}

/// One page of at most `limit` items (0: all) and, when more remain, the
/// continue token after the last one.
fn page(
    resource: &ResourceType,
    rv: u64,
    items: &mut std::iter::Peekable<impl Iterator<Item = (ObjectKey, Value)>>,
    limit: usize,
) -> Value {
    let mut taken = Vec::new();
    let mut last = None;
    while limit == 0 || taken.len() < limit {
        let Some(((_, namespace, name), mut object)) = items.next() else {
            break;
        };
        // List items carry no kind/apiVersion on the wire.
        if let Some(fields) = object.as_object_mut() {
            fields.remove("kind");
            fields.remove("apiVersion");
        }
        taken.push(object);
        last = Some((namespace, name));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if items.peek().is_some()
        && let Some(last) = last
    {
        metadata["continue"] = json!(encode_continue(rv, last));
    }
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": taken,
    })
}
