//! Reads a transcription's multipart form as it arrives: the fields into memory (each small),
//! the audio file into a spool file in the temporary directory, never into memory, within the
//! upload's size cap and deadline. The spool lets the form's fields come in any order (`curl
//! -F file=@… -F model=…` sends the file first), lets the request be admitted and held for
//! with the file's real size, and lets a failed upstream hand the upload to the next one.

use std::path::PathBuf;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::HttpRequest;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use morpheus_domain::ports::{UploadSource, UploadStream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::UploadLimits;
use crate::dto::TranscriptionFormat;
use crate::error::{ApiError, FieldError, LocItem};

/// A field other than the file may be at most this long.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// At most this many parts in a form.
const MAX_PARTS: usize = 64;
/// How much of the file's start is kept (a WAV header's chunks, to measure its duration).
const HEAD_KEPT: usize = 4096;
/// The spool is read back in pieces this long.
const READ_PIECE: usize = 64 * 1024;
/// Spool files are named so, in the temporary directory.
const SPOOL_PREFIX: &str = "morpheus-upload-";

/// The form's fields, checked.
#[derive(Debug, Default)]
pub struct TranscriptionFields {
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub response_format: Option<TranscriptionFormat>,
    pub temperature: Option<f64>,
    pub timestamp_granularities: Vec<String>,
    pub stream: bool,
    pub session_id: Option<String>,
}

/// The uploaded file, on disk until dropped.
pub struct SpooledFile {
    path: PathBuf,
    pub length: u64,
    /// Its first bytes.
    pub head: Vec<u8>,
    /// As the client named it.
    pub client_name: String,
    pub content_type: Option<String>,
}

impl Drop for SpooledFile {
    fn drop(&mut self) {
        // Unlinking is one quick system call; a file already gone is fine.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl UploadSource for SpooledFile {
    fn open(&self) -> Option<UploadStream> {
        let path = self.path.clone();
        let pieces = futures_util::stream::try_unfold(None, move |file| {
            let path = path.clone();
            async move {
                let mut file = match file {
                    Some(file) => file,
                    None => tokio::fs::File::open(&path).await?,
                };
                let mut piece = BytesMut::zeroed(READ_PIECE);
                let n = file.read(&mut piece).await?;
                if n == 0 {
                    return Ok(None);
                }
                piece.truncate(n);
                Ok(Some((piece.freeze(), Some(file))))
            }
        });
        Some(Box::pin(pieces))
    }

    fn can_send(&self) -> bool {
        true
    }
}

/// Removes the spool files older than `max_age` that a process which died mid-request left
/// behind (a running one deletes its own when the request ends); returns how many. Blocking:
/// call it off the async workers. Younger files may belong to another process's requests.
pub fn remove_stale_spools(max_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(SPOOL_PREFIX)
        })
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > max_age)
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

pub struct TranscriptionUpload {
    pub fields: TranscriptionFields,
    pub file: SpooledFile,
}

/// Reads the whole form within `limits`.
pub async fn read(
    http: &HttpRequest,
    payload: actix_web::web::Payload,
    limits: UploadLimits,
) -> Result<TranscriptionUpload, ApiError> {
    let multipart = http
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
        });
    if !multipart {
        return Err(ApiError::UnsupportedMediaType("multipart/form-data"));
    }
    let too_large = || ApiError::PayloadTooLarge {
        limit: usize::try_from(limits.max_bytes).unwrap_or(usize::MAX),
    };
    let declared = http
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The form's own framing and fields come on top of the file: allow them some room.
    if declared.is_some_and(|n| n > limits.max_bytes.saturating_add(MAX_FIELD_BYTES as u64)) {
        return Err(too_large());
    }
    let form = Multipart::new(http.headers(), payload);
    tokio::time::timeout(limits.deadline, read_parts(form, limits.max_bytes))
        .await
        .unwrap_or(Err(ApiError::RequestTimeout))
}

async fn read_parts(mut form: Multipart, max_bytes: u64) -> Result<TranscriptionUpload, ApiError> {
    let mut fields = TranscriptionFields::default();
    let mut file = None;
    let mut parts = 0;
    while let Some(part) = form.next().await {
        let mut part = part.map_err(unreadable)?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(invalid(
                "body",
                "too_many_parts",
                format!("A form may have at most {MAX_PARTS} parts"),
            ));
        }
        let name = part.name().unwrap_or_default().to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(invalid(
                    "file",
                    "too_many_files",
                    "Send one file".to_owned(),
                ));
            }
            file = Some(spool(&mut part, max_bytes).await?);
            continue;
        }
        let value = field_value(&mut part, &name).await?;
        set(&mut fields, &name, value)?;
    }
    let Some(file) = file else {
        return Err(invalid("file", "missing", "Field required".to_owned()));
    };
    Ok(TranscriptionUpload { fields, file })
}

