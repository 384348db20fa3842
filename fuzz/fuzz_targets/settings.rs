//! The settings file (`tern broker --config FILE`) on arbitrary text: the
//! TOML parser and every check behind it (listeners, limits, TLS, security,
//! metrics, `[[bridge]]` tables). It never panics; and settings it accepts
//! print (`--check-config`) as a file it accepts again, which prints the
//! same and changes no limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_broker::server::BrokerSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(settings) = BrokerSettings::from_toml(text) else {
        return;
    };
    let _ = settings.broker_config();
    let printed = settings.to_toml();
    let again = BrokerSettings::from_toml(&printed)
        .unwrap_or_else(|e| panic!("the printed settings do not parse: {e}\n{printed}"));
    assert_eq!(again.to_toml(), printed);
    assert!(
        settings.limits_changes(&again).is_empty(),
        "{:?}",
        settings.limits_changes(&again)
    );
});
