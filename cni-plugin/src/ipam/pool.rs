//! The pod addresses of a subnet and the order they are tried in.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// The addresses of a subnet that may go to pods: all but the network address,
/// the first host address and the broadcast address.
///
/// The first host address (`.1` of a /24) is left to the node itself, so the
/// node agent can put it on an interface as the node's source address towards
/// pods without ever colliding with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    subnet: Ipv4Network,
    first: u32,
    last: u32,
}

impl Pool {
    /// The pool of `subnet`; `None` if it has fewer than 4 addresses (no room
    /// for a single pod).
    #[must_use]
    pub fn new(subnet: Ipv4Network) -> Option<Self> {
        let network = u32::from(subnet.network());
        let broadcast = u32::from(subnet.broadcast());
        if broadcast.checked_sub(network)? < 3 {
            return None;
        }
        Some(Pool {
            subnet,
            first: network + 2,
            last: broadcast - 1,
        })
    }

    /// The subnet the pool was made from.
    #[must_use]
    pub fn subnet(&self) -> Ipv4Network {
        self.subnet
    }

    /// How many pod addresses there are.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.last - self.first + 1
    }

    /// Whether `ip` is one of the pod addresses.
    #[must_use]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// Every pod address once, starting right after `cursor` and wrapping
    /// around; from the first pod address when there is no cursor or it lies
    /// outside the pool (e.g. the subnet changed).
    pub fn scan_after(&self, cursor: Option<Ipv4Addr>) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let Pool { first, last, .. } = *self;
        let size = self.size();
        // Offset (from `first`) of the first address to try.
        let start = match cursor.map(u32::from) {
            Some(ip) if (first..last).contains(&ip) => ip - first + 1,
            _ => 0,
        };
        // Written to stay within u32 even for a /0, where `size` is near u32::MAX.
        (0..size).map(move |step| {
            let offset = if step < size - start {
                start + step
            } else {
                step - (size - start)
            };
            Ipv4Addr::from(first + offset)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> Pool {
        Pool::new(cidr.parse().unwrap()).unwrap()
    }

    fn scan(pool: &Pool, cursor: Option<&str>) -> Vec<String> {
        pool.scan_after(cursor.map(|c| c.parse().unwrap()))
            .map(|ip| ip.to_string())
            .collect()
    }

    #[test]
    fn skips_network_node_and_broadcast() {
        let p = pool("10.244.1.0/24");
        assert_eq!(p.size(), 253);
        let all = scan(&p, None);
        assert_eq!(all.first().unwrap(), "10.244.1.2");
        assert_eq!(all.last().unwrap(), "10.244.1.254");
        assert_eq!(all.len(), 253);
        for reserved in ["10.244.1.0", "10.244.1.1", "10.244.1.255"] {
            assert!(!p.contains(reserved.parse().unwrap()), "{reserved}");
        }
    }

    #[test]
    fn slash_30_has_one_pod_address() {
        let p = pool("10.0.0.0/30");
        assert_eq!(scan(&p, None), ["10.0.0.2"]);
        assert_eq!(scan(&p, Some("10.0.0.2")), ["10.0.0.2"]);
        assert!(Pool::new("10.0.0.0/31".parse().unwrap()).is_none());
        assert!(Pool::new("10.0.0.0/32".parse().unwrap()).is_none());
    }

    #[test]
    fn starts_after_the_cursor_and_wraps() {
        let p = pool("10.0.0.0/29");
        assert_eq!(
            scan(&p, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        assert_eq!(scan(&p, Some("10.0.0.6"))[0], "10.0.0.2");
    }

    #[test]
    fn ignores_a_cursor_outside_the_pool() {
        let p = pool("10.0.0.0/29");
        for cursor in ["10.0.0.1", "10.0.0.7", "192.168.0.9"] {
            assert_eq!(scan(&p, Some(cursor))[0], "10.0.0.2", "{cursor}");
        }
    }

    #[test]
    fn whole_address_space_does_not_overflow() {
        let p = pool("0.0.0.0/0");
        assert_eq!(p.size(), u32::MAX - 2);
        let mut scan = p.scan_after(Some(Ipv4Addr::new(255, 255, 255, 254)));
        assert_eq!(scan.next(), Some(Ipv4Addr::new(0, 0, 0, 2)));
    }
}
