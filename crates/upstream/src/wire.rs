//! The proxy-router's JSON, exactly as it is on the wire (§5.2 of the behaviour notes), and its
//! conversion into domain types. Nothing here is public: callers only see domain types.
//!
//! Entities have PascalCase fields (Go structs without JSON tags); wrappers use lowercase keys.
//! Lists are read entry by entry so one odd entry is skipped (and logged) instead of hiding
//! every other one.

use morpheus_domain::{
    Bid, BidId, EthAddress, MarketModel, ModelId, ModelType, RatedBid, SessionId, SessionTerms,
    TxHash, UpstreamSession, WalletBalance,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::numbers::{big_u64, big_uint};
use crate::sanitize::sanitize;

type Raw = Box<RawValue>;

fn shape_error(what: &str, e: &serde_json::Error) -> String {
    format!("unexpected {what}: {}", sanitize(&e.to_string()))
}

/// Reads `{"<key>":[…]}`; a `null` list (Go's nil slice) is empty.
fn list<'a>(body: &'a [u8], key: &str, what: &str) -> Result<Vec<&'a RawValue>, String> {
    let mut map: std::collections::HashMap<String, &'a RawValue> =
        serde_json::from_slice(body).map_err(|e| shape_error(what, &e))?;
    let raw = map
        .remove(key)
        .ok_or_else(|| format!("unexpected {what}: no \"{key}\" member"))?;
    let items: Option<Vec<&'a RawValue>> =
        serde_json::from_str(raw.get()).map_err(|e| shape_error(what, &e))?;
    Ok(items.unwrap_or_default())
}

fn entries<T>(
    items: Vec<&RawValue>,
    what: &str,
    convert: impl Fn(&RawValue) -> Result<T, String>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match convert(item) {
            Ok(v) => out.push(v),
            Err(why) => {
                tracing::warn!(what, %why, "skipping an unreadable entry from the proxy-router")
            }
        }
    }
    out
}

// ---------------------------------------------------------------- models

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireModel {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    created_at: Option<Raw>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    is_deleted: Option<bool>,
    /// Newer nodes (and feeds) say it; older ones leave it to the tags.
    #[serde(default)]
    model_type: Option<String>,
}

pub(crate) fn models(body: &[u8]) -> Result<Vec<MarketModel>, String> {
    let items = list(body, "models", "model list")?;
    Ok(entries(items, "model", |raw| {
        let m: WireModel = serde_json::from_str(raw.get()).map_err(|e| shape_error("model", &e))?;
        let created_at = match &m.created_at {
            Some(raw) => crate::numbers::parse_big_uint(raw.get())
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or("model CreatedAt is not a timestamp")?,
            None => 0,
        };
        let tags = m.tags.unwrap_or_default();
        let model_type = m
            .model_type
            .as_deref()
            .and_then(ModelType::parse)
            .filter(|t| *t != ModelType::Unknown)
            .unwrap_or_else(|| ModelType::from_tags(&tags));
        Ok(MarketModel {
            id: ModelId::parse(&m.id).map_err(|e| e.message)?,
            name: m
                .name
                .filter(|n| !n.is_empty())
                .ok_or("model without a name")?,
            tags,
            created_at,
            owner: m.owner.unwrap_or_default(),
            is_deleted: m.is_deleted.unwrap_or(false),
            model_type,
        })
    }))
}

// ---------------------------------------------------------------- bids

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireBid {
    id: String,
    provider: String,
    model_agent_id: String,
    #[serde(deserialize_with = "big_uint")]
    price_per_second: u128,
    #[serde(deserialize_with = "big_uint")]
    nonce: u128,
    #[serde(deserialize_with = "big_uint")]
    created_at: u128,
    #[serde(deserialize_with = "big_uint")]
    deleted_at: u128,
}

#[derive(Deserialize)]
struct WireScoredBid {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Bid")]
    bid: WireBid,
    #[serde(rename = "Score")]
    score: f64,
}

pub(crate) fn rated_bids(body: &[u8]) -> Result<Vec<RatedBid>, String> {
    let items = list(body, "bids", "bid list")?;
    Ok(entries(items, "rated bid", |raw| {
        let s: WireScoredBid =
            serde_json::from_str(raw.get()).map_err(|e| shape_error("rated bid", &e))?;
        Ok(RatedBid {
            id: BidId::parse(&s.id).map_err(|e| e.message)?,
            bid: s.bid.into_bid()?,
            score: s.score,
        })
    }))
}

