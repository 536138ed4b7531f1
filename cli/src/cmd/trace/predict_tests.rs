//! The prediction over hand-built maps, routes and a fake remote agent.

use std::net::Ipv4Addr;

use weir_agent::maps::dump::{Backend, Frontend, MapDump, Slot};
use weir_agent::maps::policy_eval::{Direction, Flow, PolicySnapshot};
use weir_agent::ops::trace::VerdictDoc;
use weir_common::policy::{ENDPOINT_ISOLATE_INGRESS, PolicyEndpoint};

use super::{Inputs, predict};
use crate::cmd::trace::pick::SelectionState;
use crate::cmd::trace::routes::parse;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn be(s: &str) -> u32 {
    u32::from_ne_bytes(ip(s).octets())
}

/// node-1 (198.18.0.11): client 10.244.1.2, a 10.244.1.3 (isolated for
/// ingress, no rules: deny-all); node-2 behind 198.18.0.12.
const ROUTES: &str = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0002F40A\t0C0012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
weir0001\t0201F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
weir0002\t0301F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
";

fn frontend(address: &str, port: u16, count: u16, flags: &[&str], backends: &[u32]) -> Frontend {
    Frontend {
        address: ip(address),
        port,
        protocol: "TCP".into(),
        count: Some(count),
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        affinity_timeout: None,
        slots: backends
            .iter()
            .zip(1..)
            .map(|(b, slot)| Slot { slot, backend: *b })
            .collect(),
        maglev: None,
    }
}

fn backend(id: u32, address: &str, local: bool) -> Backend {
    Backend {
        id,
        address: ip(address),
        port: 8080,
        protocol: "TCP".into(),
        flags: if local { vec!["local".into()] } else { Vec::new() },
    }
}

fn world() -> (PolicySnapshot, MapDump) {
    let mut policy = PolicySnapshot::default();
    policy.endpoints.insert(
        be("10.244.1.3"),
        PolicyEndpoint {
            id: 1,
            flags: ENDPOINT_ISOLATE_INGRESS,
            pad: 0,
        },
    );
    policy.endpoints.insert(
        be("10.244.1.2"),
        PolicyEndpoint {
            id: 2,
            flags: 0,
            pad: 0,
        },
    );
    policy.hosts.insert(be("198.18.0.11"));
    let mut lb = MapDump::default();
    lb.frontends.push(frontend("10.96.0.10", 80, 2, &[], &[1, 2]));
    lb.frontends.push(frontend("10.96.0.11", 80, 1, &[], &[2]));
    lb.frontends.push(frontend("10.96.0.12", 80, 0, &[], &[]));
    lb.frontends
        .push(frontend("198.18.0.11", 30080, 1, &["external"], &[2]));
    lb.backends.push(backend(1, "10.244.1.3", true));
    lb.backends.push(backend(2, "10.244.2.2", false));
    lb.masquerade.node_ip = Some(ip("198.18.0.11"));
    (policy, lb)
}

/// Affinity entries and Maglev tables by hand; the clock at 100 s.
#[derive(Default)]
struct Fake {
    affinity: Vec<(weir_common::lb::Affinity4Key, weir_common::lb::Affinity4Value)>,
    maglev: Vec<(weir_common::Service4Key, weir_common::lb::MaglevTable)>,
    cookie: Option<u64>,
}

