//! The CNI error reply (`{"cniVersion","code","msg","details"}`).

use std::error::Error as StdError;
use std::fmt::Write as _;

use serde::Serialize;

use crate::code::Code;
use crate::version::SpecVersion;

/// What a failing plugin prints on stdout (CNI spec, "Error").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    /// Version of the reply format: the caller's if known, else weir's own.
    pub cni_version: SpecVersion,
    /// Spec-defined (1–99) or weir-specific (100+) code.
    pub code: u32,
    /// Short description: the outermost error.
    pub msg: String,
    /// The whole error chain, outermost first, joined by `": "`.
    pub details: String,
}

impl ErrorReply {
    /// Builds the reply for `error`, keeping every `source()` in `details` so
    /// the root cause (often an errno from the kernel) reaches the runtime's log.
    #[must_use]
    pub fn new(cni_version: SpecVersion, code: Code, error: &(dyn StdError + 'static)) -> Self {
        let msg = error.to_string();
        let mut details = msg.clone();
        let mut source = error.source();
        while let Some(cause) = source {
            let _ = write!(details, ": {cause}");
            source = cause.source();
        }
        ErrorReply {
            cni_version,
            code: code.number(),
            msg,
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create veth pair")]
    struct Outer(#[source] io::Error);

    #[test]
    fn carries_the_whole_chain() {
        let error = Outer(io::Error::other("File exists"));
        let reply = ErrorReply::new(SpecVersion::V1_0_0, Code::Setup, &error);
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"cniVersion":"1.0.0","code":100,"msg":"cannot create veth pair","details":"cannot create veth pair: File exists"}"#
        );
    }
}
