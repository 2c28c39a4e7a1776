//! The profile rules, the header encoding and the client-config lines.

use super::*;

fn valid() -> AwgProfile {
    AwgProfile {
        jc: 4,
        jmin: 40,
        jmax: 70,
        s1: 52,
        s2: 16,
        s3: 0,
        s4: 0,
        h1: HeaderRange::single(1_000_001).unwrap(),
        h2: HeaderRange::single(1_000_002).unwrap(),
        h3: HeaderRange::single(1_000_003).unwrap(),
        h4: HeaderRange::single(1_000_004).unwrap(),
        i1: None,
        i2: None,
        i3: None,
        i4: None,
        i5: None,
    }
}

fn junk(text: &str) -> Option<SpecialJunk> {
    Some(text.parse().unwrap())
}

#[test]
fn generated_profiles_are_valid_and_differ() {
    let profiles: Vec<AwgProfile> = (0..500).map(|_| AwgProfile::generate()).collect();
    for p in &profiles {
        p.validate().unwrap();
        assert!((4..=12).contains(&p.jc));
        assert_eq!((p.s3, p.s4), (0, 0), "1.0-compatible parameters only");
        assert!(p.special_junk().iter().all(|(_, i)| i.is_none()), "no I*");
        for (_, h) in p.headers() {
            assert_eq!(h.low(), h.high());
            assert!(h.low() >= MIN_HEADER && h.low() <= i32::MAX as u32);
        }
    }
    assert_ne!(profiles[0], profiles[1]);
}

/// A change to a valid profile and the error it must cause.
type Case = (fn(&mut AwgProfile), ProfileError);

#[test]
fn the_module_rules_are_enforced() {
    valid().validate().unwrap();
    let cases: Vec<Case> = vec![
        (|p| p.jc = 0, ProfileError::JunkCount(0)),
        (|p| p.jc = 129, ProfileError::JunkCount(129)),
        (
            |p| p.jmin = 70,
            ProfileError::JunkSize { jmin: 70, jmax: 70 },
        ),
        (
            |p| p.jmax = 1281,
            ProfileError::JunkSize {
                jmin: 40,
                jmax: 1281,
            },
        ),
        (
            |p| p.s1 = 1133,
            ProfileError::Padding {
                name: "S1",
                value: 1133,
                max: 1132,
            },
        ),
        (
            |p| p.s2 = 1189,
            ProfileError::Padding {
                name: "S2",
                value: 1189,
                max: 1188,
            },
        ),
        (
            |p| p.s2 = p.s1 + 56,
            ProfileError::EqualSizes("initiation and response"),
        ),
        (
            |p| p.s3 = 148 + 52 - 64,
            ProfileError::EqualSizes("cookie reply and a handshake message"),
        ),
        (|p| p.h3 = p.h1, ProfileError::HeadersOverlap("H1", "H3")),
        (
            |p| {
                p.h4 = HeaderRange::new(1_000_004, 2_000_000).unwrap();
                p.h2 = HeaderRange::new(1_500_000, 1_600_000).unwrap();
            },
            ProfileError::HeadersOverlap("H2", "H4"),
        ),
    ];
    for (change, expected) in cases {
        let mut p = valid();
        change(&mut p);
        assert_eq!(p.validate(), Err(expected));
    }
}

#[test]
fn headers_parse_print_and_pack_like_the_module() {
    let single: HeaderRange = "1234567".parse().unwrap();
    assert_eq!(single.to_string(), "1234567");
    let range: HeaderRange = "100-200".parse().unwrap();
    assert_eq!((range.low(), range.high()), (100, 200));
    assert_eq!(range.to_string(), "100-200");
    // u32_range_init in the module's type.h: hi << 32 | lo.
    assert_eq!(range.to_netlink(), (200u64 << 32) | 100);
    assert_eq!(HeaderRange::from_netlink(range.to_netlink()), Ok(range));
    assert!(HeaderRange::from_netlink(0).is_err(), "zero means unset");
    for bad in [
        "",
        "4",
        "0",
        "1-4",
        "200-100",
        "x",
        "5-",
        "-5",
        "99999999999",
        "5-6-7",
    ] {
        assert!(bad.parse::<HeaderRange>().is_err(), "{bad:?}");
    }
}

