//! `weir-probe`: the smallest TCP server and client that tell which backend a
//! connection reached.
//!
//! ```text
//! weir-probe [--netns PATH] [--cgroup DIR] serve --name NAME --listen IP:PORT
//! weir-probe [--netns PATH] [--cgroup DIR] connect IP:PORT [--timeout-ms 1000] [--count N]
//! ```
//!
//! A server answers each connection with `NAME\n` and closes it. A client opens
//! `N` fresh connections one after another and prints one line per attempt: the
//! name that answered, or `error: …`; it exits non-zero if any attempt failed.
//!
//! `--netns` and `--cgroup` are applied before anything else, so every socket is
//! created inside the pod's netns and by a process in the pod's cgroup — which is
//! what makes the node's `connect4` program see the client's `connect()`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

/// Longest answer a client accepts; a server name is a short line.
const MAX_ANSWER: u64 = 256;

#[derive(Debug, Parser)]
#[command(about = "TCP name server and client for weir's netns tests")]
struct Cli {
    /// Network namespace file to join first (e.g. /run/netns/NAME).
    #[arg(long, global = true)]
    netns: Option<PathBuf>,
    /// Cgroup v2 directory to move this process into first.
    #[arg(long, global = true)]
    cgroup: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer every connection with NAME and a newline, until killed.
    Serve {
        /// The name to answer with.
        #[arg(long)]
        name: String,
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Connect, read the server's name and print it (one line per attempt).
    Connect {
        /// Address to dial (a ClusterIP:port or a pod IP:port).
        target: SocketAddr,
        /// Limit for connecting and for reading the answer, per attempt.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Number of attempts, each on a fresh connection.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weir-probe: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(netns) = &cli.netns {
        join_netns(netns).with_context(|| format!("joining netns {}", netns.display()))?;
    }
    if let Some(cgroup) = &cli.cgroup {
        let procs = cgroup.join("cgroup.procs");
        // Writing our pid moves this (single-threaded) process; every socket
        // created from here on is charged to, and filtered by, that cgroup.
        std::fs::write(&procs, std::process::id().to_string())
            .with_context(|| format!("joining cgroup {}", cgroup.display()))?;
    }
    match cli.command {
        Command::Serve { name, listen } => serve(&name, listen),
        Command::Connect {
            target,
            timeout_ms,
            count,
        } => Ok(connect_many(
            target,
            Duration::from_millis(timeout_ms.max(1)),
            count,
        )),
    }
}

/// Moves the calling thread into the network namespace at `path`.
///
/// Must run before any other thread or socket exists: setns(2) switches only the
/// calling thread, and sockets keep the netns they were created in. `main` calls
/// it first thing, while the process is single-threaded.
fn join_netns(path: &Path) -> Result<()> {
    let file = File::open(path)?;
    // SAFETY: setns(2) only reads the descriptor, which `file` keeps open for the
    // duration of the call; CLONE_NEWNET makes the kernel check that it really is
    // a network namespace. No memory is shared with the kernel.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Serves until killed. Prints one line once listening, which is what starters
/// wait for before letting clients dial.
fn serve(name: &str, listen: SocketAddr) -> Result<ExitCode> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    println!("listening on {listen} as {name}");
    std::io::stdout().flush()?;
    let answer = format!("{name}\n");
    for stream in listener.incoming() {
        // One client's trouble (reset, gone) must not stop the server.
        let result = stream.and_then(|mut stream| stream.write_all(answer.as_bytes()));
        if let Err(err) = result {
            eprintln!("weir-probe serve {name}: {err}");
        }
    }
    bail!("listener on {listen} closed")
}

/// Makes `count` attempts and prints one line for each; exit 0 if all answered.
fn connect_many(target: SocketAddr, timeout: Duration, count: u32) -> ExitCode {
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for _ in 0..count {
        let line = match connect_once(target, timeout) {
            Ok(name) => name,
            Err(err) => {
                failed = true;
                format!("error: {err:#}")
            }
        };
        // A closed stdout leaves nothing useful to do but stop.
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One fresh connection: connect, read one line, return it.
fn connect_once(target: SocketAddr, timeout: Duration) -> Result<String> {
    let stream = TcpStream::connect_timeout(&target, timeout).with_context(|| format!("connect {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_ANSWER))
        .read_line(&mut line)
        .with_context(|| format!("reading the answer from {target}"))?;
    let name = line.trim_end_matches('\n');
    if name.is_empty() {
        bail!("{target} closed the connection without answering");
    }
    Ok(name.to_owned())
}
