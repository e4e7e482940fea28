//! `POST /v1/audio/speech`: deterministic audio ([`crate::audio`]), sent in pieces as a TTS
//! server streams it, so pacing and the stream faults apply.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::audio::{SPEECH_FORMATS, speech, speech_content_type};
use crate::faults::FaultRoute;
use crate::paced::Pieces;
use crate::reply::{self, Reply};
use crate::state::Shared;

/// OpenAI's limit on `input`, in characters.
const MAX_INPUT_CHARS: usize = 4096;
/// The audio goes out in pieces of this size, [`MockConfig::chunk_delay`] apart.
///
/// [`MockConfig::chunk_delay`]: crate::MockConfig::chunk_delay
pub(crate) const PIECE: usize = 8 * 1024;

/// The parts of a speech request the mock looks at; `instructions` and anything else are
/// accepted and ignored.
#[derive(Deserialize)]
struct SpeechRequest {
    model: Option<String>,
    input: Option<String>,
    voice: Option<String>,
    response_format: Option<String>,
    speed: Option<f64>,
}

pub(crate) fn handle(shared: &Arc<Shared>, body: &[u8]) -> Reply {
    let req: SpeechRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return reply::invalid(
                &format!("We could not parse the JSON body of your request: {e}"),
                None,
            );
        }
    };
    let Some(model) = req.model.as_deref() else {
        return reply::invalid("you must provide a model parameter", Some("model"));
    };
    if !shared.knows_model(model) {
        return reply::model_not_found(model);
    }
    let input = req.input.as_deref().unwrap_or_default();
    if input.is_empty() {
        return reply::invalid("'input' is required and must not be empty", Some("input"));
    }
    let chars = input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return reply::error(
            hyper::StatusCode::BAD_REQUEST,
            &format!(
                "Invalid 'input': string too long. Expected a string with maximum length \
                 {MAX_INPUT_CHARS}, but got a string with length {chars} instead."
            ),
            "invalid_request_error",
            Some("input"),
            Some("string_above_max_length"),
        );
    }
    if req.voice.as_deref().is_none_or(str::is_empty) {
        return reply::invalid("'voice' is required", Some("voice"));
    }
    let format = req.response_format.as_deref().unwrap_or(SPEECH_FORMATS[0]);
    if !SPEECH_FORMATS.contains(&format) {
        return reply::invalid(
            &format!(
                "Invalid value: '{format}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', \
                 'wav', and 'pcm'."
            ),
            Some("response_format"),
        );
    }
    let speed = req.speed.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return reply::invalid(
            &format!("Invalid 'speed': {speed}. Expected a value between 0.25 and 4.0."),
            Some("speed"),
        );
    }

    let audio = Bytes::from(speech(input, speed, format));
    let pieces: Vec<Bytes> = (0..audio.len())
        .step_by(PIECE)
        .map(|at| audio.slice(at..audio.len().min(at + PIECE)))
        .collect();
    let body = Pieces {
        content_type: speech_content_type(format),
        // A stream fault never reaches the last piece: a cut body is always short.
        answer: pieces.len().saturating_sub(1),
        pieces,
        lead: 0,
    };
    crate::paced::respond(shared, FaultRoute::Speech, body)
}
