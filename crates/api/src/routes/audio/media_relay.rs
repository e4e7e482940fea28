//! Relays an audio answer to the client as it comes, and writes the request's usage record
//! when it ends: completed with the last byte, failed when the upstream breaks off, closed by
//! the client when the response is dropped first. The usage was set before the first byte:
//! once the upstream has answered, the work is done and billed.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::http::header::CONTENT_TYPE;
use bytes::Bytes;
use futures_util::Stream;
use morpheus_domain::UsageOutcome;
use morpheus_domain::ports::{MediaReply, MediaStream};
use morpheus_domain::services::{LimitStatus, UsageMeter};

use crate::rate_limit_headers;

pub fn respond(media: MediaReply, mut meter: UsageMeter, limits: &LimitStatus) -> HttpResponse {
    meter.responded(200);
    let mut response = HttpResponse::Ok();
    rate_limit_headers::insert(&mut response, limits);
    response
        .insert_header((CONTENT_TYPE, media.content_type))
        .streaming(Metered {
            body: media.body,
            meter: Some(meter),
        })
}

struct Metered {
    body: MediaStream,
    meter: Option<UsageMeter>,
}

impl Stream for Metered {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => Poll::Ready(Some(Ok(piece))),
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "an audio answer broke off while relayed");
                if let Some(meter) = self.meter.take() {
                    meter.finish(UsageOutcome::Failed, 200);
                }
                // Ends the response without its end: the client sees a broken transfer.
                Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(
                    "the upstream broke off",
                ))))
            }
            Poll::Ready(None) => {
                if let Some(meter) = self.meter.take() {
                    meter.finish(UsageOutcome::Completed, 200);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
