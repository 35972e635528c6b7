//! From a staged `docker save` archive to what a registry serves: the archive's index
//! (`manifest.json`) read and bounded, each image's config checked against its layers, layers
//! compressed, and a Docker schema 2 manifest written for them.
//!
//! Every engine since 1.10 writes `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`), in the
//! legacy layout (`<id>/layer.tar`, `<hex>.json`) and in the OCI layout engines 25+ add
//! (`blobs/sha256/<hex>`), so it is the one index read. The serde structs cover the few fields
//! used; `oci-spec` would bring builders and getters for hundreds of fields and a proc-macro
//! stack for three small structs.
//!
//! **Integrity.** A file whose path names a digest (`blobs/sha256/<hex>`, `<hex>.json`) must hash
//! to it; every layer must hash (uncompressed) to its `diff_id` in the config, in order. Together
//! these pin the image: the config is the image id, and it names every layer's content.
//!
//! **Layers are gzipped** (`flate2`, level 6), though the engine would take them as the
//! uncompressed OCI media type: a pushed image is pushed once and crosses each device's link
//! many times, and those links are metered cellular and satellite. Measured on the test image's
//! busybox layer: 2,140,160 bytes as a tar, 1,036,688 gzipped at level 6 (48 %), 0.22 s of one
//! core with GNU gzip; random data (already compressed files) does not shrink and costs a tar's
//! length plus a few bytes per 32 KiB. A layer already gzipped
//! (engines that keep compressed layers) is stored as it came, its `diff_id` checked through a
//! decompressor.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use super::digest::{Digest, Hasher};
use super::import::ImportError;
use super::import_tar::{Staged, Unpacked};
use super::name::{split_host, Reference, RepoPath};

/// The manifest media type pushed images are served with.
pub const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Largest image config read (real ones are a few KiB, a long history some tens).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most images in one archive.
const MAX_IMAGES: usize = 64;
/// Most layers in one image (the overlay driver's own limit is 128).
const MAX_LAYERS: usize = 128;
/// Most tags on one image.
const MAX_TAGS: usize = 64;

/// One image in `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedImage {
    /// The archive path of its config.
    pub config: String,
    /// `name:tag` names it was saved with (none when saved by id).
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The archive paths of its layers, base first.
    pub layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// A blob of the manifest: its type, digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: &'static str,
    /// Its digest.
    #[serde(serialize_with = "digest_text")]
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
}

fn digest_text<S: serde::Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(digest.as_str())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestBody<'a> {
    schema_version: u8,
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// A tag to serve an image by: its repository (without a registry host) and tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageTag {
    /// The repository path.
    pub repo: RepoPath,
    /// The tag.
    pub tag: String,
}

impl std::fmt::Display for ImageTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repo.as_str(), self.tag)
    }
}

/// Read the archive's index, bounded.
pub fn read_index(bytes: &[u8]) -> Result<Vec<SavedImage>, ImportError> {
    let images: Vec<SavedImage> =
        serde_json::from_slice(bytes).map_err(|e| ImportError::Index(e.to_string()))?;
    if images.is_empty() || images.len() > MAX_IMAGES {
        return Err(ImportError::Index(format!(
            "{} images; between 1 and {MAX_IMAGES} are accepted",
            images.len()
        )));
    }
    for image in &images {
        if image.layers.is_empty() || image.layers.len() > MAX_LAYERS {
            return Err(ImportError::Index(format!(
                "an image of {} layers; between 1 and {MAX_LAYERS} are accepted",
                image.layers.len()
            )));
        }
        if image.repo_tags.as_ref().is_some_and(|t| t.len() > MAX_TAGS) {
            return Err(ImportError::Index(format!(
                "more than {MAX_TAGS} tags on an image"
            )));
        }
    }
    Ok(images)
}

/// `[host/]repo[:tag]` as a tag to serve: the host is dropped (pushed images are served under
/// the hub's default registry, see [`super::import`]), the tag is `latest` when none is given.
pub fn parse_tag(text: &str) -> Result<ImageTag, ImportError> {
    let refused = |reason: String| ImportError::Tag {
        tag: text.chars().take(300).collect(),
        reason,
    };
    let (name, tag) = match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (text, "latest"),
    };
    let name = split_host(name).map_err(|e| refused(e.to_string()))?.rest;
    let repo = RepoPath::parse(name).map_err(|e| refused(e.to_string()))?;
    match Reference::parse(tag).map_err(|e| refused(e.to_string()))? {
        Reference::Tag(tag) => Ok(ImageTag { repo, tag }),
        Reference::Digest(_) => Err(refused("a tag, not a digest, names a pushed image".into())),
    }
}

