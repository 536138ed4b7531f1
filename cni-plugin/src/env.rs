//! The `CNI_*` environment variables: which command, and for which attachment.
//!
//! Variables are read through a lookup function rather than `std::env`, so the
//! whole plugin can be driven from tests without touching the process
//! environment.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::code::Code;

/// Errors in the `CNI_*` variables; all map to CNI code 4, and every message
/// names the variable, as the spec asks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable the command needs is unset or empty.
    #[error("{var} is not set")]
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A variable is not valid UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// `CNI_COMMAND` names no CNI command.
    #[error("CNI_COMMAND={value:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION")]
    UnknownCommand {
        /// What it held.
        value: String,
    },
    /// A variable's value breaks the spec's rules for it.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code.
    #[must_use]
    pub fn code(&self) -> Code {
        Code::InvalidEnvironment
    }
}

/// How the plugin reads a variable: `std::env::var_os` in the binary.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// A CNI command (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it; idempotent.
    Del,
    /// Verify an attachment (not implemented yet).
    Check,
    /// Report whether the plugin can serve ADDs (not implemented yet).
    Status,
    /// Release what no live attachment holds (not implemented yet).
    Gc,
    /// Report supported spec versions.
    Version,
}

impl Command {
    /// Reads `CNI_COMMAND`.
    pub fn from_env(lookup: Lookup<'_>) -> Result<Self> {
        let value = required(lookup, "CNI_COMMAND")?;
        match value.as_str() {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "STATUS" => Ok(Command::Status),
            "GC" => Ok(Command::Gc),
            "VERSION" => Ok(Command::Version),
            _ => Err(Error::UnknownCommand { value }),
        }
    }

    /// The name as written in `CNI_COMMAND`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attachment a command is about: the spec's key
/// `(network name, CNI_CONTAINERID, CNI_IFNAME)` minus the network, plus the netns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`, checked against the spec's character rules (which also
    /// keeps it safe to store in the line-based IPAM files).
    pub container_id: String,
    /// `CNI_IFNAME`, a valid Linux interface name.
    pub ifname: String,
    /// `CNI_NETNS`; always present for ADD, optional for DEL.
    pub netns: Option<PathBuf>,
}

impl Attachment {
    /// Reads the variables of ADD/DEL/CHECK; `CNI_NETNS` is required when
    /// `need_netns` (DEL must work when the netns is already gone).
    ///
    /// `CNI_ARGS` and `CNI_PATH` are not read: weir takes no per-container
    /// arguments and delegates to no other plugin.
    pub fn from_env(lookup: Lookup<'_>, need_netns: bool) -> Result<Self> {
        let container_id = required(lookup, "CNI_CONTAINERID")?;
        check_container_id(&container_id)?;
        let ifname = required(lookup, "CNI_IFNAME")?;
        check_ifname(&ifname)?;
        let netns = if need_netns {
            Some(required(lookup, "CNI_NETNS")?)
        } else {
            optional(lookup, "CNI_NETNS")?
        };
        Ok(Attachment {
            container_id,
            ifname,
            netns: netns.map(PathBuf::from),
        })
    }
}

fn optional(lookup: Lookup<'_>, var: &'static str) -> Result<Option<String>> {
    match lookup(var) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|_| Error::NotUnicode { var }),
    }
}

fn required(lookup: Lookup<'_>, var: &'static str) -> Result<String> {
    optional(lookup, var)?.ok_or(Error::Missing { var })
}

/// Spec: starts with an alphanumeric character, then alphanumerics, `_`, `.`, `-`.
fn check_container_id(id: &str) -> Result<()> {
    let invalid = |reason| Error::Invalid {
        var: "CNI_CONTAINERID",
        value: id.to_owned(),
        reason,
    };
    let mut chars = id.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with an ASCII letter or digit"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(invalid("may only hold ASCII letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// Spec and kernel: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
fn check_ifname(name: &str) -> Result<()> {
    let invalid = |reason| Error::Invalid {
        var: "CNI_IFNAME",
        value: name.to_owned(),
        reason,
    };
    if name.len() > 15 {
        return Err(invalid("longer than 15 bytes (IFNAMSIZ)"));
    }
    if name == "." || name == ".." {
        return Err(invalid("must not be '.' or '..'"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "must not contain '/', ':', whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_commands() {
        assert_eq!(
            Command::from_env(&vars(&[("CNI_COMMAND", "ADD")])).unwrap(),
            Command::Add
        );
        assert!(matches!(
            Command::from_env(&vars(&[])),
            Err(Error::Missing { var: "CNI_COMMAND" })
        ));
        let err = Command::from_env(&vars(&[("CNI_COMMAND", "add")])).unwrap_err();
        assert!(err.to_string().contains("CNI_COMMAND=\"add\""), "{err}");
    }

    #[test]
    fn reads_an_attachment() {
        let lookup = vars(&[
            ("CNI_CONTAINERID", "abc-1.2_3"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/p"),
        ]);
        let attachment = Attachment::from_env(&lookup, true).unwrap();
        assert_eq!(attachment.container_id, "abc-1.2_3");
        assert_eq!(attachment.ifname, "eth0");
        assert_eq!(attachment.netns, Some(PathBuf::from("/run/netns/p")));
    }

    #[test]
    fn netns_is_optional_for_del_only() {
        let lookup = vars(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(Attachment::from_env(&lookup, false).unwrap().netns, None);
        let err = Attachment::from_env(&lookup, true).unwrap_err();
        assert_eq!(err.to_string(), "CNI_NETNS is not set");
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        for (id, ifname, var) in [
            ("", "eth0", "CNI_CONTAINERID"),
            ("-abc", "eth0", "CNI_CONTAINERID"),
            ("ab c", "eth0", "CNI_CONTAINERID"),
            ("a\nb", "eth0", "CNI_CONTAINERID"),
            ("abc", "", "CNI_IFNAME"),
            ("abc", "0123456789abcdef", "CNI_IFNAME"),
            ("abc", "..", "CNI_IFNAME"),
            ("abc", "eth/0", "CNI_IFNAME"),
            ("abc", "eth 0", "CNI_IFNAME"),
        ] {
            let lookup = vars(&[("CNI_CONTAINERID", id), ("CNI_IFNAME", ifname)]);
            let err = Attachment::from_env(&lookup, false).unwrap_err();
            assert!(err.to_string().contains(var), "{id:?}/{ifname:?}: {err}");
            assert_eq!(err.code(), Code::InvalidEnvironment);
        }
    }
}
