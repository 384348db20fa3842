//! Table tests for every topic rule of MQTT 3.1.1 and 5.0, by statement id.
//!
//! Statement ids differ between the versions for the same rule; where they
//! do, a case names both ("3.1.1 4.7.1-2 / 5.0 4.7.1-1").

use bytes::Bytes;
use tern_topic::{
    MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicError, TopicFilter,
    TopicName, matches, validate_share_name, validate_topic_filter, validate_topic_name,
};

#[test]
fn topic_name_validation_mqtt_4_7_0_1_4_7_1_1_4_7_3_1_to_3() {
    let long_ok = "a".repeat(65_535);
    let long_bad = "a".repeat(65_536);
    let cases: &[(&str, Result<(), TopicError>, &str)] = &[
        ("a", Ok(()), "one character is enough [MQTT-4.7.3-1]"),
        ("sport/tennis/player1", Ok(()), "levels"),
        ("/", Ok(()), "two empty levels"),
        ("a//b", Ok(()), "empty level in the middle"),
        ("/a", Ok(()), "empty first level"),
        ("a/", Ok(()), "empty last level"),
        (" ", Ok(()), "a space is a character"),
        ("$SYS/uptime", Ok(()), "$ topics are names like any other"),
        ("Ünïcødé/☃", Ok(()), "UTF-8"),
        (&long_ok, Ok(()), "exactly 65,535 bytes [MQTT-4.7.3-3]"),
        ("", Err(TopicError::Empty), "[MQTT-4.7.3-1]"),
        ("a\0b", Err(TopicError::NullCharacter), "[MQTT-4.7.3-2]"),
        (&long_bad, Err(TopicError::TooLong), "[MQTT-4.7.3-3]"),
        (
            "a/+",
            Err(TopicError::WildcardInTopicName),
            "3.1.1 [MQTT-4.7.1-1] / 5.0 [MQTT-4.7.0-1]",
        ),
        (
            "#",
            Err(TopicError::WildcardInTopicName),
            "3.1.1 [MQTT-4.7.1-1] / 5.0 [MQTT-4.7.0-1]",
        ),
        (
            "a#b",
            Err(TopicError::WildcardInTopicName),
            "even inside a level",
        ),
        (
            "sport+",
            Err(TopicError::WildcardInTopicName),
            "even inside a level",
        ),
    ];
    for (text, expected, why) in cases {
        let got = TopicName::try_from(*text).map(|_| ());
        assert_eq!(&got, expected, "{text:?}: {why}");
        let got = TopicName::from_bytes(Bytes::copy_from_slice(text.as_bytes())).map(|_| ());
        assert_eq!(&got, expected, "{text:?} from bytes: {why}");
        assert_eq!(
            &validate_topic_name(text.as_bytes()),
            expected,
            "{text:?}: {why}"
        );
    }
    // Ill-formed UTF-8, including an encoded surrogate (3.1.1 [MQTT-1.5.3-1]).
    for bytes in [&b"\xff"[..], b"a/\xc3", b"\xed\xa0\x80"] {
        assert_eq!(
            TopicName::from_bytes(Bytes::copy_from_slice(bytes)),
            Err(TopicError::InvalidUtf8)
        );
    }
}

