//! What the backends' model loaders share: the address of one transformer layer, whose modules
//! (tensor names and shapes) `model::schema` gives by part.

use crate::model::config::ModelDims;
use crate::model::schema::{self, Module, Part, Side};

/// Layer `i` of `side` in a model of `dims`.
#[derive(Clone, Copy)]
pub(crate) struct Layer<'a> {
    pub dims: &'a ModelDims,
    pub side: Side,
    pub i: usize,
}

impl Layer<'_> {
    /// The module of `part` in this layer.
    pub fn at(&self, part: Part) -> Module {
        schema::layer(self.dims, self.side, self.i, part)
    }

    /// Decoder layers also attend to the audio (cross-attention).
    pub fn has_cross_attention(&self) -> bool {
        self.side == Side::Decoder
    }
}
