//! Standalone mode: the manifest directory is the source of truth. The loop
//! polls it and runs a sync pass when it changes; a pass that did not
//! complete is retried on the next tick.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::maps::{LbMaps, MasqMaps};
use crate::ops::Ops;
use crate::source::{Objects, dir};
use crate::status::{self, Status};
use crate::sync::Syncer;

/// Settings of the standalone loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of Service / EndpointSlice / Node YAML.
    pub manifests: PathBuf,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    /// Where to write the status after each complete pass, if anywhere.
    pub status_file: Option<PathBuf>,
}

/// Runs until `shutdown` completes. Never gives up on errors: bad manifests
/// are reported and skipped, failed writes are retried.
///
/// Each tick tells the syncer's [`crate::ops::Ops`] the loop is alive; a
/// complete pass records the time since the directory change it programs
/// was first seen (the first pass: since the loop started).
pub async fn run<M: LbMaps, Q: MasqMaps>(
    options: &Options,
    syncer: &mut Syncer<M, Q>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seen = None;
    let mut dirty = true;
    // When the oldest change not yet programmed was noticed.
    let mut changed_at = Some(Instant::now());
    let mut status = Status::default();
    // Kept across passes: a re-read parses only the documents that changed.
    let mut reader = dir::Reader::default();
    loop {
        syncer.ops().alive();
        match dir::fingerprint(&options.manifests) {
            Ok(now) if seen.as_ref() != Some(&now) => {
                seen = Some(now);
                dirty = true;
                changed_at.get_or_insert_with(Instant::now);
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "manifest directory unreadable; keeping the programmed state"),
        }
        if dirty
            && let Some(objects) = read(&mut reader, options, syncer.ops())
            && syncer.sync(&objects, &mut status).await
        {
            dirty = false;
            if let Some(at) = changed_at.take() {
                syncer.ops().observe_programming(at);
            }
            status.generation += 1;
            info!(generation = status.generation, "in sync with the manifests");
            if let Some(path) = &options.status_file
                && let Err(e) = status::write(path, &status)
            {
                warn!(error = %e, path = %path.display(), "cannot write status file");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(options.poll_interval) => {}
            () = &mut shutdown => return,
        }
    }
}

/// Reads the manifests, reporting documents that cannot be used.
fn read(reader: &mut dir::Reader, options: &Options, ops: &Ops) -> Option<Objects> {
    match reader.read(&options.manifests) {
        Ok((objects, document_errors)) => {
            for e in &document_errors {
                warn!(error = %e, "skipping manifest document");
                ops.object_skipped("document");
            }
            Some(objects)
        }
        Err(e) => {
            warn!(error = %e, "cannot read manifests; keeping the programmed state");
            None
        }
    }
}