#[test]
fn topic_filter_validation_mqtt_4_7_1_1_to_3_4_7_3_1_to_3() {
    let long_ok = format!("{}/#", "a".repeat(65_533));
    let long_bad = format!("{}/#", "a".repeat(65_534));
    let cases: &[(&str, Result<(), TopicError>, &str)] = &[
        (
            "#",
            Ok(()),
            "# on its own, 3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]",
        ),
        ("sport/#", Ok(()), "# after a separator"),
        ("sport/tennis/#", Ok(()), "# after a separator"),
        (
            "+",
            Ok(()),
            "+ on its own, 3.1.1 [MQTT-4.7.1-3] / 5.0 [MQTT-4.7.1-2]",
        ),
        ("+/tennis/#", Ok(()), "+ first, # last"),
        ("sport/+/player1", Ok(()), "+ in the middle"),
        ("sport/+", Ok(()), "+ last"),
        ("+/+", Ok(()), "several +"),
        ("/+", Ok(()), "+ after an empty level"),
        ("+/", Ok(()), "+ before an empty level"),
        ("a//b", Ok(()), "empty level"),
        ("/", Ok(()), "only empty levels"),
        ("$SYS/#", Ok(()), "$ filter"),
        (
            "$share/g/a",
            Ok(()),
            "plain syntax: shared parsing is SubscriptionFilter's",
        ),
        (&long_ok, Ok(()), "65,535 bytes [MQTT-4.7.3-3]"),
        ("", Err(TopicError::Empty), "[MQTT-4.7.3-1]"),
        ("a/\0", Err(TopicError::NullCharacter), "[MQTT-4.7.3-2]"),
        (&long_bad, Err(TopicError::TooLong), "[MQTT-4.7.3-3]"),
        (
            "sport/tennis#",
            Err(TopicError::MultiLevelWildcardNotAlone),
            "3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]",
        ),
        (
            "#a",
            Err(TopicError::MultiLevelWildcardNotAlone),
            "# with text",
        ),
        (
            "sport/tennis/#/ranking",
            Err(TopicError::MultiLevelWildcardNotLast),
            "3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]",
        ),
        (
            "#/",
            Err(TopicError::MultiLevelWildcardNotLast),
            "even before an empty level",
        ),
        ("a/#/#", Err(TopicError::MultiLevelWildcardNotLast), "two #"),
        (
            "sport+",
            Err(TopicError::SingleLevelWildcardNotAlone),
            "3.1.1 [MQTT-4.7.1-3] / 5.0 [MQTT-4.7.1-2]",
        ),
        (
            "sport/+tennis",
            Err(TopicError::SingleLevelWildcardNotAlone),
            "+ with text",
        ),
        (
            "++",
            Err(TopicError::SingleLevelWildcardNotAlone),
            "two + in one level",
        ),
    ];
    for (text, expected, why) in cases {
        let got = TopicFilter::try_from(*text).map(|_| ());
        assert_eq!(&got, expected, "{text:?}: {why}");
        let got = TopicFilter::from_bytes(Bytes::copy_from_slice(text.as_bytes())).map(|_| ());
        assert_eq!(&got, expected, "{text:?} from bytes: {why}");
        assert_eq!(
            &validate_topic_filter(text.as_bytes()),
            expected,
            "{text:?}: {why}"
        );
    }
    assert_eq!(
        TopicFilter::from_bytes(Bytes::from_static(b"a/\xff")),
        Err(TopicError::InvalidUtf8)
    );
}

/// `Ok(Some((group, filter)))` for a shared subscription, `Ok(None)` for a
/// plain filter.
type Parsed = Result<Option<(String, String)>, TopicError>;

#[test]
fn shared_subscription_parsing_mqtt_4_8_2_1_and_4_8_2_2() {
    let shared = |g: &str, f: &str| -> Parsed { Ok(Some((g.to_string(), f.to_string()))) };
    let cases: &[(&str, Parsed, &str)] = &[
        ("$share/g/a/b", shared("g", "a/b"), "group and filter"),
        (
            "$share/workers/#",
            shared("workers", "#"),
            "wildcard filter",
        ),
        ("$share/g/+/x", shared("g", "+/x"), "first-level +"),
        (
            "$share/g//",
            shared("g", "/"),
            "a filter of empty levels is a filter",
        ),
        ("$share/g/$SYS/#", shared("g", "$SYS/#"), "$ filter"),
        (
            "$share/$g/a",
            shared("$g", "a"),
            "any other character is allowed in a ShareName",
        ),
        ("$share", Ok(None), "no `$share/` prefix: a plain filter"),
        (
            "$sharex/g/a",
            Ok(None),
            "no `$share/` prefix: a plain filter",
        ),
        (
            "$SHARE/g/a",
            Ok(None),
            "case-sensitive, no normalisation [MQTT-4.7.3-4]",
        ),
        ("a/$share/g/b", Ok(None), "only as a prefix"),
        ("$share/", Err(TopicError::EmptyShareName), "[MQTT-4.8.2-1]"),
        (
            "$share//a",
            Err(TopicError::EmptyShareName),
            "[MQTT-4.8.2-1]",
        ),
        (
            "$share/g",
            Err(TopicError::MissingSharedFilter),
            "[MQTT-4.8.2-2]",
        ),
        (
            "$share/g/",
            Err(TopicError::MissingSharedFilter),
            "[MQTT-4.8.2-2]",
        ),
        (
            "$share/g+/a",
            Err(TopicError::WildcardInShareName),
            "[MQTT-4.8.2-2]",
        ),
        (
            "$share/+/a",
            Err(TopicError::WildcardInShareName),
            "[MQTT-4.8.2-2]",
        ),
        (
            "$share/#",
            Err(TopicError::WildcardInShareName),
            "[MQTT-4.8.2-2]",
        ),
        (
            "$share/g/a#",
            Err(TopicError::MultiLevelWildcardNotAlone),
            "the filter's own rules",
        ),
        (
            "$share/g/#/a",
            Err(TopicError::MultiLevelWildcardNotLast),
            "the filter's own rules",
        ),
        (
            "$share/g/a\0",
            Err(TopicError::NullCharacter),
            "[MQTT-4.7.3-2]",
        ),
        (
            "a+",
            Err(TopicError::SingleLevelWildcardNotAlone),
            "plain filters are validated too",
        ),
        ("", Err(TopicError::Empty), "[MQTT-4.7.3-1]"),
    ];
    for (text, expected, why) in cases {
        let got = SubscriptionFilter::parse_str(text);
        let summary = got
            .as_ref()
            .map(|f| f.group().map(|g| (g.to_string(), f.filter().to_string())));
        assert_eq!(&summary.map_err(|e| *e), expected, "{text:?}: {why}");
        if let Ok(SubscriptionFilter::Plain(filter)) = &got {
            assert_eq!(filter.as_str(), *text, "a plain filter is the whole text");
        }
        if let Ok(f) = &got {
            assert_eq!(f.to_string(), *text, "Display gives the text back");
        }
    }
}

