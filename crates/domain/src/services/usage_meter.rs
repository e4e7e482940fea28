//! Measures one chat request and leaves exactly one usage record, however the request ends —
//! including when the client goes away and the request's future or stream is dropped.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::{Admission, CreditHold, LimitStatus, SessionOwner};
use crate::model::*;
use crate::ports::UsageSink;

/// Status recorded for a client that left before an answer started ("client closed request").
pub const CLIENT_CLOSED_STATUS: u16 = 499;

pub struct UsageMeter {
    sink: Arc<dyn UsageSink>,
    owner: SessionOwner,
    started: Instant,
    stream: bool,
    model: Option<ModelId>,
    session: Option<SessionId>,
    /// Which upstream the request went to last (`marketplace` or a provider's name).
    upstream: Option<String>,
    usage: Option<ReportedUsage>,
    /// The status the client already has (200 once a stream has started).
    status: u16,
    finished: bool,
    /// The request's credit hold, settled or voided with the record.
    hold: Option<CreditHold>,
    /// The request's rate-limit and budget reservations, corrected with the record.
    admission: Option<Admission>,
    /// Generated text relayed to the client so far (raw JSON bytes).
    generated_bytes: u64,
    /// An answer that is not generated text (embeddings) was delivered.
    served: bool,
    /// What the legs before a mid-stream continuation used (their provider's count, else
    /// the text they delivered).
    carried: TokenUsage,
}

impl UsageMeter {
    pub fn start(sink: Arc<dyn UsageSink>, owner: SessionOwner, stream: bool) -> Self {
        Self {
            sink,
            owner,
            started: Instant::now(),
            stream,
            model: None,
            session: None,
            upstream: None,
            usage: None,
            status: CLIENT_CLOSED_STATUS,
            finished: false,
            hold: None,
            admission: None,
            generated_bytes: 0,
            served: false,
            carried: TokenUsage::default(),
        }
    }

    /// A continuation takes over a broken stream: what this leg used is carried into the
    /// record and the charge (its provider's count, else the text it delivered), and the next
    /// leg's count is added to it.
    pub fn start_next_leg(&mut self) {
        let leg = match self.usage.take() {
            Some(usage) => usage.tokens,
            None => TokenUsage {
                prompt_tokens: 0,
                completion_tokens: TokenEstimate::tokens_in_chars(
                    usize::try_from(self.generated_bytes).unwrap_or(usize::MAX),
                ),
            },
        };
        self.carried = add(self.carried, leg);
        self.generated_bytes = 0;
    }

    pub fn set_model(&mut self, model: ModelId) {
        self.model = Some(model);
    }

    pub fn set_session(&mut self, session: SessionId) {
        self.session = Some(session);
    }

    /// The upstream the request is sent to; a failover replaces it (and forgets the
    /// marketplace session when a provider takes over).
    pub fn set_upstream(&mut self, label: &str) {
        if label != "marketplace" {
            self.session = None;
        }
        if self.upstream.as_deref() != Some(label) {
            self.upstream = Some(label.to_owned());
        }
    }

    /// The provider's count; a later report replaces an earlier one (the final chunk of a
    /// stream carries the totals).
    pub fn set_usage(&mut self, usage: ReportedUsage) {
        self.usage = Some(usage);
    }

    /// The request's credit hold: settled on the usage the record carries when it is
    /// written, on the text delivered (marked estimated) when no usage came, voided when
    /// nothing was delivered.
    pub fn attach_hold(&mut self, hold: CreditHold) {
        self.hold = Some(hold);
    }

    /// The request's rate-limit and budget reservations: corrected to what it used when the
    /// record is written, given back when nothing was delivered.
    pub fn attach_admission(&mut self, admission: Admission) {
        self.admission = Some(admission);
    }

    /// The limits as the request's admission left them (for the `X-RateLimit-*` headers).
    pub fn limit_status(&self) -> LimitStatus {
        self.admission
            .as_ref()
            .map(Admission::status)
            .unwrap_or_default()
    }

    /// Whether the request holds credit (a cut stream is worth reading on to its count).
    pub fn holds_credit(&self) -> bool {
        self.hold.is_some()
    }

