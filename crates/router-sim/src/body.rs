//! Response bodies: whole buffers on the fast path, lazily produced and fault-shaped streams
//! otherwise.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::conn::ConnCtl;
use crate::faults::FaultKind;
use crate::stream::{ChatSource, Outcome};

pub enum SimBody {
    Full(Option<Bytes>),
    Shaped(Box<Shaped>),
    Huge(HugeBody),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            Self::Full(b) => b.take(),
            Self::Shaped(s) => ready!(s.poll_chunk(cx)),
            Self::Huge(h) => h.next_piece(),
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Shaped(_) => false,
            Self::Huge(h) => h.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            // Unknown length: hyper sends chunked encoding, which the stall/cut faults need.
            Self::Shaped(_) => SizeHint::default(),
            Self::Huge(h) => SizeHint::with_exact(h.remaining()),
        }
    }
}

/// How a fault bends a body, counted in events (streams) or 64-byte pieces (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Plain,
    StallAfter(u32),
    CutAfter(u32),
    GarbageAfter(u32),
    ResetAfter(u32),
}

impl Shape {
    /// The body shape and pace override a fault asks for; `None` when it does not touch bodies.
    pub fn of(kind: Option<&FaultKind>) -> Option<(Self, Option<Duration>)> {
        Some(match kind? {
            FaultKind::StallAfterChunks { chunks } => (Self::StallAfter(*chunks), None),
            FaultKind::CutAfterChunks { chunks } => (Self::CutAfter(*chunks), None),
            FaultKind::GarbageAfterChunks { chunks } => (Self::GarbageAfter(*chunks), None),
            FaultKind::ResetAfterChunks { chunks } => (Self::ResetAfter(*chunks), None),
            FaultKind::DripChunks { every_ms } => {
                (Self::Plain, Some(Duration::from_millis(*every_ms)))
            }
            _ => return None,
        })
    }

    fn threshold(self) -> Option<u32> {
        match self {
            Self::Plain => None,
            Self::StallAfter(n)
            | Self::CutAfter(n)
            | Self::GarbageAfter(n)
            | Self::ResetAfter(n) => Some(n),
        }
    }
}

pub(crate) enum Source {
    Chat(Box<ChatSource>),
    Pieces {
        data: Bytes,
        pos: usize,
    },
    /// Audio chunks or transcription events, produced ahead and written one by one.
    Paced(Box<Paced>),
}

/// A body the "provider" relays piece by piece (speech audio, transcription deltas), holding the
/// session's turn until it is written out or dropped, as the node holds its semaphore while it
/// relays (`proxyapi/proxy_sender.go:1484-1487,1509-1511`).
pub(crate) struct Paced {
    pub chunks: std::collections::VecDeque<Bytes>,
    pub turn: Option<crate::gate::Turn>,
}

/// JSON bodies are cut into pieces this long when a chunk-counting fault applies to them.
const PIECE: usize = 64;

impl Source {
    fn next_chunk(&mut self) -> Option<Bytes> {
        match self {
            Self::Chat(c) => c.next_chunk(),
            Self::Paced(p) => {
                let next = p.chunks.pop_front();
                if next.is_none() {
                    p.turn.take();
                }
                next
            }
            Self::Pieces { data, pos } => {
                if *pos >= data.len() {
                    return None;
                }
                let end = (*pos + PIECE).min(data.len());
                let piece = data.slice(*pos..end);
                *pos = end;
                Some(piece)
            }
        }
    }

    fn end(&mut self, outcome: Outcome) {
        if let Self::Chat(c) = self {
            c.end(outcome);
        }
    }

