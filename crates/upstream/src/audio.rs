//! The audio routes' wire work, shared by the proxy-router client and plain providers: a
//! transcription's form sent as multipart with the file streamed from its source, and answers
//! relayed as bytes (speech audio, transcripts, transcription events) under an idle timeout.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use morpheus_domain::ports::{
    ChatReply, MarketplaceError, MediaReply, MediaStream, TimeoutPhase, Upload,
};
use morpheus_domain::{ReportedUsage, TokenUsage, UsageSource};
use reqwest::header::CONTENT_TYPE;
use reqwest::multipart::{Form, Part};
use reqwest::{Body, RequestBuilder, Response};
use tokio::time::Instant;

use crate::errors::Failure;
use crate::transport;

/// The form for `upload`, its fields first (`extra` after the client's), then the file.
pub(crate) fn form(upload: &Upload, extra: &[(&str, &str)]) -> Result<Form, Failure> {
    let mut form = Form::new();
    for (name, value) in &upload.fields {
        form = form.text(name.clone(), value.clone());
    }
    for (name, value) in extra {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    let Some(stream) = upload.source.open() else {
        return Err(Failure::definite(MarketplaceError::InvalidResponse(
            "the upload was sent once already and cannot be read again".to_owned(),
        )));
    };
    let body = Body::wrap_stream(stream);
    let part = match upload.length {
        Some(length) => Part::stream_with_length(body, length),
        None => Part::stream(body),
    }
    .file_name(upload.file_name.clone())
    .mime_str(&upload.content_type)
    .map_err(|_| Failure::invalid("the upload's content type is not a MIME type"))?;
    Ok(form.part("file", part))
}

/// Waits for the answer's head, then relays its body as it comes. A whole transcript (JSON)
/// is read first for what it says it used; everything else streams.
pub(crate) async fn relay(
    rb: RequestBuilder,
    first_byte: Duration,
    idle: Duration,
    max_whole: usize,
) -> Result<ChatReply, Failure> {
    let started = Instant::now();
    let mut resp = transport::send(rb, first_byte).await?;
    if !resp.status().is_success() {
        return Err(transport::error_answer(resp, started + first_byte).await);
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    if is_json(&content_type) {
        let body = transport::read_capped(&mut resp, max_whole, idle).await?;
        let usage = seconds_in(&body).map(|seconds| ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: seconds,
                completion_tokens: 0,
            },
            source: UsageSource::Usage,
        });
        return Ok(ChatReply::Media(MediaReply {
            content_type,
            body: Box::pin(futures_util::stream::once(async move { Ok(body) })),
            usage,
        }));
    }
    Ok(ChatReply::Media(MediaReply {
        content_type,
        body: pieces(resp, idle),
        usage: None,
    }))
}

fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The body's pieces; a gap longer than `idle` or a broken connection ends it with an error.
fn pieces(resp: Response, idle: Duration) -> MediaStream {
    let body = resp.bytes_stream();
    Box::pin(futures_util::stream::unfold(
        Some(Box::pin(body)),
        move |state| async move {
            let mut body = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(piece))) => Some((Ok(piece), Some(body))),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((
                    Err(MarketplaceError::InvalidResponse(format!(
                        "the answer broke off: {}",
                        crate::errors::describe(&e)
                    ))),
                    None,
                )),
                Err(_) => Some((Err(MarketplaceError::Timeout(TimeoutPhase::Idle)), None)),
            }
        },
    ))
}

/// The audio seconds a transcript says it covered: OpenAI's `usage.seconds` (billed by
/// duration), else a verbose answer's `duration`; rounded up.
fn seconds_in(body: &Bytes) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Usage {
        #[serde(rename = "type")]
        kind: Option<String>,
        seconds: Option<f64>,
    }
    #[derive(serde::Deserialize)]
    struct Transcript {
        usage: Option<Usage>,
        duration: Option<f64>,
    }
    let transcript: Transcript = serde_json::from_slice(body).ok()?;
    let by_usage = transcript
        .usage
        .filter(|u| u.kind.as_deref().is_none_or(|k| k == "duration"))
        .and_then(|u| u.seconds);
    let seconds = by_usage.or(transcript.duration)?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > f64::from(u32::MAX) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(seconds.ceil() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_says_its_seconds_by_usage_or_duration() {
        let seconds = |json: &str| seconds_in(&Bytes::from(json.to_owned()));
        assert_eq!(
            seconds(r#"{"text":"x","usage":{"type":"duration","seconds":3}}"#),
            Some(3)
        );
        assert_eq!(seconds(r#"{"text":"x","duration":1.2}"#), Some(2));
        // Billed by tokens (gpt-4o-transcribe): no seconds.
        assert_eq!(
            seconds(r#"{"text":"x","usage":{"type":"tokens","input_tokens":5}}"#),
            None
        );
        assert_eq!(seconds(r#"{"text":"x","duration":0}"#), None);
        assert_eq!(seconds(r#"{"text":"x"}"#), None);
        assert_eq!(seconds("not json"), None);
    }
}