/// The image's config, checked: its bytes, and its digest matching any its path names.
pub fn read_config(unpacked: &Unpacked, path: &str) -> Result<(Staged, Vec<Digest>), ImportError> {
    let staged = unpacked.file(path)?.clone();
    check_named(path, &staged)?;
    if staged.size > MAX_CONFIG_BYTES {
        return Err(ImportError::Oversized {
            what: format!("image config {path}"),
            limit: MAX_CONFIG_BYTES,
        });
    }
    let bytes = std::fs::read(&staged.path).map_err(|source| ImportError::Staging {
        path: staged.path.clone(),
        source,
    })?;
    let config_error = |reason: String| ImportError::Config {
        path: path.to_owned(),
        reason,
    };
    let config: ImageConfig =
        serde_json::from_slice(&bytes).map_err(|e| config_error(e.to_string()))?;
    if config.rootfs.kind != "layers" {
        return Err(config_error(format!(
            "rootfs type {:?}, not \"layers\"",
            config.rootfs.kind
        )));
    }
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| config_error(format!("diff_id {d:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((staged, diff_ids))
}

/// A path that names a digest (`blobs/sha256/<hex>`, `<hex>.json`) must hold those bytes.
pub fn check_named(path: &str, staged: &Staged) -> Result<(), ImportError> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|s| !s.contains('/')));
    let Some(named) = hex.and_then(|h| Digest::parse(&format!("sha256:{h}")).ok()) else {
        return Ok(());
    };
    if named != staged.digest {
        return Err(ImportError::DigestMismatch {
            path: path.to_owned(),
            expected: named,
            actual: staged.digest.clone(),
        });
    }
    Ok(())
}

/// Gzip layer `staged` (checked against `diff_id`) beside it: its descriptor and file.
pub fn prepare_layer(
    path: &str,
    staged: &Staged,
    diff_id: &Digest,
) -> Result<(Descriptor, PathBuf), ImportError> {
    let io = |at: &Path| {
        let at = at.to_owned();
        move |source| ImportError::Staging { path: at, source }
    };
    let mut input = BufReader::new(std::fs::File::open(&staged.path).map_err(io(&staged.path))?);
    let mut magic = [0u8; 2];
    let gzipped = input.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    if gzipped {
        let content = digest_of(GzDecoder::new(
            std::fs::File::open(&staged.path).map_err(io(&staged.path))?,
        ))
        .map_err(io(&staged.path))?;
        check_diff_id(path, diff_id, content)?;
        let descriptor = layer(staged.digest.clone(), staged.size);
        return Ok((descriptor, staged.path.clone()));
    }
    check_named(path, staged)?;
    check_diff_id(path, diff_id, staged.digest.clone())?;
    let out = staged.path.with_extension("gz");
    let file = std::fs::File::create(&out).map_err(io(&out))?;
    let mut hashing = HashingWriter::new(BufWriter::new(file));
    let mut encoder = GzEncoder::new(&mut hashing, Compression::default());
    let mut input = std::fs::File::open(&staged.path).map_err(io(&staged.path))?;
    std::io::copy(&mut input, &mut encoder).map_err(io(&out))?;
    encoder.finish().map_err(io(&out))?;
    hashing.inner.flush().map_err(io(&out))?;
    let (digest, size) = (hashing.hasher.finish(), hashing.written);
    Ok((layer(digest, size), out))
}

fn layer(digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: LAYER_TYPE,
        digest,
        size,
    }
}

