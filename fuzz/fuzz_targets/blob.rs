#![no_main]
//! Blob parsing: any bytes give a blob or an error, never a panic, and a parsed blob
//! serializes to text that parses back to the same blob.

use libfuzzer_sys::fuzz_target;
use media_session::Blob;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(blob) = Blob::parse_printed(text) {
        let json = blob.to_json();
        let back = Blob::parse(&json).expect("a serialized blob parses");
        assert_eq!(back, blob);
    }
});
