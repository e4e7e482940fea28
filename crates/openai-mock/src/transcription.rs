//! `POST /v1/audio/transcriptions`: a multipart upload read as a stream ([`crate::upload`]),
//! answered with a transcript of what was heard ([`crate::audio`]) in the asked-for format, or
//! as `transcript.text.*` server-sent events.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use serde::Serialize;

use crate::audio::{timestamp, transcript};
use crate::faults::FaultRoute;
use crate::paced::{Pieces, sse};
use crate::reply::{self, Reply};
use crate::state::{Shared, UploadSeen};

pub(crate) const PATH: &str = "/v1/audio/transcriptions";

const FORMATS: [&str; 5] = ["json", "text", "srt", "verbose_json", "vtt"];

/// The options of a valid form.
struct Options<'a> {
    format: &'a str,
    language: &'a str,
    temperature: f64,
    stream: bool,
    words: bool,
}

pub(crate) async fn handle(shared: &Arc<Shared>, headers: &HeaderMap, body: Incoming) -> Reply {
    let (form, read) = crate::upload::read(shared, headers, body).await;
    shared.record_upload(PATH, form.seen.clone());
    if let Err(refusal) = read {
        return refusal;
    }
    let Some(head) = form.head else {
        return reply::invalid(
            "you must provide a file: a form part named 'file' with a filename",
            Some("file"),
        );
    };
    let seen = &form.seen;
    let opts = match options(shared, seen) {
        Ok(opts) => opts,
        Err(refusal) => return refusal,
    };
    let (text, duration) = transcript(&head, seen.bytes);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let usage = Usage {
        kind: "duration",
        seconds: duration.ceil() as u64,
    };
    if opts.stream {
        return stream(shared, &text, usage);
    }
    let text_plain = |body: String| reply::whole(StatusCode::OK, "text/plain", body.into_bytes());
    match opts.format {
        "text" => text_plain(format!("{text}\n")),
        "srt" => text_plain(format!(
            "1\n00:00:00,000 --> {}\n{text}\n\n",
            timestamp(duration, ',')
        )),
        "vtt" => text_plain(format!(
            "WEBVTT\n\n00:00:00.000 --> {}\n{text}\n\n",
            timestamp(duration, '.')
        )),
        "verbose_json" => reply::ok(&verbose(&text, duration, &opts, usage)),
        _ => reply::ok(&JsonOut { text: &text, usage }),
    }
}

/// Checks the form's fields, in the order OpenAI does: model, then the options. The error is
/// the answer itself, made once per refused request: not worth boxing.
#[allow(clippy::result_large_err)]
fn options<'a>(shared: &Shared, seen: &'a UploadSeen) -> Result<Options<'a>, Reply> {
    let model = seen.field("model").unwrap_or_default();
    if model.is_empty() {
        return Err(reply::invalid(
            "you must provide a model parameter",
            Some("model"),
        ));
    }
    if !shared.knows_model(model) {
        return Err(reply::model_not_found(model));
    }
    let format = seen.field("response_format").unwrap_or("json");
    if !FORMATS.contains(&format) {
        return Err(reply::error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Invalid value: '{format}'. Supported values are: 'json', 'text', 'srt', \
                 'verbose_json', and 'vtt'."
            ),
            "invalid_request_error",
            Some("response_format"),
            Some("invalid_value"),
        ));
    }
    let temperature = match seen.field("temperature") {
        None | Some("") => 0.0,
        Some(t) => match t.parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => t,
            _ => {
                return Err(reply::invalid(
                    &format!("Invalid 'temperature': '{t}'. Expected a number between 0 and 1."),
                    Some("temperature"),
                ));
            }
        },
    };
    let stream = match seen.field("stream") {
        None | Some("") => false,
        Some(s) if s.eq_ignore_ascii_case("true") || s == "1" => true,
        Some(s) if s.eq_ignore_ascii_case("false") || s == "0" => false,
        Some(s) => {
            return Err(reply::invalid(
                &format!("Invalid 'stream': '{s}'. Expected 'true' or 'false'."),
                Some("stream"),
            ));
        }
    };
    let mut words = false;
    for (name, value) in &seen.fields {
        if name != "timestamp_granularities[]" && name != "timestamp_granularities" {
            continue;
        }
        match value.as_str() {
            "word" => words = true,
            "segment" => {}
            other => {
                return Err(reply::invalid(
                    &format!(
                        "Invalid value: '{other}'. Supported values are: 'word' and 'segment'."
                    ),
                    Some("timestamp_granularities"),
                ));
            }
        }
    }
    Ok(Options {
        format,
        language: seen
            .field("language")
            .filter(|l| !l.is_empty())
            .unwrap_or("english"),
        temperature,
        stream,
        words,
    })
}

