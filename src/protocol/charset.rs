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

/// The character set of a collation id, for the common ones (MariaDB numbering; MySQL
/// 8's utf8mb4_0900 ids included). Unknown ids give None.
pub fn charset_of(collation: u8) -> Option<&'static str> {
    Some(match collation {
        1 | 84 => "big5",
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => "latin1",
        2 | 9 | 21 | 27 | 77 => "latin2",
        11 | 65 => "ascii",
        12 | 91 => "ujis",
        13 | 88 => "sjis",
        16 | 71 => "hebrew",
        19 | 85 => "euckr",
        22 | 75 => "koi8u",
        24 | 86 => "gb2312",
        25 | 70 => "greek",
        26 | 34 | 44 | 66 | 99 => "cp1250",
        28 | 87 => "gbk",
        33 | 83 | 192..=215 | 223 => "utf8mb3",
        35 | 90 | 128..=151 | 159 => "ucs2",
        36 | 68 => "cp866",
        45 | 46 | 224..=247 | 255 => "utf8mb4",
        50..=52 => "cp1251",
        54 | 55 | 101..=124 => "utf16",
        57 | 67 => "cp1256",
        60 | 61 | 160..=183 => "utf32",
        63 => "binary",
        95 | 96 => "cp932",
        97 | 98 => "eucjpms",
        _ => return None,
    })
}

#[cfg(test)]
mod collation_tests {
    #[test]
    fn default_collations_map_back() {
        for cs in ["latin1", "utf8mb4", "utf8mb3", "binary", "gbk", "big5", "cp1251", "ascii"] {
            assert_eq!(super::charset_of(super::collation_id(cs).unwrap()), Some(cs));
        }
        assert_eq!(super::charset_of(224), Some("utf8mb4"));
    }
}
