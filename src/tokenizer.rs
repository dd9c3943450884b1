//! Whisper's tokenizer: the byte-level BPE of `tokenizer.json` (via `tokenizers`) plus the
//! special tokens the decoder is driven with, looked up by their text so that English-only and
//! multilingual vocabularies (whose ids differ) go through one code path.

use std::path::Path;

use crate::error::{Error, Result};

#[rustfmt::skip]
/// Language codes in Whisper's token order (OpenAI `whisper/tokenizer.py` LANGUAGES), with names.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", "english"), ("zh", "chinese"), ("de", "german"), ("es", "spanish"), ("ru", "russian"),
    ("ko", "korean"), ("fr", "french"), ("ja", "japanese"), ("pt", "portuguese"), ("tr", "turkish"),
    ("pl", "polish"), ("ca", "catalan"), ("nl", "dutch"), ("ar", "arabic"), ("sv", "swedish"),
    ("it", "italian"), ("id", "indonesian"), ("hi", "hindi"), ("fi", "finnish"), ("vi", "vietnamese"),
    ("he", "hebrew"), ("uk", "ukrainian"), ("el", "greek"), ("ms", "malay"), ("cs", "czech"),
    ("ro", "romanian"), ("da", "danish"), ("hu", "hungarian"), ("ta", "tamil"), ("no", "norwegian"),
    ("th", "thai"), ("ur", "urdu"), ("hr", "croatian"), ("bg", "bulgarian"), ("lt", "lithuanian"),
    ("la", "latin"), ("mi", "maori"), ("ml", "malayalam"), ("cy", "welsh"), ("sk", "slovak"),
    ("te", "telugu"), ("fa", "persian"), ("lv", "latvian"), ("bn", "bengali"), ("sr", "serbian"),
    ("az", "azerbaijani"), ("sl", "slovenian"), ("kn", "kannada"), ("et", "estonian"),
    ("mk", "macedonian"), ("br", "breton"), ("eu", "basque"), ("is", "icelandic"),
    ("hy", "armenian"), ("ne", "nepali"), ("mn", "mongolian"), ("bs", "bosnian"), ("kk", "kazakh"),
    ("sq", "albanian"), ("sw", "swahili"), ("gl", "galician"), ("mr", "marathi"), ("pa", "punjabi"),
    ("si", "sinhala"), ("km", "khmer"), ("sn", "shona"), ("yo", "yoruba"), ("so", "somali"),
    ("af", "afrikaans"), ("oc", "occitan"), ("ka", "georgian"), ("be", "belarusian"),
    ("tg", "tajik"), ("sd", "sindhi"), ("gu", "gujarati"), ("am", "amharic"), ("yi", "yiddish"),
    ("lo", "lao"), ("uz", "uzbek"), ("fo", "faroese"), ("ht", "haitian creole"), ("ps", "pashto"),
    ("tk", "turkmen"), ("nn", "nynorsk"), ("mt", "maltese"), ("sa", "sanskrit"),
    ("lb", "luxembourgish"), ("my", "myanmar"), ("bo", "tibetan"), ("tl", "tagalog"),
    ("mg", "malagasy"), ("as", "assamese"), ("tt", "tatar"), ("haw", "hawaiian"),
    ("ln", "lingala"), ("ha", "hausa"), ("ba", "bashkir"), ("jw", "javanese"), ("su", "sundanese"),
    ("yue", "cantonese"),
];

/// What the decoder is asked to do (`--task`, a manifest item's `task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Transcribe,
    Translate,
}

pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    pub eot: u32,
    pub sot: u32,
    pub sot_prev: u32,
    pub transcribe: u32,
    pub translate: u32,
    /// `<|nospeech|>` (`<|nocaptions|>` in older vocabularies).
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// The first timestamp token, `<|0.00|>`; every id above it is a later timestamp.
    pub timestamp_begin: u32,
    /// (code, token id) of every language the vocabulary has, in Whisper's order.
    pub languages: Vec<(&'static str, u32)>,
    /// True for multilingual checkpoints (vocabulary of at least 51,865).
    pub multilingual: bool,
}

