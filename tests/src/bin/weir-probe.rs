//! `weir-probe`: the smallest TCP/UDP server and client that tell which backend
//! a connection reached, and from which address the backend saw it come.
//!
//! ```text
//! weir-probe [--netns PATH] [--cgroup DIR] serve --name NAME --listen IP:PORT [--udp]
//! weir-probe [--netns PATH] [--cgroup DIR] connect IP:PORT [--udp] [--timeout-ms 1000]
//!            [--count N] [--interval-ms 0] [--json]
//! weir-probe [--netns PATH] [--cgroup DIR] session IP:PORT [--udp] [--timeout-ms 1000]
//! weir-probe [--netns PATH] [--cgroup DIR] scan IP:PORT… [--udp] [--timeout-ms 300] [--attempts 2]
//! weir-probe [--netns PATH] [--cgroup DIR] bench serve|connect …   (see bench.rs)
//! ```
//!
//! A server answers each TCP connection (and each UDP datagram) with
//! `NAME PEER_IP:PORT\n` — its name and the source address it saw — and, for
//! TCP, answers again for every line the client sends on the same connection
//! until the client closes it. A client makes `N` attempts one after another,
//! each on a fresh socket, and prints one line per attempt: the server's
//! answer, or `error: KIND: …` (KIND is `refused`, `timeout`, `unreachable`,
//! `reset` or `other`); it exits non-zero if any attempt failed. With `--json`
//! each line is a JSON object that also carries the client's own address and
//! the time the attempt took.
//!
//! `session` holds one socket (a TCP connection, or a connected UDP socket)
//! for as long as its stdin is open: every line read from stdin is one
//! exchange on that same socket, printed as one JSON line like `connect
//! --json`. A failed exchange closes the socket; the next one opens a new
//! socket (a new `connect()`, which the socket-LB hooks see again). That is
//! what a long-lived connection, or an application holding a connected UDP
//! socket, looks like to the datapath.
//!
//! `scan` dials every target at once (a thread each) and prints one JSON
//! line per target, in the order given, with a `target` field: the first
//! answer, or the last failure after `--attempts` tries. It is what a
//! reachability grid needs — many targets whose dropped SYNs must not add
//! up one after another.
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

// A module of this binary, kept out of `src/bin/` so cargo does not take it
// for a binary of its own.
#[path = "weir-probe/scan.rs"]
mod scan;

#[path = "weir-probe/bench.rs"]
mod bench;

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
        /// Pause between attempts.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Print one JSON object per attempt.
        #[arg(long)]
        json: bool,
    },
    /// Hold one socket to IP:PORT; one exchange on it per line read from stdin.
    Session {
        /// Address to dial.
        target: SocketAddr,
        /// Use a connected UDP socket instead of a TCP connection.
        #[arg(long)]
        udp: bool,
        /// Limit for connecting and for each answer.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Dial every target at once; one JSON line per target, in order.
    Scan {
        /// Addresses to dial.
        #[arg(required = true)]
        targets: Vec<SocketAddr>,
        /// Use UDP (a connected socket) instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Limit for connecting and for reading the answer, per attempt.
        #[arg(long, default_value_t = 300)]
        timeout_ms: u64,
        /// Attempts per target, until one is answered.
        #[arg(long, default_value_t = 2)]
        attempts: u32,
    },
    /// Load generator and server of `cargo xtask bench`.
    #[command(subcommand)]
    Bench(bench::Bench),
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
            interval_ms,
            json,
        } => Ok(connect_many(
            target,
            udp,
            Duration::from_millis(timeout_ms.max(1)),
            (count, Duration::from_millis(interval_ms)),
            json,
        )),
        Command::Session {
            target,
            udp,
            timeout_ms,
        } => session(target, udp, Duration::from_millis(timeout_ms.max(1))),
        Command::Scan {
            targets,
            udp,
            timeout_ms,
            attempts,
        } => scan::scan(
            &targets,
            udp,
            Duration::from_millis(timeout_ms.max(1)),
            attempts.max(1),
        ),
        Command::Bench(bench) => bench::run(&bench),
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
        // One client's trouble (reset, gone) must not stop the server, and a
        // client holding its connection open must not block the others.
        let result = stream.and_then(|stream| {
            let name = name.to_owned();
            std::thread::Builder::new()
                .name("conn".into())
                .spawn(move || {
                    if let Err(err) = answer_tcp(&name, stream) {
                        eprintln!("weir-probe serve {name}: {err}");
                    }
                })
                .map(drop)
        });
        if let Err(err) = result {
            eprintln!("weir-probe serve {name}: {err}");
        }
    }
    bail!("listener on {listen} closed")
}

