//! Reading `deploy/`: every YAML document, and each as its Kubernetes type.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde::de::DeserializeOwned;

/// `deploy/` of the workspace.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// One YAML document of a manifest file.
pub struct Document {
    /// The file it is in.
    pub file: PathBuf,
    /// The document.
    pub value: serde_json::Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The document as `T`, which must serialize back to the same JSON:
    /// a field `T` does not have would be lost on the way.
    pub fn parse<T: DeserializeOwned + serde::Serialize>(&self) -> T {
        let typed: T = serde_json::from_value(self.value.clone())
            .unwrap_or_else(|e| panic!("{} ({} {}): {e}", self.file.display(), self.kind(), self.name()));
        let back = serde_json::to_value(&typed).expect("serializing");
        let mut lost = Vec::new();
        differences("", &self.value, &back, &mut lost);
        assert!(
            lost.is_empty(),
            "{} ({} {}): fields its type does not know (or changed in a round trip): {lost:?}",
            self.file.display(),
            self.kind(),
            self.name()
        );
        typed
    }
}

/// The paths at which `written` and `parsed` differ.
fn differences(path: &str, written: &serde_json::Value, parsed: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (written, parsed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => differences(&here, value, other, out),
                    None => out.push(here),
                }
            }
            out.extend(
                b.keys()
                    .filter(|k| !a.contains_key(*k))
                    .map(|k| format!("{path}.{k} (added)")),
            );
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} became {b}")),
        _ => {}
    }
}

/// Every `*.yaml` below `deploy/` (the kustomization aside), split into
/// documents, in file order.
pub fn documents() -> Vec<Document> {
    let mut files = Vec::new();
    collect_yaml(&deploy_dir(), &mut files);
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
            if !value.is_null() {
                documents.push(Document {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    documents
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect_yaml(&path, files);
        } else if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
            files.push(path);
        }
    }
}

/// The one document of `kind` named `name`.
pub fn find<'a>(documents: &'a [Document], kind: &str, name: &str) -> &'a Document {
    let found: Vec<_> = documents
        .iter()
        .filter(|d| d.kind() == kind && d.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name} in deploy/");
    found[0]
}
