//! Recordings of `recordResponse` operations on service-hosted calls: what the other
//! participant said for the operation's duration, as a 16 kHz WAV file the bot downloads
//! from `recordingLocation` with the operation's `recordingAccessToken`.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::errors::ApiError;
use crate::media::voice::{Generator, VoiceSource};
use crate::scenario::Voice;
use crate::state::{Shared, lock};
use crate::wav::Wav;

/// Recordings kept; older ones are forgotten.
const KEPT: usize = 32;

/// One stored recording.
pub(crate) struct Recording {
    key: String,
    token: String,
    wav: Arc<Vec<u8>>,
}

/// The recordings store.
#[derive(Default)]
pub(crate) struct Recordings {
    items: std::sync::Mutex<VecDeque<Recording>>,
}

impl Recordings {
    /// Renders `seconds` of `voice` (an echo records silence: nothing reaches it on a
    /// service-hosted call) and stores it under `call/operation`.
    pub(crate) fn record(
        &self,
        call: &str,
        operation: &str,
        token: &str,
        voice: &Voice,
        seconds: u64,
    ) -> Result<(), String> {
        let source = match VoiceSource::prepare(voice) {
            Ok(s) => s,
            Err(e) => return Err(e.to_string()),
        };
        let mut generator = Generator::new(source);
        let frames = seconds * 50;
        let mut samples = Vec::with_capacity(frames as usize * 320);
        let mut frame = [0i16; 320];
        for _ in 0..frames {
            generator.next(None, &mut frame);
            samples.extend_from_slice(&frame);
        }
        let wav = Wav {
            sample_rate: 16_000,
            channels: 1,
            samples,
        }
        .to_bytes();
        let mut items = lock(&self.items);
        items.push_back(Recording {
            key: format!("{call}/{operation}"),
            token: token.to_owned(),
            wav: Arc::new(wav),
        });
        while items.len() > KEPT {
            items.pop_front();
        }
        Ok(())
    }
}

/// `GET /recordings/{call}/{file}` with `Authorization: Bearer <recordingAccessToken>`.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    Path((call, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let operation = file.strip_suffix(".wav").unwrap_or(&file);
    let key = format!("{call}/{operation}");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let found = lock(&shared.recordings.items)
        .iter()
        .find(|r| r.key == key)
        .map(|r| (r.token == token, r.wav.clone()));
    match found {
        Some((true, wav)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "audio/wav")],
            (*wav).clone(),
        )
            .into_response(),
        Some((false, _)) => {
            ApiError::unauthorized("The recording access token is missing or wrong.")
                .for_request(&headers)
                .into_response()
        }
        None => ApiError::not_found("No such recording.")
            .for_request(&headers)
            .into_response(),
    }
}
