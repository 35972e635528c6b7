//! Answering a registry's `401`: Basic with the configured credentials, or a bearer token from the
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge's token service (with the
//! credentials, if any, else anonymously), as the docker CLI does.
//!
//! Tokens are kept per scope until shortly before they expire, so a pull of ten blobs asks the
//! token service once. Challenge headers and token answers are bounded before they are parsed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine as _;
use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::super::config::Credentials;
use super::{read_limited, UpstreamError};

/// Longest challenge parsed; real ones are a few hundred bytes.
const MAX_CHALLENGE: usize = 4096;
/// Largest token answer read (JWTs of a few KiB).
const MAX_TOKEN_ANSWER: u64 = 64 << 10;
/// A token without `expires_in` lives 60 s (the token spec's default).
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so none expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// Scopes remembered at once.
const MAX_TOKENS: usize = 1000;

/// What a `401` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic,
    /// A token from `realm`.
    Bearer {
        /// The token service.
        realm: Url,
        /// `service=`, passed back.
        service: Option<String>,
        /// `scope=`, passed back (ours when absent).
        scope: Option<String>,
    },
}

/// Read a `WWW-Authenticate` value: the first Bearer or Basic challenge in it.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    if header.len() > MAX_CHALLENGE {
        return Err(format!(
            "an authentication challenge over {MAX_CHALLENGE} bytes"
        ));
    }
    let challenges =
        http_auth::parse_challenges(header).map_err(|e| format!("malformed challenge: {e}"))?;
    for challenge in challenges {
        let param = |name: &str| {
            challenge
                .params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_unescaped())
        };
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            return Ok(Challenge::Basic);
        }
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let realm = param("realm").ok_or("a Bearer challenge without realm")?;
            let realm =
                Url::parse(&realm).map_err(|e| format!("Bearer realm is not a URL: {e}"))?;
            if !matches!(realm.scheme(), "http" | "https") {
                return Err("Bearer realm is not an http(s) URL".into());
            }
            return Ok(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
    }
    Err("no Basic or Bearer challenge".into())
}

/// The token service's answer (either field name is in use).
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// One upstream's credentials and the tokens it issued.
#[derive(Debug)]
pub struct Auth {
    credentials: Option<Credentials>,
    /// Set once the upstream asked for Basic: later requests send it unasked.
    basic: Mutex<bool>,
    tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
}

impl Auth {
    /// Authenticate with `credentials`, or anonymously.
    pub fn new(credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            basic: Mutex::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// What to send unasked for `scope`: a live token, or Basic once the upstream wanted it.
    pub fn header(&self, scope: &str, now: Instant) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, _)) = tokens.get(scope).filter(|(_, until)| now < *until) {
            return Some(value.clone());
        }
        drop(tokens);
        let basic = *self.basic.lock().unwrap_or_else(|p| p.into_inner());
        basic.then(|| self.basic_value()).flatten()
    }

    /// Answer `challenge` for `scope`; the header to retry with.
    pub async fn answer(
        &self,
        http: &reqwest::Client,
        host: &str,
        challenge: Challenge,
        scope: &str,
    ) -> Result<HeaderValue, UpstreamError> {
        match challenge {
            Challenge::Basic => {
                *self.basic.lock().unwrap_or_else(|p| p.into_inner()) = true;
                self.basic_value()
                    .ok_or_else(|| UpstreamError::Unauthorized {
                        host: host.to_owned(),
                    })
            }
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let scope = asked.unwrap_or_else(|| scope.to_owned());
                self.token(http, host, realm, service, scope).await
            }
        }
    }

    fn basic_value(&self) -> Option<HeaderValue> {
        let c = self.credentials.as_ref()?;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    async fn token(
        &self,
        http: &reqwest::Client,
        host: &str,
        mut realm: Url,
        service: Option<String>,
        scope: String,
    ) -> Result<HeaderValue, UpstreamError> {
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        let mut request = http.get(realm);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.user, Some(&c.password));
        }
        let response = request.send().await.map_err(|source| UpstreamError::Http {
            host: host.to_owned(),
            source,
        })?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            || response.status() == reqwest::StatusCode::FORBIDDEN
        {
            return Err(UpstreamError::Unauthorized {
                host: host.to_owned(),
            });
        }
        if !response.status().is_success() {
            return Err(UpstreamError::Status {
                host: host.to_owned(),
                status: response.status().as_u16(),
                what: "a token".into(),
            });
        }
        let body = read_limited(response, MAX_TOKEN_ANSWER, host, "token answer").await?;
        let malformed = |detail: String| UpstreamError::Malformed {
            host: host.to_owned(),
            what: "token answer",
            detail,
        };
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| malformed("no token".into()))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| malformed(e.to_string()))?;
        value.set_sensitive(true);
        let life = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFE, Duration::from_secs);
        self.keep(
            scope,
            value.clone(),
            Instant::now() + life.saturating_sub(TOKEN_MARGIN),
        );
        Ok(value)
    }

    fn keep(&self, scope: String, value: HeaderValue, until: Instant) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| now < *until);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope, (value, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_style_challenges_are_read() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let Challenge::Bearer {
            realm,
            service,
            scope,
        } = parse_challenge(header).unwrap()
        else {
            panic!("bearer")
        };
        assert_eq!(realm.as_str(), "https://auth.docker.io/token");
        assert_eq!(service.as_deref(), Some("registry.docker.io"));
        assert_eq!(scope.as_deref(), Some("repository:library/busybox:pull"));
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Ok(Challenge::Basic)
        );
    }

    #[test]
    fn hostile_challenges_are_refused() {
        let long = format!(r#"Bearer realm="https://x/{}""#, "a".repeat(MAX_CHALLENGE));
        for header in [
            "",
            "Bearer",
            r#"Bearer service="x""#,
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer realm="not a url""#,
            r#"Digest realm="x""#,
            "Bearer realm=\"unterminated",
            long.as_str(),
        ] {
            assert!(parse_challenge(header).is_err(), "{header:?}");
        }
    }

    #[test]
    fn basic_is_sent_unasked_only_after_a_basic_challenge() {
        let auth = Auth::new(Some(Credentials {
            user: "alice".into(),
            password: "pw".into(),
        }));
        let now = Instant::now();
        assert!(auth.header("s", now).is_none());
        *auth.basic.lock().unwrap() = true;
        let value = auth.header("s", now).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Basic YWxpY2U6cHc=");
    }
}
