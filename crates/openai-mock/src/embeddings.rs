//! `POST /v1/embeddings`: deterministic unit vectors, one per input, derived from a hash of it.

use base64::Engine as _;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::count_words;
use crate::hash::{fnv1a, splitmix};
use crate::reply::{self, Reply};
use crate::state::Shared;

const DEFAULT_DIMENSIONS: u32 = 16;
const MAX_DIMENSIONS: u32 = 4096;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

/// One input: the bytes its vector is derived from, and its tokens (words of a text, or the
/// length of a token array).
struct Input {
    seed: Vec<u8>,
    tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingsOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: &'a str,
    usage: UsageOut,
}

#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    /// The little-endian `f32`s, base64 (standard alphabet, padded), as OpenAI sends them.
    Base64(String),
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub(crate) fn handle(shared: &Shared, body: &[u8]) -> Reply {
    let req: EmbeddingsRequest = match serde_json::from_slice(body) {
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
    let Some(inputs) = req.input.as_ref().and_then(inputs) else {
        return reply::invalid(
            "'input' must be a non-empty string, array of strings, array of tokens or array of \
             token arrays",
            Some("input"),
        );
    };
    let dimensions = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return reply::invalid(
            &format!("'dimensions' must be between 1 and {MAX_DIMENSIONS}"),
            Some("dimensions"),
        );
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return reply::invalid(
                &format!("'encoding_format' must be 'float' or 'base64', not '{other}'"),
                Some("encoding_format"),
            );
        }
    };

    let tokens = inputs.iter().map(|i| i.tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = unit_vector(&input.seed, dimensions as usize);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            };
            EmbeddingOut {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let out = EmbeddingsOut {
        object: "list",
        data,
        model,
        usage: UsageOut {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    reply::json_bytes(StatusCode::OK, serde_json::to_vec(&out).unwrap_or_default())
}

/// OpenAI's four input forms; `None` for anything else or an empty array.
fn inputs(input: &Value) -> Option<Vec<Input>> {
    let text = |s: &str| Input {
        seed: s.as_bytes().to_vec(),
        tokens: count_words(s),
    };
    let token_array = |items: &[Value]| -> Option<Input> {
        let ids = items
            .iter()
            .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
            .collect::<Option<Vec<u32>>>()?;
        Some(Input {
            seed: ids.iter().flat_map(|t| t.to_le_bytes()).collect(),
            tokens: ids.len() as u64,
        })
    };
    match input {
        Value::String(s) => Some(vec![text(s)]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => match &items[0] {
            Value::String(_) => items.iter().map(|i| i.as_str().map(text)).collect(),
            Value::Number(_) => Some(vec![token_array(items)?]),
            Value::Array(_) => items.iter().map(|i| token_array(i.as_array()?)).collect(),
            _ => None,
        },
        _ => None,
    }
}

/// `dimensions` components in [-1, 1) from a splitmix stream seeded by the input's hash,
/// scaled to length 1.
fn unit_vector(seed: &[u8], dimensions: usize) -> Vec<f32> {
    let mut state = fnv1a(seed);
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        let mut v = vec![0.0; dimensions];
        v[0] = 1.0;
        return v;
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let a = unit_vector(b"hello", 16);
        assert_eq!(a.len(), 16);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(a, unit_vector(b"hello", 16));
        assert_ne!(a, unit_vector(b"world", 16));
    }
}
