//! Measures one chat request and leaves exactly one usage record, however the request ends —
//! including when the client goes away and the request's future or stream is dropped.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::SessionOwner;
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
    usage: Option<ReportedUsage>,
    /// The status the client already has (200 once a stream has started).
    status: u16,
    finished: bool,
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
            usage: None,
            status: CLIENT_CLOSED_STATUS,
            finished: false,
        }
    }

    pub fn set_model(&mut self, model: ModelId) {
        self.model = Some(model);
    }

    pub fn set_session(&mut self, session: SessionId) {
        self.session = Some(session);
    }

    /// The provider's count; a later report replaces an earlier one (the final chunk of a
    /// stream carries the totals).
    pub fn set_usage(&mut self, usage: ReportedUsage) {
        self.usage = Some(usage);
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
        let latency = self.started.elapsed().as_millis();
        self.sink.record(UsageRecord {
            user_id: self.owner.user,
            api_key_id: self.owner.key,
            model_id: self.model.take(),
            session_id: self.session.take(),
            usage: self.usage.map(|u| u.tokens),
            usage_source: self.usage.map(|u| u.source),
            outcome,
            status: self.status,
            stream: self.stream,
            latency_ms: u32::try_from(latency).unwrap_or(u32::MAX),
            created_at: Utc::now(),
        });
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
