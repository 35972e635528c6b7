//! An engine snapshot as a hostile device could send it, through what the hub does before storing
//! it: after `sanitize` no text holds a character `sanitize_text` would replace and every list is
//! within its cap; after `fit` the encoding is within the budget (any budget of 2 KiB or more),
//! the list a prefix of the original and the counts unchanged.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use outpost_protocol::snapshot::{
    sanitize_text, EngineSnapshot, MAX_LISTED_CONTAINERS, MAX_NAMES, SNAPSHOT_BUDGET,
};
use outpost_protocol::wire;

fn safe(text: &str) -> bool {
    matches!(sanitize_text(text), Cow::Borrowed(_))
}

fuzz_target!(|data: &[u8]| {
    let Some((&budget, body)) = data.split_first() else {
        return;
    };
    let Ok(mut snapshot) = wire::decode::<EngineSnapshot>(body) else {
        return;
    };
    snapshot.sanitize();
    assert!(snapshot.containers.len() <= MAX_LISTED_CONTAINERS);
    assert!(safe(&snapshot.engine_version));
    assert!(snapshot.error.as_deref().is_none_or(safe));
    for c in &snapshot.containers {
        assert!(c.names.len() <= MAX_NAMES);
        assert!(c.names.iter().all(|n| safe(n)));
        assert!([&c.id, &c.image, &c.state, &c.status]
            .iter()
            .all(|t| safe(t)));
    }
    let budget = 2048 + usize::from(budget) * (SNAPSHOT_BUDGET - 2048) / 255;
    let fitted = snapshot.clone().fit(budget);
    assert!(fitted.encoded_len() <= budget);
    assert!(snapshot.containers.starts_with(&fitted.containers));
    assert_eq!(fitted.containers_running, snapshot.containers_running);
    assert_eq!(fitted.containers_stopped, snapshot.containers_stopped);
});
