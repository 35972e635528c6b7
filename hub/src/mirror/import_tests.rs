//! The archive reader against hostile input: a valid `docker save` archive made here, then cut
//! short and corrupted at seeded places. Nothing may panic, every refusal is a typed error, and
//! what is staged never passes the budget.

use std::io::Cursor;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Append a regular file (the mirror's other tests build archives with it too).
pub(in crate::mirror) fn entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, path, bytes).unwrap();
}

/// A layer tarball holding one file.
pub(in crate::mirror) fn layer(content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    entry(&mut builder, "etc/file", content);
    builder.into_inner().unwrap()
}

/// A legacy-layout archive of `outpost/app:1` with two layers.
fn archive() -> Vec<u8> {
    let layers = [layer(b"one"), layer(&[9u8; 5000])];
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_path = format!("{}.json", Digest::of(&config).hex());
    let index = serde_json::to_vec(&serde_json::json!([{
        "Config": config_path, "RepoTags": ["outpost/app:1"],
        "Layers": ["a/layer.tar", "b/layer.tar"],
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    entry(&mut builder, "a/layer.tar", &layers[0]);
    entry(&mut builder, "b/layer.tar", &layers[1]);
    entry(&mut builder, &config_path, &config);
    entry(&mut builder, "manifest.json", &index);
    builder.into_inner().unwrap()
}

fn read(bytes: &[u8], budget: u64) -> Result<Vec<Prepared>, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = unpack(Cursor::new(bytes), dir.path(), budget)?;
    assert!(unpacked.staged_bytes <= budget);
    prepare_all(&unpacked, &[])
}

#[test]
fn a_valid_archive_becomes_one_image_with_gzipped_layers() {
    let prepared = read(&archive(), 1 << 20).unwrap();
    assert_eq!(prepared.len(), 1);
    assert_eq!(prepared[0].tags[0].to_string(), "outpost/app:1");
    assert_eq!(prepared[0].layers.len(), 2);
    assert_eq!(
        prepared[0].manifest.digest,
        Digest::of(&prepared[0].manifest.bytes)
    );
}

#[test]
fn an_archive_past_the_budget_is_refused_as_it_arrives() {
    let refused = read(&archive(), 1000).err();
    assert!(
        matches!(refused, Some(ImportError::TooLarge { limit: 1000 })),
        "{refused:?}"
    );
}

#[test]
fn cut_and_corrupted_archives_are_refused_without_a_panic() {
    let valid = archive();
    let mut rng = StdRng::seed_from_u64(16);
    let mut refused = 0;
    for round in 0..400 {
        let mut bytes = valid.clone();
        if round % 2 == 0 {
            bytes.truncate(rng.random_range(0..valid.len()));
        }
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..bytes.len().max(1));
            if let Some(byte) = bytes.get_mut(at) {
                *byte = rng.random();
            }
        }
        match read(&bytes, 1 << 20) {
            Ok(images) => assert!(images.iter().all(|i| !i.layers.is_empty())),
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        refused > 200,
        "most damaged archives are refused: {refused}"
    );
}
