//! output/mod
