//! Hexadecimal text of bytes, and back.

/// `bytes` as hex digits (upper case when `upper`).
pub fn encode(bytes: &[u8], upper: bool) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let digits = if upper { UPPER } else { LOWER };
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digits[usize::from(b >> 4)] as char);
        s.push(digits[usize::from(b & 15)] as char);
    }
    s
}

/// The bytes of hex text (either case); None if it is not an even run of hex digits.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode(&[0x0a, 0xff], false), "0aff");
        assert_eq!(encode(&[0x0a, 0xff], true), "0AFF");
        assert_eq!(decode("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode("0af"), None);
        assert_eq!(decode("zz"), None);
    }
}