impl WhisperTokenizer {
    /// Load `tokenizer.json` for a model whose logits are `n_vocab` wide.
    pub fn from_file(path: &Path, n_vocab: usize) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                msg: "file not found".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        // tokenizers 0.23 panics ("Helper") on malformed JSON inside the `decoder` object (found
        // by fuzz/model_config); checking the syntax first turns that into an error.
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: format!("invalid JSON: {e}"),
        })?;
        let inner = text
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| Error::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let id = |text: &str| -> Result<u32> {
            inner.token_to_id(text).ok_or_else(|| Error::Tokenizer {
                path: path.to_path_buf(),
                msg: format!("lacks the special token {text}"),
            })
        };
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        let no_timestamps = id("<|notimestamps|>")?;
        let languages = LANGUAGES
            .iter()
            .filter_map(|(code, _)| {
                inner
                    .token_to_id(&format!("<|{code}|>"))
                    .map(|t| (*code, t))
            })
            .collect();
        let tok = WhisperTokenizer {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            sot_prev: id("<|startofprev|>")?,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_speech,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            languages,
            multilingual: is_multilingual(n_vocab),
            inner,
        };
        if tok.timestamp_begin as usize >= n_vocab {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                msg: format!(
                    "timestamp tokens start at {} but the model has only {n_vocab} logits",
                    tok.timestamp_begin
                ),
            });
        }
        Ok(tok)
    }

    /// Text of `ids`, with special and timestamp tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text_ids: Vec<u32> = ids.iter().copied().filter(|&t| t < self.eot).collect();
        self.inner
            .decode(&text_ids, false)
            .map_err(|e| Error::Internal(format!("token decode: {e}")))
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Internal(format!("token encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, t)| *t)
    }

    pub fn language_code(&self, token: u32) -> Option<&'static str> {
        self.languages
            .iter()
            .find(|(_, t)| *t == token)
            .map(|(c, _)| *c)
    }

    /// The prompt that starts every window: `<|startoftranscript|>`, then on multilingual models
    /// the language and task tokens.
    pub fn sot_sequence(&self, language: Option<&str>, task: Task) -> Result<Vec<u32>> {
        check_request(self.multilingual, language, task)?;
        let mut seq = vec![self.sot];
        if self.multilingual {
            let code = language.unwrap_or("en");
            seq.push(
                self.language_token(code)
                    .ok_or_else(|| unknown_language(code))?,
            );
            seq.push(match task {
                Task::Transcribe => self.transcribe,
                Task::Translate => self.translate,
            });
        }
        Ok(seq)
    }
}

/// Whether a vocabulary of `n_vocab` tokens is a multilingual checkpoint's (51,865 or more).
pub fn is_multilingual(n_vocab: usize) -> bool {
    n_vocab >= 51865
}

/// What [`WhisperTokenizer::sot_sequence`] refuses, known before the tokenizer is read: a
/// language code outside Whisper's [`LANGUAGES`], and on an English-only model any language but
/// English or the translate task. (An older multilingual vocabulary may lack a language of
/// the list; `sot_sequence` says so.)
pub fn check_request(multilingual: bool, language: Option<&str>, task: Task) -> Result<()> {
    if multilingual {
        let code = language.unwrap_or("en");
        if !LANGUAGES.iter().any(|(c, _)| *c == code) {
            return Err(unknown_language(code));
        }
    } else if task == Task::Translate || language.is_some_and(|l| l != "en") {
        return Err(Error::Usage(
            "this model is English-only: it cannot translate or transcribe other languages; use a multilingual model (e.g. --model base)".into(),
        ));
    }
    Ok(())
}

fn unknown_language(code: &str) -> Error {
    Error::Usage(format!("unknown language code '{code}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks made before a model's tokenizer is read.
    #[test]
    fn requests_are_checked_without_the_tokenizer() {
        let (en, translate) = (Task::Transcribe, Task::Translate);
        assert!(check_request(true, None, en).is_ok());
        assert!(check_request(true, Some("yue"), translate).is_ok());
        let e = check_request(true, Some("xx"), en).unwrap_err().to_string();
        assert!(e.contains("unknown language code 'xx'"), "{e}");
        assert!(check_request(false, Some("en"), en).is_ok());
        for (language, task) in [(Some("de"), en), (None, translate)] {
            let e = check_request(false, language, task)
                .unwrap_err()
                .to_string();
            assert!(e.contains("English-only"), "{e}");
        }
        assert!(is_multilingual(51865) && !is_multilingual(51864));
    }

    /// Regression (fuzz/model_config): malformed JSON inside `decoder` made tokenizers panic.
    #[test]
    fn malformed_decoder_json_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, r#"{"version":"1.0","decoder":{"type" "ByteLevel"}}"#).unwrap();
        let e = WhisperTokenizer::from_file(&path, 51865)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("invalid JSON") && !e.contains('\n'),
            "{e}"
        );
    }
}
