//! Repository names and manifest references from request paths, checked against the distribution
//! spec's grammar before any is used to pick an upstream, build a URL or name a file.
//!
//! A name is path components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255
//! characters in all (the spec's bound). The first component may instead be the host of a
//! configured upstream (`registry.example:5000/pos/web`); which upstream, if any, is decided by
//! the hub's mirror (`Upstreams::route`).

use thiserror::Error;

use super::digest::Digest;

/// The spec's bound on a whole name.
pub const MAX_NAME_LEN: usize = 255;
/// The spec's bound on a tag.
const MAX_TAG_LEN: usize = 128;

/// Why a repository name or reference is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NameError {
    /// Longer than [`MAX_NAME_LEN`].
    #[error("repository name longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// A component outside the grammar (uppercase, `..`, empty, a leading separator).
    #[error("invalid repository name: components are lowercase letters and digits separated by '.', '_', '__' or dashes")]
    Component,
    /// A tag outside `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` that is not a digest either.
    #[error("invalid reference: a tag of at most 128 of [A-Za-z0-9._-] not starting with '.' or '-', or a sha256 digest")]
    Reference,
}

/// A repository path on its upstream (`library/busybox`), valid by the grammar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    /// Check `text` against the path grammar.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !text.split('/').all(valid_component) {
            return Err(NameError::Component);
        }
        Ok(Self(text.to_owned()))
    }

    /// The path as the upstream's URL takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name as a client wrote it: a possible host component and the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedName<'a> {
    /// The first component when it looks like a host (`a.b`, `a:5000`, `localhost`).
    pub host: Option<&'a str>,
    /// The components after it (or all of them), unchecked.
    pub rest: &'a str,
}

/// Split off a leading host component the way the docker CLI recognises one.
pub fn split_host(name: &str) -> Result<RequestedName<'_>, NameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => {
            if !valid_host(first) {
                return Err(NameError::Component);
            }
            Ok(RequestedName {
                host: Some(first),
                rest,
            })
        }
        _ => Ok(RequestedName {
            host: None,
            rest: name,
        }),
    }
}

/// The hosts Docker Hub answers to. Its names carry no host (`nginx`, `grafana/agent`) and its
/// official images live under `library/` (`nginx` is `library/nginx` there), as the docker CLI
/// expands them.
pub const DOCKER_HUB_HOSTS: [&str; 3] = ["registry-1.docker.io", "docker.io", "index.docker.io"];

/// Whether `host` is Docker Hub's.
pub fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_HOSTS.contains(&host)
}

/// The repository Docker Hub serves `path` (a name without its host) under: `library/nginx` for
/// `nginx`, unchanged when it has an owner.
pub fn docker_hub_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.contains('/') {
        true => path.into(),
        false => format!("library/{path}").into(),
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, which may move.
    Tag(String),
    /// A digest, which names content.
    Digest(Digest),
}

impl Reference {
    /// Parse a tag or a `sha256:` digest.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.contains(':') {
            return Digest::parse(text)
                .map(Self::Digest)
                .map_err(|_| NameError::Reference);
        }
        let bytes = text.as_bytes();
        let tag_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes.iter().all(tag_char);
        if !valid {
            return Err(NameError::Reference);
        }
        Ok(Self::Tag(text.to_owned()))
    }

    /// The reference as the upstream's URL takes it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tag(tag) => tag,
            Self::Digest(digest) => digest.as_str(),
        }
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between alphanumeric runs: one '.', one or two '_', or any number of '-'.
    bytes
        .split(|&b| alnum(b))
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-')
        })
}

/// The docker CLI's rule: a first component with a '.' or ':' or `localhost` is a host.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `host[:port]` of letters, digits, dots and dashes, with a numeric port.
fn valid_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let host_ok = host.split('.').all(label_ok);
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_keeps_official_images_under_library() {
        assert!(is_docker_hub("docker.io") && is_docker_hub("registry-1.docker.io"));
        assert!(!is_docker_hub("registry.example:5000"));
        assert_eq!(docker_hub_path("nginx"), "library/nginx");
        assert_eq!(docker_hub_path("grafana/agent"), "grafana/agent");
    }

    #[test]
    fn names_of_the_grammar_are_accepted() {
        for name in [
            "busybox",
            "library/busybox",
            "a/b/c",
            "my-app",
            "my--app",
            "a.b",
            "a_b",
            "a__b",
            "x9/y0",
        ] {
            assert_eq!(RepoPath::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(RepoPath::parse(&long), Err(NameError::TooLong));
        for name in [
            "", "/", "a/", "/a", "a//b", "..", "../etc", "a/../b", ".a", "a.", "a..b", "a___b",
            "a_-b", "A", "a b", "a/B", "a\0b", "a%2fb", "é", "-a", "a-",
        ] {
            assert_eq!(RepoPath::parse(name), Err(NameError::Component), "{name:?}");
        }
    }

    #[test]
    fn a_leading_host_is_split_off() {
        let split = split_host("registry.example:5000/pos/web").unwrap();
        assert_eq!(
            (split.host, split.rest),
            (Some("registry.example:5000"), "pos/web")
        );
        let split = split_host("library/busybox").unwrap();
        assert_eq!((split.host, split.rest), (None, "library/busybox"));
        assert_eq!(split_host("localhost/x").unwrap().host, Some("localhost"));
        assert_eq!(split_host("bad_host.x/y"), Err(NameError::Component));
        assert_eq!(split_host("../etc"), Err(NameError::Component));
        assert_eq!(split_host("a..b/c"), Err(NameError::Component));
        assert_eq!(split_host("h:99999a/y"), Err(NameError::Component));
        assert_eq!(split_host(&"a".repeat(300)), Err(NameError::TooLong));
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("latest").unwrap(),
            Reference::Tag("latest".into())
        );
        assert_eq!(Reference::parse("_v1.2-rc").unwrap().as_str(), "_v1.2-rc");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            Reference::parse(&digest),
            Ok(Reference::Digest(_))
        ));
        let long = "a".repeat(129);
        for hostile in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            "sha256:zz",
            long.as_str(),
            "a b",
            "../x",
        ] {
            assert_eq!(
                Reference::parse(hostile),
                Err(NameError::Reference),
                "{hostile:?}"
            );
        }
    }
}
