//! What a model does. The marketplace tags each model, and the proxy-router derives a
//! `ModelType` from the tags; a request may only reach a model of the type its route serves.

/// A model's kind, as the proxy-router names it (`LLM`, `EMBEDDING`, `STT`, `TTS`, `UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModelType {
    /// Text generation: chat completions.
    Llm,
    Embedding,
    /// Speech to text: transcriptions.
    Stt,
    /// Text to speech.
    Tts,
    /// Tags that say none of the above. Such a model is not refused by any route: the
    /// gateway cannot know better than the tags, and the provider will say if it cannot.
    #[default]
    Unknown,
}

impl ModelType {
    pub const ALL: [Self; 5] = [
        Self::Llm,
        Self::Embedding,
        Self::Stt,
        Self::Tts,
        Self::Unknown,
    ];

    /// The proxy-router's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llm => "LLM",
            Self::Embedding => "EMBEDDING",
            Self::Stt => "STT",
            Self::Tts => "TTS",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The proxy-router's name, any case; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(raw.trim()))
    }

    /// The type the tags give, the first recognised tag winning: the node's own rule, so a
    /// model list without `ModelType` (an older node, or the operator's feed) reads the same.
    pub fn from_tags<S: AsRef<str>>(tags: &[S]) -> Self {
        tags.iter()
            .find_map(|tag| match tag.as_ref().to_ascii_lowercase().as_str() {
                "stt" | "transcribe" | "s2t" | "speech" | "speech-to-text" | "speech2text" => {
                    Some(Self::Stt)
                }
                "tts" | "text-to-speech" | "text2speech" | "t2s" => Some(Self::Tts),
                "embedding" | "embeddings" => Some(Self::Embedding),
                "llm" | "textgeneration" | "text2text" | "text-to-text" | "t2t" => Some(Self::Llm),
                _ => None,
            })
            .unwrap_or(Self::Unknown)
    }

    /// Whether a model of this type may serve a route for `route`'s type.
    pub fn serves(self, route: Self) -> bool {
        self == route || self == Self::Unknown
    }
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_decide_like_the_node_first_recognised_wins() {
        assert_eq!(ModelType::from_tags(&["Llama", "LLM"]), ModelType::Llm);
        assert_eq!(ModelType::from_tags(&["Embeddings"]), ModelType::Embedding);
        assert_eq!(ModelType::from_tags(&["whisper", "Speech"]), ModelType::Stt);
        assert_eq!(ModelType::from_tags(&["T2S", "llm"]), ModelType::Tts);
        assert_eq!(
            ModelType::from_tags(&["Mistral", "Default"]),
            ModelType::Unknown
        );
        assert_eq!(ModelType::from_tags::<&str>(&[]), ModelType::Unknown);
    }

    #[test]
    fn names_round_trip_and_unknown_serves_every_route() {
        for t in ModelType::ALL {
            assert_eq!(ModelType::parse(&t.as_str().to_lowercase()), Some(t));
        }
        assert_eq!(ModelType::parse("VISION"), None);
        assert!(ModelType::Unknown.serves(ModelType::Embedding));
        assert!(ModelType::Llm.serves(ModelType::Llm));
        assert!(!ModelType::Embedding.serves(ModelType::Llm));
    }
}
