//! What a registry client or upstream could send the mirror as text — a repository name, a
//! manifest reference, a digest, a `Range` header — through the parsers that check it before it
//! names a file or builds a URL: nothing panics, and what they accept stays inside the grammar
//! (no `..`, no `/` at either end, no path step out of the blob directory, a range inside the blob).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::registry::digest::Digest;
use outpost_protocol::registry::name::{split_host, Reference, RepoPath, MAX_NAME_LEN};
use outpost_protocol::registry::range::{self, RangeRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if let Ok(path) = RepoPath::parse(&text) {
        let path = path.as_str();
        assert!(path.len() <= MAX_NAME_LEN);
        assert!(!path.starts_with('/') && !path.ends_with('/') && !path.contains(".."));
    }
    if let Ok(name) = split_host(&text) {
        assert!(name.rest.len() <= text.len());
    }
    if let Ok(Reference::Tag(tag)) = Reference::parse(&text) {
        assert!(!tag.contains('/') && !tag.contains(':'));
    }
    if let Ok(digest) = Digest::parse(&text) {
        let hex = digest.hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    let size = u64::from(size_byte) * 1_000;
    if let RangeRequest::Part(part) = range::parse(Some(&text), size) {
        assert!(part.start <= part.end && part.end < size);
        assert_eq!(part.byte_count(), part.end - part.start + 1);
    }
});
