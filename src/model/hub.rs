//! Model resolution: Hugging Face cache -> hub download -> offline CTranslate2 packages.

use crate::error::{Error, Result};
use crate::model::ModelFiles;

/// Resolve `spec` to model files (interim: local directories only).
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    let dir = std::path::Path::new(spec);
    if dir.join("config.json").exists() {
        return Ok(ModelFiles::new(spec, dir));
    }
    Err(Error::resolve(spec, "not found"))
}

/// Import a CTranslate2 directory into the cache as `name` (interim: not yet available).
pub fn import(dir: &std::path::Path, name: &str) -> Result<ModelFiles> {
    Err(Error::resolve(
        name,
        format!("cannot import {}: importer not built yet", dir.display()),
    ))
}
