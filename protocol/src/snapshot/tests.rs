use super::*;

fn container(i: usize, text: &str) -> ContainerSummary {
    ContainerSummary {
        id: format!("{i:012}"),
        names: vec![format!("{text}-{i}")],
        image: text.to_owned(),
        state: "running".to_owned(),
        status: "Up 3 hours".to_owned(),
    }
}

fn listing(count: usize, text: &str) -> EngineSnapshot {
    EngineSnapshot {
        taken_at: 1_700_000_000,
        engine_version: "27.3.1".to_owned(),
        containers_running: count as u32,
        containers: (0..count).map(|i| container(i, text)).collect(),
        ..EngineSnapshot::default()
    }
}

#[test]
fn unsafe_characters_are_replaced_everywhere_and_lists_capped() {
    let mut snapshot = listing(MAX_LISTED_CONTAINERS + 7, "ok");
    snapshot.engine_version = "27\u{1b}[2J".to_owned();
    snapshot.error = Some("a\0b\u{9b}c\u{7f}".to_owned());
    let first = &mut snapshot.containers[0];
    first.names = (0..20).map(|i| format!("n{i}\u{202e}")).collect();
    first.image = "évil\r\n".to_owned();
    first.status = "\u{2066}x".to_owned();
    snapshot.sanitize();
    assert_eq!(snapshot.engine_version, "27\u{fffd}[2J");
    assert_eq!(
        snapshot.error.as_deref(),
        Some("a\u{fffd}b\u{fffd}c\u{fffd}")
    );
    let first = &snapshot.containers[0];
    assert_eq!(first.names.len(), MAX_NAMES);
    assert_eq!(first.names[0], "n0\u{fffd}");
    assert_eq!(first.image, "évil\u{fffd}\u{fffd}", "non-ASCII text stays");
    assert_eq!(first.status, "\u{fffd}x");
    assert_eq!(snapshot.containers.len(), MAX_LISTED_CONTAINERS);
    assert!(matches!(sanitize_text("plain ünïcode"), Cow::Borrowed(_)));
}

#[test]
fn a_snapshot_within_the_budget_is_unchanged() {
    let snapshot = listing(MAX_LISTED_CONTAINERS, "registry.example.com/team/app:1.2.3");
    assert!(
        snapshot.encoded_len() <= SNAPSHOT_BUDGET,
        "typical entries all fit"
    );
    assert_eq!(snapshot.clone().fit(SNAPSHOT_BUDGET), snapshot);
}

#[test]
fn an_oversize_snapshot_keeps_the_longest_prefix_that_fits() {
    let long = "x".repeat(1000);
    let snapshot = listing(MAX_LISTED_CONTAINERS, &long);
    assert!(snapshot.encoded_len() > 10 * SNAPSHOT_BUDGET);
    for budget in [PENDING_SNAPSHOT_BUDGET, SNAPSHOT_BUDGET, 100_000, 300_000] {
        let fitted = snapshot.clone().fit(budget);
        let kept = fitted.containers.len();
        assert!(fitted.encoded_len() <= budget, "{budget}");
        assert_eq!(
            fitted.containers[..],
            snapshot.containers[..kept],
            "a prefix"
        );
        let mut one_more = fitted.clone();
        one_more.containers.push(snapshot.containers[kept].clone());
        assert!(one_more.encoded_len() > budget, "{budget}: as many as fit");
        assert_eq!(
            fitted.containers_running, MAX_LISTED_CONTAINERS as u32,
            "exact counts"
        );
    }
}

#[test]
fn huge_texts_are_clipped_when_nothing_else_fits() {
    let mut snapshot = listing(3, "app");
    snapshot.engine_version = "v".repeat(100_000);
    snapshot.error = Some("é".repeat(100_000));
    let fitted = snapshot.fit(2048);
    assert!(fitted.encoded_len() <= 2048, "{}", fitted.encoded_len());
    assert_eq!(fitted.engine_version.chars().count(), SHORT_TEXT_CHARS);
    assert!(fitted.error.unwrap().ends_with('…'));
    assert_eq!(
        fitted.containers.len(),
        3,
        "the list fits once the texts are clipped"
    );
}

#[test]
fn varint_lengths_match_postcard() {
    for n in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        assert_eq!(varint_len(n), wire::encode(&(n as u64)).len(), "{n}");
    }
}

#[test]
fn clipping_respects_characters() {
    assert_eq!(clip("héllo", 5), "héllo");
    assert_eq!(clip("héllo!", 5), "héll…");
    assert_eq!(clip("", 5), "");
}
