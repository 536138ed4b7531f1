use serde_json::json;

use super::*;

fn parse(value: &Value) -> Result<NetConf> {
    NetConf::parse(value.to_string().as_bytes())
}

fn base() -> Value {
    json!({"cniVersion": "1.1.0", "name": "weir", "type": "weir-cni", "subnet": "10.244.1.0/24"})
}

fn with(key: &str, value: Value) -> Value {
    let mut config = base();
    config[key] = value;
    config
}

#[test]
fn full_config() {
    let conf = parse(&json!({
        "cniVersion": "1.0.0", "name": "weir", "type": "weir-cni", "subnet": "10.244.1.0/24",
        "dataDir": "/tmp/ipam", "mtu": 1450, "prevResult": {}, "runtimeConfig": {"x": 1}
    }))
    .unwrap();
    assert_eq!(
        conf,
        NetConf {
            cni_version: SpecVersion::V1_0_0,
            name: "weir".into(),
            pool: Pool::new("10.244.1.0/24".parse().unwrap()),
            prev_result: Some(json!({})),
            valid_attachments: None,
            data_dir: "/tmp/ipam".into(),
            mtu: 1450,
        }
    );
}

#[test]
fn defaults() {
    let conf = parse(&base()).unwrap();
    assert_eq!(conf.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(conf.mtu, DEFAULT_MTU);
    assert_eq!(conf.cni_version, SpecVersion::V1_1_0);
    let nulls = parse(&with("mtu", Value::Null)).unwrap();
    assert_eq!(nulls.mtu, DEFAULT_MTU);
}

#[test]
fn smallest_subnet_is_a_slash_30() {
    assert_eq!(
        parse(&with("subnet", json!("10.0.0.0/30")))
            .unwrap()
            .pool
            .unwrap()
            .size(),
        1
    );
}

#[test]
fn garbage_is_a_decode_error() {
    for stdin in [
        &b"garbage"[..],
        b"",
        b"{\"cniVersion\":",
        b"\xff\xfe",
        b"[1,2]",
        b"42",
    ] {
        let err = NetConf::parse(stdin).unwrap_err();
        assert_eq!(err.code(), Code::Decode, "{stdin:?}: {err}");
    }
    let huge = vec![b' '; MAX_CONFIG_BYTES + 1];
    assert!(matches!(NetConf::parse(&huge), Err(Error::TooLarge)));
}

#[test]
fn versions() {
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("cniVersion");
    assert!(matches!(parse(&missing), Err(Error::MissingVersion)));
    for version in ["0.3.1", "2.0.0", "1.1"] {
        let err = parse(&with("cniVersion", json!(version))).unwrap_err();
        assert_eq!(err.code(), Code::IncompatibleVersion, "{version}");
        assert!(err.to_string().contains(version), "{err}");
    }
}

#[test]
fn bad_subnets_are_invalid_config_with_clear_messages() {
    for (subnet, says) in [
        ("10.244.1.0/33", "not a CIDR"),
        ("banana", "not a CIDR"),
        ("", "not a CIDR"),
        ("fd00::/64", "not IPv4"),
        ("10.244.1.0/31", "fewer than 4 addresses"),
        ("10.244.1.0/32", "fewer than 4 addresses"),
        ("10.244.1.0", "fewer than 4 addresses"),
        ("10.244.1.5/24", "host bits set; the network is 10.244.1.0/24"),
    ] {
        let err = parse(&with("subnet", json!(subnet))).unwrap_err();
        assert_eq!(err.code(), Code::InvalidConfig, "{subnet}: {err}");
        assert!(err.to_string().contains(says), "{subnet}: {err}");
    }
}

#[test]
fn other_invalid_configs() {
    let cases = [
        (with("subnet", json!(24)), "\"subnet\" has the wrong type"),
        (with("mtu", json!("1500")), "\"mtu\" has the wrong type"),
        (with("mtu", json!(-1)), "\"mtu\" has the wrong type"),
        (with("mtu", json!(67)), "outside 68..=65535"),
        (with("mtu", json!(65_536)), "outside 68..=65535"),
        (
            with("name", json!("../etc")),
            "network name \"../etc\" is invalid",
        ),
        (with("name", json!("")), "network name \"\" is invalid"),
        (with("dataDir", json!("relative/dir")), "not an absolute path"),
    ];
    for (config, says) in cases {
        let err = parse(&config).unwrap_err();
        assert_eq!(err.code(), Code::InvalidConfig, "{config}: {err}");
        assert!(err.to_string().contains(says), "{config}: {err}");
    }
}

#[test]
fn no_subnet_is_valid_until_the_agent_writes_one_and_gc_attachments_are_read() {
    let mut no_subnet = base();
    no_subnet.as_object_mut().unwrap().remove("subnet");
    assert_eq!(parse(&no_subnet).unwrap().pool, None);
    let gc = with(
        "cni.dev/valid-attachments",
        json!([{"containerID": "c1", "ifname": "eth0"}]),
    );
    let owners = parse(&gc).unwrap().valid_attachments.unwrap();
    assert_eq!(owners, [crate::ipam::Owner::new("c1", "eth0")]);
}

#[test]
fn requested_version_survives_invalid_configs() {
    let object = decode(with("subnet", json!("nope")).to_string().as_bytes()).unwrap();
    assert_eq!(requested_version(&object), Some(SpecVersion::V1_1_0));
    assert!(NetConf::from_object(&object).is_err());
    let object = decode(br#"{"cniVersion":"9.9.9"}"#).unwrap();
    assert_eq!(requested_version(&object), None);
}
