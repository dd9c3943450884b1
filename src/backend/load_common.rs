//! What the backends' model loaders share: the address of one transformer layer, whose modules
//! (tensor names and shapes) `model::schema` gives by part, and the layout of its block.

use crate::error::Result;
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

/// OpenAI `ResidualAttentionBlock` in either backend: pre-LN self-attention, (decoder only)
/// cross-attention, then the MLP `fc2(gelu(fc1(x)))`, with the backend's layer norm `N`,
/// attention `A` and linear layer `L`.
pub(crate) struct Block<N, A, L> {
    pub(super) attn_ln: N,
    pub(super) attn: A,
    pub(super) cross_ln: Option<N>,
    pub(super) cross: Option<A>,
    pub(super) mlp_ln: N,
    pub(super) fc1: L,
    pub(super) fc2: L,
}

impl<N, A, L> Block<N, A, L> {
    /// The weights of `layer` (with cross-attention in decoder layers), each module loaded by
    /// the backend's `norm` or `linear`; `attention` assembles the query, key, value and output
    /// projections.
    pub fn load(
        layer: Layer<'_>,
        norm: impl Fn(&Module) -> Result<N>,
        linear: impl Fn(&Module) -> Result<L>,
        attention: impl Fn([L; 4]) -> A,
    ) -> Result<Self> {
        let at = |part| layer.at(part);
        let attn = |[q, k, v, o]: [Part; 4]| -> Result<A> {
            let linears = [
                linear(&at(q))?,
                linear(&at(k))?,
                linear(&at(v))?,
                linear(&at(o))?,
            ];
            Ok(attention(linears))
        };
        let cross = layer.has_cross_attention();
        Ok(Block {
            attn_ln: norm(&at(Part::SelfAttnNorm))?,
            attn: attn([
                Part::SelfAttnQuery,
                Part::SelfAttnKey,
                Part::SelfAttnValue,
                Part::SelfAttnOut,
            ])?,
            cross_ln: cross.then(|| norm(&at(Part::CrossAttnNorm))).transpose()?,
            cross: cross
                .then(|| {
                    attn([
                        Part::CrossAttnQuery,
                        Part::CrossAttnKey,
                        Part::CrossAttnValue,
                        Part::CrossAttnOut,
                    ])
                })
                .transpose()?,
            mlp_ln: norm(&at(Part::MlpNorm))?,
            fc1: linear(&at(Part::Fc1))?,
            fc2: linear(&at(Part::Fc2))?,
        })
    }
}
