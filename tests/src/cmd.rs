//! Running the system tools that build topology (`ip`, `nsenter`, `mount`, …).
//!
//! Every call goes through [`run`] so a failure always names the full command line
//! and what it printed: a bare "exit status 2" from `ip` is useless when a test fails.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

/// Runs `program args…` and returns its stdout; fails with the command line, exit
/// status and stderr if it exits non-zero.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    run_command(&mut command)
}

/// Runs a prepared [`Command`] to completion; see [`run`].
pub fn run_command(command: &mut Command) -> Result<String> {
    let output = shielded(command)
        .output()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    check(command, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `program args…` inside the netns at `netns` (a `/run/netns/NAME` file).
///
/// `nsenter --net` rather than `ip netns exec`: the latter remounts `/sys` in a
/// private mount namespace, which hides the cgroup tree and bpffs from the program.
pub fn run_in_netns<I, S>(netns: &Path, program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = nsenter(netns, program);
    command.args(args);
    run_command(&mut command)
}

/// A `nsenter --net=<netns> <program>` command, ready for more arguments.
#[must_use]
pub fn nsenter(netns: &Path, program: impl AsRef<OsStr>) -> Command {
    nsenter_command(netns, program, false)
}

/// [`nsenter`], optionally [detached](command).
#[must_use]
pub fn nsenter_command(netns: &Path, program: impl AsRef<OsStr>, detached: bool) -> Command {
    let mut net = std::ffi::OsString::from("--net=");
    net.push(netns);
    let mut command = self::command("nsenter", detached);
    command.arg(net).arg(program);
    command
}

/// A command running `program`. A `detached` one starts in a session of its
/// own (`setsid`), so neither a Ctrl-C at the terminal nor a closed terminal
/// reaches it and it outlives this process: the persistent lab's agents and
/// servers. `setsid` execs in place (a spawned child never leads a process
/// group), so the child's pid is the program's.
#[must_use]
pub fn command(program: impl AsRef<OsStr>, detached: bool) -> Command {
    if detached {
        let mut command = Command::new("setsid");
        command.arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Puts the command in a process group of its own, so a Ctrl-C at the terminal
/// (sent to the whole foreground group) cannot kill it halfway: these are the
/// commands teardown itself relies on (`ip netns delete`, `umount`, CNI DEL).
pub fn shielded(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Fails with a readable message unless `output` is a success.
pub fn check(command: &Command, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let mut message = format!("`{}` failed ({})", describe(command), output.status);
    for (label, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        if !text.trim().is_empty() {
            let _ = write!(message, "\n  {label}: {}", text.trim());
        }
    }
    bail!(message)
}

/// The command line as a shell user would type it (for messages only).
#[must_use]
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
