//! The spec's sample blob and generated blobs: parse and serialize round trips.

use media_session::{AudioFormat, Blob, ContextId, MediaSessionId};
use proptest::prelude::*;

#[test]
fn spec_sample_blob_parses_as_printed() {
    let printed = include_str!("data/ex02-blob.txt");
    let blob = Blob::parse_printed(printed).expect("the spec's sample blob");
    assert_eq!(
        blob.mp_uri,
        "net.tcp://bot.contoso.com:18732/MediaProcessor"
    );
    assert_eq!(blob.supported_audio_format, AudioFormat::Pcm16K);
    assert_eq!(blob.audio_render_contexts.len(), 1);
    assert_eq!(blob.audio_source_contexts.len(), 1);
    assert_eq!(
        blob.mp_media_session_id.expose().to_string(),
        "2379cf46-acf3-4fef-a914-be9627075320"
    );
    // Written back, it is the printed text with its quotes unescaped.
    assert_eq!(blob.to_json(), printed.trim().replace("\\\"", "\""));
}

fn arb_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\u{e9}\u{4e2d}\"\\\\]{0,24}").unwrap()
}

prop_compose! {
    fn arb_blob()(
        mp_uri in "[a-z]{1,8}://[a-z0-9.]{1,16}:[0-9]{1,5}/MediaProcessor",
        render in proptest::collection::vec(any::<u128>(), 0..3),
        source in proptest::collection::vec(any::<u128>(), 0..3),
        video in proptest::collection::vec(arb_text(), 0..3),
        data in proptest::option::of(proptest::collection::vec(arb_text(), 0..3)),
        stereo in any::<bool>(),
        id in any::<u128>(),
        region in proptest::option::of(arb_text()),
        versions in (arb_text(), arb_text(), arb_text()),
        call_id in proptest::option::of(arb_text()),
        extra_key in "[a-z]{1,10}",
        extra_value in proptest::option::of(any::<i64>()),
    ) -> Blob {
        let mut extra = serde_json::Map::new();
        if let Some(v) = extra_value {
            extra.insert(format!("x{extra_key}"), v.into());
        }
        Blob {
            mp_uri,
            audio_render_contexts: render.into_iter().map(|u| ContextId::from_uuid(uuid::Uuid::from_u128(u))).collect(),
            video_render_contexts: video.clone(),
            audio_source_contexts: source.into_iter().map(|u| ContextId::from_uuid(uuid::Uuid::from_u128(u))).collect(),
            video_source_contexts: video,
            data_render_contexts: data.clone(),
            data_source_contexts: data,
            supported_audio_format: if stereo { AudioFormat::Pcm44KStereo } else { AudioFormat::Pcm16K },
            video_sink_encoding_formats: vec![],
            mp_media_session_id: MediaSessionId::from_uuid(uuid::Uuid::from_u128(id)),
            region_affinity: region,
            skype_media_bots_version: versions.0,
            media_stack_version: versions.1,
            mp_version: versions.2,
            call_id,
            extra,
        }
    }
}

proptest! {
    #[test]
    fn generated_blobs_round_trip(blob in arb_blob()) {
        let json = blob.to_json();
        let back = Blob::parse(&json).unwrap();
        prop_assert_eq!(&back, &blob);
        prop_assert_eq!(back.to_json(), json.clone());
        // Embedded as a string, as in a request body, it survives too.
        let embedded = serde_json::to_string(&json).unwrap();
        prop_assert_eq!(Blob::parse_printed(&embedded).unwrap(), blob);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Blob::parse_printed(&text);
    }
}
