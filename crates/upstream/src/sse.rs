//! A chat completion's event stream: SSE framing by `eventsource-stream`, plus the rules that
//! decide how a stream ends (see [`chat_events`]).
//!
//! Everything here is pull-based: bytes are read from the upstream only while the consumer
//! polls, and no task is spawned, so dropping the stream drops the upstream connection at once
//! (that is how a client disconnect cancels the provider's work).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStream, EventStreamError};
use futures_core::Stream;
use futures_util::StreamExt as _;
use futures_util::stream;
use morpheus_domain::ports::{ChatEvent, StreamFault};
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::members;
use crate::sanitize::sanitize;
use crate::usage::{USAGE_MEMBERS, reported};

#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// The longest quiet gap between two chunks of bytes.
    pub idle: Duration,
    /// The largest single event.
    pub max_event_bytes: usize,
}

/// Why the byte level stopped; carried through `eventsource-stream` as its transport error.
#[derive(Debug)]
enum ByteFault {
    Idle,
    Transport(String),
    TooLarge(usize),
    NotUtf8,
}

/// Turns the body of a streamed completion into events.
///
/// * one `ChatEvent` per SSE event, `data` exactly as received; empty events and comments are
///   skipped;
/// * `[DONE]` ends the stream (not yielded);
/// * a clean end of the body after a chunk with a `finish_reason`, or after a final
///   `"choices":[]` chunk carrying usage, ends the stream (the 2025 node sends no `[DONE]`);
///   a clean end before that yields `Truncated`;
/// * no bytes for `idle` → `Idle`; a broken connection → `Transport`; a non-JSON data, an event
///   over `max_event_bytes` or bytes that are not UTF-8 → `Malformed`; a top-level `error`
///   member (or an `event: error`) → `Upstream`;
/// * after the completion finished, a quiet or broken connection just ends the stream: the
///   answer is whole, and a late error would only spoil it;
/// * after an `Err` the stream ends.
pub(crate) fn chat_events<S>(
    bytes: S,
    limits: StreamLimits,
) -> impl Stream<Item = Result<ChatEvent, StreamFault>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let events = EventStream::new(guard_bytes(bytes, limits));
    let state = EventsState {
        events: Box::pin(events),
        progress: Progress::default(),
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let item = st.events.next().await;
            let fault = match item {
                Some(Ok(event)) => {
                    if event.data.is_empty() {
                        continue;
                    }
                    if event.data.trim() == "[DONE]" {
                        return None;
                    }
                    match inspect(&event.event, &event.data) {
                        Ok(seen) => {
                            st.progress.note(&seen);
                            let data = match seen.node_counts {
                                true => crate::usage::without_node_counts(event.data.as_bytes())
                                    .and_then(|d| String::from_utf8(d).ok())
                                    .unwrap_or(event.data),
                                false => event.data,
                            };
                            let ev = ChatEvent {
                                data,
                                usage: seen.usage,
                                usage_only: seen.final_usage,
                                generated_bytes: seen.generated_bytes,
                            };
                            return Some((Ok(ev), st));
                        }
                        Err(fault) => fault,
                    }
                }
                None if st.progress.finished() => {
                    return None;
                }
                None => StreamFault::Truncated,
                Some(Err(EventStreamError::Transport(ByteFault::Idle)))
                    if st.progress.finished() =>
                {
                    tracing::debug!("upstream stream idle after the completion finished");
                    return None;
                }
                Some(Err(EventStreamError::Transport(ByteFault::Transport(why))))
                    if st.progress.finished() =>
                {
                    tracing::debug!(%why, "upstream stream broke after the completion finished");
                    return None;
                }
                Some(Err(EventStreamError::Transport(fault))) => match fault {
                    ByteFault::Idle => StreamFault::Idle,
                    ByteFault::Transport(why) => StreamFault::Transport(why),
                    ByteFault::TooLarge(max) => {
                        StreamFault::Malformed(format!("an event is larger than {max} bytes"))
                    }
                    ByteFault::NotUtf8 => StreamFault::Malformed("the stream is not UTF-8".into()),
                },
                Some(Err(EventStreamError::Utf8(_))) => {
                    StreamFault::Malformed("the stream is not UTF-8".into())
                }
                Some(Err(EventStreamError::Parser(_))) => {
                    StreamFault::Malformed("not a server-sent event stream".into())
                }
            };
            st.done = true;
            return Some((Err(fault), st));
        }
    })
}

