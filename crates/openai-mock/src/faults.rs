//! Injected misbehaviour: what can go wrong between the gateway and a provider.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One injected fault. JSON form (`POST /__mock/faults`), flat:
/// `{"kind":"status","status":503,"retry_after":2,"times":2}`,
/// `{"kind":"cut_after_chunks","chunks":3}`, `{"kind":"refuse","route":"chat"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many matching requests (streams, for the stream kinds) it applies to. Default 1.
    #[serde(default = "one")]
    pub times: u32,
    /// Which requests it applies to. Default: any `/v1/*` route.
    #[serde(default)]
    pub route: FaultRoute,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// `kind` on the next request (or stream) of any route.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            times: 1,
            route: FaultRoute::Any,
        }
    }

    /// Applies to the next `n` matching requests instead of one.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Applies to `route` only.
    #[must_use]
    pub fn on(mut self, route: FaultRoute) -> Self {
        self.route = route;
        self
    }
}

/// What happens to a matching request. JSON: tagged by `kind`, snake_case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with an OpenAI error body (before auth, as a load balancer or an
    /// overloaded server would), and `Retry-After: <retry_after>` when set.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Streams only (a chat or transcription stream, a speech body): send the lead-in (a chat
    /// stream's role chunk) and `chunks` answer chunks (speech: 8 KiB audio pieces), then close
    /// the connection without ending the chunked body: no finish reason, no `[DONE]`, no
    /// `transcript.text.done`, never the last audio piece.
    CutAfterChunks { chunks: u32 },
    /// Streams only, like `cut_after_chunks`: send the lead-in and `chunks` answer chunks,
    /// then send nothing more, keeping the connection open until the client goes away.
    StallAfterChunks { chunks: u32 },
    /// Read the request, then close the connection without an answer.
    Refuse,
    /// Wait `ms` milliseconds before the answer's head, then answer normally.
    DelayMs { ms: u64 },
}

impl FaultKind {
    /// Shapes a stream's body rather than the request's answer.
    fn is_stream_fault(&self) -> bool {
        matches!(
            self,
            Self::CutAfterChunks { .. } | Self::StallAfterChunks { .. }
        )
    }
}

/// The routes a fault can be limited to. JSON: snake_case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRoute {
    #[default]
    Any,
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `GET /v1/models` and `GET /v1/models/{id}`.
    Models,
    /// `POST /v1/audio/speech`.
    Speech,
    /// `POST /v1/audio/transcriptions`.
    Transcription,
}

/// When in a request's life a fault is looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Before auth and routing: `status`, `refuse`, `delay_ms`.
    Head,
    /// When a stream (chat, transcription, speech body) starts: `cut_after_chunks`,
    /// `stall_after_chunks`.
    Stream,
}

/// The installed faults; the newest matching one applies first.
#[derive(Default)]
pub(crate) struct FaultTable {
    list: Mutex<Vec<Fault>>,
}

impl FaultTable {
    /// `times: 0` installs nothing.
    pub fn set(&self, fault: Fault) {
        if fault.times > 0 {
            self.lock().push(fault);
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn list(&self) -> Vec<Fault> {
        self.lock().clone()
    }

    /// The fault for one request of `route` at `stage`, using up one of its `times`.
    pub fn take(&self, route: FaultRoute, stage: Stage) -> Option<FaultKind> {
        let mut list = self.lock();
        let idx = list.iter().rposition(|f| {
            (f.route == FaultRoute::Any || f.route == route)
                && f.kind.is_stream_fault() == (stage == Stage::Stream)
        })?;
        let fault = &mut list[idx];
        fault.times -= 1;
        if fault.times == 0 {
            Some(list.remove(idx).kind)
        } else {
            Some(fault.kind.clone())
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_are_flat() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"status","status":503,"retry_after":2,"times":2}"#)
                .unwrap();
        assert_eq!(
            f,
            Fault::new(FaultKind::Status {
                status: 503,
                retry_after: Some(2)
            })
            .times(2)
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"refuse","route":"chat"}"#).unwrap();
        assert_eq!(f, Fault::new(FaultKind::Refuse).on(FaultRoute::Chat));
        for (name, route) in [
            ("speech", FaultRoute::Speech),
            ("transcription", FaultRoute::Transcription),
        ] {
            let f: Fault =
                serde_json::from_str(&format!(r#"{{"kind":"refuse","route":"{name}"}}"#)).unwrap();
            assert_eq!(f.route, route);
        }
        assert_eq!(
            serde_json::to_value(Fault::new(FaultKind::CutAfterChunks { chunks: 3 })).unwrap(),
            serde_json::json!({"kind":"cut_after_chunks","chunks":3,"times":1,"route":"any"})
        );
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn newest_first_by_stage_and_times() {
        let t = FaultTable::default();
        t.set(Fault::new(FaultKind::Refuse).times(2));
        t.set(Fault::new(FaultKind::DelayMs { ms: 1 }).on(FaultRoute::Chat));
        t.set(Fault::new(FaultKind::CutAfterChunks { chunks: 1 }));
        let delay = Some(FaultKind::DelayMs { ms: 1 });
        assert_eq!(
            t.take(FaultRoute::Models, Stage::Head),
            Some(FaultKind::Refuse)
        );
        assert_eq!(t.take(FaultRoute::Chat, Stage::Head), delay);
        assert_eq!(
            t.take(FaultRoute::Chat, Stage::Stream),
            Some(FaultKind::CutAfterChunks { chunks: 1 })
        );
        assert_eq!(t.take(FaultRoute::Chat, Stage::Stream), None);
        assert_eq!(
            t.take(FaultRoute::Chat, Stage::Head),
            Some(FaultKind::Refuse)
        );
        assert_eq!(t.take(FaultRoute::Chat, Stage::Head), None);
        t.set(Fault::new(FaultKind::Refuse).times(0));
        assert!(t.list().is_empty());
    }
}
