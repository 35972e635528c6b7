//! `image list` and `image rm` on a real mirror: images pushed from archives made here (two that
//! share a layer), and a tag resolved through a test upstream on loopback.

use std::io::Cursor;

use super::catalog::{RemoveError, Source};
use super::digest::Digest;
use super::error::MirrorError;
use super::import::tests::{entry, layer};
use super::import_image::parse_tag;
use super::name::Reference;
use super::tests::{mirror, serve, Upstream};

/// A `docker save` archive of one image with `layers`.
fn archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_path = format!("{}.json", Digest::of(&config).hex());
    let paths: Vec<String> = (0..layers.len())
        .map(|n| format!("{n}/layer.tar"))
        .collect();
    let index = serde_json::to_vec(&serde_json::json!([{
        "Config": config_path, "RepoTags": ["outpost/app:0"], "Layers": paths,
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, layer) in paths.iter().zip(layers) {
        entry(&mut builder, path, layer);
    }
    entry(&mut builder, &config_path, &config);
    entry(&mut builder, "manifest.json", &index);
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn removing_a_pushed_image_frees_only_the_blobs_no_other_pushed_image_uses() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::sync::Arc::new(Upstream::default());
    let mirror = mirror(dir.path(), &serve(up).await, 1 << 30, None);
    let shared = layer(&[7u8; 20_000]);
    let one = archive(&[shared.clone(), layer(b"only in one")]);
    let two = archive(&[shared, layer(b"only in two")]);
    for (bytes, tag) in [(one, "outpost/app:1"), (two, "outpost/app:2")] {
        let tags = vec![parse_tag(tag).unwrap()];
        mirror.import(Cursor::new(bytes), tags).await.unwrap();
    }
    let listed: Vec<String> = mirror.catalog().into_iter().map(|i| i.name).collect();
    assert_eq!(listed, ["outpost/app:1", "outpost/app:2"]);
    let blobs_before = mirror.inner.pushed.blobs.usage().1;
    assert_eq!(
        blobs_before, 5,
        "a shared layer, two own layers, two configs"
    );

    let removed = mirror.remove("outpost/app:1").await.unwrap();
    assert_eq!(removed.image.source, Source::Pushed);
    assert_eq!(removed.freed.1, 2, "its own layer and its config");
    assert_eq!(mirror.inner.pushed.blobs.usage().1, 3);
    let listed: Vec<String> = mirror.catalog().into_iter().map(|i| i.name).collect();
    assert_eq!(listed, ["outpost/app:2"]);

    // The other image is still whole: every blob its manifest names is served.
    let route = mirror.route("outpost/app").unwrap();
    let manifest = mirror
        .manifest(&route, &Reference::parse("2").unwrap())
        .await
        .unwrap();
    let references = super::grant::References::of(&manifest.bytes);
    for blob in &references.blobs {
        mirror.blob(&route, blob).await.unwrap();
    }
    let gone = mirror
        .manifest(&route, &Reference::parse("1").unwrap())
        .await;
    assert!(
        matches!(gone, Err(MirrorError::ManifestUnknown(_))),
        "{gone:?}"
    );

    let again = mirror.remove("outpost/app:1").await.unwrap_err();
    assert!(again.to_string().contains("neither pushed"), "{again}");
    let bad = mirror.remove("../etc:1").await.unwrap_err();
    assert!(matches!(bad, RemoveError::BadName(_)), "{bad}");

    // Removed for good: a restarted hub does not serve it either.
    drop(mirror);
    let up = std::sync::Arc::new(Upstream::default());
    let reopened = super::tests::mirror(dir.path(), &serve(up).await, 1 << 30, None);
    let listed: Vec<String> = reopened.catalog().into_iter().map(|i| i.name).collect();
    assert_eq!(listed, ["outpost/app:2"]);
}

#[tokio::test]
async fn a_mirrored_tag_is_listed_with_its_upstream_and_forgotten_on_removal() {
    let body = bytes::Bytes::from_static(br#"{"schemaVersion":2}"#);
    let mut up = Upstream::default();
    let media_type = "application/vnd.oci.image.manifest.v1+json".to_owned();
    up.manifests.insert("v1".into(), (media_type, body.clone()));
    let up = std::sync::Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let route = mirror.route("pos/web").unwrap();
    let tag = Reference::parse("v1").unwrap();
    mirror.manifest(&route, &tag).await.unwrap();

    let catalog = mirror.catalog();
    assert_eq!(catalog.len(), 1);
    assert_eq!(catalog[0].name, "pos/web:v1");
    assert_eq!(catalog[0].digest, Digest::of(&body));
    let host = url.trim_start_matches("http://").to_owned();
    assert_eq!(catalog[0].source, Source::Upstream(host.clone()));

    let removed = mirror.remove(&format!("{host}/pos/web:v1")).await.unwrap();
    assert_eq!(
        (removed.image.name.as_str(), removed.freed),
        ("pos/web:v1", (0, 0))
    );
    assert!(mirror.catalog().is_empty());
    drop(mirror);
    let reopened = super::tests::mirror(dir.path(), &url, 1 << 30, None);
    assert!(reopened.catalog().is_empty(), "forgotten on disk too");
}
