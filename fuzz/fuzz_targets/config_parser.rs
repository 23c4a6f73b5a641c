//! The configuration file: parsing and validation never panic, whatever the text.
#![no_main]
use corelay::config::{Config, FileConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = FileConfig::parse(text, "fuzz.toml") {
            let _ = Config::new(file, "fuzz.toml".into());
        }
    }
});
