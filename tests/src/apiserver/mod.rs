//! A Kubernetes API server stand-in: the REST list/watch protocol over plain
//! HTTP/1.1, for testing `weir-agent`'s kube-rs watchers and reflectors where no
//! kube-apiserver exists.
//!
//! It keeps objects as `serde_json::Value` in the k8s-openapi shapes, with one
//! global, etcd-like resourceVersion counter bumped by every write, and an
//! event history from which watches resume. What it does, as the real server
//! does it:
//!
//! - resources: core/v1 `services`, `pods`, `nodes`, `namespaces`, `events`;
//!   discovery.k8s.io/v1 `endpointslices`; networking.k8s.io/v1
//!   `networkpolicies`; events.k8s.io/v1 `events` (kube-rs' event recorder);
//!   discovery at `/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]`,
//!   and `/version`;
//! - list: `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`),
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`; pods also
//!   `spec.nodeName`, `status.phase`), `limit` + `continue` (an opaque token
//!   naming a consistent snapshot; HTTP 410 once compacted), `resourceVersion`
//!   with `resourceVersionMatch` (`""`/`"0"`: most recent; `Exact`: the
//!   snapshot at that version). Items carry no kind/apiVersion, as on the wire;
//! - watch (`watch=1|true`): newline-delimited `{"type","object"}` over a
//!   chunked `application/json` response; replay of the history after
//!   `resourceVersion`, an `ERROR` event with a 410 `Expired` Status when that
//!   version was compacted away, synthetic `ADDED` events for `""`/`"0"` and
//!   `sendInitialEvents` (ended by a `k8s.io/initial-events-end` bookmark),
//!   `BOOKMARK`s after a configurable quiet interval, `timeoutSeconds`, and
//!   selector transitions (an object leaving the selection is `DELETED`, one
//!   entering it `ADDED`);
//! - writes: POST (409 `AlreadyExists`, `generateName`), PUT (409 `Conflict` on
//!   a stale `metadata.resourceVersion`), PATCH with
//!   `application/merge-patch+json` (RFC 7386), DELETE (the object; 404 when
//!   missing; uid/resourceVersion preconditions), the `status` subresource for
//!   services, pods, nodes and namespaces (the main resource then ignores
//!   status changes), uid, creationTimestamp and generation on create,
//!   generation bumped when anything outside metadata and status changes, and
//!   no-op updates that write nothing;
//! - errors as `Status` objects (`Failure`, reason, code, message, details).
//!
//! Test controls, outside the Kubernetes API, under `/weir-test/`: `compact`
//! (drop the event history), `end-watches` (end every open watch cleanly, as
//! an expired `timeoutSeconds` does), `close-watches` (end every open watch abruptly,
//! without the terminating chunk), `outage?seconds=N` (see
//! [`ApiServer::serve`]: the listening socket is closed, so connections are
//! refused, and open connections are dropped).
//!
//! What it does NOT implement: TLS, authentication, authorization, admission
//! (no namespace-exists check, no defaulting beyond the fields above, no
//! validation of specs), `application/json-patch+json`,
//! `application/strategic-merge-patch+json` and server-side apply
//! (`application/apply-patch+yaml`) — all answered 415; `managedFields`;
//! `dryRun`; graceful deletion and finalizers (every DELETE is immediate,
//! deleting a Namespace leaves its objects), `deletecollection`; protobuf,
//! `Table` output and aggregated discovery; `remainingItemCount`; the legacy
//! `/api/v1/watch/...` paths; other resources and subresources (`scale`,
//! `eviction`, `binding`, `log`, `exec`); waiting for a `resourceVersion` newer
//! than the current one (answered at once with 504 `Timeout`).

mod client;
mod discovery;
mod http;
mod kubeconfig;
mod netns;
mod process;
mod resources;
mod route;
mod seed;
mod selector;
mod status;
mod store;
mod store_list;
mod store_meta;
mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod watch_tests;

pub use self::client::{ApiClient, Response};
pub use self::http::{ApiServer, Config};
pub use self::kubeconfig::write_kubeconfig;
pub use self::netns::enter_netns;
pub use self::process::{ApiServerHandle, ApiServerOptions, LISTENING_PREFIX};
pub use self::resources::{RESOURCES, ResourceType};
pub use self::seed::{parse_documents, read_dir};
pub use self::selector::{FieldSelector, LabelSelector};
pub use self::status::ApiError;
pub use self::store::{Event, EventKind, ListRequest, Replay, Store, Subscription, merge_patch};

/// Errors of the stand-in's library parts (serving, seeding, the client).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, binding or connecting failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A manifest or response could not be parsed.
    #[error("{what}: {message}")]
    Parse {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        message: String,
    },
    /// The API answered with an error Status.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// The HTTP exchange itself failed.
    #[error("HTTP to {target}: {source}")]
    Http {
        /// Where the request went.
        target: String,
        /// What hyper reported.
        #[source]
        source: hyper::Error,
    },
    /// A request took longer than allowed.
    #[error("{0} timed out")]
    Timeout(String),
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    fn parse(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
