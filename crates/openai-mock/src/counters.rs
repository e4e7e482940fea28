//! What the mock saw, for assertions and the benchmark.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// A snapshot of the counters ([`MockHandle::counters`](crate::MockHandle::counters),
/// `GET /__mock/counters`). The `/__mock/*` control surface is never counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every request outside `/__mock/*`: faulted, refused and unknown paths included.
    pub requests: u64,
    /// `POST /v1/chat/completions`, failed ones included.
    pub chat_completions: u64,
    /// `POST /v1/embeddings`, failed ones included.
    pub embeddings: u64,
    /// `GET /v1/models` and `GET /v1/models/{id}`.
    pub models: u64,
    /// `POST /v1/audio/speech`, failed ones included.
    pub speech: u64,
    /// `POST /v1/audio/transcriptions`, failed ones included.
    pub transcriptions: u64,
    /// Bytes of the `file` parts of transcription uploads read to their end.
    pub upload_bytes: u64,
    /// Requests without the configured bearer key (401).
    pub unauthorized: u64,
    /// Requests a fault applied to (a request can meet two: a head fault and a stream fault).
    pub faults_fired: u64,
    /// Streams whose head was sent: chat and transcription streams, speech bodies (sent in
    /// pieces, so the stream faults apply to them too).
    pub streams_started: u64,
    /// Streams produced to their end (`data: [DONE]`, `transcript.text.done`, the last audio
    /// piece).
    pub streams_completed: u64,
    /// Streams a `cut_after_chunks` fault ended by closing the connection.
    pub streams_cut: u64,
    /// Streams a `stall_after_chunks` fault froze.
    pub streams_stalled: u64,
    /// Streams whose client went away before they ended.
    pub streams_cancelled: u64,
}

/// The live counters: relaxed atomics.
#[derive(Default)]
pub(crate) struct CounterCells {
    pub requests: AtomicU64,
    pub chat_completions: AtomicU64,
    pub embeddings: AtomicU64,
    pub models: AtomicU64,
    pub speech: AtomicU64,
    pub transcriptions: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub unauthorized: AtomicU64,
    pub faults_fired: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cut: AtomicU64,
    pub streams_stalled: AtomicU64,
    pub streams_cancelled: AtomicU64,
}

pub(crate) fn bump(cell: &AtomicU64) {
    cell.fetch_add(1, Relaxed);
}

pub(crate) fn bump_by(cell: &AtomicU64, n: u64) {
    cell.fetch_add(n, Relaxed);
}

impl CounterCells {
    pub fn snapshot(&self) -> Counters {
        Counters {
            requests: self.requests.load(Relaxed),
            chat_completions: self.chat_completions.load(Relaxed),
            embeddings: self.embeddings.load(Relaxed),
            models: self.models.load(Relaxed),
            speech: self.speech.load(Relaxed),
            transcriptions: self.transcriptions.load(Relaxed),
            upload_bytes: self.upload_bytes.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            faults_fired: self.faults_fired.load(Relaxed),
            streams_started: self.streams_started.load(Relaxed),
            streams_completed: self.streams_completed.load(Relaxed),
            streams_cut: self.streams_cut.load(Relaxed),
            streams_stalled: self.streams_stalled.load(Relaxed),
            streams_cancelled: self.streams_cancelled.load(Relaxed),
        }
    }
}
