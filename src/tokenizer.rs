//! Tokenizer
