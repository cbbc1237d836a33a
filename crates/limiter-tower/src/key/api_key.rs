//! The `api_key` scope: a request header whose value is hashed before it becomes part of
//! a key, so that keys stored in Redis or shown in logs never reveal a credential.

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

/// Reads and hashes the API key header.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyReader {
    header: HeaderName,
}

impl ApiKeyReader {
    /// Reads keys from `header`.
    pub(crate) fn new(header: HeaderName) -> Self {
        ApiKeyReader { header }
    }

    /// The first 128 bits of the SHA-256 of the header's value, in hex; `None` when the
    /// header is missing or empty. Any bytes are accepted: they are only hashed.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(&self.header)?.as_bytes();
        if value.is_empty() {
            return None;
        }
        let digest = Sha256::digest(value);
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        Some(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hashes_and_never_echoes_the_key() {
        let reader = ApiKeyReader::new(HeaderName::from_static("x-api-key"));
        let mut headers = HeaderMap::new();
        assert_eq!(reader.read(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static("secret-1"));
        let a = reader.read(&headers).unwrap();
        assert_eq!(a.len(), 32);
        assert!(!a.contains("secret"));
        headers.insert("x-api-key", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let b = reader.read(&headers).unwrap();
        assert_ne!(a, b);
    }
}
