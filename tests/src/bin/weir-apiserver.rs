//! `weir-apiserver`: the Kubernetes API server stand-in of the tests (see
//! `weir_tests::apiserver`), as a process to run in a lab netns.
//!
//! Prints `listening on ADDR:PORT` on stdout once bound — starters wait for
//! that line — and logs requests to stderr at debug level.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use weir_tests::apiserver::{ApiServer, Config, LISTENING_PREFIX, enter_netns, read_dir};

/// A Kubernetes API server stand-in (list/watch over plain HTTP) for tests.
#[derive(Debug, Parser)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// Directory of YAML manifests to load as the initial objects.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Network namespace to serve in: a name under /run/netns, or a path.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Quiet time before a watch with allowWatchBookmarks gets a BOOKMARK.
    #[arg(long, default_value_t = 1000)]
    bookmark_interval_ms: u64,
    /// Events kept for watches to resume from.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug,hyper=info")),
        )
        .init();
    if let Some(netns) = &args.netns {
        let path = if netns.components().count() > 1 {
            netns.clone()
        } else {
            PathBuf::from("/run/netns").join(netns)
        };
        // Before the runtime exists: setns(2) moves only this thread, and
        // the runtime's threads inherit its netns.
        enter_netns(&path).with_context(|| format!("entering {}", path.display()))?;
    }
    let server = ApiServer::new(Config {
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms.max(10)),
        history_limit: args.history,
        ..Config::default()
    });
    if let Some(dir) = &args.seed {
        for object in read_dir(dir).with_context(|| format!("reading seed manifests in {}", dir.display()))? {
            server
                .store()
                .seed(object)
                .with_context(|| format!("seeding from {}", dir.display()))?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let bound = listener.local_addr()?;
        println!("{LISTENING_PREFIX}{bound}");
        std::io::stdout().flush()?;
        tracing::info!("serving the API on http://{bound}");
        server.serve(listener).await.context("serving")
    })
}
