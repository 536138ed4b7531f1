//! The image build file against the workspace and the manifests.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;

use crate::manifests::{deploy_dir, documents};

/// The binary targets of the workspace's packages.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_image_has_the_workspaces_binaries_the_manifests_run() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("deploy/Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().expect("a runtime stage");
    let binaries = workspace_binaries();
    let mut in_image = BTreeSet::new();
    for line in runtime.lines().filter(|l| l.starts_with("COPY --from=builder ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, _, source, target] = words[..] else {
            panic!("unexpected COPY: {line}")
        };
        let name = source.rsplit('/').next().unwrap_or_default();
        assert!(
            source.starts_with("/src/target/release/") && binaries.contains(name),
            "{source} is no release binary of the workspace ({binaries:?})"
        );
        assert_eq!(target, format!("/usr/local/bin/{name}"));
        in_image.insert(target.to_owned());
    }
    assert!(in_image.len() >= 3, "agent, plugin and CLI: {in_image:?}");
    // install-cni takes weir-cni from next to weir-agent.
    assert!(in_image.contains("/usr/local/bin/weir-cni"));
    let entrypoint = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec form");
    assert!(in_image.contains(&entrypoint[0]));

    // Every weir binary a manifest runs is in the image.
    for document in documents().iter().filter(|d| d.kind() == "DaemonSet") {
        let daemon_set: DaemonSet = document.parse();
        let pod = daemon_set.spec.template.spec.expect("a pod spec");
        for container in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
            let program = container
                .command
                .as_ref()
                .and_then(|c| c.first())
                .expect("a command");
            if program.starts_with("/usr/local/bin/") {
                assert!(in_image.contains(program), "{program} is not in the image");
            }
            assert!(container.image.as_deref().is_some_and(|i| i.starts_with("weir:")));
        }
    }
}
