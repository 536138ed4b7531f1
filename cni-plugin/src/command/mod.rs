//! The plugin as a function: environment and stdin in, reply out.
//!
//! [`run`] reads `CNI_COMMAND`, decodes the config and hands over to one
//! function per command. A command that is not implemented yet answers with
//! [`Code::NotImplemented`]; adding it means adding its module and its arm in
//! `dispatch`.

mod add;
mod del;
mod maintain;

use std::io::{self, Read};

use crate::code::Code;
use crate::config::{self, MAX_CONFIG_BYTES, NetConf};
use crate::env::{self, Command, Lookup};
use crate::reply::ErrorReply;
use crate::version::{SpecVersion, VersionInfo};
use crate::{ipam, netns, veth};

/// Every way a command can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `CNI_*` variable is wrong.
    #[error(transparent)]
    Env(#[from] env::Error),
    /// Stdin could not be read.
    #[error("cannot read the network config from stdin")]
    Stdin(#[source] io::Error),
    /// The network config is wrong.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// `CNI_NETNS` is unusable.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    /// Setting up or tearing down the interfaces failed.
    #[error(transparent)]
    Veth(#[from] veth::Error),
    /// The command does not exist in the config's `cniVersion` (STATUS and
    /// GC came with 1.1.0).
    #[error("CNI_COMMAND={command} needs cniVersion 1.1.0 or later")]
    CommandTooNew {
        /// The command.
        command: Command,
    },
    /// CHECK without a `prevResult` holding an IPv4 address.
    #[error("CHECK needs a prevResult with the address ADD returned")]
    MissingPrevResult,
    /// STATUS: the plugin cannot serve ADD now.
    #[error("weir-cni is not ready")]
    NotAvailable(#[source] ipam::Error),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::Env(e) => e.code(),
            Error::Stdin(_) => Code::Io,
            Error::Config(e) => e.code(),
            Error::Netns(e) => e.code(),
            Error::Ipam(e) => e.code(),
            Error::Veth(e) => e.code(),
            Error::CommandTooNew { .. } => Code::IncompatibleVersion,
            Error::MissingPrevResult => Code::InvalidConfig,
            Error::NotAvailable(_) => Code::NotAvailable,
        }
    }
}

/// What the plugin prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The JSON for stdout: a result, version info, an error object, or empty
    /// (a successful DEL prints nothing).
    pub stdout: String,
    /// Exit status 0 when true, non-zero otherwise.
    pub success: bool,
}

/// Runs the plugin: reads variables through `lookup` and the config from
/// `stdin` (only for commands that take one).
pub fn run(lookup: Lookup<'_>, stdin: &mut dyn Read) -> Outcome {
    // Until the config is read, errors are answered in weir's own version.
    let mut reply_version = SpecVersion::CURRENT;
    match dispatch(lookup, stdin, &mut reply_version) {
        Ok(stdout) => Outcome {
            stdout,
            success: true,
        },
        Err(error) => {
            let reply = ErrorReply::new(reply_version, error.code(), &error);
            Outcome {
                stdout: to_json(&reply),
                success: false,
            }
        }
    }
}

fn dispatch(lookup: Lookup<'_>, stdin: &mut dyn Read, reply_version: &mut SpecVersion) -> Result<String> {
    match Command::from_env(lookup)? {
        // VERSION needs nothing from stdin (libcni sends a bare cniVersion
        // there, which tells us nothing we need).
        Command::Version => Ok(to_json(&VersionInfo::default())),
        Command::Add => {
            let conf = read_config(stdin, reply_version)?;
            let attachment = env::Attachment::from_env(lookup, true)?;
            Ok(to_json(&add::add(&conf, &attachment)?))
        }
        Command::Del => {
            let conf = read_config(stdin, reply_version)?;
            let attachment = env::Attachment::from_env(lookup, false)?;
            del::del(&conf, &attachment)?;
            Ok(String::new())
        }
        Command::Check => {
            let conf = read_config(stdin, reply_version)?;
            let attachment = env::Attachment::from_env(lookup, true)?;
            maintain::check(&conf, &attachment)?;
            Ok(String::new())
        }
        command @ (Command::Status | Command::Gc) => {
            let conf = read_config(stdin, reply_version)?;
            if conf.cni_version < SpecVersion::V1_1_0 {
                return Err(Error::CommandTooNew { command });
            }
            if command == Command::Status {
                maintain::status(&conf)?;
            } else {
                maintain::gc(&conf)?;
            }
            Ok(String::new())
        }
    }
}

/// Reads and validates the config; records its `cniVersion` for the reply as
/// soon as it is known, so that later errors are answered in it.
fn read_config(stdin: &mut dyn Read, reply_version: &mut SpecVersion) -> Result<NetConf> {
    let object = config::decode(&read_stdin(stdin)?)?;
    if let Some(version) = config::requested_version(&object) {
        *reply_version = version;
    }
    Ok(NetConf::from_object(&object)?)
}

fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // One byte over the limit is enough to know the config is too large.
    stdin
        .take(u64::try_from(MAX_CONFIG_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::Stdin)?;
    Ok(bytes)
}

fn to_json(value: &impl serde::Serialize) -> String {
    // Serialising these plain structs cannot fail (no maps with non-string
    // keys, no failing Serialize impls).
    serde_json::to_string(value).expect("replies always serialise")
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
