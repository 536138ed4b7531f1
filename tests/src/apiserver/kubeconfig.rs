//! A kubeconfig for the stand-in: one cluster at a plain-HTTP server, no
//! credentials (the stand-in has no authentication).

use std::path::Path;

use super::{Error, Result};

/// Writes a kubeconfig at `path` whose current context talks to `server`
/// (`http://198.18.0.2:6443`), with `default` as namespace.
pub fn write_kubeconfig(path: &Path, server: &str) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: weir-test
  cluster:
    server: {server}
users:
- name: weir-test
  user: {{}}
contexts:
- name: weir-test
  context:
    cluster: weir-test
    user: weir-test
    namespace: default
current-context: weir-test
"
    );
    std::fs::write(path, text).map_err(|err| Error::io(format!("writing {}", path.display()), err))
}
