//! `POST /v1/chat/completions` through a session: a whole JSON answer or an event stream; and
//! `POST /v1/embeddings`, always a whole JSON answer; and the audio routes, relayed as bytes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use morpheus_domain::ports::{ChatCall, ChatReply, Endpoint, MarketplaceError};
use morpheus_domain::{ReportedUsage, UsageSource};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

use crate::client::ProxyRouterClient;
use crate::errors::Failure;
use crate::transport::{self, Limits};
use crate::{audio, members, sse, usage};

/// Pause before the single re-send after a refused connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

impl ProxyRouterClient {
    pub(crate) async fn chat_call(&self, call: ChatCall) -> Result<ChatReply, MarketplaceError> {
        // One more try only when the connection was refused: then nothing was sent and nothing
        // can run twice. Once a request may have left, it is never repeated here.
        match self.chat_once(&call).await {
            Err(f) if f.not_sent && matches!(f.error, MarketplaceError::Unreachable(_)) => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                self.chat_once(&call).await.map_err(|f| f.error)
            }
            other => other.map_err(|f| f.error),
        }
    }

    async fn chat_once(&self, call: &ChatCall) -> Result<ChatReply, Failure> {
        let url = match call.endpoint {
            Endpoint::ChatCompletions => &self.inner.chat_url,
            Endpoint::Embeddings => &self.inner.embeddings_url,
            Endpoint::Transcriptions => &self.inner.transcriptions_url,
            Endpoint::Speech => &self.inner.speech_url,
        };
        let mut rb = self
            .request(Method::POST, url.clone())
            .header("session_id", call.session.as_str());
        rb = match &call.upload {
            Some(upload) => {
                // The node's provider reads the answer by its own `format` field, not by
                // `response_format` (`aiengine/openai.go:346-370`): both are sent.
                let format = upload
                    .fields
                    .iter()
                    .find(|(name, _)| name == "response_format")
                    .map_or("json", |(_, value)| value.as_str());
                rb.multipart(audio::form(upload, &[("format", format)])?)
            }
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
                .body(call.body.clone()),
        };
        if let Some(id) = call
            .request_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            rb = rb.header("X-Request-Id", id);
        }
        let c = &self.inner.config;
        match call.endpoint {
            // The node answers audio once the provider has, and relays speech as it comes.
            Endpoint::Transcriptions | Endpoint::Speech => {
                audio::relay(rb, c.chat_timeout, c.idle_timeout, c.max_body_bytes).await
            }
            Endpoint::Embeddings => self.embeddings_whole(rb).await,
            Endpoint::ChatCompletions if call.stream => self.chat_stream(rb).await,
            Endpoint::ChatCompletions => self.chat_whole(rb).await,
        }
    }

    /// The node answers embeddings only once the provider has (`controller_http.go:1727-1804`),
    /// with the same head timing as a whole chat answer.
    async fn embeddings_whole(&self, rb: reqwest::RequestBuilder) -> Result<ChatReply, Failure> {
        let c = &self.inner.config;
        let limits = Limits {
            first_byte: c.chat_timeout,
            idle: c.idle_timeout,
            total: c.chat_timeout,
            max_body: c.max_body_bytes,
        };
        let answer = transport::exchange(rb, limits).await?;
        transport::require_json(&answer)?;
        let Ok([error, data, usage]) = members::pick(&answer.body, ["error", "data", "usage"])
        else {
            return Err(Failure::invalid(
                "the embeddings answer is not a JSON object",
            ));
        };
        if error.is_some() && data.is_none() {
            return Err(crate::errors::from_status(
                reqwest::StatusCode::BAD_GATEWAY,
                &answer.headers,
                &answer.body,
            ));
        }
        if data.is_none() {
            return Err(Failure::invalid("the embeddings answer has no data"));
        }
        let usage = usage::embedding_usage_in(usage).map(|tokens| ReportedUsage {
            tokens,
            source: UsageSource::Usage,
        });
        Ok(ChatReply::Complete {
            body: answer.body,
            usage,
        })
    }

    async fn chat_whole(&self, rb: reqwest::RequestBuilder) -> Result<ChatReply, Failure> {
        let c = &self.inner.config;
        // The node writes nothing until the provider has finished the whole answer
        // (`proxyapi/controller_http.go:194-284`): the head may take as long as the answer.
        let limits = Limits {
            first_byte: c.chat_timeout,
            idle: c.idle_timeout,
            total: c.chat_timeout,
            max_body: c.max_body_bytes,
        };
        let answer = transport::exchange(rb, limits).await?;
        transport::require_json(&answer)?;
        let Ok([error, choices, usage, from_provider, from_consumer]) = members::pick(
            &answer.body,
            [
                "error",
                "choices",
                usage::USAGE_MEMBERS[0],
                usage::USAGE_MEMBERS[1],
                usage::USAGE_MEMBERS[2],
            ],
        ) else {
            return Err(Failure::invalid("the completion is not a JSON object"));
        };
        // Some providers report a failure inside a 200; treat it like the error status it is.
        if error.is_some() && choices.is_none() {
            return Err(crate::errors::from_status(
                reqwest::StatusCode::BAD_GATEWAY,
                &answer.headers,
                &answer.body,
            ));
        }
        let usage = usage::reported([usage, from_provider, from_consumer]);
        let body = if from_provider.is_some() || from_consumer.is_some() {
            usage::without_node_counts(&answer.body).map_or(answer.body, Bytes::from)
        } else {
            answer.body
        };
        Ok(ChatReply::Complete { body, usage })
    }

    async fn chat_stream(&self, rb: reqwest::RequestBuilder) -> Result<ChatReply, Failure> {
        let c = &self.inner.config;
        let resp = transport::send(rb, c.first_byte_timeout).await?;
        if !resp.status().is_success() {
            let deadline = Instant::now() + c.request_timeout;
            return Err(transport::error_answer(resp, deadline).await);
        }
        if !transport::is_event_stream(resp.headers()) {
            return Err(Failure::ambiguous(MarketplaceError::InvalidResponse(
                "expected an event stream".to_owned(),
            )));
        }
        let bytes = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| crate::errors::describe(&e)));
        let events = sse::chat_events(
            bytes,
            sse::StreamLimits {
                idle: c.idle_timeout,
                max_event_bytes: c.max_event_bytes,
            },
        );
        Ok(ChatReply::Stream(Box::pin(events)))
    }
}
