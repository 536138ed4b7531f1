//! `weir-cni` binary: the CNI execution protocol around [`weir_cni::run`].

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let outcome = weir_cni::run(&|name| std::env::var_os(name), &mut std::io::stdin().lock());
    let mut stdout = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        // Nothing else ever goes to stdout: it is the protocol channel.
        if let Err(e) = writeln!(stdout, "{}", outcome.stdout).and_then(|()| stdout.flush()) {
            eprintln!("weir-cni: cannot write the reply to stdout: {e}");
            return ExitCode::FAILURE;
        }
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
