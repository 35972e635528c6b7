//! The grant rule on its own: which repositories and blobs a session's orders open, how names
//! from orders are split, what a manifest references, and the bounds.

use super::*;

fn key(repo: &str) -> RepoKey {
    RepoKey {
        upstream: Some(0),
        repo: repo.into(),
    }
}

fn digest(text: &str) -> Digest {
    Digest::of(text.as_bytes())
}

fn ordered(repo: &str, tag: &str) -> (RepoKey, OrderedImage) {
    let image = OrderedImage::parse(&format!("{repo}:{tag}")).unwrap();
    (key(repo), image)
}

/// An image manifest's JSON with this config and these layers.
fn image_manifest(config: &Digest, layers: &[&Digest]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": 1}))
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 1},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

fn index(children: &[&Digest]) -> Vec<u8> {
    let manifests: Vec<_> = children
        .iter()
        .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.as_str(), "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}))
        .collect();
    serde_json::json!({"schemaVersion": 2, "manifests": manifests})
        .to_string()
        .into_bytes()
}

fn granted(orders: Vec<(RepoKey, OrderedImage)>) -> SessionGrant {
    let mut grant = SessionGrant::default();
    grant.set_orders(Instant::now(), orders);
    grant
}

#[test]
fn an_ordered_repository_is_open_at_any_reference_and_another_is_refused() {
    let grant = granted(vec![ordered("pos/web", "4")]);
    assert!(grant.allows_repo(&key("pos/web")));
    assert!(!grant.allows_repo(&key("pos/secret")));
    assert!(!grant.allows_repo(&RepoKey {
        upstream: Some(1),
        repo: "pos/web".into()
    }));
    assert!(!SessionGrant::default().allows_repo(&key("pos/web")));
}

#[test]
fn a_blob_is_served_only_when_a_manifest_of_an_ordered_repository_references_it() {
    let (config, layer, foreign) = (digest("config"), digest("layer"), digest("foreign"));
    let mut grant = granted(vec![ordered("pos/web", "4")]);
    assert!(
        !grant.allows_blob(&key("pos/web"), &layer),
        "no manifest seen yet"
    );
    let references = References::of(&image_manifest(&config, &[&layer]));
    grant.note_manifest(&key("pos/web"), &references);
    assert!(grant.allows_blob(&key("pos/web"), &config));
    assert!(grant.allows_blob(&key("pos/web"), &layer));
    // Another image's blob, even under the ordered name; the ordered blob under another name.
    assert!(!grant.allows_blob(&key("pos/web"), &foreign));
    assert!(!grant.allows_blob(&key("pos/secret"), &layer));
    // A blob noted for a repository the device is no longer ordered is refused.
    grant.note_manifest(
        &key("pos/old"),
        &References::of(&image_manifest(&foreign, &[])),
    );
    assert!(!grant.allows_blob(&key("pos/web"), &foreign));
    // An order withdrawn closes what it opened.
    grant.set_orders(Instant::now(), vec![ordered("pos/other", "1")]);
    assert!(!grant.allows_blob(&key("pos/web"), &layer));
}

#[test]
fn an_index_opens_its_children_whose_layers_open_once_read() {
    let (amd64, arm64) = (digest("amd64 manifest"), digest("arm64 manifest"));
    let (config, layer) = (digest("amd64 config"), digest("amd64 layer"));
    let top = References::of(&index(&[&amd64, &arm64]));
    assert_eq!(top.children, [amd64.clone(), arm64]);
    assert!(top.blobs.is_empty());
    let mut grant = granted(vec![ordered("library/busybox", "latest")]);
    grant.note_manifest(&key("library/busybox"), &top);
    // The child is a manifest of the ordered repository: served by digest like any of its
    // manifests; its layers only once it has been read.
    assert!(grant.allows_repo(&key("library/busybox")));
    assert!(!grant.allows_blob(&key("library/busybox"), &layer));
    let child = References::of(&image_manifest(&config, &[&layer]));
    grant.note_manifest(&key("library/busybox"), &child);
    assert!(grant.allows_blob(&key("library/busybox"), &layer));
    assert!(grant.allows_blob(&key("library/busybox"), &config));
}

