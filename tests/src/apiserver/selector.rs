//! Label and field selectors, parsed and matched as `k8s.io/apimachinery`'s
//! `labels.Parse` and `fields.ParseSelector` do for the operators clients
//! use. A malformed selector is a 400 for the request, never a silent
//! "matches everything".

use std::collections::BTreeSet;

use serde_json::Value;

use super::resources::ResourceType;
use super::status::ApiError;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelRequirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value`: also true when the label is absent.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)`: also true when the label is absent.
    NotIn(String, BTreeSet<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed `labelSelector`: every requirement must hold. Empty matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

/// Splits at commas outside parentheses (`a in (x,y),b` is two terms).
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// A label key: an optional DNS prefix and `/`, then a name of
/// alphanumerics, `-`, `_`, `.`.
fn valid_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    !name.is_empty()
        && name.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn checked_key(key: &str, selector: &str) -> Result<String, ApiError> {
    let key = key.trim();
    if valid_key(key) {
        Ok(key.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: invalid label key {key:?} in selector {selector:?}"
        )))
    }
}

fn checked_value(value: &str, selector: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if valid_value(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: invalid label value {value:?} in selector {selector:?}"
        )))
    }
}

/// `key in (…)` / `key notin (…)`, if `term` has that shape.
fn parse_set(term: &str, selector: &str) -> Result<Option<LabelRequirement>, ApiError> {
    let Some(open) = term.find('(') else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "unable to parse set requirement {term:?} in {selector:?}"
        ))
    };
    let close = term
        .rfind(')')
        .filter(|close| *close == term.len() - 1)
        .ok_or_else(bad)?;
    let mut head = term[..open].split_whitespace();
    let (Some(key), Some(operator), None) = (head.next(), head.next(), head.next()) else {
        return Err(bad());
    };
    let key = checked_key(key, selector)?;
    let values = term[open + 1..close]
        .split(',')
        .map(|value| checked_value(value, selector))
        .collect::<Result<BTreeSet<_>, _>>()?;
    match operator {
        "in" => Ok(Some(LabelRequirement::In(key, values))),
        "notin" => Ok(Some(LabelRequirement::NotIn(key, values))),
        _ => Err(bad()),
    }
}

fn parse_label_term(term: &str, selector: &str) -> Result<LabelRequirement, ApiError> {
    if let Some(requirement) = parse_set(term, selector)? {
        return Ok(requirement);
    }
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(checked_key(key, selector)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(
            checked_key(key, selector)?,
            checked_value(value, selector)?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(
            checked_key(key, selector)?,
            checked_value(value, selector)?,
        ));
    }
    if term.contains(['<', '>']) {
        return Err(ApiError::bad_request(format!(
            "the stand-in does not support the gt/lt operators ({selector:?})"
        )));
    }
    Ok(LabelRequirement::Exists(checked_key(term, selector)?))
}

impl LabelSelector {
    /// Parses a `labelSelector` query value; empty selects everything.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        if selector.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_terms(selector)
            .into_iter()
            .map(|term| parse_label_term(term.trim(), selector))
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// Whether `object`'s `metadata.labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => label(key).is_some_and(|found| values.contains(found)),
            LabelRequirement::NotIn(key, values) => !label(key).is_some_and(|found| values.contains(found)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::DoesNotExist(key) => label(key).is_none(),
        })
    }
}

/// One `field=value` / `field!=value` requirement, with the JSON path of the
/// field.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    path: Vec<&'static str>,
    value: String,
    equal: bool,
}

/// A parsed `fieldSelector`. Empty matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// The fields a resource may be selected by (its `fieldLabelConversion`).
fn field_path(resource: &ResourceType, field: &str) -> Option<Vec<&'static str>> {
    match (resource.plural, field) {
        (_, "metadata.name") => Some(vec!["metadata", "name"]),
        (_, "metadata.namespace") if resource.namespaced => Some(vec!["metadata", "namespace"]),
        ("pods", "spec.nodeName") => Some(vec!["spec", "nodeName"]),
        ("pods", "status.phase") => Some(vec!["status", "phase"]),
        _ => None,
    }
}

impl FieldSelector {
    /// Parses a `fieldSelector` for `resource`; an unsupported field is a 400
    /// (`field label not supported`), as on the real server.
    pub fn parse(selector: &str, resource: &ResourceType) -> Result<Self, ApiError> {
        if selector.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut requirements = Vec::new();
        for term in selector.split(',') {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (field, value, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let path = field_path(resource, field).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "field label not supported: {field} (resource {})",
                    resource.qualified()
                ))
            })?;
            requirements.push(FieldRequirement {
                path,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector for `metadata.name=name` (a watch of one object).
    #[must_use]
    pub fn name(name: &str) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                path: vec!["metadata", "name"],
                value: name.to_owned(),
                equal: true,
            }],
        }
    }

    /// Whether `object` satisfies every requirement; a missing field is `""`
    /// (so `spec.nodeName=` selects unscheduled pods).
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let found = requirement
                .path
                .iter()
                .try_fold(object, |value, key| value.get(key))
                .and_then(Value::as_str)
                .unwrap_or("");
            (found == requirement.value) == requirement.equal
        })
    }
}
