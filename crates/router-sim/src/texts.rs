//! The proxy-router's error texts, word for word, with where each comes from. Paths are relative
//! to `proxy-router/internal/` of `MorpheusAIs/Morpheus-Lumerin-Node` at `main` 04e6c425 unless
//! they say otherwise; `reference §x` is `proxy-router-behaviour.md`.

/// No session with that id on chain — and, because the node maps *every* session read error to
/// it, also what a chain RPC blip looks like (`proxyapi/proxy_sender.go:533-535`,
/// `repositories/registries/session_router.go:118-119`; reference §2.6).
pub(crate) const SESSION_NOT_FOUND: &str = "session not found";

/// Closing a session the node cannot read: the provider's report fails, then the user's own
/// report fails on the same read (`blockchainapi/service.go:666-673`,
/// `proxyapi/proxy_sender.go:276-279`).
pub(crate) const CLOSE_SESSION_NOT_FOUND: &str =
    "failed to get session report from user: session not found";

/// Closing a closed session: the close transaction cannot even be built, the contract reverts
/// with `SessionAlreadyClosed` (`smart-contracts/…/facets/SessionRouter.sol:220`, decoded by
/// `lib/ethclient.go:40-42`, wrapped at `blockchainapi/service.go:693-696` and
/// `lib/tx_escalator.go:192-195`).
pub(crate) const CLOSE_ALREADY_CLOSED: &str = "failed to send transaction: close session failed: \
     failed to build transaction: EVM error: SessionAlreadyClosed() []";

/// The consumer's own expiry check never fires (it adds 5e9 s, `proxy_sender.go:538-540`), so an
/// expired session is refused by the provider, whose text comes back wrapped
/// (`proxyapi/controller_morrpc.go:640-650`, `proxy_sender.go:833-843,685-687`; reference §2.6).
pub(crate) const SESSION_EXPIRED: &str = "provider request failed: provider error: session expired";

/// Opening with a duration under the contract's `MIN_SESSION_DURATION` (5 minutes,
/// `smart-contracts/contracts/diamond/storages/SessionStorage.sol:34`): `_validateSession`
/// reverts with `SessionTooShort` (`facets/SessionRouter.sol:147-149`) while the node builds the
/// open transaction (`blockchainapi/service.go:398-409`, `lib/tx_escalator.go:192-195`,
/// `lib/ethclient.go:40-42`).
pub(crate) const SESSION_TOO_SHORT: &str = "failed to send transaction: open session failed: \
     failed to build transaction: EVM error: SessionTooShort() []";

/// The contract's minimum session duration, seconds (`SessionStorage.sol:34`).
pub const MIN_SESSION_SECONDS: u64 = 300;

/// An unknown or deleted model, or one without bids (`blockchainapi/service.go:97,1143-1145`).
pub(crate) const NO_BIDS: &str = "no bids available";

/// An unknown bid is read from chain as a zeroed bid whose provider has no endpoint, so the
/// handshake dials "" (`repositories/registries/marketplace.go:112-118`,
/// `blockchainapi/service.go:1279-1281`, `proxyapi/proxy_sender.go:165-168,477-481`).
pub(crate) const UNKNOWN_BID: &str = "failed to initiate session: provider request failed: \
     code: 500, msg: <nil>, error: failed to connect to provider: dial tcp: missing address";

/// A chat without a `session_id` header is taken for a local model whose id is the zero hash
/// (`aiengine/ai_engine.go:56-61`).
pub(crate) const NO_SESSION_HEADER: &str =
    "model not found: 0x0000000000000000000000000000000000000000000000000000000000000000";

/// The Basic-auth refusals (`system/auth.go:391-415`).
pub(crate) const NO_BASIC_AUTH: &str = "no basic auth provided";
pub(crate) const INVALID_BASIC_AUTH: &str = "invalid basic auth provided";
pub(crate) const WRONG_CREDENTIALS: &str = "invalid username or password";
pub(crate) const METHOD_NOT_ALLOWED: &str = "method not allowed";

/// The failover control messages (`proxyapi/proxy_sender.go:598,620`).
pub(crate) const FAILOVER_STARTED: &str = "provider failed, failover enabled";
pub(crate) const FAILOVER_OPENED: &str = "new session opened: ";

/// What a provider's backend failing mid-stream looks like to the consumer: the provider reports
/// its read error unencrypted (`proxy_sender.go:833-843`) and the node wraps it
/// (`proxy_sender.go:686`); the backend read error is `aiengine/openai.go:168-170`.
pub(crate) const MID_STREAM_ERROR: &str =
    "provider request failed: provider error: error reading stream: unexpected EOF";

/// A JSON-RPC provider's rate limit, as go-ethereum reports an HTTP error: what a chain read most
/// often fails with (no timeout word in it, so it cannot pass for one).
pub(crate) const RPC_RATE_LIMITED: &str = r#"429 Too Many Requests: {"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limit exceeded"}}"#;

/// The handshake with a provider that is down: its dial is refused
/// (`proxyapi/proxy_sender.go:165-168,477-481`, wrapped at `blockchainapi/service.go:1279-1281`).
pub(crate) const HANDSHAKE_REFUSED: &str = "failed to initiate session: provider request failed: \
     code: 500, msg: <nil>, error: failed to connect to provider: \
     dial tcp 203.0.113.7:3333: connect: connection refused";
