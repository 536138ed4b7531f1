//! The protocol surface without root: everything that fails before netlink.

use std::collections::HashMap;
use std::ffi::OsString;

use serde_json::{Value, json};

use super::*;

const CONFIG: &str = r#"{"cniVersion":"1.0.0","name":"weir","type":"weir-cni","subnet":"10.244.1.0/24","dataDir":"/nonexistent/weir-cni-test"}"#;

fn invoke(vars: &[(&str, &str)], stdin: &str) -> (Value, bool) {
    let map: HashMap<&str, OsString> = vars.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
    let lookup = |name: &str| map.get(name).cloned();
    let outcome = run(&lookup, &mut stdin.as_bytes());
    let reply = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", outcome.stdout));
    (reply, outcome.success)
}

fn add_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/nonexistent/netns"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn assert_error(reply: &Value, success: bool, code: u32, version: &str, says: &str) {
    assert!(!success, "{reply}");
    assert_eq!(reply["code"], json!(code), "{reply}");
    assert_eq!(reply["cniVersion"], json!(version), "{reply}");
    let msg = reply["msg"].as_str().unwrap();
    assert!(msg.contains(says), "msg {msg:?} lacks {says:?}");
    assert!(reply["details"].as_str().unwrap().starts_with(msg), "{reply}");
}

#[test]
fn version_needs_no_stdin() {
    let (reply, success) = invoke(&[("CNI_COMMAND", "VERSION")], "");
    assert!(success);
    assert_eq!(
        reply,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn missing_or_unknown_command() {
    let (reply, success) = invoke(&[], CONFIG);
    assert_error(&reply, success, 4, "1.1.0", "CNI_COMMAND is not set");
    let (reply, success) = invoke(&[("CNI_COMMAND", "FROB")], CONFIG);
    assert_error(&reply, success, 4, "1.1.0", "CNI_COMMAND=\"FROB\"");
}

#[test]
fn garbage_stdin_is_a_decode_error() {
    for garbage in ["", "garbage", "{", "[]", "\u{0}\u{1}", "null"] {
        let (reply, success) = invoke(&add_vars(), garbage);
        assert_error(&reply, success, 6, "1.1.0", "network config on stdin");
    }
}

#[test]
fn invalid_config_is_answered_in_the_callers_version() {
    let config = CONFIG.replace("10.244.1.0/24", "10.244.1.0/31");
    let (reply, success) = invoke(&add_vars(), &config);
    assert_error(&reply, success, 7, "1.0.0", "fewer than 4 addresses");
    let config = CONFIG.replace("10.244.1.0/24", "fd00::/64");
    let (reply, success) = invoke(&add_vars(), &config);
    assert_error(&reply, success, 7, "1.0.0", "not IPv4");
}

#[test]
fn unsupported_version_is_code_1() {
    let config = CONFIG.replace("1.0.0", "0.3.1");
    let (reply, success) = invoke(&add_vars(), &config);
    assert_error(&reply, success, 1, "1.1.0", "\"0.3.1\" is not supported");
}

#[test]
fn missing_variables_are_named() {
    for var in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"] {
        let vars: Vec<_> = add_vars().into_iter().filter(|(k, _)| *k != var).collect();
        let (reply, success) = invoke(&vars, CONFIG);
        assert_error(&reply, success, 4, "1.0.0", &format!("{var} is not set"));
    }
}

#[test]
fn bad_netns_fails_before_any_allocation() {
    let (reply, success) = invoke(&add_vars(), CONFIG);
    assert_error(&reply, success, 4, "1.0.0", "CNI_NETNS /nonexistent/netns");
    assert!(!std::path::Path::new("/nonexistent/weir-cni-test").exists());
}

#[test]
fn status_and_gc_need_1_1_0_and_check_needs_a_prev_result() {
    for command in ["STATUS", "GC"] {
        let (reply, success) = invoke(&[("CNI_COMMAND", command)], CONFIG);
        assert_error(&reply, success, 1, "1.0.0", "needs cniVersion 1.1.0");
    }
    let mut check = add_vars();
    check[0] = ("CNI_COMMAND", "CHECK");
    let (reply, success) = invoke(&check, CONFIG);
    assert_error(&reply, success, 7, "1.0.0", "CHECK needs a prevResult");
}

#[test]
fn status_is_not_available_and_add_tries_again_later_without_a_subnet() {
    let no_subnet =
        r#"{"cniVersion":"1.1.0","name":"weir","type":"weir-cni","dataDir":"/nonexistent/weir-cni-test"}"#;
    let (reply, success) = invoke(&[("CNI_COMMAND", "STATUS")], no_subnet);
    assert_error(&reply, success, 50, "1.1.0", "not ready");
    assert!(reply["details"].as_str().unwrap().contains("podCIDR"), "{reply}");
    let (reply, success) = invoke(&add_vars(), no_subnet);
    assert_error(&reply, success, 11, "1.1.0", "podCIDR");
}
