//! Escaping of key parts, so that a value taken from a request can never contain the
//! separator of the composite key and pass for another scope or identity.

/// Appends `part` to `out`, percent-encoding every byte that is not an ASCII letter,
/// digit or one of `-._~/@+=!*`. `:` (the key separator), `%` (the escape itself),
/// `{`/`}` (Redis Cluster hash tags), whitespace and non-ASCII are always encoded, so
/// escaping is injective and the result contains no separator.
pub(crate) fn push_escaped(out: &mut String, part: &str) {
    push_escaped_bytes(out, part.as_bytes());
}

/// [`push_escaped`] for raw bytes (header values need not be UTF-8).
pub(crate) fn push_escaped_bytes(out: &mut String, part: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in part {
        if b.is_ascii_alphanumeric() || b"-._~/@+=!*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        push_escaped(&mut out, s);
        out
    }

    #[test]
    fn separators_and_escapes_are_encoded() {
        assert_eq!(esc("alice"), "alice");
        assert_eq!(esc("a:ip:1.2.3.4"), "a%3Aip%3A1.2.3.4");
        assert_eq!(esc("100%"), "100%25");
        assert_eq!(esc("GET /u/{id}"), "GET%20/u/%7Bid%7D");
        assert_eq!(esc("é"), "%C3%A9");
    }

    #[test]
    fn distinct_inputs_stay_distinct() {
        assert_ne!(esc("a:b"), esc("a%3Ab"));
        assert!(!esc("x:y:z").contains(':'));
    }

    fn unescape(escaped: &str) -> Vec<u8> {
        let bytes = escaped.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    proptest::proptest! {
        /// Escaping is injective (it can be undone) and never writes the separator, a
        /// hash tag or anything but printable ASCII, whatever the bytes.
        #[test]
        fn escaping_is_reversible_and_separator_free(part in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut out = String::new();
            push_escaped_bytes(&mut out, &part);
            proptest::prop_assert_eq!(unescape(&out), part);
            let forbidden = b":{}";
            proptest::prop_assert!(out.bytes().all(|b| b.is_ascii_graphic() && !forbidden.contains(&b)), "{}", out);
        }
    }
}
