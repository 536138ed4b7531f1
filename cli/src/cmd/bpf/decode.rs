//! Decoding the maps' raw fields for people: addresses are stored in network
//! byte order as `u32`s read natively, ports big-endian, protocols by number,
//! times as `bpf_ktime_get_ns()`.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context as _;
use aya::maps::{MapData, MapError};

/// An address field as stored (network byte order in a native `u32`).
pub fn ip(stored: u32) -> Ipv4Addr {
    Ipv4Addr::from(stored.to_ne_bytes())
}

/// The stored form of `address` (inverse of [`ip`]).
pub fn stored_ip(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

/// A port field as stored (network byte order).
pub fn port(stored: u16) -> u16 {
    u16::from_be(stored)
}

/// A protocol number by name (lower case, as `--proto` takes it).
pub fn protocol(number: u8) -> String {
    weir_agent::desired::protocol_name(number).to_ascii_lowercase()
}

/// `--proto`: a protocol by name or number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// ICMP (1).
    Icmp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
        }
    }
}

/// `host:port` with the port left out when the protocol has none (0).
pub fn endpoint(address: Ipv4Addr, port: u16) -> String {
    if port == 0 {
        address.to_string()
    } else {
        format!("{address}:{port}")
    }
}

/// Now on the clock the programs stamp entries with: `bpf_ktime_get_ns()`
/// is `CLOCK_MONOTONIC` (it stops while the machine is suspended, unlike
/// `CLOCK_BOOTTIME`), so ages are differences on that clock.
pub fn monotonic_now_ns() -> anyhow::Result<u64> {
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).context("reading CLOCK_MONOTONIC")?;
    let secs = u64::try_from(now.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec()).unwrap_or(0);
    Ok(secs * 1_000_000_000 + nanos)
}

/// Seconds from `stamp_ns` to `now_ns`; `None` for an unknown stamp (0:
/// migrated or never set). A stamp in the future (a race with the
/// datapath) is age 0.
pub fn age_secs(stamp_ns: u64, now_ns: u64) -> Option<u64> {
    (stamp_ns != 0).then(|| now_ns.saturating_sub(stamp_ns) / 1_000_000_000)
}

/// An age for a table: `42s`, `5m3s`, `2h7m`, `-` when unknown.
pub fn age_text(age: Option<u64>) -> String {
    match age {
        None => "-".to_owned(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        Some(s) => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Opens the map pinned as `name` under `bpffs`.
pub fn open(bpffs: &Path, name: &str) -> Result<MapData, MapError> {
    MapData::from_pin(bpffs.join(name))
}

/// `-` for an empty cell.
pub fn or_dash(cell: String) -> String {
    if cell.is_empty() { "-".to_owned() } else { cell }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_fields_decode_to_host_values() {
        let address = Ipv4Addr::new(10, 244, 1, 3);
        assert_eq!(ip(stored_ip(address)), address);
        assert_eq!(port(8080u16.to_be()), 8080);
        assert_eq!(protocol(6), "tcp");
        assert_eq!(protocol(0), "any");
        assert_eq!(protocol(47), "47");
        assert_eq!(Proto::Sctp.number(), 132);
        assert_eq!(endpoint(address, 0), "10.244.1.3");
        assert_eq!(endpoint(address, 80), "10.244.1.3:80");
    }

    #[test]
    fn ages_are_monotonic_differences_and_unknown_without_a_stamp() {
        assert_eq!(age_secs(0, 5_000_000_000), None);
        assert_eq!(age_secs(1_000_000_000, 4_500_000_000), Some(3));
        assert_eq!(age_secs(9_000_000_000, 1_000_000_000), Some(0));
        assert_eq!(age_text(None), "-");
        assert_eq!(age_text(Some(42)), "42s");
        assert_eq!(age_text(Some(303)), "5m3s");
        assert_eq!(age_text(Some(7620)), "2h7m");
    }

    #[test]
    fn the_clock_is_running() {
        let a = monotonic_now_ns().unwrap();
        let b = monotonic_now_ns().unwrap();
        assert!(a > 0 && b >= a);
    }
}
