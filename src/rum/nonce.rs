//! A session nonce: one DNS label of 16 to 32 characters `[a-z0-9]`, unique per measuring page
//! view. Held inline (no heap) so that the DNS path can log it without allocating.

use std::fmt;

/// A validated nonce. `Copy`, hashable, 33 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce {
    len: u8,
    bytes: [u8; Nonce::MAX_LEN],
}

impl Nonce {
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 32;

    /// `Some` for 16 to 32 bytes of `[a-z0-9]`. Upper case is refused: nonces are issued in
    /// lower case, and DNS names reach here lower-cased.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_bytes(text.as_bytes())
    }

    /// The same rule on raw label bytes.
    pub fn from_bytes(label: &[u8]) -> Option<Self> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&label.len())
            || !label
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return None;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..label.len()].copy_from_slice(label);
        Some(Nonce {
            len: label.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.as_str())
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_16_to_32_lower_case_letters_and_digits() {
        assert_eq!(
            Nonce::parse("0123456789abcdef").unwrap().as_str(),
            "0123456789abcdef"
        );
        assert!(Nonce::parse(&"a".repeat(32)).is_some());
        for bad in [
            "0123456789abcde",
            &"a".repeat(33),
            "0123456789ABCDEF",
            "0123456789abcde-",
            "0123456789abcde.",
            "",
        ] {
            assert!(Nonce::parse(bad).is_none(), "{bad:?}");
        }
    }
}
