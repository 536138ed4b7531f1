//! Label selectors (`metav1.LabelSelector`) as NetworkPolicy objects use them for
//! pods and namespaces.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::desired::Reason;

/// A parsed selector: every requirement must hold (AND). No requirement:
/// everything matches, as an empty `{}` selector does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Parses `selector`. `matchLabels` entries are `In` with one value;
    /// `matchExpressions` follow apimachinery's rules: `In`/`NotIn` need
    /// values, `Exists`/`DoesNotExist` take none.
    pub fn parse(selector: &LabelSelector) -> Result<Self, Reason> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), BTreeSet::from([v.clone()])))
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            let needs_values = matches!(expr.operator.as_str(), "In" | "NotIn");
            if needs_values == values.is_empty() {
                return Err(Reason::BadSelector(format!(
                    "operator {} on key {key:?} {}",
                    expr.operator,
                    if needs_values {
                        "needs values"
                    } else {
                        "takes no values"
                    }
                )));
            }
            requirements.push(match expr.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(Reason::BadSelector(format!("unknown operator {other:?}")));
                }
            });
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement. `NotIn` holds for an
    /// absent key, as in Kubernetes.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> Result<Selector, Reason> {
        Selector::parse(&serde_yaml::from_str(yaml).unwrap())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn empty_selects_everything() {
        assert!(selector("{}").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let s = selector(
            "{matchLabels: {app: web}, matchExpressions: [\
             {key: tier, operator: In, values: [a, b]},\
             {key: env, operator: NotIn, values: [prod]},\
             {key: team, operator: Exists},\
             {key: legacy, operator: DoesNotExist}]}",
        )
        .unwrap();
        let ok = labels(&[("app", "web"), ("tier", "b"), ("team", "x")]);
        assert!(s.matches(&ok));
        let mut with = ok.clone();
        with.insert("env".into(), "dev".into());
        assert!(s.matches(&with), "NotIn: another value");
        with.insert("env".into(), "prod".into());
        assert!(!s.matches(&with), "NotIn: the excluded value");
        let mut legacy = ok.clone();
        legacy.insert("legacy".into(), String::new());
        assert!(!s.matches(&legacy), "DoesNotExist");
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])), "Exists");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in [
            "{matchExpressions: [{key: a, operator: In}]}",
            "{matchExpressions: [{key: a, operator: NotIn, values: []}]}",
            "{matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
            "{matchExpressions: [{key: a, operator: Gt, values: ['1']}]}",
        ] {
            assert!(matches!(selector(bad), Err(Reason::BadSelector(_))), "{bad}");
        }
    }
}
