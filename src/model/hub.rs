//! Model resolution: Hugging Face cache -> hub download -> offline CTranslate2 packages.