#[test]
fn references_of_anything_but_a_manifest_are_none() {
    assert_eq!(References::of(b"not json"), References::default());
    assert_eq!(References::of(br#"{"layers": "x"}"#), References::default());
    let odd = br#"{"config": {"digest": "md5:00"}, "layers": [{"digest": "sha256:zz"}]}"#;
    assert_eq!(References::of(odd), References::default());
}

#[test]
fn the_blobs_a_session_remembers_are_bounded_oldest_first() {
    let mut grant = granted(vec![ordered("pos/web", "4")]);
    let first = digest("0");
    grant.note_manifest(
        &key("pos/web"),
        &References {
            blobs: vec![first.clone()],
            children: vec![],
        },
    );
    let rest: Vec<Digest> = (1..=MAX_GRANTED_BLOBS)
        .map(|n| digest(&n.to_string()))
        .collect();
    grant.note_manifest(
        &key("pos/web"),
        &References {
            blobs: rest.clone(),
            children: vec![],
        },
    );
    assert!(!grant.allows_blob(&key("pos/web"), &first), "forgotten");
    assert!(grant.allows_blob(&key("pos/web"), &rest[0]));
    assert!(grant.allows_blob(&key("pos/web"), &rest[MAX_GRANTED_BLOBS - 1]));
    assert_eq!(grant.blobs.len(), MAX_GRANTED_BLOBS);
}

#[test]
fn orders_are_read_again_when_stale() {
    let now = Instant::now();
    let mut grant = SessionGrant::default();
    assert!(grant.needs_orders(now));
    assert!(!grant.has_orders());
    grant.set_orders(now, vec![]);
    assert!(grant.has_orders());
    assert!(!grant.needs_orders(now));
    assert!(!grant.needs_orders(now + ORDERS_TTL - Duration::from_millis(1)));
    assert!(grant.needs_orders(now + ORDERS_TTL));
    // Look-ups of the ordered manifests are spaced, and due again when the orders change.
    assert!(grant.start_look_up(now));
    assert!(!grant.start_look_up(now + Duration::from_secs(1)));
    assert!(grant.start_look_up(now + LOOK_UP_EVERY));
    grant.set_orders(now + LOOK_UP_EVERY, vec![ordered("pos/web", "4")]);
    assert!(grant.start_look_up(now + LOOK_UP_EVERY));
}

#[test]
fn refusals_read_the_orders_again_in_a_burst_then_one_a_second() {
    let now = Instant::now();
    let mut grant = SessionGrant::default();
    for n in 0..REREADS_BEFORE_REFUSAL {
        assert!(grant.take_reread(now), "re-read {n} of the burst");
    }
    assert!(!grant.take_reread(now), "a device refused again and again");
    assert!(!grant.take_reread(now + Duration::from_millis(999)));
    let second = now + REREAD_BEFORE_REFUSAL_EVERY;
    assert!(grant.take_reread(second), "one comes back each second");
    assert!(!grant.take_reread(second));
    assert!(grant.take_reread(now + 2 * REREAD_BEFORE_REFUSAL_EVERY));
    let quiet = now + 60 * REREAD_BEFORE_REFUSAL_EVERY;
    for n in 0..REREADS_BEFORE_REFUSAL {
        assert!(
            grant.take_reread(quiet),
            "a quiet minute refills the burst ({n})"
        );
    }
    assert!(!grant.take_reread(quiet));
}

#[test]
fn ordered_names_split_as_the_agent_asks_for_them() {
    let parse = |image: &str| OrderedImage::parse(image).map(|o| (o.name, o.reference));
    let tag = |t: &str| Reference::Tag(t.into());
    assert_eq!(parse("pos/web:4"), Some(("pos/web".into(), tag("4"))));
    assert_eq!(parse("busybox"), Some(("busybox".into(), tag("latest"))));
    assert_eq!(
        parse("198.18.0.1:5000/outpost/big:1"),
        Some(("198.18.0.1:5000/outpost/big".into(), tag("1")))
    );
    assert_eq!(
        parse("registry.example:5000/pos/web"),
        Some(("registry.example:5000/pos/web".into(), tag("latest")))
    );
    // A loopback registry's name is the agent's own: the hub is asked for the rest.
    assert_eq!(
        parse("127.0.0.1:5380/pos/web:4"),
        Some(("pos/web".into(), tag("4")))
    );
    assert_eq!(
        parse("localhost:5380/pos/web"),
        Some(("pos/web".into(), tag("latest")))
    );
    let pinned = digest("manifest");
    assert_eq!(
        parse(&format!("pos/web:4@{pinned}")),
        Some(("pos/web".into(), Reference::Digest(pinned)))
    );
    assert_eq!(parse("Pos/Web:4"), None);
    assert_eq!(parse("pos/web:4@md5:00"), None);
    assert_eq!(parse(""), None);
}