impl WireBid {
    fn into_bid(self) -> Result<Bid, String> {
        Ok(Bid {
            id: BidId::parse(&self.id).map_err(|e| e.message)?,
            provider: self.provider,
            model_agent_id: self.model_agent_id,
            price_per_second: self.price_per_second,
            nonce: self.nonce,
            created_at: self.created_at,
            deleted_at: self.deleted_at,
        })
    }
}

/// `{"bid":{Bid}}`: `None` for the zero bid the chain returns for an id it does not know
/// (`repositories/registries/marketplace.go:112-118`) and for a deleted bid.
pub(crate) fn bid(body: &[u8]) -> Result<Option<Bid>, String> {
    #[derive(Deserialize)]
    struct Envelope {
        bid: WireBid,
    }
    let b = serde_json::from_slice::<Envelope>(body)
        .map_err(|e| shape_error("bid answer", &e))?
        .bid;
    let zero = b
        .provider
        .trim_start_matches("0x")
        .bytes()
        .all(|c| c == b'0');
    if zero || b.deleted_at != 0 {
        return Ok(None);
    }
    b.into_bid().map(Some)
}

// ---------------------------------------------------------------- sessions

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireSession {
    id: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model_agent_id: String,
    #[serde(rename = "BidID", default)]
    bid_id: String,
    #[serde(deserialize_with = "big_uint")]
    stake: u128,
    #[serde(deserialize_with = "big_uint")]
    price_per_second: u128,
    #[serde(deserialize_with = "big_u64")]
    opened_at: u64,
    #[serde(deserialize_with = "big_u64")]
    ends_at: u64,
    #[serde(deserialize_with = "big_u64")]
    closed_at: u64,
}

fn session_from(raw: &str) -> Result<UpstreamSession, String> {
    let s: WireSession = serde_json::from_str(raw).map_err(|e| shape_error("session", &e))?;
    Ok(UpstreamSession {
        id: SessionId::parse(&s.id).map_err(|e| e.message)?,
        user: s.user,
        provider: s.provider,
        model_agent_id: s.model_agent_id,
        bid_id: s.bid_id,
        stake: s.stake,
        price_per_second: s.price_per_second,
        opened_at: s.opened_at,
        ends_at: s.ends_at,
        closed_at: s.closed_at,
    })
}

/// `{"session":{Session}}`.
pub(crate) fn session(body: &[u8]) -> Result<UpstreamSession, String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        session: &'a RawValue,
    }
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| shape_error("session answer", &e))?;
    session_from(env.session.get())
}

/// `{"sessions":[Session…]}`.
pub(crate) fn sessions(body: &[u8]) -> Result<Vec<UpstreamSession>, String> {
    let items = list(body, "sessions", "session list")?;
    Ok(entries(items, "session", |raw| session_from(raw.get())))
}

// ---------------------------------------------------------------- small answers

/// `{"sessionID":"0x…"}`.
pub(crate) fn session_opened(body: &[u8]) -> Result<SessionId, String> {
    #[derive(Deserialize)]
    struct Opened {
        #[serde(rename = "sessionID")]
        session_id: String,
    }
    let o: Opened = serde_json::from_slice(body).map_err(|e| shape_error("open answer", &e))?;
    SessionId::parse(&o.session_id).map_err(|e| e.message)
}

/// `{"tx":"0x…"}`.
pub(crate) fn tx(body: &[u8]) -> Result<TxHash, String> {
    #[derive(Deserialize)]
    struct Tx {
        tx: String,
    }
    let t: Tx = serde_json::from_slice(body).map_err(|e| shape_error("transaction answer", &e))?;
    TxHash::parse(&t.tx).map_err(|e| e.message)
}

/// `{"address":"0x…"}`.
pub(crate) fn wallet(body: &[u8]) -> Result<EthAddress, String> {
    #[derive(Deserialize)]
    struct Wallet {
        address: String,
    }
    let w: Wallet = serde_json::from_slice(body).map_err(|e| shape_error("wallet answer", &e))?;
    EthAddress::parse(&w.address).map_err(|e| e.message)
}

