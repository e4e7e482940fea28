//! # morpheus-openai-mock — a plain OpenAI-compatible provider for tests and benchmarks
//!
//! **A test and benchmark tool, not a model server.** It stands in for an operator's own
//! OpenAI-compatible provider (vLLM, Ollama, an OpenAI account) beside the Morpheus marketplace:
//! it speaks OpenAI's wire format, answers deterministically, and misbehaves on demand, so the
//! gateway's provider routing and failover can be tested without a GPU or a network. Unlike
//! `morpheus-router-sim` (the proxy-router's stand-in) it depends on none of the gateway's
//! crates.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use morpheus_openai_mock::{Fault, FaultKind, MockConfig, MockProvider};
//! let mock = MockProvider::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! mock.set_fault(Fault::new(FaultKind::Status { status: 503, retry_after: Some(1) }).times(2));
//! println!("{}", mock.openai_base_url()); // http://127.0.0.1:PORT/v1
//! # Ok(()) }
//! ```
//!
//! ## Routes
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/chat/completions` | `chat.completion`, or with `"stream": true` `chat.completion.chunk` events ending `data: [DONE]` |
//! | `POST /v1/embeddings` | `{"object":"list","data":[{"object":"embedding","index","embedding"}],"model","usage":{"prompt_tokens","total_tokens"}}` |
//! | `POST /v1/audio/speech` | binary audio (`audio/mpeg`, `audio/opus`, `audio/aac`, `audio/flac`, `audio/wav`, `audio/pcm`), chunked |
//! | `POST /v1/audio/transcriptions` | multipart upload in; `{"text","usage"}`, `verbose_json`, `text`/`srt`/`vtt` as `text/plain`, or with `stream=true` `transcript.text.*` events |
//! | `GET /v1/models` | `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}` of [`MockConfig::models`] |
//! | `GET /v1/models/{id}` | one model, or 404 `model_not_found` |
//!
//! Errors have OpenAI's shape, `{"error":{"message","type","param","code"}}`: 400
//! `invalid_request_error` for a body that is not JSON, a missing `model`, empty `messages`,
//! `max_tokens: 0`, a bad embeddings `input`, `dimensions` or `encoding_format`, a bad speech
//! `input`, `voice`, `response_format` or `speed`, a transcription without a `file` or with a
//! bad `response_format`, `temperature`, `stream` or `timestamp_granularities[]`; 404
//! `model_not_found` for a model not in [`MockConfig::models`]; 404 `Invalid URL (GET /x)` for
//! unknown paths; 405 with `Allow` for a known path and another method; 413 beyond 16 MiB
//! (a transcription upload: 64 MiB). With [`MockConfig::api_key`], a `/v1/*` request without
//! `Authorization: Bearer <key>` is a 401 (`code` `invalid_api_key` for a wrong key, `null` for
//! none). Every answer outside `/__mock/*` carries `x-mock-provider: <name>`.

//! ### Chat
//!
//! The full answer to a conversation is `Echo:` and the words of the last user message (its
//! string content, or its `text` parts), one space apart — router-sim's model, so answers
//! compare across the two. A token is a word: `max_tokens` (or `max_completion_tokens`) keeps
//! that many (`finish_reason` `length`), `usage.prompt_tokens` counts the words of every
//! message. The `id` is `chatcmpl-` + 16 hex of a hash of the last user message.
//!
//! **Assistant prefill continuation**: when the last message is the assistant's, its text is a
//! partial answer and the reply continues it — the part of the full answer after that prefix
//! (when it is a prefix; otherwise the full answer), `max_tokens` counting the new words only.
//! A gateway that lost a stream after `Echo: hello wo` and asks again with that prefill gets
//! `rld …`.
//!
//! **Tools**: with `tools` offered and `tool_choice` not `"none"`, the answer is a call
//! (`finish_reason` `tool_calls`, `content` null, arguments `{"query":"<last user text>"}`) to
//! the function `tool_choice` names; or, for `"required"` or when the conversation ends with a
//! user message containing `lookup` or a tool's name, to the tool named in it, else the first.
//! After a `tool` message the answer is text again.
//!
//! **Streams** (`text/event-stream`): a role chunk (`{"role":"assistant","content":""}`), one
//! chunk per word (each word with the whitespace after it, so the deltas concatenate to the JSON
//! answer's content) or, for a tool call, a chunk with the call's id and name and one with its
//! arguments; then a chunk with an empty delta and `finish_reason`; with
//! `stream_options.include_usage` a `"choices":[]` chunk with `usage` (and `"usage":null` on
//! every other chunk, as OpenAI sends it); then `data: [DONE]`. Events are
//! [`MockConfig::chunk_delay`] apart.
//!
//! ### Embeddings
//!
//! `input` as a string, an array of strings, a token array or an array of token arrays; one
//! unit vector per input, derived from a hash of it, `dimensions` long (16 by default, up to
//! 4096); `encoding_format` `float` or `base64` (the little-endian `f32`s, base64) give the same
//! numbers. `prompt_tokens` counts words (or tokens of a token array).
//!
//! ### Speech
//!
//! JSON `{model, input, voice, response_format?, speed?, instructions?}` (`instructions`
//! ignored): `input` 1 to 4096 characters, any non-empty `voice`, `response_format` `mp3`
//! (default), `opus`, `aac`, `flac`, `wav` or `pcm`, `speed` 0.25 to 4 (default 1). The audio
//! lasts 60 ms per input character / `speed`, at least 200 ms: `wav` a 44-byte RIFF/WAVE header
//! (24 kHz mono 16-bit) and silent samples, `pcm` those samples alone; the compressed formats 16
//! bytes per ms of zeros behind their magic number (`ID3`, `OggS`, ADTS `FF F1`, `fLaC`). None
//! of it plays; it has the right shape and length. It goes out chunked, in 8 KiB pieces
//! [`MockConfig::chunk_delay`] apart.
//!
//! ### Transcriptions
//!
//! `multipart/form-data`: `file` (a part with a filename), `model`, and optionally `language`,
//! `prompt`, `response_format` (`json` default, `text`, `srt`, `verbose_json`, `vtt`),
//! `temperature` (0 to 1), `timestamp_granularities[]` (`segment`, `word`), `stream`
//! (`true`/`false`). The upload is read as a stream: the file is counted and its first 4 KiB
//! kept, never the whole of it. The transcript says what was heard: for a WAV file (its RIFF
//! chunks walked for the `fmt ` byte rate and the `data` length, within those 4 KiB)
//! `Transcribed audio of 1.50 seconds.`, duration = data bytes / byte rate; for anything else
//! `Transcribed N bytes of audio.`, duration N / 16000 s. `json` is
//! `{"text","usage":{"type":"duration","seconds":<duration rounded up>}}`; `verbose_json`
//! `{"task":"transcribe","language" (default "english"),"duration","text","segments":[one],
//! "words" (with the `word` granularity),"usage"}`; `text` the text and a newline, `srt` and
//! `vtt` one cue spanning the duration, all three `text/plain`. With `stream=true` it is
//! `text/event-stream`: a `{"type":"transcript.text.delta","delta"}` event per word (each with
//! the space after it, the last without, so they concatenate to the text), then
//! `{"type":"transcript.text.done","text","usage"}`; no `[DONE]`, as OpenAI. What the form
//! held is in [`LastRequest::upload`] ([`UploadSeen`]).
//!
//! ## Faults and control surface
//!
//! [`Fault`]s are installed with [`MockHandle::set_fault`] or over HTTP; the newest matching
//! one applies first and each applies to its next `times` requests (default 1), on any route or
//! on one ([`FaultRoute`]: `chat`, `embeddings`, `models`, `speech`, `transcription`).
//! `status`, `refuse` and `delay_ms` act before auth on a request (a transcription's upload is
//! read to its end first, never held); `cut_after_chunks` and `stall_after_chunks` act on the
//! next *streams* only (chat and transcription streams, speech audio; other requests leave them
//! installed), after the lead-in (a chat stream's role chunk) and `chunks` answer chunks (a
//! word's event; 8 KiB of audio), never reaching the end (the finish chunk,
//! `transcript.text.done`, the last piece of audio). The control surface needs no auth and is
//! never faulted or counted:
//!
//! ```text
//! POST   /__mock/faults        {"kind":"status","status":503,"retry_after":2,"times":2}
//!                              {"kind":"cut_after_chunks","chunks":3}  (connection closed mid-body)
//!                              {"kind":"stall_after_chunks","chunks":3,"route":"chat"}
//!                              {"kind":"refuse"}                       (closed without an answer)
//!                              {"kind":"delay_ms","ms":500}            (before the head)
//! GET    /__mock/faults        {"faults":[…]} still installed
//! DELETE /__mock/faults        clear them all
//! GET    /__mock/counters      Counters as JSON
//! GET    /__mock/last_request  {"path":"/v1/chat/completions","body":{…}} or null; for a
//!                              transcription also "upload":{"file_name","content_type",
//!                              "bytes","fields":[[name,value],…]}
//! ```
//!
//! ## Binary
//!
//! `morpheus-openai-mock --bind 127.0.0.1:PORT [--chunk-delay-ms N] [--api-key KEY]
//! [--name NAME] [--model M]…` prints `morpheus-openai-mock listening on http://ADDR` and serves
//! until SIGINT/SIGTERM. Nothing is logged per request, so it can serve as a benchmark baseline.

mod audio;
mod body;
mod chat;
mod config;
mod control;
mod counters;
mod embeddings;
mod faults;
mod handler;
mod hash;
mod models;
mod paced;
mod reply;
mod server;
mod speech;
mod state;
mod stream;
mod transcription;
mod upload;

pub use config::{MockConfig, default_models};
pub use counters::Counters;
pub use faults::{Fault, FaultKind, FaultRoute};
pub use server::{MockHandle, MockProvider};
pub use state::{LastRequest, UploadSeen};
