use std::time::Duration;

use super::*;
use crate::model::Rule;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

#[test]
fn every_shipped_profile_loads() {
    let names = list(&dir()).unwrap();
    for required in [
        "geo-satellite",
        "leo-satellite",
        "lte",
        "3g",
        "edge-2g",
        "flaky-cellular",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing profile {required}"
        );
    }
    for name in names {
        let p = Profile::load_from(&dir(), &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, name);
        assert!(!p.description.is_empty(), "{name} has no description");
    }
}

#[test]
fn the_trace_profile_replays_the_shipped_traces() {
    let p = Profile::load_from(&dir(), "lte-trace").unwrap();
    for (direction, config) in [("up", &p.up), ("down", &p.down)] {
        let Capacity::Trace(trace) = &config.capacity else {
            panic!("lte-trace {direction}: {:?}", config.capacity);
        };
        assert!(
            trace.len() > 10_000,
            "{direction}: {} opportunities",
            trace.len()
        );
    }
}

#[test]
fn a_profile_naming_a_missing_trace_fails_with_its_path() {
    let text = "[down]\ntrace = \"../traces/no-such.down\"\n";
    let err = Profile::from_toml("gone", text, &dir()).unwrap_err();
    let path = dir().join("../traces/no-such.down");
    let message = err.to_string();
    assert!(
        message.starts_with("profile gone: cannot read trace ")
            && message.contains(&path.display().to_string()),
        "{message}"
    );
}

#[test]
fn geo_numbers_match_the_issue() {
    let p = Profile::load_from(&dir(), "geo-satellite").unwrap();
    assert_eq!(
        p.up.delay.base + p.down.delay.base,
        Duration::from_millis(600)
    );
    assert_eq!(p.down.capacity, Capacity::Rate(20_000_000));
    assert_eq!(p.up.capacity, Capacity::Rate(2_000_000));
    assert_eq!(p.up.loss.random, 0.01);
}

#[test]
fn both_table_gives_defaults_and_directions_override() {
    let text = r#"
        [both]
        delay = "10ms"
        loss = 0.5
        [up]
        delay = "20ms"
        rules = [{ drop_first = 3 }, { drop_between = ["1s", "2s"] }]
        [nat]
        binding_timeout = "30s"
    "#;
    let p = Profile::from_toml("t", text, Path::new(".")).unwrap();
    assert_eq!(p.up.delay.base, Duration::from_millis(20));
    assert_eq!(p.down.delay.base, Duration::from_millis(10));
    assert_eq!(p.down.loss.random, 0.5);
    assert_eq!(p.up.rules[0], Rule::DropFirst(3));
    assert_eq!(p.nat.binding_timeout, Some(Duration::from_secs(30)));
}

#[test]
fn bad_profiles_name_the_key_at_fault() {
    let cases = [
        ("[up]\ndelay = \"5 parsecs\"", "up.delay"),
        ("[up]\nloss = 1.5", "up.loss"),
        ("[up]\nrate = \"1mbit\"\ntrace = \"x\"", "not both"),
        ("[up]\nlatency = \"5ms\"", "unknown field"),
        (
            "[[up.rules]]\ndrop_first = 1\ndrop_every = 2",
            "exactly one",
        ),
    ];
    for (text, needle) in cases {
        let err = Profile::from_toml("bad", text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle),
            "`{text}` gave `{err}`, expected `{needle}`"
        );
    }
}

#[test]
fn missing_profile_is_a_clear_error() {
    let err = Profile::load_from(&dir(), "no-such-link").unwrap_err();
    assert!(matches!(err, ProfileError::NotFound { .. }), "{err}");
}

#[test]
fn tc_arguments_for_a_field_rig() {
    let p = Profile::load_from(&dir(), "geo-satellite").unwrap();
    let args = Profile::tc_netem_args(&p.up).join(" ");
    assert_eq!(
        args,
        "netem delay 300000us 10000us distribution normal loss 1% rate 2000000bit limit 42"
    );
}