/// Writes the file part to a new spool file, counting it against `max_bytes`.
async fn spool(part: &mut Field, max_bytes: u64) -> Result<SpooledFile, ApiError> {
    let client_name = part
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .unwrap_or_default()
        .to_owned();
    let content_type = part.content_type().map(ToString::to_string);
    let path = std::env::temp_dir().join(format!("{SPOOL_PREFIX}{}", uuid::Uuid::new_v4()));
    let mut spooled = SpooledFile {
        path,
        length: 0,
        head: Vec::new(),
        client_name,
        content_type,
    };
    let mut out = tokio::fs::File::create(&spooled.path)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("creating the upload's spool: {e}")))?;
    while let Some(chunk) = part.next().await {
        let chunk: Bytes = chunk.map_err(unreadable)?;
        spooled.length += chunk.len() as u64;
        if spooled.length > max_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            });
        }
        if spooled.head.len() < HEAD_KEPT {
            let room = (HEAD_KEPT - spooled.head.len()).min(chunk.len());
            spooled.head.extend_from_slice(&chunk[..room]);
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing the upload's spool: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing the upload's spool: {e}")))?;
    if spooled.length == 0 {
        return Err(invalid(
            "file",
            "empty_file",
            "The file is empty".to_owned(),
        ));
    }
    Ok(spooled)
}

async fn field_value(part: &mut Field, name: &str) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = part.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if value.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(invalid(
                name,
                "string_too_long",
                format!("A form field may be at most {MAX_FIELD_BYTES} bytes"),
            ));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| {
        invalid(
            name,
            "string_unicode",
            "Input should be valid UTF-8".to_owned(),
        )
    })
}

/// Checks and stores one field; fields the gateway does not know are ignored, as OpenAI's
/// clients send some only newer models take.
fn set(fields: &mut TranscriptionFields, name: &str, value: String) -> Result<(), ApiError> {
    let non_empty = |value: String| (!value.is_empty()).then_some(value);
    match name {
        "model" => fields.model = non_empty(value),
        "session_id" => fields.session_id = non_empty(value),
        "language" => {
            if value.len() > 64 {
                return Err(invalid(
                    name,
                    "string_too_long",
                    "language may be at most 64 characters".to_owned(),
                ));
            }
            fields.language = non_empty(value);
        }
        "prompt" => fields.prompt = non_empty(value),
        "response_format" => {
            let format = TranscriptionFormat::ALL
                .into_iter()
                .find(|f| f.as_str() == value)
                .ok_or_else(|| {
                    invalid(
                        name,
                        "enum",
                        "Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'".to_owned(),
                    )
                })?;
            fields.response_format = Some(format);
        }
        "temperature" => {
            let t = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| {
                    invalid(
                        name,
                        "float_parsing",
                        "Input should be a number from 0 to 1".to_owned(),
                    )
                })?;
            fields.temperature = Some(t);
        }
        "timestamp_granularities" | "timestamp_granularities[]" => {
            if value != "word" && value != "segment" {
                return Err(invalid(
                    name,
                    "enum",
                    "Input should be 'word' or 'segment'".to_owned(),
                ));
            }
            if !fields.timestamp_granularities.contains(&value) {
                fields.timestamp_granularities.push(value);
            }
        }
        "stream" => {
            // What the SDKs send for a boolean; anything else is a mistake worth saying.
            fields.stream = match value.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(invalid(
                        name,
                        "bool_parsing",
                        "Input should be a valid boolean".to_owned(),
                    ));
                }
            };
        }
        _ => {}
    }
    Ok(())
}

fn invalid(field: &str, kind: &'static str, message: String) -> ApiError {
    ApiError::validation(FieldError::new(
        vec![LocItem::from("body"), LocItem::from(field)],
        kind,
        message,
    ))
}

fn unreadable(error: MultipartError) -> ApiError {
    ApiError::validation(FieldError::new(
        vec![LocItem::from("body")],
        "multipart_invalid",
        format!("The form could not be read: {error}"),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn only_spools_older_than_the_age_are_swept() {
        let dir = std::env::temp_dir();
        let old = dir.join(format!("{SPOOL_PREFIX}test-old-{}", uuid::Uuid::new_v4()));
        let young = dir.join(format!("{SPOOL_PREFIX}test-young-{}", uuid::Uuid::new_v4()));
        let other = dir.join(format!("not-a-spool-{}", uuid::Uuid::new_v4()));
        for path in [&old, &young, &other] {
            std::fs::write(path, b"audio").unwrap();
        }
        let long_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
        for path in [&old, &other] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        assert!(remove_stale_spools(Duration::from_secs(3600)) >= 1);
        assert!(!old.exists(), "the old spool is gone");
        assert!(young.exists(), "a spool in use stays");
        assert!(other.exists(), "other files are not touched");
        for path in [&young, &other] {
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn a_spool_is_deleted_with_its_request() {
        let path =
            std::env::temp_dir().join(format!("{SPOOL_PREFIX}test-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, b"audio").unwrap();
        drop(SpooledFile {
            path: path.clone(),
            length: 5,
            head: Vec::new(),
            client_name: String::new(),
            content_type: None,
        });
        assert!(!path.exists());
    }
}
