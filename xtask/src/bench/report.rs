//! Results: `results.json` (everything, with the machine), `results.md`
//! (tables, pairwise ratios from the same run, the targets) and SVG charts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::cni::CniResults;
use super::svg::{self, Chart, Series};
use super::{Runs, Settings, SizeResult};

/// Datapaths in table order.
const DATAPATHS: [&str; 4] = ["weir", "iptables", "nftables", "direct"];

/// Writes every result file into `out`; returns the markdown's path.
pub fn write(
    out: &Path,
    settings: &Settings,
    sizes: &[SizeResult],
    cni: Option<&CniResults>,
    elapsed: Duration,
) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let machine = machine();
    let ratios: Vec<_> = sizes.iter().map(ratios).collect();
    let json = json!({
        "machine": machine,
        "settings": settings,
        "duration_s": elapsed.as_secs_f64(),
        "complete": cni.is_some(),
        "sizes": sizes,
        "ratios": ratios,
        "cni": cni,
    });
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    for (file, svg) in charts(sizes) {
        std::fs::write(out.join(file), svg)?;
    }
    let markdown = markdown(&machine, settings, sizes, cni, elapsed);
    let path = out.join("results.md");
    std::fs::write(&path, markdown)?;
    Ok(path)
}

fn rate(runs: Option<&Runs>) -> Option<f64> {
    runs.map(|r| r.rate.median).filter(|v| *v > 0.0)
}

/// weir's rate divided by each other datapath's, ClusterIP and NodePort;
/// and the other's p99 divided by weir's.
fn ratios(size: &SizeResult) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (kind, table) in [("clusterip", &size.clusterip), ("nodeport", &size.nodeport)] {
        let weir = table.get("weir");
        for peer in ["iptables", "nftables", "direct"] {
            let other = table.get(peer);
            if let (Some(w), Some(o)) = (rate(weir), rate(other)) {
                out.insert(format!("{kind}_rate_weir_over_{peer}"), json!(w / o));
            }
            if let (Some(w), Some(o)) = (weir, other)
                && w.p99_us.median > 0.0
            {
                out.insert(
                    format!("{kind}_p99_{peer}_over_weir"),
                    json!(o.p99_us.median / w.p99_us.median),
                );
            }
        }
    }
    json!({"services": size.services, "ratios": out})
}

fn ratio_of(size: &SizeResult, kind: &str, peer: &str) -> Option<f64> {
    let table = if kind == "clusterip" {
        &size.clusterip
    } else {
        &size.nodeport
    };
    Some(rate(table.get("weir"))? / rate(table.get(peer))?)
}