#[test]
fn share_name_validation_mqtt_4_8_2_1_and_4_8_2_2() {
    assert_eq!(validate_share_name(b"workers"), Ok(()));
    assert_eq!(validate_share_name(b"$g"), Ok(()));
    assert_eq!(validate_share_name(b""), Err(TopicError::EmptyShareName));
    assert_eq!(
        validate_share_name(b"a/b"),
        Err(TopicError::SeparatorInShareName)
    );
    assert_eq!(
        validate_share_name(b"a+"),
        Err(TopicError::WildcardInShareName)
    );
    assert_eq!(
        validate_share_name(b"#"),
        Err(TopicError::WildcardInShareName)
    );
    assert_eq!(validate_share_name(b"a\0"), Err(TopicError::NullCharacter));
}

#[test]
fn parsing_shares_the_input_buffer() {
    let input = Bytes::from(b"$share/workers/jobs/+".to_vec());
    let range = input.as_ptr_range();
    let parsed = SubscriptionFilter::parse(input.clone()).unwrap();
    assert!(range.contains(&parsed.group().unwrap().as_bytes().as_ptr()));
    assert!(range.contains(&parsed.filter().as_bytes().as_ptr()));

    let name = TopicName::from_bytes(input.slice(15..)).unwrap_err();
    assert_eq!(name, TopicError::WildcardInTopicName);
    let topic = Bytes::from(b"sensors/kitchen".to_vec());
    let name = TopicName::from_bytes(topic.clone()).unwrap();
    assert_eq!(name.as_bytes().as_ptr(), topic.as_ptr(), "no copy");
    assert_eq!(
        name.clone().into_bytes().as_ptr(),
        topic.as_ptr(),
        "clones share"
    );
}

