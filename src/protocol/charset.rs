//! Character set names and the collation ids the handshake carries.

/// Default collation id for a character set name (case-insensitive), as MariaDB numbers
/// them.
pub fn collation_id(charset: &str) -> Option<u8> {
    Some(match charset.to_ascii_lowercase().as_str() {
        "big5" => 1,
        "latin2" => 9,
        "latin1" => 8,
        "ascii" => 11,
        "ujis" => 12,
        "sjis" => 13,
        "hebrew" => 16,
        "euckr" => 19,
        "koi8u" => 22,
        "gb2312" => 24,
        "greek" => 25,
        "cp1250" => 26,
        "gbk" => 28,
        "utf8" | "utf8mb3" => 33,
        "ucs2" => 35,
        "cp866" => 36,
        "utf8mb4" => 45,
        "cp1251" => 51,
        "utf16" => 54,
        "cp1256" => 57,
        "binary" => 63,
        "cp932" => 95,
        "eucjpms" => 97,
        "utf32" => 60,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_and_unknown() {
        assert_eq!(super::collation_id("UTF8MB4"), Some(45));
        assert_eq!(super::collation_id("latin1"), Some(8));
        assert_eq!(super::collation_id("klingon"), None);
    }
}
