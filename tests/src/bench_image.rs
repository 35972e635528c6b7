//! The image the link benches move: built in the engine from random bytes, with its `docker save`
//! archive for `docker load`.

use std::process::Command;

use crate::docker::{direct, unique};

/// The image the transfers carry: `FROM scratch` plus `size_mb` MiB of random bytes, and its
/// `docker save` tar (for `docker load`). Removed when dropped.
#[derive(Debug)]
pub struct TestImage {
    /// Its tag in the engine.
    pub tag: String,
    /// Its `docker save` archive.
    pub tar: std::path::PathBuf,
    /// The archive's size.
    pub tar_bytes: u64,
    _dir: tempfile::TempDir,
}

impl TestImage {
    /// Build it (`size_mb` MiB of random bytes) and save its archive.
    pub fn build(size_mb: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let blob = dir.path().join("blob");
        let status = Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "status=none"])
            .arg(format!("of={}", blob.display()))
            .arg(format!("count={size_mb}"))
            .status()
            .expect("dd");
        assert!(status.success(), "dd of {size_mb} MiB failed");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY blob /blob\n",
        )
        .expect("the Dockerfile");
        let tag = format!("{}:bench", unique("link"));
        let context = dir.path().to_str().expect("a UTF-8 temporary path");
        let built = direct(&["build", "-q", "-t", &tag, context]);
        assert!(built.status.success(), "{built:?}");
        std::fs::remove_file(&blob).expect("the blob, now in the image");
        let tar = dir.path().join("image.tar");
        let saved = direct(&["save", "-o", tar.to_str().expect("a UTF-8 path"), &tag]);
        assert!(saved.status.success(), "{saved:?}");
        let tar_bytes = std::fs::metadata(&tar).expect("the saved archive").len();
        Self {
            tag,
            tar,
            tar_bytes,
            _dir: dir,
        }
    }
}

impl TestImage {
    /// Loads the image straight into the engine if a cut-short `docker load` left it missing.
    pub fn restore(&self) {
        if !direct(&["image", "inspect", &self.tag]).status.success() {
            let loaded = direct(&["load", "-i", self.tar.to_str().expect("a UTF-8 path")]);
            assert!(loaded.status.success(), "{loaded:?}");
        }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = direct(&["rmi", "-f", &self.tag]);
    }
}