/// One `transcript.text.delta` per word (each with the space after it, the last without, so
/// the deltas concatenate to the text), then `transcript.text.done`; no `[DONE]`, as OpenAI.
fn stream(shared: &Arc<Shared>, text: &str, usage: Usage) -> Reply {
    let words: Vec<&str> = text.split_whitespace().collect();
    let last = words.len().saturating_sub(1);
    let mut pieces: Vec<_> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let delta = if i == last {
                (*word).to_owned()
            } else {
                format!("{word} ")
            };
            sse(&EventOut {
                kind: "transcript.text.delta",
                delta: Some(&delta),
                text: None,
                usage: None,
            })
        })
        .collect();
    let answer = pieces.len();
    pieces.push(sse(&EventOut {
        kind: "transcript.text.done",
        delta: None,
        text: Some(text),
        usage: Some(usage),
    }));
    let body = Pieces {
        content_type: "text/event-stream",
        pieces,
        lead: 0,
        answer,
    };
    crate::paced::respond(shared, FaultRoute::Transcription, body)
}

fn verbose<'a>(text: &'a str, duration: f64, opts: &Options<'a>, usage: Usage) -> VerboseOut<'a> {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let words: Vec<&str> = text.split_whitespace().collect();
    #[allow(clippy::cast_precision_loss)]
    let per_word = duration / words.len().max(1) as f64;
    VerboseOut {
        task: "transcribe",
        language: opts.language,
        duration: round(duration),
        text,
        segments: [SegmentOut {
            id: 0,
            seek: 0,
            start: 0.0,
            end: round(duration),
            text,
            tokens: (0..words.len() as u64).map(|i| 50_364 + i).collect(),
            temperature: opts.temperature,
            avg_logprob: -0.25,
            compression_ratio: 1.0,
            no_speech_prob: 0.0,
        }],
        words: opts.words.then(|| {
            words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    #[allow(clippy::cast_precision_loss)]
                    let i = i as f64;
                    WordOut {
                        // Words come without their punctuation, as OpenAI lists them.
                        word: w.trim_end_matches(|c: char| c.is_ascii_punctuation()),
                        start: round(per_word * i),
                        end: round(per_word * (i + 1.0)),
                    }
                })
                .collect()
        }),
        usage,
    }
}

/// OpenAI's `usage` on transcriptions billed by duration.
#[derive(Serialize, Clone, Copy)]
struct Usage {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The duration rounded up to whole seconds.
    seconds: u64,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    text: &'a str,
    usage: Usage,
}

/// Declared in OpenAI's key order.
#[derive(Serialize)]
struct VerboseOut<'a> {
    task: &'static str,
    language: &'a str,
    duration: f64,
    text: &'a str,
    segments: [SegmentOut<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<WordOut<'a>>>,
    usage: Usage,
}

#[derive(Serialize)]
struct SegmentOut<'a> {
    id: u32,
    seek: u32,
    start: f64,
    end: f64,
    text: &'a str,
    tokens: Vec<u64>,
    temperature: f64,
    avg_logprob: f64,
    compression_ratio: f64,
    no_speech_prob: f64,
}

#[derive(Serialize)]
struct WordOut<'a> {
    word: &'a str,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}
