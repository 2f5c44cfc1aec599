//! The spec's sample blob and generated blobs: parse and serialize round trips.

use media_session::{
    AudioFormat, AudioSocketSettings, Blob, BlobError, ContextId, MediaPlatformSettings,
    MediaSession, MediaSessionId,
};
use proptest::prelude::*;

#[test]
fn spec_sample_blob_is_read_as_printed_and_its_net_tcp_mp_uri_refused() {
    let printed = include_str!("data/ex02-blob.txt");
    // The spec's sample describes Microsoft's media platform (`net.tcp://`), which this
    // engine cannot connect to: refused with the error `MediaPlatformSettings::new` gives.
    let err = Blob::parse_printed(printed).unwrap_err();
    let expected = MediaPlatformSettings::new("net.tcp://bot.contoso.com:18732/MediaProcessor")
        .unwrap_err()
        .to_string();
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, BlobError::InvalidMpUri { .. }), "{err:?}");

    // With an endpoint of ours, the printed form reads.
    let ours = printed.replace("net.tcp://", "https://");
    let blob = Blob::parse_printed(&ours).expect("the spec's sample blob");
    assert_eq!(blob.mp_uri, "https://bot.contoso.com:18732/MediaProcessor");
    assert_eq!(blob.supported_audio_format, AudioFormat::Pcm16K);
    assert_eq!(blob.audio_render_contexts.len(), 1);
    assert_eq!(blob.audio_source_contexts.len(), 1);
    assert_eq!(
        blob.mp_media_session_id.expose().to_string(),
        "2379cf46-acf3-4fef-a914-be9627075320"
    );
    // Written back, it is the printed text with its quotes unescaped.
    assert_eq!(blob.to_json(), ours.trim().replace("\\\"", "\""));
}

/// `botmedia blob --media-config` prints this object; `botmedia blob --parse` reads it back.
#[test]
fn printed_app_hosted_media_config_parses_back_to_its_blob() {
    let platform = MediaPlatformSettings::new("http://127.0.0.1:8445/MediaProcessor").unwrap();
    let session =
        MediaSession::new(&platform, &AudioSocketSettings::default(), Some("call-1")).unwrap();
    let printed = serde_json::to_string_pretty(&session.app_hosted_media_config()).unwrap();
    let blob = Blob::parse_printed(&printed).expect("the printed appHostedMediaConfig");
    assert_eq!(blob, session.blob());
    // Compact, as in a request body, too.
    let compact = session.app_hosted_media_config().to_string();
    assert_eq!(Blob::parse_printed(&compact).unwrap(), session.blob());
}

/// One check of `mpUri` for blobs and for the platform settings that make them.
#[test]
fn blob_and_platform_settings_accept_the_same_mp_uris() {
    let blob_with = |uri: &str| {
        let platform = MediaPlatformSettings::new("http://127.0.0.1:8445/MediaProcessor").unwrap();
        let mut blob = MediaSession::new(&platform, &AudioSocketSettings::default(), None)
            .unwrap()
            .blob();
        blob.mp_uri = uri.to_owned();
        blob.to_json()
    };
    for uri in [
        "http://127.0.0.1:8445/MediaProcessor",
        "https://bot.contoso.com/MediaProcessor",
        "https://[::1]:9000/media/MediaProcessor",
        "ftp://bot.contoso.com/MediaProcessor",
        "net.tcp://bot.contoso.com:18732/MediaProcessor",
        "HTTP://bot.contoso.com/MediaProcessor",
        "http://bot.contoso.com:99999/MediaProcessor",
        "http://bot.contoso.com/Other",
        "http:///MediaProcessor",
        "",
    ] {
        let settings = MediaPlatformSettings::new(uri);
        let blob = Blob::parse(&blob_with(uri));
        assert_eq!(settings.is_ok(), blob.is_ok(), "{uri}");
        if let (Err(s), Err(b)) = (settings, blob) {
            assert_eq!(s.to_string(), b.to_string(), "{uri}");
        }
    }
    let err = Blob::parse(&blob_with("ftp://bot.contoso.com/MediaProcessor")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mpUri `ftp://bot.contoso.com/MediaProcessor` is invalid: the scheme must be http or https"
    );
}

fn arb_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\u{e9}\u{4e2d}\"\\\\]{0,24}").unwrap()
}

prop_compose! {
    fn arb_blob()(
        mp_uri in "https?://[a-z0-9.]{1,16}:[1-9][0-9]{0,3}/MediaProcessor",
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
