//! The multipart form of `/v1/audio/transcriptions` and `/translations`, read as it streams in:
//! the file spooled to a temporary file (memory bounded whatever its size), the byte limit
//! checked on every chunk (a 413 before the rest is read), the other fields validated into
//! OpenAI's options. Unknown fields are ignored, as OpenAI does.

use axum::extract::multipart::{Multipart, MultipartError};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;

/// `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    VerboseJson,
    Vtt,
}

impl ResponseFormat {
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "json" => ResponseFormat::Json,
            "text" => ResponseFormat::Text,
            "srt" => ResponseFormat::Srt,
            "verbose_json" => ResponseFormat::VerboseJson,
            "vtt" => ResponseFormat::Vtt,
            other => {
                return Err(ApiError::bad_request(
                    Some("response_format"),
                    format!(
                        "Unsupported response_format '{other}': expected json, text, srt, \
                         verbose_json or vtt."
                    ),
                ))
            }
        })
    }
}

/// The fields of one request.
#[derive(Debug)]
pub struct Form {
    /// The uploaded file, spooled; deleted when dropped.
    pub file: tempfile::NamedTempFile,
    pub file_name: String,
    pub file_bytes: u64,
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub response_format: ResponseFormat,
    pub temperature: Option<f32>,
    pub words: bool,
    pub segments: bool,
    pub stream: bool,
}

/// Read the whole form; `limit` bounds the bytes of all fields together.
pub async fn read_form(mut multipart: Multipart, limit: u64) -> Result<Form, ApiError> {
    let mut file: Option<(tempfile::NamedTempFile, String, u64)> = None;
    let mut total: u64 = 0;
    let mut model = None;
    let mut language = None;
    let mut prompt = None;
    let mut response_format = None;
    let mut temperature = None;
    let mut words = false;
    let mut segments = false;
    let mut granularities_given = false;
    let mut stream = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| field_error(e, limit))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload").to_string();
            let spool = tempfile::NamedTempFile::new()
                .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
            let mut out = tokio::fs::File::from_std(
                spool
                    .reopen()
                    .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?,
            );
            let mut bytes = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(|e| field_error(e, limit))? {
                bytes += chunk.len() as u64;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(ApiError::too_large(limit));
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
            }
            out.flush()
                .await
                .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
            file = Some((spool, file_name, bytes));
            continue;
        }
        // Small text fields: bounded by the same limit.
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| field_error(e, limit))? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(ApiError::too_large(limit));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).trim().to_string();
        match name.as_str() {
            "model" => model = Some(value),
            "language" if !value.is_empty() => language = Some(value),
            "prompt" if !value.is_empty() => prompt = Some(value),
            "response_format" => response_format = Some(ResponseFormat::parse(&value)?),
            "temperature" => temperature = Some(parse_temperature(&value)?),
            "timestamp_granularities[]" | "timestamp_granularities" => {
                granularities_given = true;
                match value.as_str() {
                    "word" => words = true,
                    "segment" => segments = true,
                    other => {
                        return Err(ApiError::bad_request(
                            Some("timestamp_granularities"),
                            format!("Unsupported timestamp granularity '{other}': expected word or segment."),
                        ))
                    }
                }
            }
            "stream" => stream = Some(parse_bool(&value)?),
            _ => tracing::debug!("ignored form field {name}"),
        }
    }
    let Some((file, file_name, file_bytes)) = file else {
        return Err(ApiError::bad_request(
            Some("file"),
            "The form has no 'file' field: upload the audio as multipart field 'file'.",
        ));
    };
    if file_bytes == 0 {
        return Err(ApiError::bad_request(
            Some("file"),
            format!("{file_name}: the uploaded file is empty."),
        ));
    }
    let response_format = response_format.unwrap_or(ResponseFormat::Json);
    if granularities_given && response_format != ResponseFormat::VerboseJson {
        return Err(ApiError::bad_request(
            Some("timestamp_granularities"),
            "timestamp_granularities requires response_format verbose_json.",
        ));
    }
    if !granularities_given {
        segments = true;
    }
    Ok(Form {
        file,
        file_name,
        file_bytes,
        model,
        language,
        prompt,
        response_format,
        temperature,
        words,
        segments,
        stream: stream.unwrap_or(false),
    })
}

fn parse_temperature(value: &str) -> Result<f32, ApiError> {
    match value.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(ApiError::bad_request(
            Some("temperature"),
            format!("temperature must be a number between 0 and 1, got '{value}'."),
        )),
    }
}

fn parse_bool(value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(ApiError::bad_request(
            Some("stream"),
            format!("stream must be true or false, got '{value}'."),
        )),
    }
}

/// A malformed body is the client's fault (400), a body past the limit a 413.
fn field_error(e: MultipartError, limit: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::bad_request(None, format!("Malformed multipart body: {}", e.body_text()))
    }
}
