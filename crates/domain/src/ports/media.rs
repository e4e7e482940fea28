//! What the audio routes send and receive: a transcription's upload (a file and the form's
//! other fields, sent as multipart) and an answer relayed as bytes (speech audio, a transcript
//! in the format asked for, or transcription events).

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_core::Stream;

use super::MarketplaceError;
use crate::model::ReportedUsage;

/// The bytes of an uploaded file, from its start.
pub type UploadStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Where an upload's bytes come from. The HTTP layer implements it (today a spool file, which
/// can be read again); a source readable only once (a live pipe from the client) says so, and a
/// failed attempt is then not sent again elsewhere.
pub trait UploadSource: Send + Sync {
    /// The file from its start; `None` once a source that can be read only once has been.
    fn open(&self) -> Option<UploadStream>;
    /// Whether [`open`](Self::open) would still give the whole file.
    fn can_send(&self) -> bool;
}

/// A transcription's form as it goes upstream: the file, and the other fields in order.
#[derive(Clone)]
pub struct Upload {
    /// Name, value: the fields the gateway forwards (already checked).
    pub fields: Vec<(String, String)>,
    /// The name the file is sent under: unique per request (the node stores an upload in a
    /// file named after it), keeping the client's extension, which backends read the format
    /// from.
    pub file_name: String,
    pub content_type: String,
    /// The file's length, when known before it is sent.
    pub length: Option<u64>,
    pub source: Arc<dyn UploadSource>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("fields", &self.fields)
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// An answer relayed as bytes, in pieces as they come.
pub type MediaStream = Pin<Box<dyn Stream<Item = Result<Bytes, MarketplaceError>> + Send>>;

/// A successful answer of an audio route.
pub struct MediaReply {
    /// As the upstream labelled it (`audio/mpeg`, `application/json`, `text/plain`,
    /// `text/event-stream`, …).
    pub content_type: String,
    pub body: MediaStream,
    /// What the upstream reported using, when its answer said (a whole transcript's
    /// `usage.seconds` or `duration`).
    pub usage: Option<ReportedUsage>,
}
