//! The `api_key` scope: a request header whose value is hashed before it becomes part of
//! a key, so that keys stored in Redis or shown in logs never reveal a credential.

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

/// The header the `api_key` scope reads unless told otherwise.
pub(crate) const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

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

    /// The header it reads.
    pub(crate) fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The first 128 bits of the SHA-256 of the header's value, in hex; `None` when the
    /// header is missing or empty. Any bytes are accepted: they are only hashed.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(&self.header)?.as_bytes();
        if value.is_empty() {
            return None;
        }
        Some(hash_api_key(value))
    }
}

/// The first 128 bits of the SHA-256 of `key`, in hex: what [`ApiKeyReader::read`] makes
/// of a header.
pub(crate) fn hash_api_key(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..16])
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
        // Pinned: these are stored keys, a changed encoding would remap every budget.
        assert_eq!(a, "f7e7c36e458e80e6b6a2c67d0a9ec09b");
        assert!(!a.contains("secret"));
        headers.insert("x-api-key", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let b = reader.read(&headers).unwrap();
        assert_ne!(a, b);
    }
}
