#![no_main]
//! WAV input: any bytes decode or give an error, never a panic; decoded audio re-encodes
//! to a file that decodes to the same samples.

use emulator::wav::Wav;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(wav) = Wav::parse(data) {
        let again = Wav::parse(&wav.to_bytes()).expect("re-encoded WAV parses");
        assert_eq!(again, wav);
    }
});
