//! The request pipeline: control surface, head faults, auth, then the route. Bodies are read
//! whole first (up to 16 MiB), except a transcription's upload, which its route streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::body::Aborted;
use crate::counters::bump;
use crate::faults::{FaultKind, FaultRoute, Stage};
use crate::reply::{self, Reply};
use crate::state::Shared;

/// Request bodies beyond this are refused; nothing legitimate comes close.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Embeddings,
    Speech,
    /// `POST /v1/audio/transcriptions`: its body is an upload, streamed by the route.
    Transcription,
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    /// A known path with another method; the value is its `Allow` header.
    WrongMethod(&'static str),
    NotFound,
}

impl Route {
    fn parse(method: &Method, path: &str) -> Self {
        let (route, allow) = match path {
            "/v1/chat/completions" => (Self::Chat, Method::POST),
            "/v1/embeddings" => (Self::Embeddings, Method::POST),
            "/v1/audio/speech" => (Self::Speech, Method::POST),
            crate::transcription::PATH => (Self::Transcription, Method::POST),
            "/v1/models" => (Self::Models, Method::GET),
            p if p
                .strip_prefix("/v1/models/")
                .is_some_and(|id| !id.is_empty()) =>
            {
                (Self::Model, Method::GET)
            }
            _ => return Self::NotFound,
        };
        if *method == allow {
            route
        } else if allow == Method::POST {
            Self::WrongMethod("POST")
        } else {
            Self::WrongMethod("GET")
        }
    }

    fn fault_route(self) -> Option<FaultRoute> {
        match self {
            Self::Chat => Some(FaultRoute::Chat),
            Self::Embeddings => Some(FaultRoute::Embeddings),
            Self::Speech => Some(FaultRoute::Speech),
            Self::Transcription => Some(FaultRoute::Transcription),
            Self::Models | Self::Model => Some(FaultRoute::Models),
            Self::WrongMethod(_) | Self::NotFound => None,
        }
    }
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Aborted> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let route = Route::parse(&parts.method, path);
    let mut resp = if route == Route::Transcription {
        // An upload (up to 64 MiB) is never buffered: its route reads it as a stream.
        upload(&shared, &parts.headers, body).await?
    } else {
        // Read the whole body first, so a keep-alive connection stays usable whatever the
        // answer, and a `refuse` closes a connection with nothing left unread (a FIN, not a
        // reset).
        let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok(reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large.",
                    "invalid_request_error",
                    None,
                    None,
                ));
            }
            Err(_) => return Err(Aborted("request body unreadable")),
        };
        if let Some(rest) = path.strip_prefix("/__mock/") {
            return Ok(crate::control::handle(&shared, &parts.method, rest, &body));
        }
        answer(&shared, route, &parts.method, path, &parts.headers, body).await?
    };
    if let Some(name) = &shared.name_header {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-mock-provider"), name.clone());
    }
    Ok(resp)
}

/// What [`gate`] decided about a request.
enum Gate {
    /// On to the route.
    Pass,
    /// Answered already: a `status` fault or a 401.
    Answer(Reply),
    /// A `refuse` fault: close the connection without an answer.
    Refuse,
}

/// What every `/v1/*` request goes through before its route: counting, head faults, auth.
async fn gate(shared: &Shared, route: Route, headers: &HeaderMap) -> Gate {
    let counters = &shared.counters;
    bump(&counters.requests);
    match route {
        Route::Chat => bump(&counters.chat_completions),
        Route::Embeddings => bump(&counters.embeddings),
        Route::Speech => bump(&counters.speech),
        Route::Transcription => bump(&counters.transcriptions),
        Route::Models | Route::Model => bump(&counters.models),
        Route::WrongMethod(_) | Route::NotFound => {}
    }

    if let Some(fault_route) = route.fault_route()
        && let Some(fault) = shared.faults.take(fault_route, Stage::Head)
    {
        bump(&counters.faults_fired);
        match fault {
            FaultKind::Status {
                status,
                retry_after,
            } => return Gate::Answer(reply::fault_status(status, retry_after)),
            FaultKind::Refuse => return Gate::Refuse,
            FaultKind::DelayMs { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultKind::CutAfterChunks { .. } | FaultKind::StallAfterChunks { .. } => {
                unreachable!("stream faults are taken when a stream starts")
            }
        }
    }

    if let Some(key) = &shared.config.api_key
        && route.fault_route().is_some()
        && let Some(refusal) = auth_refusal(headers, key)
    {
        bump(&counters.unauthorized);
        return Gate::Answer(refusal);
    }
    Gate::Pass
}

/// A transcription: the gate, then the route reads the upload; an upload the gate stops is
/// drained first (see [`crate::upload::drain`]).
async fn upload(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Reply, Aborted> {
    match gate(shared, Route::Transcription, headers).await {
        Gate::Pass => Ok(crate::transcription::handle(shared, headers, body).await),
        Gate::Answer(reply) => {
            crate::upload::drain(body).await;
            Ok(reply)
        }
        Gate::Refuse => {
            crate::upload::drain(body).await;
            Err(Aborted("refused by a fault"))
        }
    }
}

/// Every route but transcriptions, the body read whole.
async fn answer(
    shared: &Arc<Shared>,
    route: Route,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Reply, Aborted> {
    match gate(shared, route, headers).await {
        Gate::Pass => {}
        Gate::Answer(reply) => return Ok(reply),
        Gate::Refuse => return Err(Aborted("refused by a fault")),
    }

    Ok(match route {
        Route::Chat => {
            shared.record_request("/v1/chat/completions", &body);
            crate::chat::handle(shared, &body)
        }
        Route::Embeddings => {
            shared.record_request("/v1/embeddings", &body);
            crate::embeddings::handle(shared, &body)
        }
        Route::Speech => {
            shared.record_request("/v1/audio/speech", &body);
            crate::speech::handle(shared, &body)
        }
        Route::Models => crate::models::list(shared),
        Route::Model => crate::models::get(shared, &path["/v1/models/".len()..]),
        Route::WrongMethod(allow) => {
            let mut resp = reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method not allowed: {method} {path}"),
                "invalid_request_error",
                None,
                None,
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
        Route::NotFound => reply::error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            None,
            None,
        ),
        Route::Transcription => unreachable!("uploads are routed by `upload`"),
    })
}

/// OpenAI's two refusals, no key at all or the wrong one; `None` for the right key.
fn auth_refusal(headers: &HeaderMap, key: &str) -> Option<Reply> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if given == key => None,
        Some(_) => Some(reply::error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        None => Some(reply::error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            None,
        )),
    }
}
