//! CNI spec versions this plugin speaks, and the `VERSION` reply.

use std::fmt;

use serde::{Serialize, Serializer};

/// A CNI spec version this plugin can read configs of and write results in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    /// 0.4.0: results carry `"version": "4"` in each `ips` entry.
    V0_4_0,
    /// 1.0.0: the first stable result format.
    V1_0_0,
    /// 1.1.0: adds STATUS and GC; the version weir is written against.
    V1_1_0,
}

impl SpecVersion {
    /// The version weir itself speaks (and answers errors in when the caller's
    /// version is unknown).
    pub const CURRENT: SpecVersion = SpecVersion::V1_1_0;

    /// Every supported version, oldest first, as `VERSION` lists them.
    pub const ALL: [SpecVersion; 3] = [SpecVersion::V0_4_0, SpecVersion::V1_0_0, SpecVersion::V1_1_0];

    /// Parses a `cniVersion` string; `None` for any version not supported.
    #[must_use]
    pub fn parse(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == version)
    }

    /// The version as written in `cniVersion`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The reply to `VERSION`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Version of this reply's own format.
    pub cni_version: SpecVersion,
    /// Versions the plugin accepts in configs and writes results in.
    pub supported_versions: [SpecVersion; 3],
}

impl Default for VersionInfo {
    fn default() -> Self {
        VersionInfo {
            cni_version: SpecVersion::CURRENT,
            supported_versions: SpecVersion::ALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_supported_versions() {
        assert_eq!(SpecVersion::parse("1.1.0"), Some(SpecVersion::V1_1_0));
        assert_eq!(SpecVersion::parse("1.0.0"), Some(SpecVersion::V1_0_0));
        assert_eq!(SpecVersion::parse("0.4.0"), Some(SpecVersion::V0_4_0));
        for unsupported in ["0.3.1", "1.2.0", "", "1.1", " 1.1.0"] {
            assert_eq!(SpecVersion::parse(unsupported), None, "{unsupported:?}");
        }
    }

    #[test]
    fn version_reply_is_exact() {
        let json = serde_json::to_string(&VersionInfo::default()).unwrap();
        assert_eq!(
            json,
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}
