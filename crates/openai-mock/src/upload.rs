//! Reading a `multipart/form-data` upload as it streams in: the file part is counted and only
//! its first bytes kept (enough for a WAV header), so a large upload costs no memory.

use http_body_util::BodyExt as _;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};

use crate::counters::bump_by;
use crate::reply::{self, Reply};
use crate::state::{Shared, UploadSeen};

/// Uploads beyond this (the whole multipart body) are a 413.
pub(crate) const MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// What is kept of the file: room for a WAV header and the chunks before its samples.
const HEAD_KEPT: usize = 4096;
/// A text field beyond this is refused; no legitimate one comes close.
const MAX_FIELD: usize = 64 * 1024;

/// A form as read: what a test may look at, and the head of the file.
pub(crate) struct Form {
    pub seen: UploadSeen,
    /// The first [`HEAD_KEPT`] bytes of the `file` part; `None` without one.
    pub head: Option<Vec<u8>>,
}

/// Reads the whole form. The form comes back however the reading ended, with the refusal
/// when it failed (not multipart, too large, broken), so a failed upload is still recorded.
pub(crate) async fn read(
    shared: &Shared,
    headers: &HeaderMap,
    body: Incoming,
) -> (Form, Result<(), Reply>) {
    let mut form = Form {
        seen: UploadSeen::default(),
        head: None,
    };
    let result = read_into(shared, &mut form, headers, body).await;
    (form, result)
}

async fn read_into(
    shared: &Shared,
    form: &mut Form,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<(), Reply> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        reply::invalid(
            &format!("Invalid Content-Type header ({content_type}), expected multipart/form-data."),
            None,
        )
    })?;
    // A declared length beyond the cap is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_UPLOAD) {
        return Err(too_large());
    }
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_UPLOAD)
            .per_field(MAX_UPLOAD),
    );
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        let name = field.name().unwrap_or_default().to_owned();
        // As OpenAI (and every form parser) sees it: a `file` part without a file name is a
        // text field.
        if name == "file" && field.file_name().is_some() {
            if form.head.is_some() {
                continue; // a second file: skipped unread, as the first one counts
            }
            form.seen.file_name = field.file_name().map(str::to_owned);
            form.seen.content_type = field.content_type().map(ToString::to_string);
            let head = form.head.insert(Vec::new());
            while let Some(chunk) = field.chunk().await.map_err(broken)? {
                form.seen.bytes += chunk.len() as u64;
                let room = HEAD_KEPT.saturating_sub(head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..room]);
            }
            bump_by(&shared.counters.upload_bytes, form.seen.bytes);
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            if value.len() + chunk.len() > MAX_FIELD {
                return Err(reply::invalid(
                    &format!("Form field '{name}' is too long (at most {MAX_FIELD} bytes)."),
                    Some(&name),
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        form.seen.fields.push((name, value));
    }
    Ok(())
}

fn too_large() -> Reply {
    reply::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Maximum content size limit ({MAX_UPLOAD}) exceeded."),
        "invalid_request_error",
        None,
        None,
    )
}

fn broken(e: multer::Error) -> Reply {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large()
        }
        e => reply::invalid(&format!("Could not parse multipart form: {e}"), None),
    }
}

/// Reads an upload left unanswered by its route (a `status` or `refuse` fault, a 401) to its
/// end, up to [`MAX_UPLOAD`], so the connection stays usable (or, refused, closes with a FIN
/// rather than a reset) without the upload ever being held.
pub(crate) async fn drain(mut body: Incoming) {
    let mut read = 0u64;
    while read <= MAX_UPLOAD {
        match body.frame().await {
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Some(Err(_)) | None => return,
        }
    }
}
