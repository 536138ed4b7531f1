//! The `ConfigMap`'s configuration, as the `DaemonSets` run the agent with it.

use std::path::Path;

use clap::{CommandFactory as _, Parser as _};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use weir_agent::config::{CleanupFlags, FileConfig, Flags, InstallCniFlags, Settings};

use crate::manifests::{Document, documents, find};

/// The container's command line as the agent parses it: its command and
/// args, and each `WEIR_*` environment variable as the flag clap reads it
/// from (values from the downward API become a placeholder).
fn command_line(container: &Container) -> Vec<String> {
    let mut line: Vec<String> = container.command.clone().unwrap_or_default();
    line.extend(container.args.clone().unwrap_or_default());
    let command = Flags::command();
    for env in container.env.iter().flatten() {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == env.name.as_str()))
            .unwrap_or_else(|| panic!("{}: {} is no weir-agent setting", container.name, env.name));
        let value = env
            .value
            .clone()
            .unwrap_or_else(|| "from-the-downward-api".to_owned());
        line.push(format!("--{}", arg.get_long().expect("a long flag")));
        line.push(value);
    }
    line
}

/// The agent configuration in the ConfigMap `name`, under `key`.
fn config_file(documents: &[Document], name: &str, key: &str) -> String {
    let map: ConfigMap = find(documents, "ConfigMap", name).parse();
    map.data
        .and_then(|d| d.get(key).cloned())
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
}

/// The settings `container` runs the agent with: its flags, and the file
/// its `--config` names read from the ConfigMap mounted there.
fn settings_of(documents: &[Document], pod: &k8s_openapi::api::core::v1::PodSpec, flags: &Flags) -> Settings {
    let path = flags.config.as_deref().expect("--config");
    let (mount, volume) = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find_map(|m| {
            path.strip_prefix(&m.mount_path)
                .ok()
                .map(|rest| (rest.to_owned(), m.name.clone()))
        })
        .unwrap_or_else(|| panic!("{} is on no volume mount", path.display()));
    let config_map = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.config_map.clone())
        .unwrap_or_else(|| panic!("volume {volume} is no ConfigMap"));
    let text = config_file(documents, &config_map.name, &mount.display().to_string());
    let file = FileConfig::parse(path, &text).unwrap_or_else(|e| panic!("the ConfigMap's config: {e}"));
    Settings::merge(flags, &file).unwrap_or_else(|e| panic!("the DaemonSet's settings: {e}"))
}

/// Whether `path` is on one of `container`'s volume mounts.
fn mounted(container: &Container, path: &Path) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| path.starts_with(&m.mount_path))
}

#[test]
fn the_config_map_configures_the_daemon_sets_agent() {
    let documents = documents();
    let daemon_set: DaemonSet = find(&documents, "DaemonSet", "weir-agent").parse();
    let pod = daemon_set.spec.template.spec.expect("a pod spec");
    let agent = pod
        .containers
        .iter()
        .find(|c| c.name == "agent")
        .expect("the agent container");
    let flags = Flags::try_parse_from(command_line(agent)).unwrap_or_else(|e| panic!("agent flags: {e}"));
    let settings = settings_of(&documents, &pod, &flags);
    assert!(
        settings.node_name.is_some(),
        "the node name comes from the DaemonSet"
    );

    // The probes ask the health address; the annotations name the metrics port.
    let health = settings.health_address.expect("a health address");
    for probe in [
        &agent.liveness_probe,
        &agent.readiness_probe,
        &agent.startup_probe,
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("an HTTP probe");
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(health.port().into())
        );
        assert_eq!(get.host.as_deref(), Some(health.ip().to_string().as_str()));
    }
    let metrics = settings.metrics_address.expect("a metrics address");
    let annotations = daemon_set.metadata.annotations.clone().unwrap_or_default();
    let template =
        find(&documents, "DaemonSet", "weir-agent").value["spec"]["template"]["metadata"]["annotations"]
            .clone();
    assert!(annotations.is_empty());
    assert_eq!(template["prometheus.io/port"], metrics.port().to_string());
    assert_eq!(template["prometheus.io/scrape"], "true");

    // Every path the agent writes is on a host mount.
    let mut paths = vec![
        settings.bpffs.clone(),
        settings.cgroup.clone(),
        settings.cni_conf_dir.clone(),
        settings.cni_data_dir.clone(),
    ];
    paths.extend(settings.status_file.clone());
    paths.extend(settings.verdict_socket.clone());
    for path in &paths {
        assert!(
            mounted(agent, path),
            "{} is on no volume of the agent",
            path.display()
        );
    }

    // The init container installs the plugin into the mounted host directory.
    let init = pod
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "install-cni")
        .expect("install-cni");
    let install = InstallCniFlags::try_parse_from(command_line(init).into_iter().skip(1))
        .unwrap_or_else(|e| panic!("install-cni flags: {e}"));
    assert!(mounted(init, &install.cni_bin_dir));

    // The uninstall step cleans with the same configuration.
    let cleanup_set: DaemonSet = find(&documents, "DaemonSet", "weir-cleanup").parse();
    let cleanup_pod = cleanup_set.spec.template.spec.expect("a pod spec");
    let cleanup = cleanup_pod
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "cleanup")
        .expect("cleanup");
    let cleanup_flags = CleanupFlags::try_parse_from(command_line(cleanup).into_iter().skip(1))
        .unwrap_or_else(|e| panic!("cleanup flags: {e}"));
    assert!(!cleanup_flags.kube_proxy);
    let cleaned = settings_of(&documents, &cleanup_pod, &cleanup_flags.agent);
    assert_eq!(cleaned, settings, "cleanup must see the agent's settings");
    for path in [&settings.bpffs, &settings.cni_conf_dir] {
        assert!(
            mounted(cleanup, path),
            "{} is on no volume of the cleanup",
            path.display()
        );
    }
    assert!(mounted(
        cleanup,
        cleanup_flags.cni_bin_dir.as_deref().expect("--cni-bin-dir")
    ));
}
