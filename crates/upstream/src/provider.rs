//! A plain OpenAI-compatible provider (vLLM, Ollama, llama.cpp, OpenAI, …), implementing the
//! domain's [`Provider`] port: `POST {base}/chat/completions` and `{base}/embeddings` with the
//! provider's bearer key, the model named as the provider knows it. Answers are read with the
//! same caps, timeouts and stream parser as the proxy-router's.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use morpheus_domain::ports::{
    ChatEvent, ChatEventStream, ChatReply, Endpoint, MarketplaceError, Provider, ProviderCall,
    StreamFault, TimeoutPhase,
};
use morpheus_domain::{ReportedUsage, UsageSource};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::errors::Failure;
use crate::transport::{self, ClientPerThread, Limits};
use crate::{audio, members, sse, usage};

/// Where a provider is and how long to wait for it.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Names the provider in logs and errors.
    pub name: String,
    /// The API's base, e.g. `http://127.0.0.1:8001/v1` or `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<SecretString>,
    pub connect_timeout: Duration,
    /// From sending a request to the response head (a stream's first event included).
    pub first_byte_timeout: Duration,
    /// The longest gap between two chunks of a body.
    pub idle_timeout: Duration,
    /// A whole non-streaming answer.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

pub struct OpenAiProvider {
    http: ClientPerThread,
    chat_url: Url,
    embeddings_url: Url,
    transcriptions_url: Url,
    speech_url: Url,
    auth: Option<HeaderValue>,
    config: ProviderConfig,
}

/// The largest answer read in full, and the largest event of a stream.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const MAX_EVENT_BYTES: usize = 1024 * 1024;

impl OpenAiProvider {
    pub fn new(config: ProviderConfig) -> anyhow::Result<Self> {
        let base = config.base_url.trim_end_matches('/');
        let parsed = Url::parse(base)
            .map_err(|e| anyhow::anyhow!("provider {}: base_url: {e}", config.name))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(),
            "provider {}: base_url must be an http(s) URL with a host",
            config.name
        );
        anyhow::ensure!(
            parsed.username().is_empty() && parsed.password().is_none(),
            "provider {}: put the key in api_key_env, not in base_url",
            config.name
        );
        let auth = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                    .map_err(|_| {
                    anyhow::anyhow!(
                        "provider {}: the API key is not a header value",
                        config.name
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            http: ClientPerThread::new(config.connect_timeout)?,
            chat_url: Url::parse(&format!("{base}/chat/completions"))?,
            embeddings_url: Url::parse(&format!("{base}/embeddings"))?,
            transcriptions_url: Url::parse(&format!("{base}/audio/transcriptions"))?,
            speech_url: Url::parse(&format!("{base}/audio/speech"))?,
            auth,
            config,
        })
    }

    fn limits(&self) -> Limits {
        let c = &self.config;
        Limits {
            first_byte: c.first_byte_timeout,
            idle: c.idle_timeout,
            total: c.request_timeout,
            max_body: MAX_BODY_BYTES,
        }
    }

    async fn once(&self, call: &ProviderCall, body: Bytes) -> Result<ChatReply, Failure> {
        let url = match call.endpoint {
            Endpoint::ChatCompletions => &self.chat_url,
            Endpoint::Embeddings => &self.embeddings_url,
            Endpoint::Transcriptions => &self.transcriptions_url,
            Endpoint::Speech => &self.speech_url,
        };
        let mut rb = self.http.get().request(Method::POST, url.clone());
        rb = match &call.upload {
            Some(upload) => rb.multipart(audio::form(upload, &[("model", &call.model)])?),
            None => rb
                .header(CONTENT_TYPE, "application/json")
                .header(
                    ACCEPT,
                    if call.stream {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                )
                .body(body),
        };
        if let Some(auth) = &self.auth {
            rb = rb.header(AUTHORIZATION, auth.clone());
        }
        if let Some(id) = call
            .request_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            rb = rb.header("X-Request-Id", id);
        }
        let c = &self.config;
        match call.endpoint {
            Endpoint::ChatCompletions if call.stream => return self.stream(rb).await,
            Endpoint::Transcriptions | Endpoint::Speech => {
                return audio::relay(rb, c.request_timeout, c.idle_timeout, MAX_BODY_BYTES).await;
            }
            Endpoint::ChatCompletions | Endpoint::Embeddings => {}
        }
        let answer = transport::exchange(rb, self.limits()).await?;
        transport::require_json(&answer)?;
        let field = if call.endpoint == Endpoint::Embeddings {
            "data"
        } else {
            "choices"
        };
        let Ok([error, content, reported]) = members::pick(&answer.body, ["error", field, "usage"])
        else {
            return Err(Failure::invalid("the answer is not a JSON object"));
        };
        if content.is_none() {
            if error.is_some() {
                return Err(crate::errors::from_status(
                    reqwest::StatusCode::BAD_GATEWAY,
                    &answer.headers,
                    &answer.body,
                ));
            }
            return Err(Failure::invalid(format!("the answer has no {field}")));
        }
        let tokens = if call.endpoint == Endpoint::Embeddings {
            usage::embedding_usage_in(reported)
        } else {
            usage::usage_in(reported)
        };
        Ok(ChatReply::Complete {
            body: answer.body,
            usage: tokens.map(|tokens| ReportedUsage {
                tokens,
                source: UsageSource::Usage,
            }),
        })
    }

