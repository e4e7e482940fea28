//! What a mock provider serves.

use std::time::Duration;

/// How a [`MockProvider`](crate::MockProvider) behaves. `Default`: named `openai-mock`, the
/// models of [`default_models`], no API key, no pause between stream events.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// `owned_by` of the listed models and the `x-mock-provider` header of every answer, so a
    /// test with two providers can tell which one answered.
    pub name: String,
    /// The models `GET /v1/models` lists. Chat, embeddings, speech and transcription requests
    /// for any other model are a 404 `model_not_found`, as on vLLM and OpenAI (any listed model
    /// serves any route).
    pub models: Vec<String>,
    /// `Some(key)`: every `/v1/*` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Pause between stream events.
    pub chunk_delay: Duration,
}

/// `llama-3.3-70b`, `gpt-4o-mini`, `text-embedding-3-small`, `tts-1` and `whisper-1`.
pub fn default_models() -> Vec<String> {
    [
        "llama-3.3-70b",
        "gpt-4o-mini",
        "text-embedding-3-small",
        "tts-1",
        "whisper-1",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            name: "openai-mock".to_owned(),
            models: default_models(),
            api_key: None,
            chunk_delay: Duration::ZERO,
        }
    }
}
