//! Response bodies: a whole buffer, or a stream's events as a producer task hands them over.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Events(mpsc::Receiver<Event>),
}

/// What a stream's producer hands to the body.
pub(crate) enum Event {
    Data(Bytes),
    /// Fail the body: hyper then closes the connection without the chunked body's last chunk.
    Cut,
}

/// Why the mock dropped a connection on purpose (a `refuse` or `cut_after_chunks` fault).
#[derive(Debug)]
pub(crate) struct Aborted(pub &'static str);

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Aborted {}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        Poll::Ready(match self.get_mut() {
            Self::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Self::Events(rx) => match ready!(rx.poll_recv(cx)) {
                Some(Event::Data(b)) => Some(Ok(Frame::data(b))),
                Some(Event::Cut) => Some(Err(Aborted("stream cut by a fault"))),
                None => None,
            },
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            // Unknown length: chunked encoding, which a cut leaves unterminated.
            Self::Events(_) => SizeHint::default(),
        }
    }
}