fn markdown(
    machine: &serde_json::Value,
    settings: &Settings,
    sizes: &[SizeResult],
    cni: Option<&CniResults>,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# weir benchmark results{}\n\n\
         `{}` — one run on one machine, every datapath programmed with the same Services and endpoints.\n\n\
         Machine: {} · {} cores · {:.1} GiB · kernel {} · {} (the iptables peer) · {} · {} · commit {} · {}\n\n\
         Run: {} Services × {} endpoints each; connection runs {} s × {} repeats, {} clients at once; \
         {} endpoint changes per datapath; took {:.0} s.\n",
        if settings.quick { " (quick)" } else { "" },
        if settings.quick {
            "cargo xtask bench --quick"
        } else {
            "cargo xtask bench"
        },
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["iptables"].as_str().unwrap_or("?"),
        machine["nft"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        machine["commit"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
        sizes
            .iter()
            .map(|s| s.services.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        settings.endpoints,
        settings.seconds,
        settings.repeats,
        settings.concurrency,
        settings.changes,
        elapsed.as_secs_f64(),
    );
    md.push_str(
        "Numbers are medians of the repeats with their range in parentheses. Other work shared the \
         machine's cores during the run, so absolute rates are noisy; ratios are between runs of \
         the same size taken minutes apart.\n\n",
    );
    connection_tables(&mut md, sizes);
    programming_tables(&mut md, sizes);
    resource_tables(&mut md, sizes, cni);
    targets(&mut md, sizes);
    for size in sizes {
        for note in &size.notes {
            let _ = writeln!(md, "- {} Services: {note}", size.services);
        }
    }
    md.push_str(
        "\nCharts: `clusterip_p99.svg`, `clusterip_rate.svg`, `nodeport_rate.svg`, `programming_cold.svg`.\n\n\
         Rule shapes: kubernetes `pkg/proxy/iptables/proxier.go` and `pkg/proxy/nftables/proxier.go` \
         (see `xtask/src/bench/rules/`).\n",
    );
    md
}

fn connection_tables(md: &mut String, sizes: &[SizeResult]) {
    for (kind, title, source) in [
        (
            "clusterip",
            "ClusterIP: new connection + request + close, from a pod",
            "client pod → probed ClusterIP (last Service)",
        ),
        (
            "nodeport",
            "NodePort, from the external client",
            "external netns → node:nodePort (weir: its TC program; peers: their DNAT on nodePort 31080, which weir passes to the kernel)",
        ),
    ] {
        let _ = writeln!(
            md,
            "## {title}\n\n{source}. Rate in transactions/s; latency of one transaction in µs.\n\n\
             | Services | datapath | rate | p50 µs | p99 µs | weir rate ÷ this |\n|---:|---|---:|---:|---:|---:|"
        );
        for size in sizes {
            let table = if kind == "clusterip" {
                &size.clusterip
            } else {
                &size.nodeport
            };
            for datapath in DATAPATHS {
                let Some(runs) = table.get(datapath) else { continue };
                let ratio = if datapath == "weir" {
                    "—".to_owned()
                } else {
                    ratio_of(size, kind, datapath).map_or("—".to_owned(), |r| format!("{r:.2}×"))
                };
                let _ = writeln!(
                    md,
                    "| {} | {datapath} | {} | {} | {} | {ratio} |",
                    size.services,
                    runs.rate.show(0),
                    runs.p50_us.show(0),
                    runs.p99_us.show(0)
                );
            }
        }
        md.push('\n');
    }
}

fn programming_tables(md: &mut String, sizes: &[SizeResult]) {
    md.push_str(
        "## Programming time\n\n\
         weir: *sync* is the agent's sync pass (desired state from the parsed objects → maps), the \
         counterpart of running `iptables-restore`/`nft -f` on a generated ruleset; *incl. parse* runs \
         from the manifest change being seen to the maps written (standalone mode re-reads and parses \
         every manifest on any change). Peers: wall time of `iptables-restore --noflush` (partial sync \
         for a change, as kube-proxy's `MinimizeIPTablesRestore`) and of `nft -f` (one incremental \
         transaction for a change). ms.\n\n\
         | Services | endpoints | weir cold sync | weir cold incl. parse | iptables cold | nftables cold | \
         weir change sync p50/p99 | weir change incl. parse p50/p99 | iptables change p50/p99 | nftables change p50/p99 |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in sizes {
        let peer_cold = |name: &str| {
            s.peers
                .get(name)
                .map_or("—".to_owned(), |p| format!("{:.0}", p.cold_ms))
        };
        let peer_change = |name: &str| {
            s.peers.get(name).map_or("—".to_owned(), |p| {
                format!("{:.1} / {:.1}", p.change_p50_ms, p.change_p99_ms)
            })
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {:.2} / {:.2} | {:.1} / {:.1} | {} | {} |",
            s.services,
            s.total_endpoints,
            s.weir.cold_sync_ms,
            s.weir.cold_programming_ms,
            peer_cold("iptables"),
            peer_cold("nftables"),
            s.weir.change_sync_p50_ms,
            s.weir.change_sync_p99_ms,
            s.weir.change_programming_p50_ms,
            s.weir.change_programming_p99_ms,
            peer_change("iptables"),
            peer_change("nftables"),
        );
    }
    md.push('\n');
}

fn resource_tables(md: &mut String, sizes: &[SizeResult], cni: Option<&CniResults>) {
    md.push_str(
        "## Agent memory and CPU, TC program cost\n\n\
         RSS of weir-agent (MiB): idle before any Service, peak (VmHWM) over the cold load and the \
         changes, at the end. CPU: user+system seconds of the cold load and of all changes. \
         TC: `BPF_PROG_TEST_RUN` of the uplink programs on this size's maps, kernel-timed single \
         runs, median ns/packet less the timer's own cost (measured: single runs minus in-kernel \
         repeats of the packet nothing rewrites; column *timer*).\n\n\
         | Services | RSS idle | RSS peak | RSS end | CPU cold s | CPU changes s | TC new NodePort flow | TC established | TC reply | TC not a Service | timer |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in sizes {
        let (w, c) = (&s.weir, &s.packet_cost);
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.services,
            w.rss_idle_mib,
            w.rss_peak_mib,
            w.rss_end_mib,
            w.cpu_cold_s,
            w.cpu_changes_s,
            c.nodeport_new_flow_ns,
            c.nodeport_established_ns,
            c.reply_ns,
            c.pass_ns,
            c.timer_overhead_ns
        );
    }
    md.push('\n');
    if let Some(cni) = cni {
        let _ = writeln!(
            md,
            "## CNI ADD\n\n| measurement | value |\n|---|---:|\n\
             | ADD latency p50 ({} sequential ADDs) | {:.2} ms |\n| ADD latency p99 | {:.2} ms |\n\
             | {} parallel ADDs, wall time | {:.1} ms |\n",
            cni.sequential, cni.add_p50_ms, cni.add_p99_ms, cni.parallel, cni.parallel_wall_ms
        );
    }
}

/// The targets against what this run measured.
fn targets(md: &mut String, sizes: &[SizeResult]) {
    md.push_str("## Targets\n\n| target | measured | |\n|---|---|---|\n");
    let mut row = |target: &str, measured: Option<(String, bool)>| {
        let (text, mark) = match measured {
            Some((text, true)) => (text, "met"),
            Some((text, false)) => (text, "**missed**"),
            None => ("not measured in this run".to_owned(), "—"),
        };
        let _ = writeln!(md, "| {target} | {text} | {mark} |");
    };
    let at_10k = sizes.iter().find(|s| s.services == 10_000);
    for (peer, goal) in [("direct", 0.95), ("iptables", 3.0), ("nftables", 1.2)] {
        row(
            &format!("ClusterIP rate at 10k Services ≥ {goal}× {peer}"),
            at_10k
                .and_then(|s| ratio_of(s, "clusterip", peer))
                .map(|r| (format!("{r:.2}×"), r >= goal)),
        );
    }
    let p99: Vec<(usize, f64)> = sizes
        .iter()
        .filter_map(|s| Some((s.services, s.clusterip.get("weir")?.p99_us.median)))
        .collect();
    let flat = match (p99.first(), p99.last()) {
        (Some(first), Some(last)) if p99.len() > 1 && first.1 > 0.0 => {
            let worst = p99
                .iter()
                .map(|(_, v)| (v / first.1 - 1.0).abs())
                .fold(0.0, f64::max);
            Some((
                format!(
                    "{:.0} µs at {} → {:.0} µs at {} (largest deviation {:.0}%)",
                    first.1,
                    first.0,
                    last.1,
                    last.0,
                    worst * 100.0
                ),
                worst <= 0.10,
            ))
        }
        _ => None,
    };
    row("weir first-connect p99 flat (±10%) across sizes", flat);
    let cold = sizes.iter().find(|s| s.services >= 10_000).map(|s| {
        (
            format!(
                "{:.0} ms sync pass ({:.0} ms incl. parse) for {} Services / {} endpoints",
                s.weir.cold_sync_ms, s.weir.cold_programming_ms, s.services, s.total_endpoints
            ),
            s.weir.cold_sync_ms < 1000.0,
        )
    });
    row("cold programming of 10k Services < 1 s", cold);
    let change = sizes.iter().max_by_key(|s| s.services).map(|s| {
        (
            format!(
                "{:.2} ms sync pass ({:.1} ms incl. parse) at {} Services",
                s.weir.change_sync_p99_ms, s.weir.change_programming_p99_ms, s.services
            ),
            s.weir.change_sync_p99_ms < 5.0,
        )
    });
    row("one endpoint change p99 < 5 ms", change);
    let rss = sizes.iter().find(|s| s.services >= 10_000).map(|s| {
        (
            format!(
                "{:.1} MiB peak at {} Services / {} endpoints",
                s.weir.rss_peak_mib, s.services, s.total_endpoints
            ),
            s.weir.rss_peak_mib < 64.0,
        )
    });
    row("agent RSS < 64 MiB at 10k Services", rss);
    let tc = sizes.iter().max_by_key(|s| s.services).map(|s| {
        let c = &s.packet_cost;
        let worst = c
            .nodeport_new_flow_ns
            .max(c.nodeport_established_ns)
            .max(c.reply_ns);
        (
            format!(
                "{:.0} ns new flow, {:.0} ns established, {:.0} ns reply at {} Services",
                c.nodeport_new_flow_ns, c.nodeport_established_ns, c.reply_ns, s.services
            ),
            worst < 100.0,
        )
    });
    row("TC program < 100 ns/packet", tc);
    md.push('\n');
}

fn charts(sizes: &[SizeResult]) -> Vec<(&'static str, String)> {
    #[expect(clippy::cast_precision_loss, reason = "Service counts are small")]
    let x = |s: &SizeResult| s.services as f64;
    let series = |pick: &dyn Fn(&SizeResult, &str) -> Option<f64>| -> Vec<Series> {
        DATAPATHS
            .iter()
            .map(|d| Series {
                name: (*d).to_owned(),
                color: svg::color(d),
                points: sizes.iter().filter_map(|s| Some((x(s), pick(s, d)?))).collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let chart = |title, y_label, log_y| Chart {
        title,
        x_label: "Services (log scale)",
        y_label,
        log_y,
    };
    vec![
        (
            "clusterip_p99.svg",
            svg::render(
                &chart("ClusterIP first-connect latency, p99", "µs", false),
                &series(&|s, d| Some(s.clusterip.get(d)?.p99_us.median)),
            ),
        ),
        (
            "clusterip_rate.svg",
            svg::render(
                &chart("ClusterIP connection rate", "transactions/s", false),
                &series(&|s, d| Some(s.clusterip.get(d)?.rate.median)),
            ),
        ),
        (
            "nodeport_rate.svg",
            svg::render(
                &chart("NodePort connection rate", "transactions/s", false),
                &series(&|s, d| Some(s.nodeport.get(d)?.rate.median)),
            ),
        ),
        (
            "programming_cold.svg",
            svg::render(
                &chart("Cold programming of all Services", "ms (log scale)", true),
                &series(&|s, d| match d {
                    "weir" => Some(s.weir.cold_sync_ms),
                    "direct" => None,
                    peer => Some(s.peers.get(peer)?.cold_ms),
                }),
            ),
        ),
    ]
}

/// What the numbers were measured on.
fn machine() -> serde_json::Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let memory_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let output = |program: &str, args: &[&str]| -> String {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut commit = output("git", &["rev-parse", "--short", "HEAD"]);
    if !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        commit.push_str(" + uncommitted changes");
    }
    json!({
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        "memory_gib": memory_kib / 1024.0 / 1024.0,
        "iptables": output("iptables-legacy", &["-V"]),
        "nft": output("nft", &["-v"]),
        "rustc": output("rustc", &["--version"]),
        "commit": commit,
        "date": output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}
