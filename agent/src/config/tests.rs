use std::path::Path;

use clap::Parser as _;

use super::*;
use crate::reconcile::maglev;

const PATH: &str = "/etc/weir/agent.yaml";

/// Flags as given on a command line (no environment involved: the test
/// names only flags without env, or sets none of the env variables).
fn flags(args: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("weir-agent").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn with_file(args: &[&str], yaml: &str) -> Result<Settings> {
    let mut flags = flags(args);
    flags.config = Some(PATH.into());
    Settings::merge(&flags, &FileConfig::parse(Path::new(PATH), yaml)?)
}

fn error(args: &[&str], yaml: &str) -> String {
    match with_file(args, yaml) {
        Ok(settings) => panic!("accepted: {settings:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_todays_flag_defaults() {
    let s = Settings::merge(&flags(&["--manifests", "/m"]), &FileConfig::default()).unwrap();
    assert_eq!(s.source, Source::Manifests("/m".into()));
    assert_eq!(s.bpffs, Path::new("/sys/fs/bpf/weir"));
    assert_eq!(s.cgroup, Path::new("/sys/fs/cgroup"));
    assert_eq!(s.poll_interval, Duration::from_millis(500));
    assert_eq!(s.cni_conf_dir, Path::new("/etc/cni/net.d"));
    assert_eq!(s.cni_data_dir, Path::new("/var/lib/cni/weir"));
    assert_eq!(s.pod_mtu, 1500);
    assert_eq!(s.node_port_range, 30_000..=32_767);
    assert_eq!(s.lb_algorithm, Algorithm::Random);
    assert_eq!(s.maglev_table_size, maglev::DEFAULT_TABLE_SIZE);
    assert_eq!(s.map_sizes, MapSizes::default());
    assert_eq!(s.log_level, "info");
    assert_eq!(s.health_address, Some("0.0.0.0:9879".parse().unwrap()));
    assert_eq!(s.metrics_address, Some("0.0.0.0:9962".parse().unwrap()));
    assert!(!s.masquerade);
}

const FULL: &str = "
apiVersion: weir.dev/v1alpha1
kind: AgentConfiguration
manifests: /srv/manifests
bpffs: /sys/fs/bpf/w
cgroup: /sys/fs/cgroup/w
statusFile: /run/weir/status.json
pollIntervalMs: 250
nodeName: node-1
cniConfDir: /c
cniDataDir: /d
podMTU: 1450
device: eth0
clusterCIDR: 10.244.0.0/16
serviceCIDR: 10.96.0.0/12
masquerade: true
nodePortRange: 30000-30100
lbAlgorithm: maglev
maglevTableSize: 251
mapSizes: {services: 1000, backends: 500, affinity: 100, nat: 2000}
logLevel: debug
healthAddress: 127.0.0.1:1234
metricsAddress: \"off\"
";

#[test]
fn a_file_sets_every_field() {
    let s = with_file(&[], FULL).unwrap();
    assert_eq!(s.config_file.as_deref(), Some(Path::new(PATH)));
    assert_eq!(s.source, Source::Manifests("/srv/manifests".into()));
    assert_eq!(s.bpffs, Path::new("/sys/fs/bpf/w"));
    assert_eq!(s.status_file.as_deref(), Some(Path::new("/run/weir/status.json")));
    assert_eq!(s.poll_interval, Duration::from_millis(250));
    assert_eq!(s.node_name.as_deref(), Some("node-1"));
    assert_eq!(s.pod_mtu, 1450);
    assert_eq!(s.device.as_deref(), Some("eth0"));
    assert_eq!(s.cluster_cidr, Some("10.244.0.0/16".parse().unwrap()));
    assert!(s.masquerade);
    assert_eq!(s.node_port_range, 30_000..=30_100);
    assert_eq!(s.lb_algorithm, Algorithm::Maglev);
    assert_eq!(s.maglev_table_size, 251);
    assert_eq!(
        s.map_sizes,
        MapSizes {
            services: 1000,
            backends: 500,
            affinity: 100,
            nat: 2000
        }
    );
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.health_address, Some("127.0.0.1:1234".parse().unwrap()));
    assert_eq!(s.metrics_address, None);
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let s = with_file(
        &[
            "--bpffs",
            "/flag",
            "--map-size-services",
            "7",
            "--lb-algorithm",
            "random",
            "--node-port-range",
            "31000-31001",
            "--metrics-address",
            "127.0.0.1:1",
        ],
        FULL,
    )
    .unwrap();
    assert_eq!(s.bpffs, Path::new("/flag"));
    assert_eq!(s.map_sizes.services, 7);
    // Not given as a flag: the file's.
    assert_eq!(s.map_sizes.backends, 500);
    assert_eq!(s.lb_algorithm, Algorithm::Random);
    assert_eq!(s.node_port_range, 31_000..=31_001);
    assert_eq!(s.metrics_address, Some("127.0.0.1:1".parse().unwrap()));
    // Neither: the default.
    let partial = with_file(&[], "manifests: /m\n").unwrap();
    assert_eq!(partial.cgroup, Path::new("/sys/fs/cgroup"));
}

#[test]
fn an_unknown_key_is_named() {
    let e = error(&[], "manifests: /m\nmasquarade: true\n");
    assert!(e.contains(PATH) && e.contains("masquarade"), "{e}");
    let nested = error(&[], "manifests: /m\nmapSizes: {service: 1}\n");
    assert!(nested.contains("service"), "{nested}");
}

#[test]
fn malformed_values_name_the_field_and_the_file() {
    for (yaml, field) in [
        ("clusterCIDR: 10.0.0.0/33", "clusterCIDR"),
        ("serviceCIDR: nope\nnodeName: n", "serviceCIDR"),
        ("nodePortRange: 32767-30000", "nodePortRange"),
        ("nodePortRange: 30000", "nodePortRange"),
        ("maglevTableSize: 1000", "maglevTableSize"),
        ("mapSizes: {nat: 0}", "mapSizes.nat"),
        ("lbAlgorithm: roundrobin", "lbAlgorithm"),
        ("podMTU: 20", "podMTU"),
        ("pollIntervalMs: 1", "pollIntervalMs"),
        ("healthAddress: localhost", "healthAddress"),
        ("logLevel: '=[['", "logLevel"),
        ("kind: KubeProxyConfiguration", "kind"),
        ("podMTU: big", "podMTU"),
    ] {
        let e = error(&[], &format!("manifests: /m\n{yaml}\n"));
        assert!(e.contains(PATH), "{yaml}: {e}");
        assert!(e.contains(field), "{yaml}: {e}");
    }
}

#[test]
fn masquerade_and_the_service_cidr_need_their_companions() {
    let e = error(&[], "manifests: /m\nmasquerade: true\nnodeName: n\n");
    assert!(
        e.contains("masquerade") && e.contains("device, clusterCIDR"),
        "{e}"
    );
    assert!(e.contains(PATH), "{e}");
    let flag = error(&["--masquerade"], "manifests: /m\n");
    assert!(
        flag.contains("--masquerade") && flag.contains("nodeName"),
        "{flag}"
    );
    let e = error(&[], "manifests: /m\nserviceCIDR: 10.96.0.0/12\n");
    assert!(e.contains("serviceCIDR") && e.contains("nodeName"), "{e}");
    // Companions from the file complete a flag.
    let s = with_file(
        &["--masquerade"],
        "manifests: /m\nnodeName: n\ndevice: eth0\nclusterCIDR: 10.244.0.0/16\n",
    )
    .unwrap();
    assert!(s.masquerade);
}

#[test]
fn manifests_and_kubeconfig_exclude_each_other() {
    let e = error(&["--kubeconfig", "/k"], "manifests: /m\n");
    assert!(e.contains("manifests") && e.contains("kubeconfig"), "{e}");
    let k = with_file(&["--kubeconfig", "/k"], "").unwrap();
    assert_eq!(
        k.source,
        Source::Kubernetes {
            kubeconfig: Some("/k".into()),
            api_server: None,
        }
    );
    let in_cluster = with_file(&[], "").unwrap();
    assert_eq!(
        in_cluster.source,
        Source::Kubernetes {
            kubeconfig: None,
            api_server: None
        }
    );
    assert_eq!(in_cluster.manifests(), None);
}

#[test]
fn equal_or_disabled_addresses() {
    let s = with_file(
        &["--health-address", "off"],
        "manifests: /m\nmetricsAddress: ''\n",
    )
    .unwrap();
    assert_eq!((s.health_address, s.metrics_address), (None, None));
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let mut f = flags(&["--manifests", "/m"]);
    f.config = Some("/nonexistent/weir.yaml".into());
    let e = Settings::load(&f).unwrap_err();
    assert!(matches!(e, Error::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/weir.yaml"));
}

#[test]
fn the_api_server_address_comes_from_flags_or_the_file() {
    let api = |s: Settings| match s.source {
        Source::Kubernetes { api_server, .. } => api_server,
        Source::Manifests(_) => panic!("standalone: {s:?}"),
    };
    let file = api(with_file(&[], "apiServerHost: 192.0.2.10\napiServerPort: 443\n").unwrap());
    assert_eq!(
        file,
        Some(ApiServer {
            host: "192.0.2.10".into(),
            port: 443
        })
    );
    // The port defaults to kube-apiserver's; a flag wins over the file.
    let flag = api(with_file(
        &["--api-server-host", "cp.example"],
        "apiServerHost: 192.0.2.10\n",
    )
    .unwrap());
    assert_eq!(
        flag,
        Some(ApiServer {
            host: "cp.example".into(),
            port: DEFAULT_API_SERVER_PORT
        })
    );
    // With a kubeconfig too: it overrides the kubeconfig's server.
    let both = with_file(
        &["--kubeconfig", "/k", "--api-server-port", "8443"],
        "apiServerHost: h\n",
    )
    .unwrap();
    assert_eq!(
        both.source,
        Source::Kubernetes {
            kubeconfig: Some("/k".into()),
            api_server: Some(ApiServer {
                host: "h".into(),
                port: 8443
            }),
        }
    );
    assert_eq!(api(with_file(&[], "").unwrap()), None);
}

#[test]
fn a_bad_api_server_address_names_the_key() {
    let e = error(&[], "apiServerHost: https://192.0.2.10:6443\n");
    assert!(e.contains("apiServerHost") && e.contains("URL"), "{e}");
    let e = error(&[], "apiServerPort: 6443\n");
    assert!(e.contains("apiServerPort") && e.contains("apiServerHost"), "{e}");
    let e = error(&[], "apiServerHost: h\napiServerPort: 0\n");
    assert!(e.contains("apiServerPort"), "{e}");
    let e = error(&[], "manifests: /m\napiServerHost: h\n");
    assert!(e.contains("apiServerHost") && e.contains("standalone"), "{e}");
    let bad_flag = Flags::try_parse_from(["weir-agent", "--api-server-host", "10.0.0.1:6443"]);
    assert!(bad_flag.is_err());
}
