//! A case is checked by probing its grid until the observed matrix matches
//! the expected one, or failing with the grids side by side.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::grid::{Target, observe_from, pod_targets};
use super::table::{Reachability, TruthTable};
use crate::cluster::{Cluster, Origin};
use crate::probe::Protocol;

/// How long a case may take to show: the agents see a policy change through
/// their watches, compile it and write the maps; until then probes see the
/// old state.
pub const SETTLE_TIME: Duration = Duration::from_secs(10);

/// Pause between two probes of the grid while waiting for it to match.
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// Wrong cells whose failure a report spells out.
const MAX_REASONS: usize = 12;

/// Probes `targets` from `sources` (the rows of `expected`, in order, with
/// where each probes from) until what is seen matches `expected` (cells
/// `ignored` do not count) or [`SETTLE_TIME`] passes; then fails with the
/// expected, observed and difference grids and why each wrong cell failed.
/// `what` names the case in the message.
///
/// Retrying means a grid that equals the state before a change passes at
/// once, before the agents caught up: check first what the change changes.
pub fn check_from(
    cluster: &Cluster,
    sources: &[(String, Origin)],
    (expected, targets): (&TruthTable, &[Target]),
    protocol: Protocol,
    ignored: impl Fn(&str, &str) -> bool,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIME;
    let mut probes = 0;
    loop {
        let observation = observe_from(cluster, sources, targets, protocol)?;
        probes += 1;
        let wrong = expected.wrong_cells(&observation.table, &ignored);
        // Every cell the probes judged, predicted by `weir trace` from the
        // same maps: the CLI is held to the whole table.
        let predicted = if wrong.is_empty() {
            let columns: Vec<(String, std::net::SocketAddrV4)> =
                targets.iter().map(|t| (t.label.clone(), t.address)).collect();
            let connected = |row: &str, column: &str| observation.table.get(row, column);
            crate::trace::check_grid(cluster, sources, &columns, protocol, connected, &ignored)
        } else {
            Ok(())
        };
        if wrong.is_empty() && predicted.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            predicted.with_context(|| format!("{what}: the grid matched"))?;
            let mut message = format!(
                "{what} ({protocol}): {} wrong cell(s) after {probes} probes over {} s\n\n{}",
                wrong.len(),
                SETTLE_TIME.as_secs(),
                expected.report(&observation.table, &ignored)
            );
            // The grids show where; these lines say why, for the first few.
            for (from, to, connected) in wrong.iter().take(MAX_REASONS) {
                let why = observation
                    .failures
                    .get(&(from.clone(), to.clone()))
                    .map_or("it answered", String::as_str);
                let expectation = if *connected { "connected" } else { "denied" };
                let _ = write!(message, "\n  {from} → {to}: expected {expectation}, {why}");
            }
            if wrong.len() > MAX_REASONS {
                let _ = write!(message, "\n  … and {} more", wrong.len() - MAX_REASONS);
            }
            bail!(message);
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// [`check_from`] with the rows of `expected` as pods (`ns/name`).
pub fn check_targets(
    cluster: &Cluster,
    expected: &TruthTable,
    targets: &[Target],
    protocol: Protocol,
    ignored: impl Fn(&str, &str) -> bool,
    what: &str,
) -> Result<()> {
    let sources: Vec<(String, Origin)> = expected
        .rows
        .iter()
        .map(|key| (key.clone(), Origin::Pod(key.clone())))
        .collect();
    check_from(cluster, &sources, (expected, targets), protocol, ignored, what)
}

/// Probes every pod of the model from every pod on `port`/`protocol` until
/// the matrix matches `reachability` (loopback not judged); see
/// [`check_from`].
pub fn check(cluster: &Cluster, reachability: &Reachability, port: u16, protocol: Protocol) -> Result<()> {
    let targets = pod_targets(cluster, port)?;
    check_targets(
        cluster,
        &reachability.expected,
        &targets,
        protocol,
        Reachability::is_loopback,
        &format!("port {port}"),
    )
}
