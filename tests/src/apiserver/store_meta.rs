//! Object metadata as the real registry handles it: keys, checks of a body
//! against its path, what create stamps (uid, creationTimestamp, generation)
//! and what an update keeps from the stored object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::status::ApiError;

/// `(resource, namespace, name)`; `""` namespace for cluster-scoped objects.
/// Ordered as etcd keys are, so lists come out sorted by namespace and name.
pub type ObjectKey = (String, String, String);

/// The key of `name` in `namespace`.
#[must_use]
pub fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
    let namespace = if resource.namespaced {
        namespace.unwrap_or("")
    } else {
        ""
    };
    (resource.qualified(), namespace.to_owned(), name.to_owned())
}

/// The key of a prepared object.
#[must_use]
pub fn key_of(resource: &ResourceType, object: &Value) -> ObjectKey {
    key(
        resource,
        object["metadata"]["namespace"].as_str(),
        object["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// Every stored object of `resource`, in key order.
pub fn of_resource<'a>(
    objects: &'a BTreeMap<ObjectKey, Value>,
    resource: &ResourceType,
) -> impl Iterator<Item = &'a Value> + 'a {
    let qualified = resource.qualified();
    let start = (qualified.clone(), String::new(), String::new());
    objects
        .range(start..)
        .take_while(move |(key, _)| key.0 == qualified)
        .map(|(_, object)| object)
}

/// Parses a resourceVersion; anything but a number is a 400.
pub fn parse_rv(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {text:?}")))
}

/// Checks a request body against the resource and path: an object, the
/// right `apiVersion`/`kind` (filled in when absent), the path's namespace
/// (a different one is a 400, none takes the path's), the path's name.
pub fn prepare(
    resource: &ResourceType,
    mut body: Value,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let api_version = resource.api_version();
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", resource.kind)] {
        match body[field].as_str() {
            None | Some("") => body[field] = json!(expected),
            Some(found) if found == expected => {}
            Some(found) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the data ({found}) does not match the expected {field} ({expected})"
                )));
            }
        }
    }
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    let metadata = &mut body["metadata"];
    if resource.namespaced {
        let path_namespace = namespace.ok_or_else(|| {
            ApiError::method_not_allowed("a namespaced object is written under /namespaces/{namespace}/")
        })?;
        match metadata["namespace"].as_str() {
            None | Some("") => metadata["namespace"] = json!(path_namespace),
            Some(found) if found == path_namespace => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else if let Some(metadata) = metadata.as_object_mut() {
        metadata.remove("namespace");
    }
    if let Some(name) = name {
        match metadata["name"].as_str() {
            None | Some("") => metadata["name"] = json!(name),
            Some(found) if found == name => {}
            Some(found) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({found}) does not match the name on the URL ({name})"
                )));
            }
        }
    }
    Ok(body)
}

/// Characters of a `generateName` suffix (as apiserver's `utilrand.String`).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Fills in a name from `generateName` (retrying while `is_free` says no),
/// or fails 422 when there is neither.
pub fn name_for_create(
    resource: &ResourceType,
    object: &mut Value,
    is_free: impl Fn(&Value) -> bool,
) -> Result<(), ApiError> {
    if object["metadata"]["name"]
        .as_str()
        .is_some_and(|name| !name.is_empty())
    {
        return Ok(());
    }
    let Some(prefix) = object["metadata"]["generateName"].as_str().map(str::to_owned) else {
        return Err(ApiError::invalid(
            resource,
            "",
            "metadata.name: Required value: name or generateName is required",
        ));
    };
    for _ in 0..16 {
        let mut seed = random();
        let suffix: String = (0..5)
            .map(|_| {
                let index = usize::try_from(seed % SUFFIX_ALPHABET.len() as u64).unwrap_or(0);
                seed /= SUFFIX_ALPHABET.len() as u64;
                char::from(SUFFIX_ALPHABET[index])
            })
            .collect();
        object["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
        if is_free(object) {
            return Ok(());
        }
    }
    Err(ApiError::new(
        500,
        "InternalError",
        "no free name for generateName",
    ))
}

/// What create sets: uid, creationTimestamp, generation 1, and a
/// Namespace's `kubernetes.io/metadata.name` label.
pub fn stamp_create(resource: &ResourceType, object: &mut Value) {
    let metadata = &mut object["metadata"];
    metadata["uid"] = json!(new_uid());
    metadata["creationTimestamp"] = json!(now_rfc3339());
    metadata["generation"] = json!(1);
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.remove("deletionTimestamp");
        metadata.remove("managedFields");
    }
    if resource.plural == "namespaces" && resource.group.is_empty() {
        let name = object["metadata"]["name"].clone();
        if !object["metadata"]["labels"].is_object() {
            object["metadata"]["labels"] = json!({});
        }
        object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    }
}

/// An update's object with what the server owns taken from `current`: uid,
/// creationTimestamp, generation (bumped when anything outside metadata and
/// status changed), and — with a status subresource — status on a main
/// write, everything but status on a status write.
#[must_use]
pub fn carry_over(resource: &ResourceType, current: &Value, mut object: Value, status_only: bool) -> Value {
    if status_only {
        let status = object.get("status").cloned();
        object = current.clone();
        match status {
            Some(status) => object["status"] = status,
            None => {
                object.as_object_mut().map(|fields| fields.remove("status"));
            }
        }
    } else if resource.status_subresource {
        match current.get("status") {
            Some(status) => object["status"] = status.clone(),
            None => {
                object.as_object_mut().map(|fields| fields.remove("status"));
            }
        }
    }
    for field in ["uid", "creationTimestamp", "generation"] {
        object["metadata"][field] = current["metadata"][field].clone();
    }
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    if spec_of(&object) != spec_of(current) {
        object["metadata"]["generation"] = json!(generation + 1);
    }
    object["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    object
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_of(object: &Value) -> Value {
    let mut spec = object.clone();
    if let Some(fields) = spec.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    spec
}

/// Whether two objects differ in nothing but their resourceVersion.
#[must_use]
pub fn same_content(current: &Value, object: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        object
    };
    strip(current) == strip(object)
}

/// A pseudo-random 64-bit number (splitmix64 of the clock and a counter):
/// unique names and uids, nothing cryptographic.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    #[expect(
        clippy::cast_possible_truncation,
        reason = "only the low bits matter for mixing"
    )]
    let mut value = (nanos as u64) ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A version-4-shaped UUID.
fn new_uid() -> String {
    let (high, low) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        0x8000 | (low >> 48 & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

/// Now as RFC 3339 in UTC with seconds (`2026-05-01T12:00:00Z`), the format
/// of `metav1.Time`.
#[must_use]
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    rfc3339(i64::try_from(seconds).unwrap_or(0))
}

/// `seconds` after the epoch in whole-second RFC 3339, UTC.
fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        let day = |days: i64| rfc3339(days * 86_400);
        assert_eq!(day(0), "1970-01-01T00:00:00Z");
        assert_eq!(day(19_723), "2024-01-01T00:00:00Z");
        assert_eq!(day(19_782), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn uids_look_like_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.as_bytes()[14], b'4');
        assert_ne!(uid, new_uid());
    }
}