impl SelectionState for Fake {
    fn affinity(&self, key: &weir_common::lb::Affinity4Key) -> Option<weir_common::lb::Affinity4Value> {
        self.affinity.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
    fn maglev(&self, master: &weir_common::Service4Key) -> Option<weir_common::lb::MaglevTable> {
        self.maglev.iter().find(|(k, _)| k == master).map(|(_, v)| *v)
    }
    fn now_ns(&self) -> u64 {
        100_000_000_000
    }
    fn netns_cookie(&self) -> Option<u64> {
        self.cookie
    }
}

fn run(src: &str, dst: &str, port: u16) -> super::Trace {
    run_with(src, dst, port, (world(), &Fake::default(), None))
}

fn run_with(
    src: &str,
    dst: &str,
    port: u16,
    ((policy, lb), selection, source_port): ((PolicySnapshot, MapDump), &Fake, Option<u16>),
) -> super::Trace {
    let routes = parse(ROUTES);
    // node-2's agent: 10.244.2.2 allows only node-1's address.
    let remote = |node: Ipv4Addr, flow: &Flow, direction: Direction| -> Result<VerdictDoc, String> {
        assert_eq!((node, direction), (ip("198.18.0.12"), Direction::Ingress));
        let allowed = flow.src == ip("198.18.0.11");
        Ok(VerdictDoc {
            verdict: if allowed { "allow" } else { "drop" }.into(),
            direction: "ingress".into(),
            pod: Some("x/b".into()),
            endpoint: Some(5),
            rule: allowed.then_some(9),
            policies: vec!["x/only-node".into()],
            reason: String::new(),
        })
    };
    let inputs = Inputs {
        policy: &policy,
        lb: &lb,
        routes: &routes,
        endpoints: &[],
        remote: &remote,
        selection,
        source_port,
    };
    predict(
        &inputs,
        &Flow {
            src: ip(src),
            dst: ip(dst),
            port,
            proto: 6,
        },
    )
}

#[test]
fn a_cluster_ip_lists_every_backend_with_its_own_verdicts() {
    let t = run("10.244.1.2", "10.96.0.10", 80);
    assert_eq!(t.source_kind, "pod");
    let f = t.frontend.as_ref().unwrap();
    assert_eq!(
        (f.path.as_str(), f.backends, f.selection.as_str()),
        ("socket", 2, "random")
    );
    let outcomes: Vec<_> = t
        .candidates
        .iter()
        .map(|c| (c.backend.as_str(), c.location.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("10.244.1.3:8080", "local", "dropped"),
            ("10.244.2.2:8080", "node 198.18.0.12", "dropped")
        ]
    );
    // The source pod is not isolated for egress.
    assert_eq!(t.candidates[0].egress.as_ref().unwrap().verdict, "allow");
    assert_eq!(t.summary, "dropped by policy x/only-node");
    assert_eq!(t.exit_code(), crate::exit::DROPPED);
}

#[test]
fn no_endpoints_is_refused_and_no_frontend_is_the_destination_as_is() {
    let refused = run("10.244.1.2", "10.96.0.12", 80);
    assert_eq!(
        (refused.summary.as_str(), refused.candidates.len()),
        ("refused (no endpoints)", 0)
    );
    assert_eq!(refused.exit_code(), crate::exit::DROPPED);
    let direct = run("10.244.1.2", "198.18.0.12", 22);
    assert!(direct.frontend.is_none());
    assert_eq!(direct.candidates[0].location, "direct");
    assert_eq!((direct.summary.as_str(), direct.exit_code()), ("delivered", 0));
}

#[test]
fn the_node_itself_is_always_let_into_its_pods() {
    let t = run("198.18.0.11", "10.244.1.3", 8080);
    assert_eq!(t.source_kind, "node");
    assert!(t.candidates[0].egress.is_none());
    assert_eq!(t.summary, "delivered");
}

#[test]
fn external_clients_take_the_per_packet_path_with_snat_to_remote_backends() {
    let t = run("198.18.0.100", "198.18.0.11", 30080);
    assert_eq!(t.source_kind, "external");
    assert_eq!(t.frontend.as_ref().unwrap().path, "per_packet");
    assert_eq!(t.candidates[0].nat.as_deref(), Some("snat to 198.18.0.11"));
    // Seen from node-1's address, which node-2's policy allows.
    assert_eq!(t.summary, "delivered");
    // A ClusterIP is no frontend for them.
    assert!(run("198.18.0.100", "10.96.0.10", 80).frontend.is_none());
}

#[test]
fn the_table_shows_each_step_and_the_summary() {
    use crate::output::Render as _;
    let table = run("10.244.1.2", "10.96.0.10", 80).table();
    assert!(
        table.starts_with("10.244.1.2 (pod) → 10.96.0.10:80/TCP\n"),
        "{table}"
    );
    assert!(
        table.contains("frontend  10.96.0.10:80/TCP: 2 backend(s), socket path, random selection"),
        "{table}"
    );
    assert!(
        table.contains("drop (isolated, and no rule names the peer)"),
        "{table}"
    );
    assert!(table.contains("drop (x/only-node)"), "{table}");
    assert!(
        table.ends_with("summary   dropped by policy x/only-node\n"),
        "{table}"
    );
}

#[test]
fn an_address_without_a_route_is_unreachable_but_the_node_itself_is_not() {
    let routes = format!("{ROUTES}*\t0000600A\t00000000\t0201\t0\t0\t0\t0000F0FF\t0\t0\t0\n");
    let (policy, lb) = world();
    let routes = parse(&routes);
    let remote =
        |_: Ipv4Addr, _: &Flow, _: Direction| -> Result<VerdictDoc, String> { Err("not asked".into()) };
    let inputs = Inputs {
        policy: &policy,
        lb: &lb,
        routes: &routes,
        endpoints: &[],
        remote: &remote,
        selection: &Fake::default(),
        source_port: None,
    };
    let flow = |dst: &str| Flow {
        src: ip("10.244.1.2"),
        dst: ip(dst),
        port: 80,
        proto: 6,
    };
    // A ClusterIP no Service has: the Service range's unreachable route.
    let t = predict(&inputs, &flow("10.96.0.99"));
    assert_eq!(
        (t.summary.as_str(), t.exit_code()),
        ("unreachable (no route)", crate::exit::DROPPED)
    );
    assert_eq!(
        predict(&inputs, &flow("192.0.2.1")).candidates[0].location,
        "unreachable"
    );
    assert_eq!(predict(&inputs, &flow("198.18.0.11")).summary, "delivered");
}

#[test]
fn a_live_affinity_entry_names_the_backend_and_alone_decides_the_summary() {
    use weir_common::lb::{Affinity4Key, Affinity4Value};
    let (policy, mut lb) = world();
    let f = lb
        .frontends
        .iter_mut()
        .find(|f| f.address == ip("10.96.0.10"))
        .unwrap();
    f.flags.push("affinity".into());
    f.affinity_timeout = Some(60);
    let key = Affinity4Key {
        client: 7,
        address: be("10.96.0.10"),
        port: 80u16.to_be(),
        proto: 6,
        pad: 0,
    };
    // Client 7's entry names backend 2, last used `secs_ago`; the source's
    // netns has cookie `cookie`.
    let trace = |secs_ago: u64, cookie: u64| {
        let fake = Fake {
            affinity: vec![(
                key,
                Affinity4Value {
                    last_used_ns: 100_000_000_000 - secs_ago * 1_000_000_000,
                    backend_id: 2,
                    pad: 0,
                },
            )],
            cookie: Some(cookie),
            ..Fake::default()
        };
        run_with(
            "10.244.1.2",
            "10.96.0.10",
            80,
            ((policy.clone(), lb.clone()), &fake, None),
        )
    };
    let t = trace(10, 7);
    let pick = &t.frontend.as_ref().unwrap().pick;
    assert_eq!(
        (pick.by.as_str(), pick.backend.as_deref()),
        ("affinity", Some("10.244.2.2:8080")),
        "{pick:?}"
    );
    let picked: Vec<_> = t
        .candidates
        .iter()
        .filter(|c| c.picked)
        .map(|c| c.backend.as_str())
        .collect();
    assert_eq!(picked, ["10.244.2.2:8080"]);
    // The picked backend's outcome alone is the summary.
    assert_eq!(t.summary, "dropped by policy x/only-node");
    // Past the timeout, or for another client: random again.
    let t = trace(61, 7);
    let pick = &t.frontend.as_ref().unwrap().pick;
    assert_eq!((pick.by.as_str(), pick.backend.as_deref()), ("random", None));
    assert!(pick.reason.contains("expired"), "{pick:?}");
    let t = trace(1, 8);
    assert!(t.frontend.unwrap().pick.reason.contains("no affinity entry"));
}

#[test]
fn maglev_names_the_backend_its_table_holds_for_the_tuples_hash() {
    use weir_common::lb::{MAGLEV_MAX_TABLE_SIZE, MaglevTable, flow_hash};
    let (policy, mut lb) = world();
    lb.frontends.push(frontend(
        "198.18.0.11",
        30090,
        2,
        &["external", "maglev"],
        &[1, 2],
    ));
    let master = weir_common::Service4Key {
        address: be("198.18.0.11"),
        port: 30090u16.to_be(),
        backend_slot: 0,
        proto: 6,
        pad: [0; 3],
    };
    // A 7-entry table alternating the two backends.
    let mut table = MaglevTable {
        size: 7,
        pad: 0,
        backends: [0; MAGLEV_MAX_TABLE_SIZE as usize],
    };
    for (i, slot) in table.backends.iter_mut().take(7).enumerate() {
        *slot = if i % 2 == 0 { 1 } else { 2 };
    }
    let fake = Fake {
        maglev: vec![(master, table)],
        ..Fake::default()
    };
    let world = || (policy.clone(), lb.clone());
    let unknown = run_with("198.18.0.100", "198.18.0.11", 30090, (world(), &fake, None));
    let pick = unknown.frontend.unwrap().pick;
    assert_eq!((pick.by.as_str(), pick.backend.as_deref()), ("maglev", None));
    assert!(pick.reason.contains("--source-port"), "{}", pick.reason);
    for sport in [40_000u16, 40_001, 40_002, 40_003] {
        let hash = flow_hash(
            be("198.18.0.100"),
            be("198.18.0.11"),
            sport.to_be(),
            30090u16.to_be(),
            6,
        );
        let expected = if (hash % 7).is_multiple_of(2) {
            "10.244.1.3:8080"
        } else {
            "10.244.2.2:8080"
        };
        let t = run_with(
            "198.18.0.100",
            "198.18.0.11",
            30090,
            (world(), &fake, Some(sport)),
        );
        let pick = &t.frontend.as_ref().unwrap().pick;
        assert_eq!(
            pick.backend.as_deref(),
            Some(expected),
            "source port {sport}: {pick:?}"
        );
        assert_eq!(t.candidates.iter().filter(|c| c.picked).count(), 1);
    }
}
