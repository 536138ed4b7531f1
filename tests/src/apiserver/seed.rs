//! Manifests to objects: multi-document YAML (or JSON), `kind: List`
//! expanded, as `kubectl apply -f DIR` reads them.

use std::path::Path;

use serde_json::Value;

use super::{Error, Result};

/// The objects in `text`: every non-empty document, the items of a `List`
/// in place of the list.
pub fn parse_documents(text: &str) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|err| Error::parse(format!("YAML document {}", index + 1), err))?;
        match value {
            Value::Null => {}
            Value::Object(_) => expand(value, &mut objects),
            other => {
                return Err(Error::parse(
                    format!("YAML document {}", index + 1),
                    format!("an object was expected, not {other}"),
                ));
            }
        }
    }
    Ok(objects)
}

fn expand(value: Value, objects: &mut Vec<Value>) {
    let is_list =
        value["kind"].as_str().is_some_and(|kind| kind.ends_with("List")) && value["items"].is_array();
    if is_list {
        if let Value::Array(items) = value["items"].clone() {
            for item in items {
                expand(item, objects);
            }
        }
    } else {
        objects.push(value);
    }
}

/// The objects of every `.yaml`, `.yml` and `.json` file in `dir`, files in
/// name order.
pub fn read_dir(dir: &Path) -> Result<Vec<Value>> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| Error::io(format!("listing {}", dir.display()), err))?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension().is_some_and(|extension| {
                ["yaml", "yml", "json"].contains(&extension.to_string_lossy().as_ref())
            })
        })
        .collect();
    paths.sort();
    let mut objects = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|err| Error::io(format!("reading {}", path.display()), err))?;
        let parsed = parse_documents(&text).map_err(|err| Error::parse(path.display().to_string(), err))?;
        objects.extend(parsed);
    }
    Ok(objects)
}
