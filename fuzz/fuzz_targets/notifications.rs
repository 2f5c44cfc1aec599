//! Callback bodies: any bytes parse to `commsNotifications` or give an error, in both modes,
//! and whatever parses survives serialize/parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signalling::model::{CommsNotifications, GraphType};
use signalling::{ParseMode, parse, parse_value_bytes, to_json_pretty};

fuzz_target!(|data: &[u8]| {
    for mode in [ParseMode::Strict, ParseMode::Tolerant] {
        let Ok(value) = parse_value_bytes(data, mode) else {
            continue;
        };
        let Ok(notifications) = CommsNotifications::from_json_value(value.clone()) else {
            continue;
        };
        assert_eq!(
            notifications.to_json_value(),
            value,
            "model keeps the document"
        );
        for notification in notifications.value.get().into_iter().flatten() {
            let _ = notification.resource_path();
            if let Some(data) = notification.resource_data.get() {
                let _ = data.participants();
            }
        }
        let written = to_json_pretty(&notifications);
        let again: CommsNotifications =
            parse(&written, ParseMode::Strict).expect("written form parses strictly");
        assert_eq!(again, notifications);
    }
});
