//! `JoinToken::decode` on arbitrary text: the input as UTF-8 (when it is), its lossy conversion,
//! and the input as the token's raw bytes, base64url-encoded, so most runs reach the postcard body
//! and the field checks instead of stopping at the base64 layer.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use outpost_protocol::token::{JoinToken, TokenError, MAX_TOKEN_LEN, TOKEN_VERSION};
use outpost_fuzz::check_token;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_token(text);
    }
    check_token(&String::from_utf8_lossy(data));

    let text = URL_SAFE_NO_PAD.encode(data);
    check_token(&text);
    let result = JoinToken::decode(&text);
    match data.first() {
        None => assert_eq!(result, Err(TokenError::Empty)),
        Some(_) if text.len() > MAX_TOKEN_LEN => {
            assert_eq!(result, Err(TokenError::TooLong(text.len())))
        }
        Some(&v) if v != TOKEN_VERSION => {
            assert_eq!(result, Err(TokenError::UnsupportedVersion { found: v }))
        }
        Some(_) => assert!(!matches!(result, Err(TokenError::BadBase64(_)))),
    }
});
