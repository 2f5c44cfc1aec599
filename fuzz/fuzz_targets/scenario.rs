#![no_main]
//! Scenario files: any text parses or gives an error, never a panic.

use emulator::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scenario::from_toml(text);
        let _ = Scenario::from_json(text);
    }
});
