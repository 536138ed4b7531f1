//! Exit codes scripts can rely on.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (for `trace`: the flow would be delivered) |
//! | 1 | any other error |
//! | 2 | bad usage (clap) |
//! | 3 | the agent is not reachable |
//! | 4 | the pinned maps are not reachable (no bpffs, agent never ran) |
//! | 5 | the object asked for does not exist |
//! | 6 | `trace`: the flow would be dropped or refused |
//! | 7 | `trace`: mixed (some candidate backends delivered, some not) or unknown (a remote agent did not answer) |

use std::process::ExitCode;

/// A failure with its exit code; other errors exit 1.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The agent did not answer.
    #[error("the agent at {address} is not reachable ({reason}); is weir-agent running on this node?")]
    AgentUnreachable {
        /// Where it was asked.
        address: String,
        /// Why not.
        reason: String,
    },
    /// The pinned maps cannot be opened.
    #[error(
        "cannot open the pinned maps under {bpffs} ({reason}); is bpffs mounted and has weir-agent run here?"
    )]
    MapsUnreachable {
        /// The bpffs directory.
        bpffs: String,
        /// Why not.
        reason: String,
    },
    /// No such object.
    #[error("{0} not found")]
    NotFound(String),
}

impl Failure {
    /// The exit code of this failure.
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Failure::AgentUnreachable { .. } => 3,
            Failure::MapsUnreachable { .. } => 4,
            Failure::NotFound(_) => 5,
        }
    }
}

/// `trace`: the flow would be dropped or refused.
pub const DROPPED: u8 = 6;

/// The exit code for `error`.
#[must_use]
pub fn code_of(error: &anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Failure>().map_or(1, Failure::code);
    ExitCode::from(code)
}

/// Success.
pub const OK: u8 = 0;
