//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4):
//! a lookup table of prime size `m` in which every backend owns about
//! `m / n` entries, built so that adding or removing one backend moves only
//! about `1 / n` of the entries — and with it only that share of the flows.
//!
//! Every node must build the same table from the same backends, or a flow
//! that reaches the Service through another node would land elsewhere: the
//! hashes are fixed functions of the backend's address, never seeded per
//! process.

/// Largest table size the datapath's map value holds (a prime).
pub const MAX_TABLE_SIZE: u32 = weir_common::lb::MAGLEV_MAX_TABLE_SIZE;

/// Default table size: prime, large enough for ~100 backends per frontend
/// with even spreading (the paper suggests m ≥ 100·n).
pub const DEFAULT_TABLE_SIZE: u32 = 1021;

/// Why a table size cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Maglev needs a prime table size.
    #[error("maglev table size {0} is not a prime")]
    NotPrime(u32),
    /// The datapath cannot hold a larger table.
    #[error("maglev table size {0} exceeds the maximum {MAX_TABLE_SIZE}")]
    TooLarge(u32),
}

/// Checks a configured table size.
pub fn check_table_size(m: u32) -> Result<u32, Error> {
    if m > MAX_TABLE_SIZE {
        return Err(Error::TooLarge(m));
    }
    if m < 2 || (2..=m.isqrt()).any(|d| m.is_multiple_of(d)) {
        return Err(Error::NotPrime(m));
    }
    Ok(m)
}

/// Builds the lookup table of size `m` (prime) over `backends`, each given
/// by a stable name (its address). Returns indexes into `backends`; empty
/// for no backends.
#[must_use]
pub fn table(backends: &[String], m: u32) -> Vec<usize> {
    if backends.is_empty() {
        return Vec::new();
    }
    let m64 = u64::from(m);
    // Each backend walks its own permutation of the table: offset + j·skip.
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|name| {
            let offset = hash(name.as_bytes(), 0x5bd1_e995) % m64;
            let skip = hash(name.as_bytes(), 0x9e37_79b9) % (m64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut entry: Vec<Option<usize>> = vec![None; m as usize];
    let mut filled = 0u32;
    // Round-robin: each backend claims its next free preferred slot in turn.
    'fill: loop {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            let mut slot = (offset + next[i] * skip) % m64;
            while entry[usize::try_from(slot).unwrap_or_default()].is_some() {
                next[i] += 1;
                slot = (offset + next[i] * skip) % m64;
            }
            entry[usize::try_from(slot).unwrap_or_default()] = Some(i);
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    entry.into_iter().map(Option::unwrap_or_default).collect()
}

/// FNV-1a with a seed folded in, then the splitmix64 finaliser: a fixed,
/// well-spread 64-bit hash of a backend name.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.244.{}.{}:8080", i / 200, i % 200 + 2))
            .collect()
    }

    #[test]
    fn table_sizes_must_be_prime_and_fit() {
        assert_eq!(check_table_size(1021), Ok(1021));
        assert_eq!(check_table_size(1000), Err(Error::NotPrime(1000)));
        assert_eq!(check_table_size(1), Err(Error::NotPrime(1)));
        assert_eq!(
            check_table_size(MAX_TABLE_SIZE + 2),
            Err(Error::TooLarge(MAX_TABLE_SIZE + 2))
        );
    }

    #[test]
    fn every_backend_gets_an_almost_equal_share() {
        let backends = names(10);
        let t = table(&backends, 1021);
        assert_eq!(t.len(), 1021);
        let mut counts = vec![0; backends.len()];
        for i in &t {
            counts[*i] += 1;
        }
        // The round-robin fill gives every backend ⌊m/n⌋ or ⌈m/n⌉ entries.
        assert!(counts.iter().all(|c| (102..=103).contains(c)), "{counts:?}");
    }

    #[test]
    fn removing_one_backend_moves_about_one_nth_of_the_entries() {
        let before_names = names(10);
        let before = table(&before_names, 1021);
        let removed = 3;
        let after_names: Vec<String> = before_names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, n)| n.clone())
            .collect();
        let after = table(&after_names, 1021);
        // Compare by backend name, not index.
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| before_names[**b] != after_names[**a])
            .count();
        let share = f64::from(u32::try_from(moved).unwrap()) / 1021.0;
        // The removed backend's entries (1/10) must move; Maglev moves only
        // a little more than that (the paper's bound is not exact).
        assert!(
            (0.09..=0.15).contains(&share),
            "moved {moved} of 1021 ({share:.3})"
        );
    }

    #[test]
    fn tables_are_the_same_on_every_node() {
        assert_eq!(table(&names(7), 251), table(&names(7), 251));
        assert_eq!(table(&[], 251), Vec::<usize>::new());
    }
}
