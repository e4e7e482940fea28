//! # morpheus-router-sim — a fake Morpheus proxy-router for tests, benchmarks and demos
//!
//! **This is a test and demo tool, not a marketplace node.** It holds no keys, touches no
//! chain and runs no model. It answers the HTTP API of the Morpheus *proxy-router* with the
//! same wire format (HTTP Basic auth, gin-style errors, PascalCase entities, decimal-string and
//! beyond-2^53 numbers) and, by default, the same *behaviour* as today's node (`main` 04e6c425 of
//! `MorpheusAIs/Morpheus-Lumerin-Node`, read in `proxy-router-behaviour.md`): one request per
//! session at a time, opens that take time and can fail after the money moved, usage only when
//! asked for, provider errors as `providerModelError`, chat bodies re-encoded by go-openai. It
//! can misbehave on demand (the node's own failure modes, and latency, error statuses, resets,
//! stalls, truncated or garbled streams at the TCP level). The source cites the node's file and
//! line for each modelled behaviour; [`SimConfig`] turns each back to an older node's (or the
//! old simulator's).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use morpheus_router_sim::{Fault, FaultKind, FaultRoute, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! sim.set_fault(Fault { route: FaultRoute::Chat, kind: FaultKind::Reset, times: Some(1) });
//! println!("{}", sim.base_url()); // http://127.0.0.1:PORT, user "morpheus", password "sim-password"
//! # Ok(()) }
//! ```
//!
//! ## Routes (as the proxy-router)
//!
//! Every route needs HTTP Basic auth except `GET /healthcheck` and `/__sim/*`. Refusals are
//! 401 `{"error":"no basic auth provided"}`, `{"error":"invalid basic auth provided"}` or
//! `{"error":"invalid username or password"}`, and 403 `{"error":"method not allowed"}` for a
//! user without the route's permission ([`SimConfig::user_methods`], [`SimConfig::extra_users`];
//! the permissions are the node's: `get_wallet`, `get_models`, `get_bids`, `approve`,
//! `get_balance`, `open_session`, `get_sessions`, `close_session`, `chat`, `embeddings`,
//! `audio_speech`, `audio_transcription`). Errors are `{"error":"<text>"}`,
//! written as Go writes JSON (`<`, `>`, `&` escaped): 400 for bad input, 500 for nearly
//! everything else, unknown ids included (there is no JSON 404). An unknown path, or a known path
//! with the wrong method, gets gin's text/plain `404 page not found`. Every answer carries the
//! request's `X-Request-Id`, or 8 hex digits the node made up.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthcheck` | `{"status":"healthy","version":"sim-<version>","uptime":"1m2s","components":{"badgerdb":"healthy, size=0.1MB"}}`; 503 `degraded` while [`SimHandle::set_degraded`] |
//! | `GET /wallet` | `{"address":"0x…"}` |
//! | `GET /blockchain/models` | `{"models":[{"Id","IpfsCID","Fee","Stake","Owner","Name","Tags","CreatedAt","IsDeleted","ModelType"}]}`, deleted models included; `ModelType` (`LLM`, `STT`, `TTS`, `EMBEDDING`, `UNKNOWN`) from the first known tag; a failed chain read is a **400** |
//! | `GET /blockchain/models/{id}/bids/rated` | `{"bids":[{"ID","Bid":{"Id","Provider","ModelAgentId","PricePerSecond","Nonce","CreatedAt","DeletedAt"},"Score"}]}`, best first; the outer `ID` is always the zero hash (the node never sets it), the bid's id is `Bid.Id`; the four Bid numbers are decimal strings; unknown model → `{"bids":[]}` |
//! | `GET /blockchain/bids/{id}` | `{"bid":{…}}`; an unknown id is the zero bid |
//! | `POST /blockchain/approve?spender=0x…&amount=N` | `{"tx":"0x…"}` |
//! | `GET /blockchain/balance` | `{"mor":"…","eth":"…"}`, wei as decimal strings; 1,000,000 MOR and 1 ETH until [`SimHandle::set_mor_balance`] |
//! | `POST /blockchain/models/{id}/session` `{"sessionDuration":600,"directPayment":false,"failover":false}` | `{"sessionID":"0x…"}` on the best-scored bid, after [`SimConfig::open_latency`]; unknown, deleted or bid-less model → 500 `no bids available` |
//! | `POST /blockchain/bids/{id}/session` `{"sessionDuration":600}` | `{"sessionID":"0x…"}`; unknown bid → 500 `failed to initiate session: provider request failed: code: 500, msg: <nil>, error: failed to connect to provider: dial tcp: missing address` |
//! | `GET /blockchain/sessions/{id}` | `{"session":{"Id","User","Provider","ModelAgentId","BidID","Stake","PricePerSecond","CloseoutReceipt","CloseoutType","ProviderWithdrawnAmount","OpenedAt","EndsAt","ClosedAt"}}`, all numbers plain JSON numbers; unknown → 500 `session not found` |
//! | `GET /blockchain/sessions/user?user=0x…&offset=0&limit=10&order=desc` | `{"sessions":[…]}`, newest first unless `order` is exactly `ASC` (`asc` is descending too) |
//! | `POST /blockchain/sessions/{id}/close` | `{"tx":"0x…"}`; unknown → 500 `failed to get session report from user: session not found`; closed → 500 `…EVM error: SessionAlreadyClosed() []` |
//! | `POST /v1/chat/completions` + header `session_id` | OpenAI chat completion, JSON or SSE; see below |
//! | `POST /v1/embeddings` + header `session_id` | `{"data":[{"object":"embedding","embedding":[…],"index":0}],"model","object":"list","usage"}`; see below |
//! | `POST /v1/audio/speech` + header `session_id` | audio bytes, `Content-Type` by `response_format` |
//! | `POST /v1/audio/transcriptions` + header `session_id`, multipart | `text/plain`, JSON or SSE by `format`, `response_format` and `stream` |
//!
//! ### Opening a session
//!
//! An open takes [`SimConfig::open_latency`] and runs on a task of its own: like the node's
//! handler, whose gin context is never cancelled, it completes when its caller went away
//! (counted in `opens_caller_gone`). Durations are a number or a decimal string; below the
//! contract's 300 s ([`SimConfig::min_session_seconds`]) the open fails after its latency with
//! `failed to send transaction: open session failed: failed to build transaction: EVM error:
//! SessionTooShort() []`; a non-number is 400 `invalid big.Int string: …`; a missing or null
//! `sessionDuration` makes the node's handler panic, so the connection is closed without an
//! answer. With [`SimConfig::honour_failover`], `failover: true` is kept on the session (today's
//! node ignores it).
//!
//! Sessions expire on the simulator's *chain clock*, which [`SimHandle::advance_clock`] (or
//! `POST /__sim/clock/advance`) moves forward without waiting.
//!
//! ### Chat
//!
//! The order is the node's: the `session_id` header must be a hash (400), the body is decoded
//! (400), a missing `session_id` is 500 `model not found: 0x000…`, an unknown session 500
//! `session not found`. Then the request waits for its session: one request per session at a
//! time ([`SimConfig::session_concurrency`]), the others in arrival order with nothing written to
//! them, and the model takes [`SimConfig::provider_latency`] — a stream's head comes with its
//! first token, a JSON answer's only when the whole answer is ready. The wait and the model's
//! time run on a task of their own: a caller who leaves keeps its place in the queue and, for a
//! JSON answer, the session for the whole generation, as on the node. An expired or closed
//! session is refused by the provider after the wait: 500 `provider request failed: provider
//! error: session expired`. Errors after the queue carry the request's content type
//! (`text/event-stream` for a stream), as gin keeps the handler's.
//!
//! The body is decoded the way the node's go-openai v1.41.2 types decode it
//! ([`SimConfig::rewrite_requests`]): a value of the wrong type is a 400 with Go's text (`"stop":
//! "x"` → `json: cannot unmarshal string into Go struct field base.stop of type []string`,
//! `metadata` values must be strings), zero values and unknown nested fields are dropped
//! (`temperature: 0`, `max_tokens: 0`, `n: 0`; content parts keep `type`, `text` and `image_url`
//! only, so `input_audio` and `file` lose their data). What the "provider" received, and the
//! paths of what was dropped, are [`SimHandle::last_forwarded`] (and
//! `GET /__sim/sessions/{id}/forwarded`); the answer is computed from it.
//!
//! The "model" answers `Echo:` followed by the words of the last user message (its string
//! content, or its `text` parts), joined by single spaces and cut to `max_tokens` words (then
//! `finish_reason` is `length`). A token is a whitespace-separated word: `prompt_tokens` counts
//! the words of all messages. `n` gives that many identical choices. The `id` is `chatcmpl-` +
//! 16 hex of a hash of the last user message, so concurrent requests with different messages
//! can be told apart chunk by chunk. With `tools`, unless `tool_choice` is `"none"`, the answer
//! is a call to the function `tool_choice` names (or, for `"required"`, the first tool), or to
//! the first tool whose name appears in the last user message, with arguments
//! `{"query":"<last user text>"}` and `finish_reason` `tool_calls`.
//!
//! Answers are written as the node re-marshals them: top-level keys sorted, `<>&` escaped. A
//! JSON answer has `usage` and, like final stream chunks, the node's own counts
//! `usage_from_provider` and `usage_from_consumer` ([`SimConfig::node_usage_fields`]: per message
//! 1 + its words + 3, and the words of the content the node saw). Streams
//! (`text/event-stream`) send a role chunk, one chunk per word (every word but the last with its
//! trailing space, so the deltas concatenate to the JSON answer's content) or the tool-call
//! deltas, a chunk with `finish_reason`, a `"choices":[]` chunk with `usage` only when the
//! request asked for `stream_options.include_usage`
//! ([`SimConfig::usage_without_include_usage`]), then `data: [DONE]` ([`SimConfig::done_marker`]).
//! Events are the chunk delay plus the per-token time apart.
//!
//! ### Embeddings, speech, transcriptions
//!
//! These share chat's order and its queue: one request of any kind per session at a time, the
//! same texts for unknown, expired and dead sessions, 400 `{"providerModelError":…}` for the
//! backend's refusals. The node's quirks are kept: `encoding_format: "base64"` is a 500 (its
//! provider cannot decode base64 embeddings into go-openai's `[]float32`); a transcription answers
//! `application/json` only when the node's own form field `format` is `json` or `verbose_json`
//! (OpenAI's `response_format` is merely forwarded, so a JSON transcript otherwise arrives as
//! `text/plain`); a missing `file` is a 500; and on an upload a session the provider refuses
//! (expired, unknown user) makes the node panic, so the connection closes without an answer.
//! What the "models" produce is described in `media.rs`: hash-derived unit vectors (16 components
//! or `dimensions` ≤ 4096, `prompt_tokens` in words), 60 ms of audio per input character relayed in
//! 8 KiB pieces (`wav` a valid WAV file), and `Transcribed audio of 1.50 seconds.` for a WAV upload
//! (`Transcribed N bytes of audio.` otherwise). Uploads are read as a stream, up to 64 MiB.
//!
//! ## Faults and control surface
//!
//! Faults ([`Fault`], [`FaultKind`]) are installed with [`SimHandle::set_fault`] or over HTTP;
//! the newest matching fault applies first, `times: Some(n)` limits it to the next `n`
//! matching requests. The control surface needs no auth and is never faulted or counted:
//!
//! ```text
//! POST   /__sim/faults                   {"route":"chat","kind":{"type":"stall_after_chunks","chunks":3},"times":1}
//! GET    /__sim/faults                   installed faults
//! DELETE /__sim/faults                   clear all faults
//! GET    /__sim/counters                 Counters as JSON
//! GET    /__sim/clock                    {"now":<chain unix seconds>}
//! POST   /__sim/clock/advance            {"seconds":3600}
//! POST   /__sim/chunk-delay              {"ms":50}
//! POST   /__sim/health                   {"degraded":"Writes are blocked"} or {"degraded":null}
//! GET    /__sim/sessions/{id}/forwarded  {"body":{…what the provider received…},"dropped":["temperature",…]}
//! POST   /__sim/providers                {"provider":"0x…","down":true}
//! POST   /__sim/balance                  {"mor":"15000000000000000000000"}
//! ```
//!
//! Routes in faults: `chat`, `embeddings`, `audio_speech`, `audio_transcription`,
//! `open_session`, `close_session`, `get_session`, `models`, `rated_bids`, `approve`, `balance`,
//! `any`. Transport kinds (`"type"`): `latency {ms}`, `status {status,
//! body, content_type?}`, `reset`, `stall_before_first_byte`, `stall_after_chunks {chunks}`,
//! `cut_after_chunks {chunks}`, `garbage_after_chunks {chunks}`, `reset_after_chunks {chunks}`,
//! `redirect {location}`, `huge_body {bytes}`, `wrong_content_type`, `huge_headers {bytes}`,
//! `bad_usage`, `drip_chunks {every_ms}`. The node's own failure modes:
//!
//! - `open_fails_after_mining {error, visible_after_ms}` (open): a 500 with one of the texts the
//!   node returns after the open transaction was sent — `parse_receipt`, `get_session`,
//!   `store_session`, `not_mined`, and **\[dev\]** `not_yet_visible` ([`MinedError`]) — while the
//!   session exists on chain, visible to reads from `visible_after_ms` on;
//! - `backend_error {status, body}` (chat): 400 `{"providerModelError":<the backend's body>}`, a
//!   non-JSON body wrapped as `{"error":{"message":…,"type":"upstream_error"}}`; the backend's
//!   status is lost on the way, so 429s, 5xxs, bad provider keys, unknown models and context
//!   overflows differ only in their body ([`FaultKind::backend_rate_limited`] and its siblings
//!   give OpenAI's);
//! - `chain_read_blip` (chat, close, get session, models, rated bids): `session not found` (and
//!   its close variant) although the session exists; the RPC error on the catalogue;
//! - `dead_session {reason}` (chat): the addressed session stops working for good with the text
//!   of `provider_not_found`, `user_not_found`, `tee_attestation` or `provider_unreachable`
//!   ([`DeadReason`]); on a failover session the node then fails over
//!   ([`SimConfig::honour_failover`]): it closes the session, opens one on another provider and
//!   writes `data: provider failed, failover enabled` / `data: new session opened: 0x…` (a JSON
//!   answer gets them as JSON strings before the completion);
//! - `error_after_chunks {chunks, error?}` (chat): `{"error":"…"}` appended raw to the 200,
//!   without `data:` and without a newline, after `chunks` events (after a JSON answer's body).
//!
//! A provider can be taken down ([`SimHandle::set_provider_down`]): handshakes with it are
//! refused (`failed to initiate session: … connect: connection refused`), opens by model skip its
//! bids as the node does (and, with none left, list why each failed: `no provider accepting
//! session: [{"provider":…,"reason":…}]`), and its sessions' chats fail with `provider request
//! failed: failed to connect to provider: …`.
//!
//! [`Counters`] also count the requests that had to wait for their session
//! (`session_waits`), the most requests one session ever had at once (`max_session_concurrency`:
//! above 1, a client sent a request to a busy session), opens whose caller left
//! (`opens_caller_gone`), values the rewrite dropped (`forwarded_fields_dropped`) and failovers.
//!
//! ## Binary
//!
//! `morpheus-router-sim --bind 127.0.0.1:8082 [--user U] [--password P] [--chunk-delay-ms N]
//! [--session-concurrency N] [--min-session-seconds N] [--open-latency-ms N] [--first-token-ms N]
//! [--per-token-ms N] [--no-done-marker] [--usage-without-include-usage] [--no-node-usage-fields]
//! [--no-rewrite] [--honour-failover]` prints `morpheus-router-sim listening on http://ADDR` and
//! serves until SIGINT/SIGTERM (`--session-concurrency 0`: no limit). Nothing is logged per
//! request, so it can serve as a benchmark baseline.

mod auth;
mod body;
mod catalog;
mod chat;
mod config;
mod conn;
mod counters;
mod faults;
mod gate;
mod gojson;
mod handler;
mod ids;
mod media;
mod reply;
mod rewrite;
mod routes;
mod server;
mod sessions;
mod state;
mod stream;
mod texts;

pub use config::{
    DEFAULT_WALLET, LLAMA_MODEL_ID, ProviderLatency, SimBid, SimConfig, SimModel, SimUser,
    default_models,
};
pub use counters::Counters;
pub use faults::{DeadReason, Fault, FaultKind, FaultRoute, MinedError};
pub use server::{SimHandle, Simulator};
pub use texts::MIN_SESSION_SECONDS;
