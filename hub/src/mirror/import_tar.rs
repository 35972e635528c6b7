//! Reading a `docker save` archive into a staging directory, one pass, nothing trusted.
//!
//! The archive arrives as a stream (an upload), so it is read once, in order: every regular file
//! is copied into the staging directory under a name of our own (`f0`, `f1`, …) while its SHA-256
//! is computed, and remembered by its cleaned archive path; symbolic links (an engine writes one
//! for a layer two images share) are remembered as paths, never created on disk. Only
//! `manifest.json` — the index of the archive's images, written by every engine since 1.10 — is
//! kept in memory, bounded. Since nothing is ever written at an archive path, an entry cannot
//! escape the staging directory; an absolute path or a `..` is refused anyway, as a sign of a
//! hostile archive. The entry count and the bytes staged are bounded before they are spent, and
//! the metadata entries the tar reader would hold whole in memory by [`HeaderGuard`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::digest::{Digest, Hasher};
use super::import::ImportError;
use super::import_guard::HeaderGuard;

/// Most entries an archive may have (an image of 127 layers is ~400 in the legacy layout).
pub const MAX_ENTRIES: usize = 4096;
/// Longest entry path.
const MAX_PATH: usize = 1024;
/// Largest `manifest.json` read: a few hundred bytes per image.
pub const MAX_INDEX_BYTES: u64 = 1 << 20;
/// Symbolic links followed from one path before it is refused as a loop.
const MAX_LINK_HOPS: usize = 8;
/// Bytes copied per read.
const CHUNK: usize = 64 << 10;

/// One regular file of the archive, staged.
#[derive(Clone, Debug)]
pub struct Staged {
    /// Where its bytes are now.
    pub path: PathBuf,
    /// The SHA-256 of its bytes.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// What an archive held: its files by cleaned path, its links, and its index.
#[derive(Debug, Default)]
pub struct Unpacked {
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
    /// The bytes of `manifest.json`, if the archive had one.
    pub index: Option<Vec<u8>>,
    /// Bytes staged on disk.
    pub staged_bytes: u64,
}

impl Unpacked {
    /// The file at archive path `path`, following links within the archive.
    pub fn file(&self, path: &str) -> Result<&Staged, ImportError> {
        let mut at = clean(path)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(staged) = self.files.get(&at) {
                return Ok(staged);
            }
            match self.links.get(&at) {
                Some(target) => at = target.clone(),
                None => break,
            }
        }
        Err(ImportError::Missing(path.to_owned()))
    }
}

/// Read the archive from `reader` into `staging`, staging at most `budget` bytes.
pub fn unpack(reader: impl Read, staging: &Path, budget: u64) -> Result<Unpacked, ImportError> {
    let mut archive = tar::Archive::new(HeaderGuard::new(reader));
    let mut unpacked = Unpacked::default();
    let entries = archive.entries().map_err(ImportError::archive)?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            return Err(ImportError::TooManyEntries(MAX_ENTRIES));
        }
        let entry = entry.map_err(ImportError::archive)?;
        take_entry(&mut unpacked, entry, staging.join(format!("f{n}")), budget)?;
    }
    Ok(unpacked)
}

fn take_entry<R: Read>(
    unpacked: &mut Unpacked,
    mut entry: tar::Entry<'_, R>,
    staged_at: PathBuf,
    budget: u64,
) -> Result<(), ImportError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let path = clean(&raw)?;
    match entry.header().entry_type() {
        EntryType::Regular | EntryType::Continuous if path == "manifest.json" => {
            unpacked.index = Some(read_bounded(&mut entry, MAX_INDEX_BYTES, "manifest.json")?);
        }
        EntryType::Regular | EntryType::Continuous => {
            let left = budget.saturating_sub(unpacked.staged_bytes);
            let staged = stage(&mut entry, staged_at, left, budget)?;
            unpacked.staged_bytes += staged.size;
            unpacked.files.insert(path, staged);
        }
        EntryType::Symlink | EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let resolved = if entry.header().entry_type() == EntryType::Link {
                clean(&target)?
            } else {
                resolve_link(&path, &target)?
            };
            unpacked.links.insert(path, resolved);
        }
        // Directories, and metadata entries the tar reader has already applied.
        _ => {}
    }
    Ok(())
}

/// Copy one entry into `to` while hashing it, refusing it past `left` bytes.
fn stage(
    entry: &mut impl Read,
    to: PathBuf,
    left: u64,
    budget: u64,
) -> Result<Staged, ImportError> {
    let io = |source| ImportError::Staging {
        path: to.clone(),
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&to).map_err(io)?);
    let mut hasher = Hasher::default();
    let mut size = 0u64;
    let mut chunk = vec![0; CHUNK];
    loop {
        let n = entry.read(&mut chunk).map_err(ImportError::archive)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > left {
            return Err(ImportError::TooLarge { limit: budget });
        }
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n]).map_err(io)?;
    }
    file.flush().map_err(io)?;
    Ok(Staged {
        path: to,
        digest: hasher.finish(),
        size,
    })
}

/// All of `entry` if it is at most `limit` bytes; `what` names it in the refusal.
pub fn read_bounded(entry: &mut impl Read, limit: u64, what: &str) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ImportError::archive)?;
    if bytes.len() as u64 > limit {
        return Err(ImportError::Oversized {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// An archive path without `.` components or empty ones; absolute paths and `..` refused.
pub fn clean(path: &str) -> Result<String, ImportError> {
    let traversal = || ImportError::Traversal(path.chars().take(MAX_PATH).collect());
    if path.len() > MAX_PATH || path.starts_with('/') || path.contains('\0') {
        return Err(traversal());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(traversal()),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Where a symbolic link at `link` pointing at `target` leads, as an archive path; a target that
/// is absolute or climbs out of the archive is refused.
pub fn resolve_link(link: &str, target: &str) -> Result<String, ImportError> {
    let traversal = || ImportError::Traversal(format!("{link} -> {target}"));
    if target.len() > MAX_PATH || target.starts_with('/') {
        return Err(traversal());
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(traversal)?;
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_and_escapes_refused() {
        assert_eq!(clean("./abc/layer.tar").unwrap(), "abc/layer.tar");
        assert_eq!(clean("blobs//sha256/x").unwrap(), "blobs/sha256/x");
        for hostile in ["/etc/passwd", "../x", "a/../../x", "a/..", "a\0b"] {
            assert!(
                matches!(clean(hostile), Err(ImportError::Traversal(_))),
                "{hostile}"
            );
        }
        assert!(clean(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_link("b/layer.tar", "../a/layer.tar").unwrap(),
            "a/layer.tar"
        );
        assert_eq!(resolve_link("b/layer.tar", "c").unwrap(), "b/c");
        assert!(resolve_link("b/layer.tar", "../../etc/passwd").is_err());
        assert!(resolve_link("layer.tar", "/etc/passwd").is_err());
    }

    #[test]
    fn a_link_loop_is_missing_not_endless() {
        let mut unpacked = Unpacked::default();
        unpacked.links.insert("a".into(), "b".into());
        unpacked.links.insert("b".into(), "a".into());
        assert!(matches!(unpacked.file("a"), Err(ImportError::Missing(_))));
    }

    #[test]
    fn reads_are_bounded() {
        let mut short: &[u8] = b"12345";
        assert_eq!(read_bounded(&mut short, 5, "x").unwrap(), b"12345");
        let mut long: &[u8] = b"123456";
        assert!(matches!(
            read_bounded(&mut long, 5, "x"),
            Err(ImportError::Oversized { .. })
        ));
    }
}