#[test]
fn client_lines_carry_s3_s4_only_when_set() {
    let p = valid();
    let keys: Vec<&str> = p.client_config_lines().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        ["Jc", "Jmin", "Jmax", "S1", "S2", "H1", "H2", "H3", "H4"]
    );
    let mut with_padding = p;
    with_padding.s3 = 20;
    with_padding.s4 = 8;
    let lines = with_padding.client_config_lines();
    assert!(lines.contains(&("S3", "20".into())) && lines.contains(&("S4", "8".into())));
}

#[test]
fn interface_specs_pair_protocol_and_profile() {
    InterfaceSpec::wireguard().validate().unwrap();
    InterfaceSpec::amneziawg(valid()).validate().unwrap();
    let missing = InterfaceSpec {
        protocol: Protocol::AmneziaWg,
        amneziawg: None,
    };
    assert_eq!(missing.validate(), Err(InterfaceSpecError::MissingProfile));
    let unexpected = InterfaceSpec {
        protocol: Protocol::WireGuard,
        amneziawg: Some(valid()),
    };
    assert_eq!(
        unexpected.validate(),
        Err(InterfaceSpecError::UnexpectedProfile)
    );
    let mut bad = valid();
    bad.jc = 0;
    assert!(InterfaceSpec::amneziawg(bad).validate().is_err());
}

#[test]
fn specs_round_trip_as_json_and_refuse_unknown_fields() {
    let spec = InterfaceSpec::amneziawg(valid());
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains("\"protocol\":\"amneziawg\""), "{json}");
    assert!(json.contains("\"h1\":\"1000001\""), "{json}");
    assert_eq!(serde_json::from_str::<InterfaceSpec>(&json).unwrap(), spec);
    assert_eq!(
        serde_json::to_string(&InterfaceSpec::wireguard()).unwrap(),
        r#"{"protocol":"wireguard"}"#
    );
    assert!(serde_json::from_str::<InterfaceSpec>(r#"{"protocol":"wireguard","x":1}"#).is_err());
    assert!(serde_json::from_str::<InterfaceSpec>(r#"{"protocol":"openvpn"}"#).is_err());
    for text in ["wireguard", "amneziawg"] {
        assert_eq!(text.parse::<Protocol>().unwrap().as_str(), text);
    }
    assert!("WireGuard".parse::<Protocol>().is_err());
}

#[test]
fn client_lines_carry_each_special_junk_packet_only_when_set() {
    let mut p = valid();
    p.i1 = junk("<b 0xc0ffee><r 16>");
    p.i3 = junk("<t>");
    p.validate().unwrap();
    let lines = p.client_config_lines();
    let keys: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "Jc", "Jmin", "Jmax", "S1", "S2", "H1", "H2", "H3", "H4", "I1", "I3"
        ]
    );
    assert_eq!(lines[9], ("I1", "<b 0xc0ffee><r 16>".to_string()));
}

#[test]
fn special_junk_text_is_limited_in_sum() {
    // Each description alone is valid (<b> of 765 bytes); together they are too long.
    let long = format!("<b 0x{}>", "ab".repeat(765));
    assert_eq!(long.len(), 1536);
    let mut p = valid();
    p.i1 = junk(&long);
    p.validate().unwrap();
    p.i2 = junk("<t>");
    assert_eq!(p.validate(), Err(ProfileError::SpecialJunkTooLong(1539)));
}

#[test]
fn profiles_stored_without_special_junk_still_parse_and_print_the_same() {
    let old = r#"{"jc":4,"jmin":40,"jmax":70,"s1":52,"s2":16,"h1":"1000001","h2":"1000002","h3":"1000003","h4":"1000004"}"#;
    let parsed: AwgProfile = serde_json::from_str(old).unwrap();
    assert_eq!(parsed, valid());
    let json = serde_json::to_string(&parsed).unwrap();
    assert!(!json.contains("\"i1\""), "unset I* are left out: {json}");

    let with = r#"{"jc":4,"jmin":40,"jmax":70,"s1":52,"s2":16,"h1":"1000001","h2":"1000002","h3":"1000003","h4":"1000004","i2":"<r 8>"}"#;
    let parsed: AwgProfile = serde_json::from_str(with).unwrap();
    assert_eq!(parsed.i2, junk("<r 8>"));
    let json = serde_json::to_string(&parsed).unwrap();
    assert!(json.ends_with(r#""i2":"<r 8>"}"#), "{json}");
    assert_eq!(serde_json::from_str::<AwgProfile>(&json).unwrap(), parsed);

    let bad = with.replace("<r 8>", "<r 8");
    let error = serde_json::from_str::<AwgProfile>(&bad)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not closed"), "{error}");
}
