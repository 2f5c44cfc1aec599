//! The call model: any bytes parse to a `Call` or give an error, in both modes, and whatever
//! parses survives serialize/parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signalling::model::{Call, GraphType};
use signalling::{ParseMode, parse, parse_value_bytes, to_json_pretty};

fuzz_target!(|data: &[u8]| {
    for mode in [ParseMode::Strict, ParseMode::Tolerant] {
        let Ok(value) = parse_value_bytes(data, mode) else {
            continue;
        };
        let Ok(call) = Call::from_json_value(value.clone()) else {
            continue;
        };
        assert_eq!(call.to_json_value(), value, "model keeps the document");
        let written = to_json_pretty(&call);
        let again: Call = parse(&written, ParseMode::Strict).expect("written form parses strictly");
        assert_eq!(again, call);
    }
});