type Events = EventStream<Pin<Box<dyn Stream<Item = Result<Bytes, ByteFault>> + Send>>>;

struct EventsState {
    events: Pin<Box<Events>>,
    /// Whether the chunks so far say the completion is complete.
    progress: Progress,
    done: bool,
}

/// What one event's JSON says.
struct Seen {
    usage: Option<morpheus_domain::ReportedUsage>,
    /// The node added its `usage_from_*` counts, which the client is not shown.
    node_counts: bool,
    /// The closing `"choices":[]` chunk with the usage.
    final_usage: bool,
    /// (index, has a `finish_reason`) of each choice in the chunk.
    choices: Vec<(u64, bool)>,
    /// The raw length of the generated text in the choices' deltas.
    generated_bytes: u32,
}

/// Which choices of a completion are still being written: with `n` > 1 the first
/// `finish_reason` does not mean the answer is whole.
#[derive(Default)]
struct Progress {
    open: std::collections::BTreeSet<u64>,
    any: bool,
    final_usage: bool,
}

impl Progress {
    fn note(&mut self, seen: &Seen) {
        self.final_usage |= seen.final_usage;
        for &(index, finished) in &seen.choices {
            self.any = true;
            if finished {
                self.open.remove(&index);
            } else {
                self.open.insert(index);
            }
        }
    }

    fn finished(&self) -> bool {
        self.final_usage || (self.any && self.open.is_empty())
    }
}

fn inspect(event_type: &str, data: &str) -> Result<Seen, StreamFault> {
    if event_type.eq_ignore_ascii_case("error") {
        return Err(StreamFault::Upstream(error_message(
            &serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned())),
        )));
    }
    let picked = members::pick(
        data.as_bytes(),
        [
            "error",
            "choices",
            USAGE_MEMBERS[0],
            USAGE_MEMBERS[1],
            USAGE_MEMBERS[2],
        ],
    );
    let Ok([error, choices, usage, from_provider, from_consumer]) = picked else {
        return Err(StreamFault::Malformed(
            if serde_json::from_str::<IgnoredAny>(data).is_ok() {
                "an event is not a JSON object"
            } else {
                "an event is not JSON"
            }
            .into(),
        ));
    };
    if let Some(error) = error.filter(|e| members::present(Some(e))) {
        let error = serde_json::from_str(error.get()).unwrap_or(Value::Null);
        return Err(StreamFault::Upstream(error_message(&error)));
    }
    let usage = reported([usage, from_provider, from_consumer]);
    let mut seen = Seen {
        usage,
        node_counts: from_provider.is_some() || from_consumer.is_some(),
        final_usage: false,
        choices: Vec::new(),
        generated_bytes: 0,
    };
    // Only an array of choices says anything; each is read for its index and finish_reason.
    match choices.and_then(|c| serde_json::from_str::<Vec<&RawValue>>(c.get()).ok()) {
        Some(choices) if choices.is_empty() => seen.final_usage = usage.is_some(),
        Some(choices) => {
            for (position, choice) in choices.iter().enumerate() {
                let [index, finish_reason, delta] =
                    members::pick(choice.get().as_bytes(), ["index", "finish_reason", "delta"])
                        .unwrap_or([None, None, None]);
                let index = index.and_then(members::as_u64).unwrap_or(position as u64);
                seen.choices.push((index, members::present(finish_reason)));
                seen.generated_bytes = seen
                    .generated_bytes
                    .saturating_add(delta.map_or(0, generated_bytes));
            }
        }
        None => {}
    }
    Ok(seen)
}