fn check_diff_id(path: &str, diff_id: &Digest, actual: Digest) -> Result<(), ImportError> {
    if *diff_id != actual {
        return Err(ImportError::DigestMismatch {
            path: path.to_owned(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

fn digest_of(mut reader: impl Read) -> std::io::Result<Digest> {
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut reader, &mut hashing)?;
    Ok(hashing.hasher.finish())
}

/// The config's descriptor.
pub fn config_descriptor(staged: &Staged) -> Descriptor {
    Descriptor {
        media_type: CONFIG_TYPE,
        digest: staged.digest.clone(),
        size: staged.size,
    }
}

/// The Docker schema 2 manifest of `config` and `layers`.
pub fn manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let body = ManifestBody {
        schema_version: 2,
        media_type: MANIFEST_TYPE,
        config,
        layers,
    };
    serde_json::to_vec_pretty(&body).unwrap_or_default()
}

/// A writer that hashes and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::default(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_read_and_bounded() {
        let index = br#"[{"Config":"a.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#;
        let images = read_index(index).unwrap();
        assert_eq!(images[0].layers, ["l/layer.tar"]);
        let untagged = br#"[{"Config":"a.json","RepoTags":null,"Layers":["l"]}]"#;
        assert!(read_index(untagged).unwrap()[0].repo_tags.is_none());
        for hostile in [
            &b"[]"[..],
            b"{}",
            b"not json",
            br#"[{"Config":"a.json","Layers":[]}]"#,
        ] {
            assert!(
                matches!(read_index(hostile), Err(ImportError::Index(_))),
                "{}",
                String::from_utf8_lossy(hostile)
            );
        }
        let layers: Vec<String> = (0..=MAX_LAYERS).map(|n| format!("\"{n}\"")).collect();
        let deep = format!(r#"[{{"Config":"a","Layers":[{}]}}]"#, layers.join(","));
        assert!(read_index(deep.as_bytes()).is_err());
    }

    #[test]
    fn tags_lose_their_host_and_default_to_latest() {
        let tag = parse_tag("198.18.0.1:5000/outpost/app:2").unwrap();
        assert_eq!(tag.to_string(), "outpost/app:2");
        assert_eq!(parse_tag("busybox").unwrap().to_string(), "busybox:latest");
        assert_eq!(
            parse_tag("localhost:5000/a").unwrap().to_string(),
            "a:latest"
        );
        for bad in ["Upper/case:1", "a:b/c:", "a:-x", "a@sha256:00", "../x:1"] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_that_names_a_digest_must_hold_it() {
        let digest = Digest::of(b"config");
        let staged = Staged {
            path: PathBuf::new(),
            digest: digest.clone(),
            size: 6,
        };
        check_named(&format!("{}.json", digest.hex()), &staged).unwrap();
        check_named(&format!("blobs/sha256/{}", digest.hex()), &staged).unwrap();
        check_named("abc/layer.tar", &staged).unwrap();
        let other = Digest::of(b"other");
        assert!(matches!(
            check_named(&format!("blobs/sha256/{}", other.hex()), &staged),
            Err(ImportError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn a_layer_is_gzipped_and_its_content_checked() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"layer bytes ".repeat(1000);
        let path = dir.path().join("f1");
        std::fs::write(&path, &content).unwrap();
        let staged = Staged {
            path,
            digest: Digest::of(&content),
            size: content.len() as u64,
        };
        let (descriptor, out) = prepare_layer("l/layer.tar", &staged, &staged.digest).unwrap();
        let gz = std::fs::read(&out).unwrap();
        assert_eq!(descriptor.digest, Digest::of(&gz));
        assert!(descriptor.size < content.len() as u64 / 10);
        let mut back = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, content);
        // Already gzipped: kept as it came.
        let gz_staged = Staged {
            path: out,
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        };
        let (kept, _) = prepare_layer("x", &gz_staged, &staged.digest).unwrap();
        assert_eq!(kept, descriptor);
        let wrong = Digest::of(b"another layer");
        assert!(matches!(
            prepare_layer("l/layer.tar", &staged, &wrong),
            Err(ImportError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn the_manifest_is_docker_schema_2() {
        let config = Descriptor {
            media_type: CONFIG_TYPE,
            digest: Digest::of(b"c"),
            size: 1,
        };
        let bytes = manifest(&config, &[layer(Digest::of(b"l"), 3)]);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["mediaType"], MANIFEST_TYPE);
        assert_eq!(value["config"]["digest"], config.digest.as_str());
        assert_eq!(value["layers"][0]["size"], 3);
        assert_eq!(value["layers"][0]["mediaType"], LAYER_TYPE);
    }
}