/// `{"eth":"…","mor":"…"}`: `structs.TokenBalanceRes` (`blockchainapi/structs/res.go:56-59`),
/// whose `lib.BigInt` members marshal as quoted decimal strings (`lib/bigint.go:29-31`); bare
/// numbers are read too.
pub(crate) fn balance(body: &[u8]) -> Result<WalletBalance, String> {
    #[derive(Deserialize)]
    struct Balance {
        #[serde(deserialize_with = "big_uint")]
        eth: u128,
        #[serde(deserialize_with = "big_uint")]
        mor: u128,
    }
    let b: Balance = serde_json::from_slice(body).map_err(|e| shape_error("balance answer", &e))?;
    Ok(WalletBalance {
        eth: b.eth,
        mor: b.mor,
    })
}

// ---------------------------------------------------------------- request bodies

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenModelSession {
    session_duration: u32,
    direct_payment: bool,
    failover: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenBidSession {
    session_duration: u32,
}

pub(crate) fn open_model_body(terms: SessionTerms) -> Vec<u8> {
    serde_json::to_vec(&OpenModelSession {
        session_duration: terms.duration.seconds(),
        direct_payment: terms.direct_payment,
        failover: terms.failover,
    })
    .unwrap_or_default()
}

pub(crate) fn open_bid_body(terms: SessionTerms) -> Vec<u8> {
    serde_json::to_vec(&OpenBidSession {
        session_duration: terms.duration.seconds(),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        format!("0x{}", c.to_string().repeat(64))
    }

    #[test]
    fn the_balance_is_read_from_strings_or_numbers() {
        let read = balance(br#"{"mor":"15000000000000000000000","eth":"10000000000000000"}"#);
        assert_eq!(
            read,
            Ok(WalletBalance {
                eth: 10_000_000_000_000_000,
                mor: 15_000_000_000_000_000_000_000
            })
        );
        assert_eq!(balance(br#"{"mor":7,"eth":0}"#).map(|b| b.mor), Ok(7));
        assert!(balance(br#"{"mor":"-1","eth":"0"}"#).is_err());
        assert!(balance(br#"{"eth":"1"}"#).is_err());
    }

    #[test]
    fn the_zero_bid_and_a_deleted_bid_are_no_bid() {
        let answer = |provider: &str, deleted: u64| {
            format!(
                r#"{{"bid":{{"Id":"{}","Provider":"{provider}","ModelAgentId":"{}","PricePerSecond":"10","Nonce":"0","CreatedAt":"1","DeletedAt":"{deleted}"}}}}"#,
                h('a'),
                h('b')
            )
        };
        let zero = format!("0x{}", "0".repeat(40));
        let live = format!("0x{}", "c".repeat(40));
        assert_eq!(bid(answer(&zero, 0).as_bytes()), Ok(None));
        assert_eq!(bid(answer(&live, 7).as_bytes()), Ok(None));
        let found = bid(answer(&live, 0).as_bytes()).unwrap().unwrap();
        assert_eq!((found.provider, found.price_per_second), (live, 10));
        assert!(bid(b"{}").is_err());
    }

    #[test]
    fn models_are_read_and_odd_entries_skipped() {
        let body = format!(
            r#"{{"models":[
              {{"Id":"{}","IpfsCID":"{}","Fee":123456789012345678901234567890,"Stake":1,"Owner":"0x{}","Name":"llama","Tags":["LLM","Default"],"CreatedAt":1717000000,"IsDeleted":false,"ModelType":"LLM"}},
              {{"Id":"{}","Name":"old","Tags":null,"CreatedAt":"1700000000","IsDeleted":true}},
              {{"Id":"not-an-id","Name":"bad"}},
              {{"Id":"{}","Name":""}}
            ],"total":4}}"#,
            h('A'),
            h('b'),
            "c".repeat(40),
            h('d'),
            h('e')
        );
        let models = models(body.as_bytes()).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].id.as_str(), h('a'));
        assert_eq!(models[0].name, "llama");
        assert_eq!(models[0].tags, vec!["LLM", "Default"]);
        assert_eq!(models[0].created_at, 1_717_000_000);
        assert!(!models[0].is_deleted);
        assert!(models[1].is_deleted && models[1].tags.is_empty());
        assert_eq!(models[1].created_at, 1_700_000_000);
        assert_eq!(self::models(br#"{"models":null}"#).unwrap(), vec![]);
        assert!(self::models(br#"{"data":[]}"#).is_err());
        assert!(self::models(b"[]").is_err());
    }

    #[test]
    fn bid_numbers_are_decimal_strings_or_numbers() {
        let body = format!(
            r#"{{"bids":[{{"ID":"{id}","Bid":{{"Id":"{id}","Provider":"0xAbC0000000000000000000000000000000000001","ModelAgentId":"{m}","PricePerSecond":"340282366920938463463374607431768211455","Nonce":"0","CreatedAt":1717000000,"DeletedAt":"0"}},"Score":0.75}}]}}"#,
            id = h('1'),
            m = h('2')
        );
        let bids = rated_bids(body.as_bytes()).unwrap();
        assert_eq!(bids.len(), 1);
        let b = &bids[0];
        assert_eq!(b.bid.price_per_second, u128::MAX);
        assert_eq!(b.bid.created_at, 1_717_000_000);
        assert_eq!(b.score, 0.75);
        assert_eq!(b.bid.provider, "0xAbC0000000000000000000000000000000000001");
    }

    fn session_json(id: &str, stake: &str) -> String {
        format!(
            r#"{{"Id":"{id}","User":"0x{u}","Provider":"0x{p}","ModelAgentId":"{m}","BidID":"{b}","Stake":{stake},"PricePerSecond":18446744073709551616,"CloseoutReceipt":"","CloseoutType":0,"ProviderWithdrawnAmount":0,"OpenedAt":1717000000,"EndsAt":1717003600,"ClosedAt":0}}"#,
            u = "1".repeat(40),
            p = "2".repeat(40),
            m = h('3'),
            b = h('4')
        )
    }

    #[test]
    fn session_numbers_beyond_u64_are_exact() {
        let body = format!(
            r#"{{"session":{}}}"#,
            session_json(&h('5'), "123456789012345678901234567890")
        );
        let s = session(body.as_bytes()).unwrap();
        assert_eq!(s.stake, 123_456_789_012_345_678_901_234_567_890);
        assert_eq!(s.price_per_second, 1u128 << 64);
        assert_eq!(
            (s.opened_at, s.ends_at, s.closed_at),
            (1_717_000_000, 1_717_003_600, 0)
        );
        assert_eq!(s.model_agent_id, h('3'));
        assert_eq!(s.bid_id, h('4'));
        assert!(!s.is_closed());
        let bad = format!(r#"{{"session":{}}}"#, session_json(&h('5'), "-1"));
        assert!(session(bad.as_bytes()).is_err());
    }

    #[test]
    fn session_lists_skip_unreadable_entries() {
        let body = format!(
            r#"{{"sessions":[{},{},{{"Id":"x"}}]}}"#,
            session_json(&h('6'), "1"),
            session_json(&h('7'), "1.5")
        );
        let list = sessions(body.as_bytes()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id.as_str(), h('6'));
    }

    #[test]
    fn small_answers_are_checked() {
        let id = h('8');
        assert_eq!(
            session_opened(format!(r#"{{"sessionID":"{id}"}}"#).as_bytes())
                .unwrap()
                .as_str(),
            id
        );
        assert!(session_opened(br#"{"sessionID":"0x12"}"#).is_err());
        assert!(tx(format!(r#"{{"tx":"{id}"}}"#).as_bytes()).is_ok());
        assert!(tx(br#"{"tx":null}"#).is_err());
        let addr = format!("0x{}", "a".repeat(40));
        assert_eq!(
            wallet(format!(r#"{{"address":"{addr}"}}"#).as_bytes())
                .unwrap()
                .as_str(),
            addr
        );
        assert!(wallet(br#"{"address":"0x1"}"#).is_err());
    }

    #[test]
    fn open_bodies_match_the_node() {
        let terms = SessionTerms {
            duration: morpheus_domain::SessionDuration::parse(600).unwrap(),
            direct_payment: true,
            failover: false,
        };
        assert_eq!(
            String::from_utf8(open_model_body(terms)).unwrap(),
            r#"{"sessionDuration":600,"directPayment":true,"failover":false}"#
        );
        assert_eq!(
            String::from_utf8(open_bid_body(terms)).unwrap(),
            r#"{"sessionDuration":600}"#
        );
    }
}
