//! `weir-probe`: the smallest TCP/UDP server and client that tell which backend
//! a connection reached, and from which address the backend saw it come.
//!
//! ```text
//! weir-probe [--netns PATH] [--cgroup DIR] serve --name NAME --listen IP:PORT [--udp]
//! weir-probe [--netns PATH] [--cgroup DIR] connect IP:PORT [--udp] [--timeout-ms 1000]
//!            [--count N] [--json]
//! ```
//!
//! A server answers each TCP connection (and each UDP datagram) with
//! `NAME PEER_IP:PORT\n` — its name and the source address it saw — and, for
//! TCP, closes the connection. A client makes `N` attempts one after another,
//! each on a fresh socket, and prints one line per attempt: the server's
//! answer, or `error: KIND: …` (KIND is `refused`, `timeout`, `unreachable`,
//! `reset` or `other`); it exits non-zero if any attempt failed. With `--json`
//! each line is a JSON object that also carries the client's own address and
//! the time the attempt took.
//!
//! `--netns` and `--cgroup` are applied before anything else, so every socket is
//! created inside the pod's netns and by a process in the pod's cgroup — which is
//! what makes the node's socket-LB programs see the client's `connect()`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Longest answer a client accepts; a server name and an address are a short line.
const MAX_ANSWER: usize = 256;

#[derive(Debug, Parser)]
#[command(about = "TCP/UDP name server and client for weir's netns tests")]
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
    /// Answer every connection (or datagram) with NAME and the peer address,
    /// until killed.
    Serve {
        /// The name to answer with (no whitespace).
        #[arg(long)]
        name: String,
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Serve UDP instead of TCP.
        #[arg(long)]
        udp: bool,
    },
    /// Connect, read the server's answer and print it (one line per attempt).
    Connect {
        /// Address to dial (a ClusterIP:port, a pod IP:port, a node IP:port).
        target: SocketAddr,
        /// Use UDP (a connected socket) instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Limit for connecting and for reading the answer, per attempt.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Number of attempts, each on a fresh socket.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Print one JSON object per attempt.
        #[arg(long)]
        json: bool,
    },
}

/// What one successful attempt learnt.
struct Answer {
    /// The server's answer line, without the newline.
    line: String,
    /// The client socket's own address (what an unNATed server sees).
    local: SocketAddr,
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
        Command::Serve { name, listen, udp } => {
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("the server name {name:?} must be a non-empty word");
            }
            if udp {
                serve_udp(&name, listen)
            } else {
                serve_tcp(&name, listen)
            }
        }
        Command::Connect {
            target,
            udp,
            timeout_ms,
            count,
            json,
        } => Ok(connect_many(
            target,
            udp,
            Duration::from_millis(timeout_ms.max(1)),
            count,
            json,
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

/// Tells the starter the socket is bound (and listening): it waits for this
/// line before letting clients dial. Nothing else is ever written to stdout,
/// so a starter that has gone away (the lab's `apply`) cannot break the server.
fn announce(proto: &str, listen: SocketAddr, name: &str) -> Result<()> {
    println!("listening on {listen}/{proto} as {name}");
    std::io::stdout().flush()?;
    Ok(())
}

/// Serves TCP until killed.
fn serve_tcp(name: &str, listen: SocketAddr) -> Result<ExitCode> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}/tcp"))?;
    announce("tcp", listen, name)?;
    for stream in listener.incoming() {
        // One client's trouble (reset, gone) must not stop the server.
        let result = stream.and_then(|mut stream| {
            let answer = format!("{name} {}\n", stream.peer_addr()?);
            stream.write_all(answer.as_bytes())
        });
        if let Err(err) = result {
            eprintln!("weir-probe serve {name}: {err}");
        }
    }
    bail!("listener on {listen} closed")
}

/// Serves UDP until killed: every datagram gets one answer datagram.
fn serve_udp(name: &str, listen: SocketAddr) -> Result<ExitCode> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("binding {listen}/udp"))?;
    announce("udp", listen, name)?;
    let mut buffer = [0_u8; 512];
    loop {
        let result = socket.recv_from(&mut buffer).and_then(|(_, peer)| {
            let answer = format!("{name} {peer}\n");
            socket.send_to(answer.as_bytes(), peer).map(drop)
        });
        if let Err(err) = result {
            eprintln!("weir-probe serve {name}: {err}");
        }
    }
}

/// Makes `count` attempts and prints one line for each; exit 0 if all answered.
fn connect_many(target: SocketAddr, udp: bool, timeout: Duration, count: u32, json: bool) -> ExitCode {
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for _ in 0..count {
        let started = Instant::now();
        let result = if udp {
            connect_udp(target, timeout)
        } else {
            connect_tcp(target, timeout)
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let line = match (result, json) {
            (Ok(answer), false) => answer.line,
            (Ok(answer), true) => json!({
                "answer": answer.line,
                "local": answer.local.to_string(),
                "micros": micros,
            })
            .to_string(),
            (Err(err), false) => {
                failed = true;
                format!("error: {}: {err:#}", failure_kind(&err))
            }
            (Err(err), true) => {
                failed = true;
                json!({"error": format!("{err:#}"), "kind": failure_kind(&err), "micros": micros}).to_string()
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

/// One fresh TCP connection: connect, read one line, return it.
fn connect_tcp(target: SocketAddr, timeout: Duration) -> Result<Answer> {
    let stream = TcpStream::connect_timeout(&target, timeout).with_context(|| format!("connect {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let local = stream.local_addr()?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_ANSWER as u64))
        .read_line(&mut line)
        .with_context(|| format!("reading the answer from {target}"))?;
    let line = line.trim_end_matches('\n');
    if line.is_empty() {
        bail!("{target} closed the connection without answering");
    }
    Ok(Answer {
        line: line.to_owned(),
        local,
    })
}

/// One fresh connected UDP socket: send a datagram, wait for the answer.
/// Connected, so the socket-LB `connect4` hook sees it and an ICMP port
/// unreachable comes back as "refused".
fn connect_udp(target: SocketAddr, timeout: Duration) -> Result<Answer> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    socket
        .connect(target)
        .with_context(|| format!("connect {target}"))?;
    socket.set_read_timeout(Some(timeout))?;
    let local = socket.local_addr()?;
    socket
        .send(b"?\n")
        .with_context(|| format!("sending to {target}"))?;
    let mut buffer = [0_u8; MAX_ANSWER];
    let length = socket
        .recv(&mut buffer)
        .with_context(|| format!("reading the answer from {target}"))?;
    let line = String::from_utf8_lossy(&buffer[..length]);
    let line = line.trim_end_matches('\n');
    if line.is_empty() {
        bail!("{target} answered with an empty datagram");
    }
    Ok(Answer {
        line: line.to_owned(),
        local,
    })
}

/// The class of failure, from the first I/O error in the chain.
fn failure_kind(err: &anyhow::Error) -> &'static str {
    let Some(io) = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
    else {
        return "other";
    };
    match io.kind() {
        ErrorKind::ConnectionRefused => "refused",
        // A read timeout shows up as WouldBlock on Linux.
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => "reset",
        _ => "other",
    }
}
