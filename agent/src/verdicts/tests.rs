use weir_common::policy::{POLICY_EGRESS, POLICY_INGRESS, VERDICT_DROP};

use super::*;

fn context() -> Context {
    let mut context = Context::default();
    context.endpoints.insert(
        3,
        EndpointInfo {
            pod: "x/b".into(),
            ingress: vec!["x/deny-all".into(), "x/allow-a".into()],
            egress: vec![],
        },
    );
    context.rules.insert(
        7,
        RuleInfo {
            policy: "x/allow-a".into(),
            index: 0,
        },
    );
    context
}

fn raw(verdict: u8, direction: u8, rule: u16) -> PolicyVerdict {
    PolicyVerdict {
        saddr: u32::from(Ipv4Addr::new(10, 244, 1, 2)).to_be(),
        daddr: u32::from(Ipv4Addr::new(10, 244, 2, 3)).to_be(),
        sport: 40000u16.to_be(),
        dport: 80u16.to_be(),
        proto: 6,
        direction,
        verdict,
        endpoint: 3,
        rule,
        ..PolicyVerdict::default()
    }
}

#[test]
fn a_drop_names_every_policy_that_isolates_the_pod() {
    let v = Verdict::attribute(&raw(VERDICT_DROP, POLICY_INGRESS, RULE_NONE), &context());
    assert_eq!(
        (v.verdict, v.direction, v.pod.as_deref()),
        ("drop", "ingress", Some("x/b"))
    );
    assert_eq!(
        (v.src, v.dport, v.protocol.as_str()),
        (Ipv4Addr::new(10, 244, 1, 2), 80, "TCP")
    );
    assert_eq!(
        v.reason,
        "dropped: no ingress rule of x/deny-all, x/allow-a matched"
    );
}

#[test]
fn an_allow_names_the_rule_that_matched() {
    let v = Verdict::attribute(&raw(VERDICT_ALLOW, POLICY_INGRESS, 7), &context());
    assert_eq!(v.policies, ["x/allow-a"]);
    assert_eq!(v.rule, Some(0));
    assert_eq!(v.reason, "allowed by ingress rule 0 of x/allow-a");
}

#[test]
fn unknown_ids_are_reported_unattributed() {
    let mut r = raw(VERDICT_DROP, POLICY_EGRESS, RULE_NONE);
    r.endpoint = 99;
    let v = Verdict::attribute(&r, &context());
    assert_eq!((v.pod, v.policies.len()), (None, 0));
    assert_eq!(v.reason, "dropped: no egress rule matched");
}

#[test]
fn short_records_are_ignored_and_full_ones_decoded() {
    assert_eq!(decode(&[0; 4]), None);
    let r = raw(VERDICT_DROP, POLICY_INGRESS, RULE_NONE);
    // SAFETY: viewing a repr(C) integer struct as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(&r).cast::<u8>(),
            std::mem::size_of::<PolicyVerdict>(),
        )
    };
    assert_eq!(decode(bytes), Some(r));
}