/// (filter, topic, matches?, why). Examples from sections 4.7.1 to 4.7.3.
const MATCHING: &[(&str, &str, bool, &str)] = &[
    // 4.7.1.2 Multi-level wildcard.
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1",
        true,
        "# matches the parent level",
    ),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking",
        true,
        "one more level",
    ),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon",
        true,
        "two more",
    ),
    ("sport/#", "sport", true, "sport/# matches sport"),
    ("sport/#", "sports", false, "levels, not prefixes"),
    ("#", "sport/tennis", true, "# matches every non-$ topic"),
    ("#", "/", true, "including empty levels"),
    ("a/#", "a/", true, "an empty last level"),
    // 4.7.1.3 Single-level wildcard.
    ("sport/tennis/+", "sport/tennis/player1", true, "one level"),
    ("sport/tennis/+", "sport/tennis/player2", true, "one level"),
    (
        "sport/tennis/+",
        "sport/tennis/player1/ranking",
        false,
        "exactly one level",
    ),
    ("sport/+", "sport", false, "+ needs a level"),
    ("sport/+", "sport/", true, "+ matches an empty level"),
    ("+/+", "/finance", true, "empty first level"),
    ("/+", "/finance", true, "empty first level"),
    ("+", "/finance", false, "two levels"),
    ("a/+/c", "a//c", true, "+ matches an empty middle level"),
    ("+/", "/", true, "two empty levels"),
    ("+/tennis/#", "sport/tennis", true, "+ then #"),
    (
        "sport/+/player1",
        "sport/tennis/player1",
        true,
        "+ in the middle",
    ),
    // Exact.
    ("a//b", "a//b", true, "empty levels are levels"),
    ("a//b", "a/b", false, "empty levels are levels"),
    ("a/b", "a/b/", false, "a trailing empty level is a level"),
    ("/a", "a", false, "a leading empty level is a level"),
    // 4.7.2 Topics beginning with $ [MQTT-4.7.2-1].
    ("#", "$SYS/x", false, "[MQTT-4.7.2-1] # does not match $"),
    ("+/x", "$SYS/x", false, "[MQTT-4.7.2-1] + does not match $"),
    (
        "+/monitor/Clients",
        "$SYS/monitor/Clients",
        false,
        "[MQTT-4.7.2-1]",
    ),
    ("#", "$", false, "[MQTT-4.7.2-1] even a lone $"),
    (
        "$SYS/#",
        "$SYS/monitor/Clients",
        true,
        "[MQTT-4.7.2-1] an explicit $ level",
    ),
    (
        "$SYS/monitor/+",
        "$SYS/monitor/Clients",
        true,
        "wildcards after the first level",
    ),
    ("$SYS/#", "$SYS", true, "parent level"),
    (
        "+/$SYS",
        "a/$SYS",
        true,
        "only the first character of the topic counts",
    ),
    (
        "#",
        "a/$SYS",
        true,
        "only the first character of the topic counts",
    ),
    // 4.7.3 No normalisation [MQTT-4.7.3-4].
    (
        "ACCOUNTS",
        "Accounts",
        false,
        "[MQTT-4.7.3-4] case-sensitive",
    ),
    (
        "café",
        "cafe\u{301}",
        false,
        "[MQTT-4.7.3-4] no Unicode normalisation",
    ),
    ("a /b", "a/b", false, "[MQTT-4.7.3-4] spaces are characters"),
    (
        "Accounts payable",
        "Accounts payable",
        true,
        "spaces are characters",
    ),
];

#[test]
fn the_spec_matcher_mqtt_4_7() {
    for &(filter, topic, expected, why) in MATCHING {
        let f = TopicFilter::try_from(filter).unwrap();
        let t = TopicName::try_from(topic).unwrap();
        assert_eq!(matches(&f, &t), expected, "{filter:?} vs {topic:?}: {why}");
    }
}

#[test]
fn the_subscription_tree_agrees_with_the_matcher_mqtt_4_7() {
    let mut buf = MatchBuffer::new();
    for &(filter, topic, expected, why) in MATCHING {
        let mut tree = SubscriptionTree::new();
        // Decoys around the filter must not change the answer.
        for decoy in ["x/y", "sport/x", "+/+/+/+/+/x"] {
            tree.insert(1u8, &SubscriptionFilter::parse_str(decoy).unwrap(), ());
        }
        tree.insert(0u8, &SubscriptionFilter::parse_str(filter).unwrap(), ());
        let shared = format!("$share/g/{filter}");
        tree.insert(2u8, &SubscriptionFilter::parse_str(&shared).unwrap(), ());
        let t = TopicName::try_from(topic).unwrap();
        let found = tree.matches(&t, &mut buf);
        let plain = found.plain().any(|m| *m.key() == 0);
        let shared = found.shared().any(|m| m.members()[0].0 == 2);
        assert_eq!(plain, expected, "{filter:?} vs {topic:?}: {why}");
        assert_eq!(shared, expected, "$share/g/{filter:?} vs {topic:?}: {why}");
    }
}

#[test]
fn the_retained_index_agrees_with_the_matcher_mqtt_4_7() {
    for &(filter, topic, expected, why) in MATCHING {
        let mut index = RetainedIndex::new();
        for decoy in ["x/y", "sport/x", "$x", "a/b/c/d/e"] {
            if decoy != topic {
                index.insert(TopicName::try_from(decoy).unwrap(), false);
            }
        }
        index.insert(TopicName::try_from(topic).unwrap(), true);
        let f = TopicFilter::try_from(filter).unwrap();
        let found = index.matching(&f).any(|(_, is_target)| *is_target);
        assert_eq!(found, expected, "{filter:?} vs {topic:?}: {why}");
    }
}

#[test]
fn errors_name_the_rule() {
    assert!(
        TopicError::MultiLevelWildcardNotLast
            .to_string()
            .contains("MQTT-4.7.1-2")
    );
    assert!(
        TopicError::EmptyShareName
            .to_string()
            .contains("MQTT-4.8.2-1")
    );
    assert!(TopicError::Empty.to_string().contains("MQTT-4.7.3-1"));
}