    /// Generated text that reached the client (see [`ChatEvent::generated_bytes`]).
    ///
    /// [`ChatEvent::generated_bytes`]: crate::ports::ChatEvent::generated_bytes
    pub fn add_generated(&mut self, bytes: u64) {
        self.generated_bytes = self.generated_bytes.saturating_add(bytes);
    }

    /// An answer without generated text (embeddings) reached the client: without the
    /// provider's count it is charged on the input estimate, marked estimated, not voided.
    pub fn served_input_only(&mut self) {
        self.served = true;
    }

    /// The response head has gone out with this status.
    pub fn responded(&mut self, status: u16) {
        self.status = status;
    }

    pub fn finish(mut self, outcome: UsageOutcome, status: u16) {
        self.status = status;
        self.emit(outcome);
    }

    fn emit(&mut self, outcome: UsageOutcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let carried = self.carried;
        let delivered = || {
            TokenEstimate::tokens_in_chars(
                usize::try_from(self.generated_bytes).unwrap_or(usize::MAX),
            )
            .saturating_add(carried.completion_tokens)
        };
        let used = self.usage.map(|u| add(u.tokens, carried));
        let nothing = self.generated_bytes == 0 && !self.served && carried == TokenUsage::default();
        if let Some(hold) = self.hold.take() {
            match used {
                Some(tokens) => hold.settle(tokens),
                None if nothing => hold.void("nothing was served"),
                None => hold.settle_estimated(delivered()),
            }
        }
        if let Some(admission) = self.admission.take() {
            match used {
                Some(tokens) => admission.settle(tokens),
                None if nothing => admission.release(),
                None => admission.settle_estimated(delivered()),
            }
        }
        let latency = self.started.elapsed().as_millis();
        self.sink.record(UsageRecord {
            user_id: self.owner.user,
            api_key_id: self.owner.key,
            model_id: self.model.take(),
            session_id: self.session.take(),
            upstream: self.upstream.take(),
            usage: used,
            usage_source: self.usage.map(|u| u.source),
            outcome,
            status: self.status,
            stream: self.stream,
            latency_ms: u32::try_from(latency).unwrap_or(u32::MAX),
            created_at: Utc::now(),
        });
    }
}

fn add(a: TokenUsage, b: TokenUsage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: a.prompt_tokens.saturating_add(b.prompt_tokens),
        completion_tokens: a.completion_tokens.saturating_add(b.completion_tokens),
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        self.emit(UsageOutcome::ClientClosed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<UsageRecord>>);

    impl UsageSink for Collect {
        fn record(&self, record: UsageRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    fn owner() -> SessionOwner {
        SessionOwner {
            key: ApiKeyId(1),
            user: UserId(2),
        }
    }

    #[test]
    fn a_continued_stream_records_both_legs() {
        let sink = Arc::new(Collect::default());
        let mut meter = UsageMeter::start(sink.clone(), owner(), true);
        // The first leg delivered 40 bytes of text and broke without a count.
        meter.add_generated(40);
        meter.start_next_leg();
        meter.set_usage(ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: 30,
                completion_tokens: 7,
            },
            source: UsageSource::Usage,
        });
        meter.finish(UsageOutcome::Completed, 200);
        let records = sink.0.lock().unwrap();
        assert_eq!(
            records[0].usage,
            Some(TokenUsage {
                prompt_tokens: 30,
                completion_tokens: 10 + 7,
            })
        );
    }

    #[test]
    fn a_finished_request_records_once() {
        let sink = Arc::new(Collect::default());
        let mut meter = UsageMeter::start(sink.clone(), owner(), false);
        meter.set_usage(ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 4,
            },
            source: UsageSource::UsageFromProvider,
        });
        meter.finish(UsageOutcome::Completed, 200);
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, UsageOutcome::Completed);
        assert_eq!(records[0].usage.unwrap().completion_tokens, 4);
        assert_eq!(
            records[0].usage_source,
            Some(UsageSource::UsageFromProvider)
        );
    }

    #[test]
    fn a_dropped_meter_records_the_client_leaving() {
        let sink = Arc::new(Collect::default());
        let mut meter = UsageMeter::start(sink.clone(), owner(), true);
        meter.responded(200);
        drop(meter);
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, UsageOutcome::ClientClosed);
        assert_eq!(records[0].status, 200);
    }
}
