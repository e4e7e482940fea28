//! Sessions opened on the simulated chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::faults::DeadReason;
use crate::gate::Gate;
use crate::rewrite::Forwarded;

pub(crate) struct SessionRec {
    pub id: String,
    pub user: String,
    pub provider: String,
    pub model_id: String,
    pub bid_id: String,
    /// The model's name, which chat answers report as `model`.
    pub model_name: Arc<str>,
    pub stake: u128,
    pub price_per_second: u128,
    pub opened_at: u64,
    pub ends_at: u64,
    /// 0 while open.
    pub closed_at: u64,
    /// Chain reads see the session only from then on (an open that failed after mining).
    pub visible_from: Option<Instant>,
    /// Opened with `failover: true` while the node honours it.
    pub failover: bool,
    /// Why the session stopped working for good, if it did.
    pub dead: Option<DeadReason>,
    /// The latest chat body as the provider received it.
    pub forwarded: Option<Arc<Forwarded>>,
    pub gate: Arc<Gate>,
}

/// A session as the proxy-router renders it: every number a plain JSON number, however large.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionOut<'a> {
    id: &'a str,
    user: &'a str,
    provider: &'a str,
    model_agent_id: &'a str,
    #[serde(rename = "BidID")]
    bid_id: &'a str,
    stake: u128,
    price_per_second: u128,
    closeout_receipt: &'static str,
    closeout_type: u8,
    provider_withdrawn_amount: u8,
    opened_at: u64,
    ends_at: u64,
    closed_at: u64,
}

impl SessionRec {
    /// Whether chain reads see the session yet.
    pub fn visible(&self) -> bool {
        self.visible_from.is_none_or(|t| Instant::now() >= t)
    }

    pub fn out(&self) -> SessionOut<'_> {
        SessionOut {
            id: &self.id,
            user: &self.user,
            provider: &self.provider,
            model_agent_id: &self.model_id,
            bid_id: &self.bid_id,
            stake: self.stake,
            price_per_second: self.price_per_second,
            closeout_receipt: "",
            closeout_type: 0,
            provider_withdrawn_amount: 0,
            opened_at: self.opened_at,
            ends_at: self.ends_at,
            closed_at: self.closed_at,
        }
    }
}

/// What a chat request needs to know about its session.
pub(crate) struct ChatSession {
    pub model_name: Arc<str>,
    pub model_id: String,
    pub provider: String,
    pub ends_at: u64,
    pub closed_at: u64,
    pub failover: bool,
    pub dead: Option<DeadReason>,
    pub gate: Arc<Gate>,
}

#[derive(Default)]
pub(crate) struct SessionBook {
    /// In opening order.
    list: Vec<SessionRec>,
    /// Lower-case id → index in `list`.
    index: HashMap<String, usize>,
}

impl SessionBook {
    pub fn insert(&mut self, rec: SessionRec) {
        self.index
            .insert(rec.id.to_ascii_lowercase(), self.list.len());
        self.list.push(rec);
    }

    /// A session chain reads can see.
    pub fn get(&self, id: &str) -> Option<&SessionRec> {
        self.get_any(id).filter(|s| s.visible())
    }

    /// A session, visible or not yet.
    pub fn get_any(&self, id: &str) -> Option<&SessionRec> {
        self.index
            .get(&id.to_ascii_lowercase())
            .map(|&i| &self.list[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut SessionRec> {
        self.index
            .get(&id.to_ascii_lowercase())
            .map(|&i| &mut self.list[i])
            .filter(|s| s.visible())
    }

    pub fn chat_view(&self, id: &str) -> Option<ChatSession> {
        self.get(id).map(|s| ChatSession {
            model_name: Arc::clone(&s.model_name),
            model_id: s.model_id.clone(),
            provider: s.provider.clone(),
            ends_at: s.ends_at,
            closed_at: s.closed_at,
            failover: s.failover,
            dead: s.dead,
            gate: Arc::clone(&s.gate),
        })
    }

    pub fn ids(&self) -> Vec<String> {
        self.list.iter().map(|s| s.id.clone()).collect()
    }

    /// Sessions of `user`, newest first when `newest_first`, then paged.
    pub fn of_user(
        &self,
        user: &str,
        newest_first: bool,
        offset: usize,
        limit: usize,
    ) -> Vec<&SessionRec> {
        let mine = self
            .list
            .iter()
            .filter(|s| s.visible() && s.user.eq_ignore_ascii_case(user));
        let paged: Vec<&SessionRec> = if newest_first {
            mine.rev().skip(offset).take(limit).collect()
        } else {
            mine.skip(offset).take(limit).collect()
        };
        paged
    }
}
