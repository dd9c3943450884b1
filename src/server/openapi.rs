//! `/openapi.json`: the routes this server answers, as an OpenAPI 3.1 document.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn audio_operation(summary: &str, with_language: bool) -> Value {
    let mut properties = json!({
        "file": { "type": "string", "format": "binary",
                  "description": "Audio in any supported container (WAV, MP3, M4A, FLAC, Ogg, Opus, WebM, ...)." },
        "model": { "type": "string", "description": "A served model, or whisper-1 for the default." },
        "prompt": { "type": "string" },
        "response_format": { "type": "string", "enum": ["json", "text", "srt", "verbose_json", "vtt"], "default": "json" },
        "temperature": { "type": "number", "minimum": 0, "maximum": 1, "default": 0 },
        "stream": { "type": "boolean", "default": false }
    });
    if with_language {
        properties["language"] = json!({ "type": "string", "description": "ISO-639-1 code." });
        properties["timestamp_granularities[]"] = json!({ "type": "array",
            "items": { "type": "string", "enum": ["word", "segment"] } });
    }
    json!({
        "summary": summary,
        "requestBody": { "required": true, "content": { "multipart/form-data": { "schema": {
            "type": "object", "required": ["file"], "properties": properties } } } },
        "responses": {
            "200": { "description": "The transcript in the requested format; text/event-stream with stream=true." },
            "400": error_response("A bad field, or empty or undecodable audio."),
            "401": error_response("Missing or wrong API key."),
            "404": error_response("Unknown model."),
            "413": error_response("The body is larger than the upload limit."),
            "429": error_response("The queue is full; see Retry-After."),
            "503": error_response("Models still loading, or shutting down.")
        }
    })
}

pub fn document() -> Value {
    let transcribe = audio_operation("Transcribe audio into the input language.", true);
    let translate = audio_operation("Translate audio into English.", false);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "dattavani-asr", "version": env!("CARGO_PKG_VERSION"),
                  "description": "OpenAI-compatible speech-to-text." },
        "paths": {
            "/v1/audio/transcriptions": { "post": transcribe },
            "/v1/audio/translations": { "post": translate },
            "/v1/models": { "get": { "summary": "Served models.", "responses": { "200": { "description": "A list of models." } } } },
            "/v1/models/{id}": { "get": { "summary": "One model.",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "The model." }, "404": error_response("Unknown model.") } } },
            "/health": { "get": { "summary": "Liveness.", "responses": { "200": { "description": "Alive." } } } },
            "/ready": { "get": { "summary": "Readiness: 503 until the models are loaded.",
                "responses": { "200": { "description": "Ready." }, "503": error_response("Loading.") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics.", "responses": { "200": { "description": "Text exposition format." } } } }
        },
        "components": { "schemas": { "Error": { "type": "object", "properties": { "error": {
            "type": "object", "properties": {
                "message": { "type": "string" }, "type": { "type": "string" },
                "param": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] } } } } } } }
    })
}
