//! What the mirror is told: its upstream registries, where their credentials are, how much disk it
//! may hold and how long a tag is believed.
//!
//! Credentials never travel in a URL (`https://user:pass@host` would be echoed by shells, process
//! lists and logs): such a `--registry` is refused, and they are read from a file of lines
//! `HOST USER PASSWORD` (`HOST` as in the URL, `host[:port]`; `#` starts a comment; the password is
//! the rest of the line). The file is read once at start; its values print masked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use thiserror::Error;

use crate::config::{DEFAULT_MIRROR_MAX_BYTES, MIRROR_TAG_TTL};

/// The largest credentials file read: a line per registry, a handful of registries.
const MAX_CREDENTIALS_FILE: u64 = 64 << 10;

/// The mirror's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorConfig {
    /// Upstream registries; the first serves names without a registry host.
    pub upstreams: Vec<Url>,
    /// The credentials file, if any.
    pub credentials_file: Option<PathBuf>,
    /// Bytes of blobs kept; least recently used go first past it.
    pub max_bytes: u64,
    /// How long a tag's digest is believed before asking the upstream again.
    pub tag_ttl: Duration,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            credentials_file: None,
            max_bytes: DEFAULT_MIRROR_MAX_BYTES,
            tag_ttl: MIRROR_TAG_TTL,
        }
    }
}

/// A `--registry` value: an `http`/`https` URL of a registry's root, without credentials.
pub fn parse_upstream(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: the value holds a password.
        return Err("credentials in a --registry URL are refused (they would be logged); put them in --registry-credentials FILE".into());
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text}: an http:// or https:// URL of a registry is needed"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text}: give the registry's root (no path, query or fragment)"
        ));
    }
    Ok(url)
}

/// `host[:port]` of an upstream URL, as image names and the credentials file write it.
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A user and password for one registry; the password prints masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (or token).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Why the credentials file was refused; no variant carries its content.
#[derive(Debug, Error)]
pub enum CredentialsError {
    /// It could not be read.
    #[error("registry credentials {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Bigger than a credentials file can be.
    #[error("registry credentials {path}: larger than {MAX_CREDENTIALS_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line that is not `HOST USER PASSWORD`.
    #[error("registry credentials {path}, line {line}: expected `HOST USER PASSWORD`")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
}

/// Read the credentials file: `(host, credentials)` per line.
pub fn read_credentials(path: &Path) -> Result<Vec<(String, Credentials)>, CredentialsError> {
    let read = |source| CredentialsError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_CREDENTIALS_FILE {
        return Err(CredentialsError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_credentials(&text).map_err(|line| CredentialsError::Line {
        path: path.to_owned(),
        line,
    })
}

/// Parse the file's text; `Err(line)` names the first bad line.
fn parse_credentials(text: &str) -> Result<Vec<(String, Credentials)>, usize> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, char::is_whitespace);
        let (Some(host), Some(user), Some(password)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(number + 1);
        };
        let password = password.trim();
        if password.is_empty() {
            return Err(number + 1);
        }
        let credentials = Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        entries.push((host.to_owned(), credentials));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_roots_without_credentials() {
        let url = parse_upstream("https://registry.example:5000").unwrap();
        assert_eq!(authority(&url), "registry.example:5000");
        assert_eq!(
            authority(&parse_upstream("http://127.0.0.1:5000/").unwrap()),
            "127.0.0.1:5000"
        );
        let refused = parse_upstream("https://alice:s3cret@registry.example").unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
        for bad in [
            "ftp://x",
            "registry.example",
            "https://x/v2/",
            "https://x/?a=1",
            "http://:5",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_lines_are_read_and_masked() {
        let text = "# comment\n\nregistry.example:5000 alice pass word\n127.0.0.1 bob x\n";
        let entries = parse_credentials(text).unwrap();
        assert_eq!(entries[0].0, "registry.example:5000");
        assert_eq!(entries[0].1.password, "pass word");
        assert_eq!(entries[1].1.user, "bob");
        assert!(!format!("{entries:?}").contains("pass word"));
        assert_eq!(parse_credentials("host user\n"), Err(1));
        assert_eq!(parse_credentials("ok u p\nhost\n"), Err(2));
    }

    #[test]
    fn a_huge_credentials_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, vec![b'a'; MAX_CREDENTIALS_FILE as usize + 1]).unwrap();
        assert!(matches!(
            read_credentials(&path),
            Err(CredentialsError::TooLarge { .. })
        ));
    }
}
