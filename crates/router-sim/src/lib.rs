//! # morpheus-router-sim — a fake Morpheus proxy-router for tests, benchmarks and demos
//!
//! **This is a test and demo tool, not a marketplace node.** It holds no keys, touches no
//! chain and runs no model. It answers the HTTP API of the Morpheus *proxy-router* with the
//! same wire format (HTTP Basic auth, gin-style errors, PascalCase entities, decimal-string and
//! beyond-2^53 numbers) so the gateway can be tested, benchmarked and demonstrated offline, and
//! it can misbehave on demand (latency, error statuses, connection resets, stalls, truncated or
//! garbled streams) at the TCP level.
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
//! `{"error":"invalid username or password"}`. Errors are always `{"error":"<text>"}`: 400 for
//! bad input, 500 for everything else, unknown ids included (there is no JSON 404). An unknown
//! path, or a known path with the wrong method, gets gin's text/plain `404 page not found`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthcheck` | `{"status":"healthy","uptime":"1m2.5s","version":"sim-<version>"}` |
//! | `GET /wallet` | `{"address":"0x…"}` |
//! | `GET /blockchain/models` | `{"models":[{"Id","IpfsCID","Fee","Stake","Owner","Name","Tags","CreatedAt","IsDeleted"}]}`, deleted models included |
//! | `GET /blockchain/models/{id}/bids/rated` | `{"bids":[{"ID","Bid":{"Id","Provider","ModelAgentId","PricePerSecond","Nonce","CreatedAt","DeletedAt"},"Score"}]}`, best first; the four Bid numbers are decimal strings; unknown model → `{"bids":[]}` |
//! | `GET /blockchain/bids/{id}` | `{"bid":{…}}`; unknown → 500 `bid not found` |
//! | `POST /blockchain/approve?spender=0x…&amount=N` | `{"tx":"0x…"}` |
//! | `POST /blockchain/models/{id}/session` `{"sessionDuration":600,"directPayment":false,"failover":false}` | `{"sessionID":"0x…"}` on the best-scored bid; unknown/deleted model → 500 `no provider accepting session` |
//! | `POST /blockchain/bids/{id}/session` `{"sessionDuration":600}` | `{"sessionID":"0x…"}` |
//! | `GET /blockchain/sessions/{id}` | `{"session":{"Id","User","Provider","ModelAgentId","BidID","Stake","PricePerSecond","CloseoutReceipt","CloseoutType","ProviderWithdrawnAmount","OpenedAt","EndsAt","ClosedAt"}}`, all numbers plain JSON numbers |
//! | `GET /blockchain/sessions/user?user=0x…&offset=0&limit=10&order=desc` | `{"sessions":[…]}` |
//! | `POST /blockchain/sessions/{id}/close` | `{"tx":"0x…"}`; 500 `session not found` / `session already closed` |
//! | `POST /v1/chat/completions` + header `session_id` | OpenAI chat completion, JSON or SSE |
//!
//! Sessions expire on the simulator's *chain clock*, which [`SimHandle::advance_clock`] (or
//! `POST /__sim/clock/advance`) moves forward without waiting.
//!
//! ## The chat "model"
//!
//! The answer is `Echo:` followed by the words of the last user message (its string content,
//! or its `text` parts), joined by single spaces and cut to `max_tokens` words (then
//! `finish_reason` is `length`). A token is a whitespace-separated word: `prompt_tokens` counts
//! the words of all messages. `n` gives that many identical choices. The `id` is `chatcmpl-` +
//! 16 hex of a hash of the last user message, so concurrent requests with different messages
//! can be told apart chunk by chunk. With `tools`, unless `tool_choice` is `"none"`, the answer
//! is a call to the function `tool_choice` names (or, for `"required"`, the first tool), or to
//! the first tool whose name appears in the last user message, with arguments
//! `{"query":"<last user text>"}` and `finish_reason` `tool_calls`.
//!
//! Streams (`"stream":true`, `text/event-stream`) send a role chunk, one chunk per word (every
//! word but the last with its trailing space, so the deltas concatenate to the JSON answer's
//! content) or the tool-call deltas, a chunk with `finish_reason`, a final chunk with
//! `"choices":[]` and `usage`, and `data: [DONE]` only when [`SimConfig::done_marker`] is set:
//! the 2025 proxy-router did not send it. Events are `chunk_delay` apart.
//!
//! ## Faults and control surface
//!
//! Faults ([`Fault`], [`FaultKind`]) are installed with [`SimHandle::set_fault`] or over HTTP;
//! the newest matching fault applies first, `times: Some(n)` limits it to the next `n`
//! matching requests. The control surface needs no auth and is never faulted or counted:
//!
//! ```text
//! POST   /__sim/faults         {"route":"chat","kind":{"type":"stall_after_chunks","chunks":3},"times":1}
//! GET    /__sim/faults         installed faults
//! DELETE /__sim/faults         clear all faults
//! GET    /__sim/counters       Counters as JSON
//! GET    /__sim/clock          {"now":<chain unix seconds>}
//! POST   /__sim/clock/advance  {"seconds":3600}
//! POST   /__sim/chunk-delay    {"ms":50}
//! ```
//!
//! Routes in faults: `chat`, `open_session`, `close_session`, `get_session`, `models`,
//! `rated_bids`, `approve`, `any`. Kinds (`"type"`): `latency {ms}`, `status {status, body,
//! content_type?}`, `reset`, `stall_before_first_byte`, `stall_after_chunks {chunks}`,
//! `cut_after_chunks {chunks}`, `garbage_after_chunks {chunks}`, `reset_after_chunks {chunks}`,
//! `redirect {location}`, `huge_body {bytes}`, `wrong_content_type`, `huge_headers {bytes}`,
//! `bad_usage`, `drip_chunks {every_ms}`.
//!
//! ## Binary
//!
//! `morpheus-router-sim --bind 127.0.0.1:8082 [--user U] [--password P] [--chunk-delay-ms N]
//! [--done-marker]` prints `morpheus-router-sim listening on http://ADDR` and serves until
//! SIGINT/SIGTERM. Nothing is logged per request, so it can serve as a benchmark baseline.

mod auth;
mod body;
mod catalog;
mod chat;
mod config;
mod conn;
mod counters;
mod faults;
mod handler;
mod ids;
mod reply;
mod routes;
mod server;
mod sessions;
mod state;
mod stream;

pub use config::{DEFAULT_WALLET, LLAMA_MODEL_ID, SimBid, SimConfig, SimModel, default_models};
pub use counters::Counters;
pub use faults::{Fault, FaultKind, FaultRoute};
pub use server::{SimHandle, Simulator};