/// The raw length of the generated members of a choice's `delta`.
fn generated_bytes(delta: &RawValue) -> u32 {
    let picked = members::pick(
        delta.get().as_bytes(),
        ["content", "reasoning_content", "tool_calls"],
    )
    .unwrap_or([None, None, None]);
    let bytes: usize = picked
        .into_iter()
        .flatten()
        .filter(|v| members::present(Some(v)))
        .map(|v| v.get().len())
        .sum();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The message of an `error` member: a string, `{"message":…}`, or `{"error":…}` nested.
fn error_message(error: &Value) -> String {
    let text = match error {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| map.get("error").and_then(Value::as_str))
            .unwrap_or("the provider reported an error")
            .to_owned(),
        _ => "the provider reported an error".to_owned(),
    };
    let clean = sanitize(&text);
    if clean.is_empty() {
        "the provider reported an error".to_owned()
    } else {
        clean
    }
}

/// The byte level: idle timeout per chunk, event size cap, UTF-8 check. Ends after a fault.
fn guard_bytes<S>(
    bytes: S,
    limits: StreamLimits,
) -> Pin<Box<dyn Stream<Item = Result<Bytes, ByteFault>> + Send>>
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let state = GuardState {
        inner: Box::pin(bytes),
        meter: EventMeter::new(limits.max_event_bytes),
        pending: None,
        done: false,
    };
    Box::pin(stream::unfold(state, move |mut st| async move {
        if let Some(fault) = st.pending.take() {
            st.done = true;
            return Some((Err(fault), st));
        }
        if st.done {
            return None;
        }
        let fault = match tokio::time::timeout(limits.idle, st.inner.next()).await {
            Err(_) => ByteFault::Idle,
            Ok(None) => return None,
            Ok(Some(Err(why))) => ByteFault::Transport(why),
            Ok(Some(Ok(chunk))) => match st.meter.feed(&chunk) {
                Ok(()) => return Some((Ok(chunk), st)),
                Err((fault, whole_events)) => {
                    // Pass on the events completed before the fault, then the fault.
                    st.pending = Some(fault);
                    return Some((Ok(chunk.slice(..whole_events)), st));
                }
            },
        };
        st.done = true;
        Some((Err(fault), st))
    }))
}

struct GuardState<S> {
    inner: Pin<Box<S>>,
    meter: EventMeter,
    pending: Option<ByteFault>,
    done: bool,
}

/// Follows SSE line and event boundaries (CR, LF, CRLF; an empty line ends an event) just
/// closely enough to measure the event being received, so an endless event is refused before
/// it is buffered, and checks that the bytes are UTF-8.
struct EventMeter {
    max: usize,
    event_len: usize,
    line_len: usize,
    after_cr: bool,
    /// The start of a UTF-8 character split across chunks.
    carry: Vec<u8>,
}

impl EventMeter {
    fn new(max: usize) -> Self {
        Self {
            max,
            event_len: 0,
            line_len: 0,
            after_cr: false,
            carry: Vec::new(),
        }
    }