    fn garbage(&self) -> &'static [u8] {
        match self {
            Self::Chat(_) => b"data: {not json\n\n",
            Self::Pieces { .. } | Self::Paced(_) => b"{not json",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Hang until the connection goes away.
    Stalled,
    /// Waiting for the sent events to leave the socket, then reset it.
    Resetting,
    Done,
}

/// Lets the last events reach the kernel before the reset discards the send queue.
const FLUSH_GRACE: Duration = Duration::from_millis(30);

pub struct Shaped {
    src: Source,
    shape: Shape,
    pace: Duration,
    sent: u32,
    phase: Phase,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A pacing pause is armed for the next event.
    waiting: bool,
    ctl: Arc<ConnCtl>,
}

impl Shaped {
    pub(crate) fn new(src: Source, shape: Shape, pace: Duration, ctl: Arc<ConnCtl>) -> Self {
        Self {
            src,
            shape,
            pace,
            sent: 0,
            phase: Phase::Running,
            sleep: None,
            waiting: false,
            ctl,
        }
    }

    fn arm(&mut self, after: Duration) {
        let deadline = Instant::now() + after;
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            match self.phase {
                Phase::Done => return Poll::Ready(None),
                // No waker is registered: nothing will ever wake this body; hyper drops it when
                // it sees the client close the connection.
                Phase::Stalled => return Poll::Pending,
                Phase::Resetting => {
                    ready!(self.poll_sleep(cx));
                    self.src.end(Outcome::Aborted);
                    self.ctl.reset();
                    self.phase = Phase::Stalled;
                    return Poll::Pending;
                }
                Phase::Running => {}
            }
            if let Some(k) = self.shape.threshold()
                && self.sent == k
            {
                let shape = std::mem::replace(&mut self.shape, Shape::Plain);
                match shape {
                    Shape::StallAfter(_) => self.phase = Phase::Stalled,
                    Shape::CutAfter(_) => {
                        self.src.end(Outcome::Completed);
                        self.phase = Phase::Done;
                    }
                    Shape::GarbageAfter(_) => {
                        return Poll::Ready(Some(Bytes::from_static(self.src.garbage())));
                    }
                    Shape::ResetAfter(_) => {
                        self.arm(FLUSH_GRACE);
                        self.phase = Phase::Resetting;
                    }
                    Shape::Plain => {}
                }
                continue;
            }
            if self.sent > 0 && !self.pace.is_zero() {
                if !self.waiting {
                    self.arm(self.pace);
                    self.waiting = true;
                }
                ready!(self.poll_sleep(cx));
                self.waiting = false;
            }
            return Poll::Ready(match self.src.next_chunk() {
                Some(b) => {
                    self.sent += 1;
                    Some(b)
                }
                None => {
                    self.phase = Phase::Done;
                    None
                }
            });
        }
    }
}

/// A large valid JSON body (`{"padding":"aaa…"}`) of an exact size, never held in memory.
pub struct HugeBody {
    total: u64,
    pos: u64,
}

static PAD: [u8; 64 * 1024] = [b'a'; 64 * 1024];
const PREFIX: &[u8] = b"{\"padding\":\"";
const SUFFIX: &[u8] = b"\"}";

impl HugeBody {
    pub(crate) fn new(total: u64) -> Self {
        Self { total, pos: 0 }
    }

    fn remaining(&self) -> u64 {
        self.total - self.pos
    }

    fn next_piece(&mut self) -> Option<Bytes> {
        let remaining = self.remaining();
        if remaining == 0 {
            return None;
        }
        let framed = self.total >= (PREFIX.len() + SUFFIX.len()) as u64;
        let piece = if framed && self.pos == 0 {
            Bytes::from_static(PREFIX)
        } else if framed && remaining == SUFFIX.len() as u64 {
            Bytes::from_static(SUFFIX)
        } else {
            let room = if framed {
                remaining - SUFFIX.len() as u64
            } else {
                remaining
            };
            let len = usize::try_from(room).unwrap_or(usize::MAX).min(PAD.len());
            Bytes::from_static(&PAD[..len])
        };
        self.pos += piece.len() as u64;
        Some(piece)
    }
}
