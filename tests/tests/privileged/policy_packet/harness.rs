//! The harness of the policy program tests: a loaded object in a throwaway
//! bpffs, and crafted frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::{MapData, RingBuf};
use aya::programs::{TestRun as _, TestRunOptions};
use weir_agent::datapath::pods::{FROM_POD, TO_POD};
use weir_agent::datapath::{Datapath, EMBEDDED_OBJECT, MapSizes};
use weir_agent::maps::{PinnedPolicyMaps, PolicyMaps as _, RuleKey};
use weir_common::policy::{
    IPPROTO_SCTP, PolicyEndpoint, PolicyRuleKey, PolicyRuleValue, PolicyVerdict, PortRange,
};

use crate::packet::{Scratch, TCP, UDP, frame};

pub const PASS: u32 = 0;
pub const DROP: u32 = 2;
pub const ICMP: u8 = 1;

/// The pod under test and its endpoint id.
pub const POD: &str = "10.244.1.5";
pub const POD_ID: u16 = 3;

/// The loaded object with its policy maps.
pub struct Harness {
    datapath: Datapath,
    pub policy: PinnedPolicyMaps,
    verdicts: RingBuf<MapData>,
    // Last: the maps and programs go before their bpffs.
    _scratch: Scratch,
}

impl Harness {
    pub fn new() -> Self {
        let scratch = Scratch::new();
        let (datapath, maps) = Datapath::open(EMBEDDED_OBJECT, scratch.bpffs.path(), &MapSizes::default())
            .expect("loading the eBPF object");
        Harness {
            datapath,
            policy: maps.policy,
            verdicts: RingBuf::try_from(maps.verdicts).expect("the verdict ring buffer"),
            _scratch: scratch,
        }
    }

    /// The pod under test, isolated as `flags` says.
    pub fn isolate(&mut self, flags: u8) {
        let endpoint = PolicyEndpoint {
            id: POD_ID,
            flags,
            pad: 0,
        };
        self.policy
            .put_endpoint(addr(POD), &endpoint)
            .expect("writing the endpoint");
    }

    /// Lets `peer` (a CIDR) use `ranges` in `direction` of the pod.
    pub fn allow(&mut self, direction: u8, peer: &str, ranges: &[PortRange]) {
        let (ip, len) = peer.split_once('/').unwrap();
        let mut value = PolicyRuleValue {
            count: u8::try_from(ranges.len()).unwrap(),
            ..Default::default()
        };
        value.ranges[..ranges.len()].copy_from_slice(ranges);
        let key = RuleKey {
            peer_prefix_len: len.parse().unwrap(),
            data: PolicyRuleKey {
                endpoint: POD_ID.to_be_bytes(),
                direction,
                pad: 0,
                peer: addr(ip),
            },
        };
        self.policy.put_rule(&key, &value).expect("writing a rule");
    }

    /// Runs `program` on `input`; its verdict.
    fn run(&mut self, program: &'static str, input: &[u8]) -> u32 {
        let program = self.datapath.policy_program(program).expect("the policy program");
        let mut out = vec![0u8; input.len() + 64];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        program.test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
    }

    pub fn sent_to_pod(&mut self, input: &[u8]) -> u32 {
        self.run(TO_POD, input)
    }

    pub fn sent_by_pod(&mut self, input: &[u8]) -> u32 {
        self.run(FROM_POD, input)
    }

    /// The verdicts reported since the last call.
    pub fn verdicts(&mut self) -> Vec<PolicyVerdict> {
        let mut out = Vec::new();
        while let Some(item) = self.verdicts.next() {
            assert_eq!(item.len(), size_of::<PolicyVerdict>());
            // SAFETY: the program writes whole PolicyVerdicts; read unaligned.
            out.push(unsafe { item.as_ptr().cast::<PolicyVerdict>().read_unaligned() });
        }
        out
    }
}

pub fn addr(ip: &str) -> u32 {
    u32::from_ne_bytes(ip.parse::<Ipv4Addr>().unwrap().octets())
}

pub fn at(addr: &str) -> SocketAddrV4 {
    addr.parse().unwrap()
}

pub fn range(proto: u8, first: u16, last: u16, rule: u16) -> PortRange {
    PortRange {
        first,
        last,
        proto,
        pad: 0,
        rule,
    }
}

/// An Ethernet + IPv4 frame of `proto` carrying `l4`, with IP id `id` and
/// the fragment field `frag` (flags and offset, host order).
pub fn ipv4(proto: u8, src: &str, dst: &str, l4: &[u8], id: u16, frag: u16) -> Vec<u8> {
    let mut f = vec![0u8; 34];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&u16::try_from(20 + l4.len()).unwrap().to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
    f[30..34].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    f.extend_from_slice(l4);
    f
}

/// An SCTP packet's common header (ports, tag, checksum) and nothing more.
pub fn sctp(src: &str, dst: &str) -> Vec<u8> {
    let (src, dst) = (at(src), at(dst));
    let mut l4 = vec![0u8; 12];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    ipv4(
        IPPROTO_SCTP,
        &src.ip().to_string(),
        &dst.ip().to_string(),
        &l4,
        1,
        0,
    )
}

/// An ICMP echo request.
pub fn ping(src: &str, dst: &str) -> Vec<u8> {
    ipv4(ICMP, src, dst, &[8, 0, 0, 0, 0, 1, 0, 1], 1, 0)
}

/// An ARP request (not IPv4).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 10, 244, 1, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 244, 1, 5]);
    f
}

pub fn tcp(src: &str, dst: &str) -> Vec<u8> {
    frame(TCP, at(src), at(dst))
}

pub fn udp(src: &str, dst: &str) -> Vec<u8> {
    frame(UDP, at(src), at(dst))
}

/// An ICMP port unreachable from `from` to `to` quoting a `proto` packet
/// `quoted_src` → `quoted_dst`.
pub fn port_unreachable(proto: u8, from: &str, to: &str, quoted_src: &str, quoted_dst: &str) -> Vec<u8> {
    let quoted = frame(proto, at(quoted_src), at(quoted_dst));
    let mut l4 = vec![3, 3, 0, 0, 0, 0, 0, 0];
    // The quoted IP header and the first 8 bytes of its payload.
    l4.extend_from_slice(&quoted[14..14 + 28]);
    ipv4(ICMP, from, to, &l4, 2, 0)
}
