//! Standalone source: the Kubernetes YAML a user would `kubectl apply`, read
//! from a directory (`*.yaml`, `*.yml`, `*.json`; multi-document files and
//! `kind: List` are accepted).
//!
//! A document that cannot be used is reported and skipped; the other
//! documents, in that file and in the others, still count.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::Objects;

/// Errors reading the manifest directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory itself cannot be listed.
    #[error("cannot read manifest directory {dir}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One document (or file) that was skipped, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}, document {document}: {message}")]
pub struct DocumentError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document number within the file (0: the whole file).
    pub document: usize,
    /// What is wrong.
    pub message: String,
}

/// Result of reading the directory.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads every manifest file in `dir` (not recursing), in name order.
pub fn read(dir: &Path) -> Result<(Objects, Vec<DocumentError>)> {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    for file in manifest_files(dir)? {
        match std::fs::read_to_string(&file) {
            Ok(text) => parse_file(&file, &text, &mut objects, &mut errors),
            // A file removed between listing and reading is simply gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(DocumentError {
                file,
                document: 0,
                message: e.to_string(),
            }),
        }
    }
    Ok((objects, errors))
}

/// A cheap summary of the directory (names, sizes, modification times) that
/// changes whenever a file is added, removed or rewritten. Polling this keeps
/// the agent independent of inotify, which misses changes on some volume
/// types (ConfigMap symlink swaps, network filesystems).
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    for file in manifest_files(dir)? {
        if let Ok(meta) = std::fs::metadata(&file) {
            out.push((
                file,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
    Ok(out)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_dir = |source| Error::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        // Editors and `kubectl`-style tools write hidden temp files first.
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if is_manifest && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses all documents of one file into `objects`.
fn parse_file(file: &Path, text: &str, objects: &mut Objects, errors: &mut Vec<DocumentError>) {
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let error = |message: String| DocumentError {
            file: file.to_owned(),
            document: index + 1,
            message,
        };
        match serde_yaml::Value::deserialize(document) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => {
                if let Err(message) = add_object(value, objects) {
                    errors.push(error(message));
                }
            }
            Err(e) => {
                errors.push(error(e.to_string()));
                // After a syntax error the YAML stream cannot be resumed.
                break;
            }
        }
    }
}

/// Adds one object (or the items of a `List`) by `apiVersion`/`kind`.
fn add_object(value: serde_yaml::Value, objects: &mut Objects) -> std::result::Result<(), String> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Service") => objects.services.push(typed(value, "Service")?),
        ("discovery.k8s.io/v1", "EndpointSlice") => objects.slices.push(typed(value, "EndpointSlice")?),
        ("v1", "Node") => objects.nodes.push(typed(value, "Node")?),
        ("v1", "Pod") => objects.pods.push(typed(value, "Pod")?),
        ("v1", "Namespace") => objects.namespaces.push(typed(value, "Namespace")?),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            objects.network_policies.push(typed(value, "NetworkPolicy")?);
        }
        ("v1", "List") => {
            let items = value
                .get("items")
                .and_then(serde_yaml::Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let mut problems = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if let Err(e) = add_object(item, objects) {
                    problems.push(format!("item {}: {e}", i + 1));
                }
            }
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
        }
        (_, "") => return Err("not a Kubernetes object: no kind".into()),
        // Other kinds (Deployments, ConfigMaps, ...) may share the
        // directory; the agent has no use for them.
        _ => {}
    }
    Ok(())
}

/// The object, trimmed as the Kubernetes source trims what it stores.
fn typed<T>(value: serde_yaml::Value, kind: &str) -> std::result::Result<T, String>
where
    T: serde::de::DeserializeOwned + super::Trim,
{
    let mut object: T = serde_yaml::from_value(value).map_err(|e| format!("invalid {kind}: {e}"))?;
    object.trim();
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Objects, Vec<DocumentError>) {
        let mut objects = Objects::default();
        let mut errors = Vec::new();
        parse_file(Path::new("t.yaml"), text, &mut objects, &mut errors);
        (objects, errors)
    }

    #[test]
    fn multi_document_files_and_lists_are_read() {
        let (objects, errors) = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n\
             - {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s}, addressType: IPv4, endpoints: []}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(objects.services.len(), 2);
        assert_eq!(objects.slices.len(), 1);
    }

    #[test]
    fn a_malformed_document_is_reported_and_the_others_kept() {
        let (objects, errors) = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: banana}]}\n---\n\
             just a string\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
        );
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.services[0].metadata.name.as_deref(), Some("ok"));
        assert_eq!(errors.iter().map(|e| e.document).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn broken_yaml_keeps_documents_before_it() {
        let (objects, errors) = parse("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n{ [ :\n");
        assert_eq!(objects.services.len(), 1);
        assert_eq!(errors.len(), 1);
    }
}
