//! `encoding_format: "base64"`, done by the gateway. The node decodes its provider's answer
//! into go-openai's `EmbeddingResponse`, whose `embedding` is `[]float32`
//! (`aiengine/openai.go:432-438`), so a provider answering base64 fails there: the gateway
//! always asks for floats and encodes them itself, as OpenAI does — each vector's values as
//! little-endian 32-bit floats, base64 (standard alphabet, padded).

use base64::Engine as _;
use serde_json::Value;

/// The answer with every `data[].embedding` list of numbers turned into its base64 form;
/// `None` when the answer does not have that shape.
pub fn to_base64(answer: &[u8]) -> Option<Vec<u8>> {
    let mut answer: Value = serde_json::from_slice(answer).ok()?;
    for item in answer.get_mut("data")?.as_array_mut()? {
        let vector = item.get_mut("embedding")?;
        let floats = vector.as_array()?;
        let mut bytes = Vec::with_capacity(floats.len() * 4);
        for value in floats {
            // The provider's values are float32s; the f64 JSON reading holds them exactly.
            #[allow(clippy::cast_possible_truncation)]
            let float = value.as_f64()? as f32;
            bytes.extend_from_slice(&float.to_le_bytes());
        }
        *vector = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&answer).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_their_little_endian_bytes_in_base64() {
        let answer = br#"{"object":"list","data":[{"object":"embedding","embedding":[1.0,-0.5,0.1],"index":0}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let encoded: Value = serde_json::from_slice(&to_base64(answer).unwrap()).unwrap();
        let text = encoded["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, vec![1.0, -0.5, 0.1f32]);
        assert_eq!(encoded["usage"]["prompt_tokens"], 2);
    }

    #[test]
    fn an_answer_of_another_shape_is_not_encoded() {
        assert!(to_base64(br#"{"data":[{"embedding":"abc"}]}"#).is_none());
        assert!(to_base64(b"[]").is_none());
    }
}