/// Answers at once, then once more for every line the client sends, until
/// it closes the connection.
fn answer_tcp(name: &str, stream: TcpStream) -> std::io::Result<()> {
    let answer = format!("{name} {}\n", stream.peer_addr()?);
    let mut writer = stream.try_clone()?;
    writer.write_all(answer.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        writer.write_all(answer.as_bytes())?;
        line.clear();
    }
    Ok(())
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
fn connect_many(
    target: SocketAddr,
    udp: bool,
    timeout: Duration,
    (count, interval): (u32, Duration),
    json: bool,
) -> ExitCode {
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for attempt in 0..count {
        if attempt > 0 {
            std::thread::sleep(interval);
        }
        let started = Instant::now();
        let result = if udp {
            connect_udp(target, timeout)
        } else {
            connect_tcp(target, timeout)
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        failed |= result.is_err();
        let line = match (result, json) {
            (Ok(answer), false) => answer.line,
            (Err(err), false) => format!("error: {}: {err:#}", failure_kind(&err)),
            (result, true) => json_line(&result, micros),
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

/// One attempt as a `--json` line.
fn json_line(result: &Result<Answer>, micros: u64) -> String {
    match result {
        Ok(answer) => json!({
            "answer": answer.line,
            "local": answer.local.to_string(),
            "micros": micros,
        }),
        Err(err) => json!({"error": format!("{err:#}"), "kind": failure_kind(err), "micros": micros}),
    }
    .to_string()
}

/// A socket to the target that can answer more than once.
enum Held {
    Tcp(BufReader<TcpStream>),
    Udp(UdpSocket),
}

impl Held {
    /// Opens a socket; for TCP, the server's first answer is the reply.
    fn open(target: SocketAddr, udp: bool, timeout: Duration) -> Result<(Self, Answer)> {
        if udp {
            let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
            socket
                .connect(target)
                .with_context(|| format!("connect {target}"))?;
            socket.set_read_timeout(Some(timeout))?;
            let mut held = Held::Udp(socket);
            let answer = held.exchange(target)?;
            Ok((held, answer))
        } else {
            let stream =
                TcpStream::connect_timeout(&target, timeout).with_context(|| format!("connect {target}"))?;
            stream.set_read_timeout(Some(timeout))?;
            let mut held = Held::Tcp(BufReader::new(stream));
            let answer = held.read_answer(target)?;
            Ok((held, answer))
        }
    }

    /// Asks once more on the same socket.
    fn exchange(&mut self, target: SocketAddr) -> Result<Answer> {
        match self {
            Held::Tcp(reader) => {
                reader
                    .get_mut()
                    .write_all(b"?\n")
                    .with_context(|| format!("sending to {target}"))?;
                self.read_answer(target)
            }
            Held::Udp(socket) => {
                socket
                    .send(b"?\n")
                    .with_context(|| format!("sending to {target}"))?;
                let mut buffer = [0_u8; MAX_ANSWER];
                let length = socket
                    .recv(&mut buffer)
                    .with_context(|| format!("reading the answer from {target}"))?;
                answer(&buffer[..length], socket.local_addr()?, target)
            }
        }
    }

    fn read_answer(&mut self, target: SocketAddr) -> Result<Answer> {
        let Held::Tcp(reader) = self else {
            unreachable!("only TCP answers unasked");
        };
        let mut line = Vec::new();
        (&mut *reader)
            .take(MAX_ANSWER as u64)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading the answer from {target}"))?;
        answer(&line, reader.get_ref().local_addr()?, target)
    }
}

fn answer(bytes: &[u8], local: SocketAddr, target: SocketAddr) -> Result<Answer> {
    let line = String::from_utf8_lossy(bytes);
    let line = line.trim_end_matches('\n');
    if line.is_empty() {
        bail!("{target} closed the connection (or sent an empty datagram) without answering");
    }
    Ok(Answer {
        line: line.to_owned(),
        local,
    })
}

/// One fresh TCP connection: connect, read one line, return it.
fn connect_tcp(target: SocketAddr, timeout: Duration) -> Result<Answer> {
    Held::open(target, false, timeout).map(|(_, answer)| answer)
}

/// One fresh connected UDP socket: send a datagram, wait for the answer.
/// Connected, so the socket-LB `connect4` hook sees it and an ICMP port
/// unreachable comes back as "refused".
fn connect_udp(target: SocketAddr, timeout: Duration) -> Result<Answer> {
    Held::open(target, true, timeout).map(|(_, answer)| answer)
}

/// One socket held across exchanges, one exchange per stdin line.
fn session(target: SocketAddr, udp: bool, timeout: Duration) -> Result<ExitCode> {
    let mut held: Option<Held> = None;
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        line.context("reading stdin")?;
        let started = Instant::now();
        let result = match held.as_mut() {
            Some(socket) => socket.exchange(target),
            None => Held::open(target, udp, timeout).map(|(socket, answer)| {
                held = Some(socket);
                answer
            }),
        };
        if result.is_err() {
            // The next exchange starts over with a fresh connect().
            held = None;
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        writeln!(stdout, "{}", json_line(&result, micros))?;
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The class of failure, from the first I/O error in the chain.
fn failure_kind(err: &anyhow::Error) -> &'static str {
    let Some(io) = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
    else {
        return "other";
    };
    // A UDP socket the datapath aborted (SOCK_DESTROY) is disconnected: its
    // next send() finds no destination, its next recv() ECONNABORTED.
    if io.raw_os_error() == Some(libc::EDESTADDRREQ) {
        return "reset";
    }
    match io.kind() {
        ErrorKind::ConnectionRefused => "refused",
        // A read timeout shows up as WouldBlock on Linux.
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => "reset",
        _ => "other",
    }
}
