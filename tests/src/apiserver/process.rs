//! The `weir-apiserver` process in a netns: started, waited for (its
//! `listening on` line), reached through an [`ApiClient`], killed on drop.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{ApiClient, Error, Result, write_kubeconfig};

/// What the binary prints on stdout once bound, before the address.
pub const LISTENING_PREFIX: &str = "listening on ";

/// How to start the stand-in.
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// The `weir-apiserver` executable.
    pub binary: PathBuf,
    /// A directory of manifests loaded as the initial objects.
    pub seed: Option<PathBuf>,
    /// Quiet time before a watch bookmark (default: the binary's, 1 s).
    pub bookmark_interval: Option<Duration>,
}

impl ApiServerOptions {
    /// Defaults, with `binary`.
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        ApiServerOptions {
            binary: binary.into(),
            seed: None,
            bookmark_interval: None,
        }
    }
}

/// A running `weir-apiserver`. Derefs to its [`ApiClient`] (`apply`,
/// `delete`, `compact`, …). Killed on drop; its log is printed first when
/// dropped during a panic.
#[derive(Debug)]
pub struct ApiServerHandle {
    child: Child,
    client: ApiClient,
    url: String,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl ApiServerHandle {
    /// Starts the binary in the netns at `netns`, listening on `listen`,
    /// with its log and kubeconfig in `dir`; returns once it listens.
    pub fn start(options: &ApiServerOptions, netns: &Path, listen: SocketAddr, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| Error::io(format!("creating {}", dir.display()), err))?;
        let log = dir.join("apiserver.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|err| Error::io(format!("creating {}", log.display()), err))?;
        let mut command = Command::new(&options.binary);
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--netns")
            .arg(netns);
        if let Some(seed) = &options.seed {
            command.arg("--seed").arg(seed);
        }
        if let Some(interval) = options.bookmark_interval {
            command
                .arg("--bookmark-interval-ms")
                .arg(interval.as_millis().to_string());
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = command
            .spawn()
            .map_err(|err| Error::io(format!("starting {}", options.binary.display()), err))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|err| Error::io("reading the stand-in's stdout", err))?;
        }
        if !line.starts_with(LISTENING_PREFIX) {
            let _ = child.kill();
            let exit = child
                .wait()
                .map_err(|err| Error::io("reaping the stand-in", err))?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::parse(
                format!("{} exited ({exit}) before listening", options.binary.display()),
                text.trim(),
            ));
        }
        let url = format!("http://{listen}");
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url)?;
        Ok(ApiServerHandle {
            child,
            client: ApiClient::new(listen, Some(netns.to_owned())),
            url,
            kubeconfig,
            log,
        })
    }

    /// Its pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR:PORT`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig pointing at it (for `weir-agent --kubeconfig`, or
    /// `KUBECONFIG`).
    #[must_use]
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Its log (stderr) so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl std::ops::Deref for ApiServerHandle {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.client
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- weir-apiserver log (last lines) ---\n{}", tail.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
