//! The manifests a grant looks a blob up in, against the mirror's test upstream: an ordered tag
//! resolved to its index, its children and their layers; and, from the mirror's own store, the
//! manifests it resolved for a repository's tags.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;

use super::digest::Digest;
use super::name::Reference;
use super::tests::{mirror, serve, Upstream};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn an_ordered_tag_resolves_to_its_index_children_and_their_layers() {
    let layer = Digest::of(b"layer");
    let config = Digest::of(b"config");
    let child = Bytes::from(format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{config}"}},"layers":[{{"digest":"{layer}"}}]}}"#
    ));
    let child_digest = Digest::of(&child);
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{child_digest}"}}]}}"#
    ));
    let mut up = Upstream::default();
    up.manifests.insert("1".into(), (INDEX.into(), index));
    up.manifests
        .insert(child_digest.to_string(), (MANIFEST.into(), child));
    let up = Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let (route, key) = mirror.repo_key("pos/web").unwrap();
    assert_eq!((key.upstream, key.repo.as_str()), (Some(0), "pos/web"));

    let found = mirror
        .references_of(&route, &Reference::parse("1").unwrap())
        .await
        .unwrap();
    let blobs: Vec<&Digest> = found.iter().flat_map(|r| &r.blobs).collect();
    assert_eq!(blobs, [&config, &layer]);
    assert_eq!(found.last().unwrap().children, [child_digest]);
    let fetched = up.manifest_gets.load(Ordering::SeqCst);
    assert_eq!(fetched, 2, "the index and its child");

    // What the mirror resolved for the repository's tags is found again without the upstream.
    let held = mirror.known_references(&route).await;
    let blobs: Vec<&Digest> = held.iter().flat_map(|r| &r.blobs).collect();
    assert_eq!(blobs, [&config, &layer]);
    let (other, _) = mirror.repo_key("pos/other").unwrap();
    assert!(mirror.known_references(&other).await.is_empty());
    assert_eq!(up.manifest_gets.load(Ordering::SeqCst), fetched);
}

#[tokio::test]
async fn docker_hub_names_compare_as_the_upstream_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), "https://registry-1.docker.io", 1 << 30, None);
    let repo = |name: &str| mirror.repo_key(name).map(|(_, key)| key.repo).ok();
    assert_eq!(repo("nginx").as_deref(), Some("library/nginx"));
    assert_eq!(repo("library/nginx").as_deref(), Some("library/nginx"));
    assert_eq!(repo("docker.io/nginx").as_deref(), Some("library/nginx"));
    assert_eq!(repo("grafana/agent").as_deref(), Some("grafana/agent"));
    assert_eq!(repo("elsewhere.example/nginx"), None);
}
