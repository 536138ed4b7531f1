use std::time::{Duration, Instant};

use super::server::{Paths, route};
use super::*;

fn get(ops: &Ops, path: &str) -> http::Response {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = Paths {
        health: true,
        metrics: true,
    };
    runtime.block_on(route(ops, all, Some(path)))
}

#[test]
fn not_ready_until_the_first_complete_pass_and_again_when_one_fails() {
    let ops = Ops::default();
    let starting = get(&ops, "/readyz");
    assert_eq!(starting.status, "503 Service Unavailable");
    assert!(
        starting.body.contains("no complete sync pass"),
        "{}",
        starting.body
    );
    assert!(ops.render().contains("weir_ready 0"));

    ops.set_ready(true, "");
    assert_eq!(get(&ops, "/readyz").status, "200 OK");
    assert_eq!(get(&ops, "/readyz").body.trim(), "ok");
    assert!(ops.render().contains("weir_ready 1"));

    ops.set_ready(false, "map weir_lb4_services_v1 is full");
    let full = get(&ops, "/readyz");
    assert_eq!(full.status, "503 Service Unavailable");
    assert_eq!(full.body.trim(), "map weir_lb4_services_v1 is full");
}

#[test]
fn healthz_follows_the_main_loop_ticks() {
    let ops = Ops::default();
    ops.alive();
    assert_eq!(get(&ops, "/healthz").status, "200 OK");
    // A loop that last ticked longer ago than the window is wedged.
    ops.health().last_tick = Instant::now()
        .checked_sub(LIVENESS_WINDOW + Duration::from_secs(1))
        .unwrap();
    let stalled = get(&ops, "/healthz");
    assert_eq!(stalled.status, "503 Service Unavailable");
    assert!(stalled.body.contains("stalled"), "{}", stalled.body);
}

#[test]
fn metrics_render_every_family() {
    let ops = Ops::default();
    ops.programmed(2, 3, 4);
    ops.observe_sync(Duration::from_millis(3), true);
    ops.observe_programming(Instant::now());
    ops.reconcile_error("lb", "map_full");
    ops.watch_restart("services");
    ops.object_skipped("Service");
    let text = get(&ops, "/metrics").body;
    for line in [
        "weir_network_programming_duration_seconds_count 1",
        "weir_sync_duration_seconds_count 1",
        "weir_services_programmed 2",
        "weir_frontends_programmed 3",
        "weir_backends_programmed 4",
        "weir_policies_programmed 0",
        "weir_reconcile_errors_total{reconciler=\"lb\",reason=\"map_full\"} 1",
        "weir_sync_passes_total{result=\"ok\"} 1",
        "weir_sync_passes_total{result=\"error\"} 0",
        "weir_ready 0",
        "weir_watch_restarts_total{resource=\"services\"} 1",
        "weir_objects_skipped_total{kind=\"Service\"} 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
}

#[test]
fn unknown_paths_are_404_and_split_listeners_answer_only_their_paths() {
    let ops = Ops::default();
    assert_eq!(get(&ops, "/nope").status, "404 Not Found");
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let health_only = Paths {
        health: true,
        metrics: false,
    };
    let r = runtime.block_on(route(&ops, health_only, Some("/metrics")));
    assert_eq!(r.status, "404 Not Found");
}
