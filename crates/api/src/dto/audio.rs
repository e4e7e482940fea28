//! The audio routes' bodies: a speech request (JSON), a transcription's form (multipart; its
//! schema documents the form the handler reads part by part) and a transcript's JSON shape.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The speech backend's limit on `input`, in characters (OpenAI's).
pub const MAX_SPEECH_INPUT: usize = 4096;

/// A text-to-speech request (OpenAI's `audio.speech.create`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "tts-kokoro", "input": "Hello there.", "voice": "af_alloy"}))]
pub struct SpeechRequest {
    /// What to say: 1 to 4096 characters.
    #[schema(min_length = 1, max_length = 4096)]
    pub input: String,
    /// A text-to-speech model's name, alias or on-chain id; the marketplace's TTS model
    /// tagged `Default` (else the first) when left out.
    #[serde(default)]
    pub model: Option<String>,
    /// The voice; `af_alloy` when left out.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub voice: Option<String>,
    /// The audio format; `mp3` when left out.
    #[serde(default)]
    pub response_format: Option<SpeechFormat>,
    /// From 0.25 to 4.0; 1.0 when left out.
    #[serde(default)]
    #[schema(minimum = 0.25, maximum = 4.0)]
    pub speed: Option<f64>,
    /// How to speak (tone, accent, …), for models that take it.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub instructions: Option<String>,
    /// One of the key's own sessions to use (also accepted as a `session_id` header).
    #[serde(default)]
    pub session_id: Option<String>,
}

/// Speech formats, each answered with its own content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpeechFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl SpeechFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }
}

/// A transcription's form (`multipart/form-data`; OpenAI's `audio.transcriptions.create`).
/// Fields other than these are ignored. A form cannot say `null`: a field is given or left out.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads it part by part
pub struct TranscriptionForm {
    /// The audio file (flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm), at most
    /// `MORPHEUS_MAX_UPLOAD_BYTES` (25 MiB by default).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// A speech-to-text model's name, alias or on-chain id; the marketplace's STT model tagged
    /// `Default` (else the first) when left out.
    #[schema(nullable = false)]
    pub model: Option<String>,
    /// The audio's language (ISO-639-1), when known.
    #[schema(nullable = false, max_length = 64)]
    pub language: Option<String>,
    /// Text to guide the model's style or continue a previous segment.
    #[schema(nullable = false, max_length = 65536)]
    pub prompt: Option<String>,
    /// `json` when left out.
    #[schema(nullable = false)]
    pub response_format: Option<TranscriptionFormat>,
    /// From 0 to 1.
    #[schema(nullable = false, minimum = 0.0, maximum = 1.0)]
    pub temperature: Option<f64>,
    /// `word` and/or `segment`, with `response_format: verbose_json` (repeat the field, or name
    /// it `timestamp_granularities[]`).
    #[schema(nullable = false)]
    pub timestamp_granularities: Option<Vec<String>>,
    /// `true`: the transcript as server-sent events (`transcript.text.delta`, then
    /// `transcript.text.done`).
    #[schema(nullable = false)]
    pub stream: Option<bool>,
    /// One of the key's own sessions to use (also accepted as a `session_id` header).
    #[schema(nullable = false)]
    pub session_id: Option<String>,
}

/// Transcript formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptionFormat {
    Json,
    Text,
    Srt,
    VerboseJson,
    Vtt,
}

impl TranscriptionFormat {
    pub const ALL: [Self; 5] = [
        Self::Json,
        Self::Text,
        Self::Srt,
        Self::VerboseJson,
        Self::Vtt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Srt => "srt",
            Self::VerboseJson => "verbose_json",
            Self::Vtt => "vtt",
        }
    }
}

/// A transcript (`response_format` `json`; `verbose_json` adds `language`, `duration`,
/// `segments` and `words`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptionResponse {
    pub text: String,
    /// What the transcription was billed on, when the provider says.
    #[schema(value_type = Option<Object>)]
    pub usage: Option<serde_json::Value>,
}

/// One server-sent event of a streamed transcription, as an event-stream reader sees it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the stream; the gateway relays the provider's events"
)]
pub struct TranscriptionStreamEvent {
    /// One transcription event as JSON, as the provider wrote it:
    /// `{"type": "transcript.text.delta", "delta"}` for each piece, then
    /// `{"type": "transcript.text.done", "text"}` with the whole transcript.
    #[schema(pattern = "^\\{[\\s\\S]*\\}$")]
    pub data: String,
    /// Not sent: every event is a `message`.
    pub event: Option<String>,
    /// Not sent.
    pub id: Option<String>,
    /// Not sent.
    pub retry: Option<i64>,
}
