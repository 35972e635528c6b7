//! `docker save` archives made in the test, in the legacy layout every engine writes
//! (`manifest.json`, `<hex>.json`, `<id>/layer.tar`), well-formed or broken in one named way, for
//! `outpost-hub image push`'s refusals. The engine's own `docker save` is in the end-to-end test
//! that needs an engine; these need none.

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// How to break an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// None: a valid archive.
    None,
    /// The config's `diff_id` of the second layer is another layer's digest.
    DiffIdMismatch,
    /// An extra entry named `../escaped`.
    Traversal,
    /// The config padded past 1 MiB.
    OversizedConfig,
    /// No `manifest.json`.
    NoIndex,
}

/// A layer: a tar holding one file `name` with `content`.
pub fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, name, content)
        .expect("a layer entry");
    builder.into_inner().expect("a layer tar")
}

/// An archive of one image `tag` with `layers`, broken as `flaw` says; and the image's config
/// digest (its id).
pub fn archive(tag: &str, layers: &[Vec<u8>], flaw: Flaw) -> (Vec<u8>, String) {
    let mut diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    if flaw == Flaw::DiffIdMismatch {
        diff_ids[1] = digest(b"another layer");
    }
    let padding = if flaw == Flaw::OversizedConfig {
        "x".repeat(1 << 20)
    } else {
        String::new()
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Labels": {"padding": padding}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config JSON");
    let config_digest = digest(&config);
    let config_path = format!("{}.json", &config_digest["sha256:".len()..]);
    let layer_paths: Vec<String> = (0..layers.len())
        .map(|n| format!("l{n}/layer.tar"))
        .collect();
    let index = serde_json::to_vec(&serde_json::json!([{
        "Config": config_path,
        "RepoTags": [tag],
        "Layers": layer_paths,
    }]))
    .expect("index JSON");
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in layer_paths.iter().zip(layers) {
        append(&mut builder, path, bytes);
    }
    append(&mut builder, &config_path, &config);
    if flaw == Flaw::Traversal {
        append_raw(&mut builder, b"../escaped", b"outside");
    }
    if flaw != Flaw::NoIndex {
        append(&mut builder, "manifest.json", &index);
    }
    (builder.into_inner().expect("archive"), config_digest)
}

/// An archive whose first entry climbs out (`../escaped`), then `len` bytes more: refused at
/// once, with most of the upload still to come.
pub fn escape_first(len: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    append_raw(&mut builder, b"../escaped", b"outside");
    append(&mut builder, "rest", &vec![0; len]);
    builder.into_inner().expect("archive")
}

/// A GNU long-name header claiming a terabyte of name, then a few bytes: a reader that holds
/// long names in memory would try to.
pub fn huge_long_name() -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().expect("a GNU header").name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(1 << 40);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[b'a'; 4096]);
    bytes
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, path, bytes)
        .expect("an archive entry");
}

/// An entry whose name is written as given (the tar writer would refuse `..`).
fn append_raw(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], bytes: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, bytes).expect("a raw entry");
}
