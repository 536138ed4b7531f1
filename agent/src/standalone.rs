//! Standalone mode: the manifest directory is the source of truth. The loop
//! polls it, recomputes the desired state when it changes and reconciles;
//! a failed reconcile is retried on the next tick.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use crate::desired;
use crate::maps::LbMaps;
use crate::reconcile::Reconciler;
use crate::source::dir;
use crate::status::{self, Status};

/// Settings of the standalone loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of Service / EndpointSlice YAML.
    pub manifests: PathBuf,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    /// Where to write the status after each reconcile, if anywhere.
    pub status_file: Option<PathBuf>,
}

/// Runs until `shutdown` completes. Never gives up on errors: bad manifests
/// are reported and skipped, failed map writes are retried.
pub async fn run<M: LbMaps>(
    options: &Options,
    reconciler: &mut Reconciler<M>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seen = None;
    let mut dirty = true;
    let mut status = Status::default();
    loop {
        match dir::fingerprint(&options.manifests) {
            Ok(now) if seen.as_ref() != Some(&now) => {
                seen = Some(now);
                dirty = true;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "manifest directory unreadable; keeping the programmed state");
            }
        }
        if dirty && apply(options, reconciler, &mut status) {
            dirty = false;
        }
        tokio::select! {
            () = tokio::time::sleep(options.poll_interval) => {}
            () = &mut shutdown => return,
        }
    }
}

/// Reads, computes and reconciles once. Returns whether the maps now match
/// the manifests.
fn apply<M: LbMaps>(options: &Options, reconciler: &mut Reconciler<M>, status: &mut Status) -> bool {
    let (objects, document_errors) = match dir::read(&options.manifests) {
        Ok(read) => read,
        Err(e) => {
            warn!(error = %e, "cannot read manifests; keeping the programmed state");
            return false;
        }
    };
    for e in &document_errors {
        warn!(error = %e, "skipping manifest document");
    }
    let (desired, object_errors) = desired::compute(&objects.services, &objects.slices);
    for e in &object_errors {
        warn!(error = %e, "skipping object");
    }
    match reconciler.reconcile(&desired) {
        Ok(summary) => {
            status.generation += 1;
            status.frontends = summary.frontends;
            status.backends = summary.backends;
            info!(
                generation = status.generation,
                frontends = summary.frontends,
                backends = summary.backends,
                updated = summary.updated,
                deleted = summary.deleted,
                "reconciled"
            );
            if let Some(path) = &options.status_file
                && let Err(e) = status::write(path, status)
            {
                warn!(error = %e, path = %path.display(), "cannot write status file");
            }
            true
        }
        Err(e) => {
            warn!(error = %e, "reconcile failed; retrying");
            false
        }
    }
}
