//! Bearer tokens: reading the `Authorization` header, and finding the configured token a
//! request presents without the time taken saying anything about the tokens.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::AdminConfig;

/// Who made a request, as a request extension for the handlers' logs: the name of the token
/// it presented (never the token), and the client's address.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The configured name of a valid token the request presented.
    pub(crate) token: Option<String>,
    pub(crate) client: Option<IpAddr>,
}

/// The configured tokens as SHA-256 digests, with their names.
pub(crate) struct Tokens {
    digests: Vec<(String, [u8; 32])>,
}

impl Tokens {
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let digests = config
            .tokens
            .iter()
            .map(|(name, token)| (name.clone(), digest(token.expose().as_bytes())))
            .collect();
        Self { digests }
    }

    /// The name of the configured token `presented` is, if any. Both sides are compared as
    /// SHA-256 digests, in constant time, and every token is compared whichever matches: the
    /// time taken depends on neither a token's content nor its length (only on the length of
    /// what was presented, which the caller knows anyway).
    pub(crate) fn find(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(presented);
        let mut found = u32::MAX;
        for (index, (_, token)) in self.digests.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, token.ct_eq(&presented));
        }
        let found = usize::try_from(found).ok()?;
        self.digests.get(found).map(|(name, _)| name.as_str())
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched in any
/// case (RFC 9110 §11.1), with optional whitespace around the value and one or more spaces
/// after the scheme. `None` without the header, for another scheme, or with no token.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes().trim_ascii();
    let split = value
        .iter()
        .position(|&byte| byte == b' ' || byte == b'\t')?;
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(token.trim_ascii_start()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::HeaderValue;

    use super::*;
    use crate::Secret;

    #[test]
    fn the_scheme_is_read_in_any_case() {
        let read = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            bearer(&headers).map(<[u8]>::to_vec)
        };
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR   abc",
            "  Bearer abc  ",
            "Bearer\tabc",
        ] {
            assert_eq!(read(value).as_deref(), Some(&b"abc"[..]), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", "abc", ""] {
            assert_eq!(read(value), None, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_are_found_by_digest_whatever_the_length() {
        let config = AdminConfig {
            tokens: BTreeMap::from([
                ("ci".to_owned(), Secret::new("ci-token-0123456789")),
                ("ops".to_owned(), Secret::new("ops-token-0123456789-longer")),
            ]),
            ..AdminConfig::default()
        };
        let tokens = Tokens::new(&config);
        assert_eq!(tokens.find(b"ci-token-0123456789"), Some("ci"));
        assert_eq!(tokens.find(b"ops-token-0123456789-longer"), Some("ops"));
        for wrong in [
            &b""[..],
            b"ci-token-012345678",
            b"ci-token-0123456789x",
            b"ops-token-0123456789",
        ] {
            assert_eq!(tokens.find(wrong), None, "{wrong:?}");
        }
        assert_eq!(Tokens::new(&AdminConfig::default()).find(b"anything"), None);
    }
}