    /// `Err((fault, n))`: the first `n` bytes of `chunk` complete events and may still be used.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), (ByteFault, usize)> {
        let mut boundary = 0;
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'\n' if self.after_cr => {
                    // The LF of a CRLF: the CR already ended the line.
                    self.after_cr = false;
                    if boundary == i {
                        boundary = i + 1;
                    }
                }
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line_len == 0 {
                        self.event_len = 0;
                        boundary = i + 1;
                    } else {
                        self.line_len = 0;
                        self.event_len += 1;
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line_len += 1;
                    self.event_len += 1;
                    if self.event_len > self.max {
                        return Err((ByteFault::TooLarge(self.max), boundary));
                    }
                }
            }
        }
        if !self.utf8_ok(chunk) {
            return Err((ByteFault::NotUtf8, 0));
        }
        Ok(())
    }

    fn utf8_ok(&mut self, chunk: &[u8]) -> bool {
        let joined;
        let bytes = if self.carry.is_empty() {
            chunk
        } else {
            joined = [self.carry.as_slice(), chunk].concat();
            &joined
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => {
                self.carry.clear();
                true
            }
            // Invalid bytes, not just a character cut at the end of the chunk.
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                self.carry = bytes[e.valid_up_to()..].to_vec();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StreamLimits {
        StreamLimits {
            idle: Duration::from_millis(200),
            max_event_bytes: 1024,
        }
    }

    async fn run(
        chunks: Vec<Result<&'static str, &'static str>>,
    ) -> Vec<Result<ChatEvent, StreamFault>> {
        let bytes = stream::iter(chunks.into_iter().map(|c| {
            c.map(|s| Bytes::from_static(s.as_bytes()))
                .map_err(str::to_owned)
        }));
        chat_events(bytes, limits()).collect().await
    }

    const CHUNK: &str = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
    const LAST: &str = r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str =
        r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;

    fn data(json: &str) -> String {
        format!("data: {json}\n\n")
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn datas(out: &[Result<ChatEvent, StreamFault>]) -> Vec<&str> {
        out.iter()
            .filter_map(|r| r.as_ref().ok().map(|e| e.data.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn done_ends_the_stream_and_data_is_kept_verbatim() {
        let odd_spacing = r#"{ "choices" : [ {"finish_reason":null} ] ,"x":1.0e0}"#;
        let out = run(vec![
            Ok(leak(data(odd_spacing))),
            Ok(leak(data(LAST))),
            Ok("data: [DONE]\n\n"),
            Ok(leak(data(CHUNK))), // after [DONE]: never read
        ])
        .await;
        assert_eq!(datas(&out), vec![odd_spacing, LAST]);
        assert!(out.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn clean_end_after_finish_or_usage_is_success() {
        let out = run(vec![Ok(leak(data(CHUNK))), Ok(leak(data(LAST)))]).await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
        let out = run(vec![Ok(leak(data(CHUNK))), Ok(leak(data(USAGE)))]).await;
        assert_eq!(out.len(), 2);
        let last = out[1].as_ref().unwrap();
        assert_eq!(
            last.usage.map(|u| (u.tokens, u.source)),
            Some((
                morpheus_domain::TokenUsage {
                    prompt_tokens: 5,
                    completion_tokens: 2
                },
                morpheus_domain::UsageSource::Usage
            ))
        );
        assert!(last.usage_only);
    }

    #[tokio::test]
    async fn with_several_choices_every_one_must_finish() {
        let second =
            r#"{"id":"c1","choices":[{"index":1,"delta":{"content":"Yo"},"finish_reason":null}]}"#;
        let second_last =
            r#"{"id":"c1","choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#;
        // Choice 0 finished, choice 1 did not: the body ending here is a cut.
        let out = run(vec![
            Ok(leak(data(CHUNK))),
            Ok(leak(data(second))),
            Ok(leak(data(LAST))),
        ])
        .await;
        assert_eq!(out.last(), Some(&Err(StreamFault::Truncated)));
        let out = run(vec![
            Ok(leak(data(CHUNK))),
            Ok(leak(data(second))),
            Ok(leak(data(LAST))),
            Ok(leak(data(second_last))),
        ])
        .await;
        assert!(out.iter().all(Result::is_ok), "{out:?}");
    }

    #[tokio::test]
    async fn early_end_is_truncated() {
        let out = run(vec![Ok(leak(data(CHUNK))), Ok(leak(data(CHUNK)))]).await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], Err(StreamFault::Truncated));
        // An event cut in the middle is not delivered either.
        let out = run(vec![Ok(leak(data(CHUNK))), Ok("data: {\"choi")]).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Err(StreamFault::Truncated));
    }

    #[tokio::test]
    async fn faults_end_the_stream() {
        let out = run(vec![
            Ok(leak(data(CHUNK))),
            Err("connection reset"),
            Ok(leak(data(LAST))),
        ])
        .await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            Err(StreamFault::Transport("connection reset".into()))
        );

        let out = run(vec![Ok("data: not json\n\n"), Ok(leak(data(LAST)))]).await;
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], Err(StreamFault::Malformed(_))));

        let out = run(vec![Ok("data: [1,2]\n\n")]).await;
        assert!(matches!(out[0], Err(StreamFault::Malformed(_))));

        let out = run(vec![
            Ok(leak(data(CHUNK))),
            Ok("data: {\"error\":{\"message\":\"session expired at http://10.0.0.1:3333\"}}\n\n"),
        ])
        .await;
        assert_eq!(
            out[1],
            Err(StreamFault::Upstream("session expired at [url]".into()))
        );
        let out = run(vec![Ok("event: error\ndata: provider crashed\n\n")]).await;
        assert_eq!(
            out[0],
            Err(StreamFault::Upstream("provider crashed".into()))
        );
    }

    #[tokio::test]
    async fn comments_empty_events_and_odd_line_ends_are_handled() {
        let crlf = leak(format!("data: {CHUNK}\r\n\r\n"));
        let cr = leak(format!("data: {LAST}\r\r"));
        let out = run(vec![
            Ok(": keep-alive\n\n"),
            Ok("data:\n\n"),
            Ok("event: ping\n\n"),
            Ok(crlf),
            // A bare CR ends a line too (it cannot be the very last byte: a CR at the end of
            // the body may still be the first half of a CRLF).
            Ok(cr),
            Ok("data: [DONE]\n\n"),
        ])
        .await;
        assert_eq!(datas(&out), vec![CHUNK, LAST]);
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn any_split_of_the_bytes_gives_the_same_events() {
        let text = format!(
            "data: {}\r\n\r\n: c\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            r#"{"choices":[{"delta":{"content":"héllo ✓"},"finish_reason":null}]}"#, LAST, USAGE
        );
        let bytes = text.as_bytes().to_vec();
        let whole = chat_events(stream::iter(vec![Ok(Bytes::from(bytes.clone()))]), limits())
            .collect::<Vec<_>>()
            .await;
        assert_eq!(whole.len(), 3);
        for size in [1, 2, 3, 5, 7, 13] {
            let chunks: Vec<Result<Bytes, String>> = bytes
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let split = chat_events(stream::iter(chunks), limits())
                .collect::<Vec<_>>()
                .await;
            assert_eq!(split, whole, "chunk size {size}");
        }
    }

    #[tokio::test]
    async fn oversized_events_are_malformed_after_the_complete_ones() {
        let big = format!("data: {}", "x".repeat(2000));
        let first = leak(format!("data: {CHUNK}\n\n{big}"));
        let out = run(vec![Ok(first), Ok("\n\n")]).await;
        assert_eq!(datas(&out), vec![CHUNK]);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[1], Err(StreamFault::Malformed(m)) if m.contains("larger")));
    }

    #[tokio::test]
    async fn invalid_utf8_is_malformed() {
        let chunks = vec![
            Ok(Bytes::from_static(b"data: {\"a\":\"")),
            Ok(Bytes::from_static(b"\xff\xfe\"}\n\n")),
        ];
        let out: Vec<_> = chat_events(stream::iter(chunks), limits()).collect().await;
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Err(StreamFault::Malformed(_))));
    }

    #[tokio::test]
    async fn a_quiet_stream_is_idle_but_not_after_it_finished() {
        let quiet = |first: &'static str| {
            stream::iter(vec![Ok::<_, String>(Bytes::from_static(first.as_bytes()))])
                .chain(stream::pending())
        };
        let started = std::time::Instant::now();
        let out: Vec<_> = chat_events(quiet(leak(data(CHUNK))), limits())
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Err(StreamFault::Idle));
        assert!(started.elapsed() >= Duration::from_millis(200));
        let out: Vec<_> = chat_events(quiet(leak(data(LAST))), limits())
            .collect()
            .await;
        assert_eq!(out.len(), 1);
        assert!(out[0].is_ok());
    }

    #[tokio::test]
    async fn usage_in_chunks_is_checked() {
        let bad = r#"{"choices":[],"usage":{"prompt_tokens":-5,"completion_tokens":2}}"#;
        let out = run(vec![Ok(leak(data(LAST))), Ok(leak(data(bad)))]).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ref().unwrap().usage, None);
    }

    #[tokio::test]
    async fn each_chunk_says_how_much_text_it_generated() {
        let text = r#"{"choices":[{"index":0,"delta":{"content":"hello","reasoning_content":null}},{"index":1,"delta":{"reasoning_content":"ab","tool_calls":[1]}}]}"#;
        let none = r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
        let out = run(vec![
            Ok(leak(data(text))),
            Ok(leak(data(none))),
            Ok(leak(data(LAST))),
        ])
        .await;
        // Choice 1 never finishes, so the stream ends truncated after these.
        let bytes: Vec<u32> = out[..2]
            .iter()
            .map(|e| e.as_ref().unwrap().generated_bytes)
            .collect();
        // "hello" with its quotes, "ab" with its quotes, and `[1]`.
        assert_eq!(bytes[..2], [7 + 4 + 3, 0]);
    }
}
