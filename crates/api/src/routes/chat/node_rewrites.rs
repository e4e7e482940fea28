//! What the proxy-router does to a chat body, answered before it happens. The node binds the
//! body into go-openai v1.41.2's `ChatCompletionRequest` and re-encodes it
//! (proxy-router-behaviour.md §2.5): `stop` as a string fails to decode (400), zero-valued
//! `temperature`/`top_p` vanish (`omitempty`, so the provider's default applies), content parts
//! keep only `type`, `text` and `image_url`, and `metadata` must map strings to strings. The
//! gateway sends what survives that unchanged, and refuses, naming the field, what the node
//! would silently lose.

use actix_web::http::StatusCode;
use serde_json::Value;

use super::json_members;
use crate::dto::{ChatCompletionRequest, MessageContent, StopSequences};
use crate::error::OpenAiError;

/// Sent instead of an exact zero, which go-openai's `omitempty` would drop: close enough to
/// greedy decoding for every sampler, and not the provider's default.
const ALMOST_ZERO: &str = "0.000001";

/// Content part types go-openai keeps (`ChatMessagePart`).
const KEPT_PARTS: [&str; 2] = ["text", "image_url"];

/// A request the node would alter without saying so, refused with the field at fault.
pub fn refuse_lossy(request: &ChatCompletionRequest) -> Result<(), OpenAiError> {
    let refuse = |param: String, message: String| {
        Err(OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_by_marketplace",
            Some(&param),
            message,
        ))
    };
    for (i, message) in request.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &message.content {
            for (j, part) in parts.iter().enumerate() {
                let kind = part.kind.as_str();
                if !KEPT_PARTS.contains(&kind) {
                    return refuse(
                        format!("messages[{i}].content[{j}].type"),
                        format!(
                            "Content parts of type `{kind}` are not carried by the marketplace \
                             (only `text` and `image_url` are)"
                        ),
                    );
                }
            }
        }
    }
    match &request.metadata {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                return refuse(
                    format!("metadata.{key}"),
                    "Metadata values must be strings".to_owned(),
                );
            }
        }
        Some(_) => {
            return refuse(
                "metadata".to_owned(),
                "Metadata must be an object of strings".to_owned(),
            );
        }
    }
    Ok(())
}

/// The body as the node will read it the way the client meant it: `stop` as an array, exact
/// zeros kept, `failover` off (the gateway does its own failover, and the node's writes control
/// chunks that are not JSON into the stream), and on a stream `stream_options.include_usage`,
/// so the provider reports the tokens it billed.
pub fn for_the_node(body: Vec<u8>, request: &ChatCompletionRequest) -> Option<Vec<u8>> {
    let mut body = body;
    let mut set = |name: &str, value: &[u8]| -> Option<()> {
        body = match json_members::replace_values(&body, name, value) {
            Some(replaced) => replaced?,
            None => json_members::with_member(&body, name, value)?,
        };
        Some(())
    };
    if let Some(StopSequences::One(stop)) = &request.stop {
        set("stop", &serde_json::to_vec(&[stop]).ok()?)?;
    }
    for (name, value) in [
        ("temperature", request.temperature),
        ("top_p", request.top_p),
    ] {
        if value == Some(0.0) {
            set(name, ALMOST_ZERO.as_bytes())?;
        }
    }
    if request.stream == Some(true) {
        let mut options = match &request.stream_options {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        options.insert("include_usage".to_owned(), Value::Bool(true));
        set("stream_options", &serde_json::to_vec(&options).ok()?)?;
    }
    match json_members::without(&body, &["failover"])? {
        Some(without) => Some(without),
        None => Some(body),
    }
}

/// Whether the client asked for the usage chunk itself (otherwise the gateway asks for it for
/// its own accounting and keeps it from the client).
pub fn client_wants_usage(request: &ChatCompletionRequest) -> bool {
    request
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: &Value) -> ChatCompletionRequest {
        serde_json::from_value(body.clone()).unwrap()
    }

    fn rewritten(body: Value) -> Value {
        let raw = serde_json::to_vec(&body).unwrap();
        serde_json::from_slice(&for_the_node(raw, &parse(&body)).unwrap()).unwrap()
    }

    #[test]
    fn the_node_reads_what_the_client_meant() {
        let out = rewritten(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "stop": "END", "temperature": 0, "top_p": 0.0, "failover": true, "stream": true,
            "stream_options": {"include_usage": false, "x": 1}
        }));
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["temperature"], json!(0.000001));
        assert_eq!(out["top_p"], json!(0.000001));
        assert!(out.get("failover").is_none());
        assert_eq!(
            out["stream_options"],
            json!({"include_usage": true, "x": 1})
        );

        let out = rewritten(json!({"messages": [], "stream": true}));
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        let untouched = json!({"messages": [], "stop": ["a"], "temperature": 0.7});
        assert_eq!(rewritten(untouched.clone()), untouched);
    }

    #[test]
    fn what_the_node_would_lose_is_refused_with_its_field() {
        let refused = |body: Value| {
            refuse_lossy(&parse(&body))
                .unwrap_err()
                .detail
                .param
                .unwrap()
        };
        let audio = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]}]});
        assert_eq!(refused(audio), "messages[0].content[1].type");
        let metadata = json!({"messages": [], "metadata": {"a": "b", "n": 1}});
        assert_eq!(refused(metadata), "metadata.n");
        let fine = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]}], "metadata": {"a": "b"}});
        assert!(refuse_lossy(&parse(&fine)).is_ok());
    }
}
