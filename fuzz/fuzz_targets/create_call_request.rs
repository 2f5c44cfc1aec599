//! Create-call validation: any body is accepted with a scenario and permissions, or refused
//! with Graph's error envelope naming the problem; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signalling::{GraphError, ParseMode, parse_call, parse_value_bytes, validate_create_call};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(parse_value_bytes(data, ParseMode::Tolerant).is_err());
        return;
    };
    let outcome = parse_call(text, ParseMode::Tolerant)
        .map_err(GraphError::from)
        .and_then(|call| validate_create_call(&call));
    match outcome {
        Ok(request) => {
            assert!(
                !request.required_permissions.any_of.is_empty(),
                "every scenario needs a permission"
            );
        }
        Err(err) => {
            let envelope = err.to_json();
            assert!(envelope["error"]["code"].is_string());
            assert!(!err.message().is_empty());
            assert!(matches!(err.status(), 400 | 403 | 413));
        }
    }
});
