//! Kubernetes Events for objects weir skips, so `kubectl describe service`
//! shows why a Service is not (fully) programmed, not only the agent log.
//!
//! Every sync pass recomputes the errors; an Event is published only for an
//! error that was not there in the previous pass, so a bad object yields one
//! Event per node, not one per pass. Once it is fixed and breaks again, it
//! is reported again.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::debug;

use crate::desired::ObjectError;

/// Publishes Warning Events for skipped objects.
pub struct SkipEvents {
    recorder: Recorder,
    /// `(object, message)` of the errors of the last pass.
    reported: BTreeSet<(String, String)>,
}

impl SkipEvents {
    /// Events reported by `weir-agent` on node `node` (the instance).
    #[must_use]
    pub fn new(client: Client, node: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "weir-agent".into(),
            instance: node,
        };
        Self {
            recorder: Recorder::new(client, reporter),
            reported: BTreeSet::new(),
        }
    }

    /// Publishes the errors of this pass that the last one did not have.
    /// Best effort: an Event that cannot be written is only logged.
    pub async fn report(&mut self, errors: &[ObjectError]) {
        let now: BTreeSet<(String, String)> = errors
            .iter()
            .map(|e| (e.object.to_string(), e.reason.to_string()))
            .collect();
        for error in errors {
            let key = (error.object.to_string(), error.reason.to_string());
            if self.reported.contains(&key) {
                continue;
            }
            let event = Event {
                type_: EventType::Warning,
                reason: "Skipped".into(),
                note: Some(truncate(&format!("weir cannot program this: {}", error.reason))),
                action: "Program".into(),
                secondary: None,
            };
            let reference = ObjectReference {
                api_version: Some(error.object.api_version().into()),
                kind: Some(error.object.kind.into()),
                namespace: error.object.namespace.clone(),
                name: Some(error.object.name.clone()),
                ..ObjectReference::default()
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                debug!(error = %e, object = %error.object, "cannot publish Event");
            }
        }
        self.reported = now;
    }
}

/// Event notes are limited to 1 kB.
fn truncate(note: &str) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note.to_owned();
    }
    let mut end = MAX - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let long = "é".repeat(600);
        let cut = super::truncate(&long);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
        assert_eq!(super::truncate("short"), "short");
    }
}