    /// Returns once the first event has come, so a provider that fails before it can still
    /// hand the request over to the next upstream.
    async fn stream(&self, rb: reqwest::RequestBuilder) -> Result<ChatReply, Failure> {
        let c = &self.config;
        let started = Instant::now();
        let resp = transport::send(rb, c.first_byte_timeout).await?;
        if !resp.status().is_success() {
            return Err(transport::error_answer(resp, started + c.request_timeout).await);
        }
        if !transport::is_event_stream(resp.headers()) {
            return Err(Failure::invalid("expected an event stream"));
        }
        let bytes = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| crate::errors::describe(&e)));
        let mut events: ChatEventStream = Box::pin(sse::chat_events(
            bytes,
            sse::StreamLimits {
                idle: c.idle_timeout,
                max_event_bytes: MAX_EVENT_BYTES,
            },
        ));
        let left = c.first_byte_timeout.saturating_sub(started.elapsed());
        let first = match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Ok(first))) => first,
            Err(_) | Ok(Some(Err(StreamFault::Idle))) => {
                return Err(Failure::ambiguous(MarketplaceError::Timeout(
                    TimeoutPhase::FirstByte,
                )));
            }
            Ok(Some(Err(fault))) => return Err(Failure::invalid(fault.to_string())),
            Ok(None) => return Err(Failure::invalid(StreamFault::Truncated.to_string())),
        };
        let rest = futures_util::stream::once(async move { Ok::<ChatEvent, StreamFault>(first) })
            .chain(events);
        Ok(ChatReply::Stream(Box::pin(rest)))
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn call(&self, call: ProviderCall) -> Result<ChatReply, MarketplaceError> {
        // A transcription names its model in the form.
        let body = if call.upload.is_some() {
            Bytes::new()
        } else {
            with_model(&call.body, &call.model).ok_or_else(|| {
                MarketplaceError::InvalidResponse(
                    "the request body is not a JSON object".to_owned(),
                )
            })?
        };
        self.once(&call, body).await.map_err(|failure| {
            tracing::warn!(provider = %self.config.name, error = %failure.error, "provider call failed");
            failure.error
        })
    }
}

/// The body with `model` set to the provider's name for the model; every other member as the
/// client wrote it.
fn with_model(body: &[u8], model: &str) -> Option<Bytes> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    object.insert(
        "model".to_owned(),
        serde_json::Value::String(model.to_owned()),
    );
    serde_json::to_vec(&object).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_model_name_replaces_the_clients() {
        let body = with_model(br#"{"messages":[],"model":"alias","n":1}"#, "org/model").unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["model"], "org/model");
        assert_eq!(parsed["n"], 1);
        assert!(with_model(b"[1]", "m").is_none());
    }

    #[test]
    fn keys_stay_out_of_debug_output_and_bad_bases_are_refused() {
        let config = |base: &str| ProviderConfig {
            name: "p".to_owned(),
            base_url: base.to_owned(),
            api_key: Some(SecretString::from("sk-secret-value")),
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{:?}", config("http://h/v1")).contains("sk-secret"));
        assert!(OpenAiProvider::new(config("http://h:1/v1/")).is_ok());
        for bad in ["ftp://h/v1", "http://user:pw@h/v1", "not a url"] {
            assert!(OpenAiProvider::new(config(bad)).is_err(), "{bad}");
        }
    }
}
