//! The tensors of a Whisper checkpoint, in one table: for each module its Hugging Face name, the
//! shapes of its tensors as a function of [`ModelDims`], what it is, and where CTranslate2 keeps
//! it. The CPU and GPU loaders, the cache's "every tensor the config implies" check and the
//! CTranslate2 conversion all read names and shapes from here.

use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::weights::Weights;

/// The encoder or the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Encoder,
    Decoder,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Encoder, Side::Decoder];

    /// The word in both naming schemes (`model.encoder.…`, `encoder/…`).
    pub fn word(self) -> &'static str {
        match self {
            Side::Encoder => "encoder",
            Side::Decoder => "decoder",
        }
    }

    pub fn layers(self, dims: &ModelDims) -> usize {
        match self {
            Side::Encoder => dims.n_audio_layer,
            Side::Decoder => dims.n_text_layer,
        }
    }

    fn ffn(self, dims: &ModelDims) -> usize {
        match self {
            Side::Encoder => dims.n_audio_ffn,
            Side::Decoder => dims.n_text_ffn,
        }
    }
}

/// One size of a tensor, as a function of the model's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    /// `d_model`.
    State,
    Mels,
    /// The MLP's hidden width on the module's side.
    Ffn,
    AudioCtx,
    TextCtx,
    Vocab,
}

impl Dim {
    fn of(self, dims: &ModelDims, side: Side) -> usize {
        match self {
            Dim::State => dims.n_audio_state,
            Dim::Mels => dims.n_mels,
            Dim::Ffn => side.ffn(dims),
            Dim::AudioCtx => dims.n_audio_ctx,
            Dim::TextCtx => dims.n_text_ctx,
            Dim::Vocab => dims.n_vocab,
        }
    }
}

/// What a module is, which fixes its tensors' name suffixes and shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `.weight [n_out, n_in]` and, when `bias`, `.bias [n_out]` (PyTorch `nn.Linear`).
    Linear { n_in: Dim, n_out: Dim, bias: bool },
    /// `.weight [d]` (gamma) and `.bias [d]` (beta).
    LayerNorm,
    /// `.weight [d, n_in, 3]` and `.bias [d]`: a width-3 1-D convolution.
    Conv { n_in: Dim },
    /// `.weight [rows, d]`: token embedding or learned positions.
    Table { rows: Dim },
}

/// Where a module stands in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Once, on one side: `model.<side>.<name>`.
    Model(Side),
    /// In every layer of both sides: `model.<side>.layers.<i>.<name>`.
    EveryLayer,
    /// In every decoder layer only (cross-attention).
    DecoderLayer,
}

/// Where CTranslate2 keeps a module: `<side>/[layer_<i>/]<name>`, with `/weight` and `/bias`
/// (`/gamma` and `/beta` for layer norms; a table's name is the whole tensor name). Projections
/// fused in CTranslate2 are row blocks `part` of `of` of the fused matrix and bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ct2Place {
    name: &'static str,
    part: usize,
    of: usize,
}

const fn ct2(name: &'static str) -> Ct2Place {
    Ct2Place {
        name,
        part: 0,
        of: 1,
    }
}

const fn fused(name: &'static str, part: usize, of: usize) -> Ct2Place {
    Ct2Place { name, part, of }
}

/// A module of a Whisper network (the unit the loaders build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Conv1,
    Conv2,
    EncoderPositions,
    EncoderNorm,
    /// Also the decoder's (tied) output projection.
    TokenEmbedding,
    DecoderPositions,
    DecoderNorm,
    SelfAttnNorm,
    SelfAttnQuery,
    SelfAttnKey,
    SelfAttnValue,
    SelfAttnOut,
    CrossAttnNorm,
    CrossAttnQuery,
    CrossAttnKey,
    CrossAttnValue,
    CrossAttnOut,
    MlpNorm,
    Fc1,
    Fc2,
}

/// One row of the table.
struct Row {
    part: Part,
    place: Place,
    /// The Hugging Face name after the side's (or layer's) prefix.
    hf: &'static str,
    kind: Kind,
    ct2: Ct2Place,
    /// What the module is, for readers of this table.
    #[allow(dead_code)]
    what: &'static str,
}

const fn linear(n_in: Dim, n_out: Dim) -> Kind {
    Kind::Linear {
        n_in,
        n_out,
        bias: true,
    }
}

const SQUARE: Kind = linear(Dim::State, Dim::State);

/// The table. Order: the order tensors are listed in (by module, weight before bias).
#[rustfmt::skip]
const TABLE: &[Row] = &[
    Row { part: Part::Conv1, place: Place::Model(Side::Encoder), hf: "conv1", kind: Kind::Conv { n_in: Dim::Mels }, ct2: ct2("conv1"), what: "first stem convolution, mels to d_model" },
    Row { part: Part::Conv2, place: Place::Model(Side::Encoder), hf: "conv2", kind: Kind::Conv { n_in: Dim::State }, ct2: ct2("conv2"), what: "second stem convolution, stride 2" },
    Row { part: Part::EncoderPositions, place: Place::Model(Side::Encoder), hf: "embed_positions", kind: Kind::Table { rows: Dim::AudioCtx }, ct2: ct2("position_encodings/encodings"), what: "encoder positions (sinusoids, stored)" },
    Row { part: Part::EncoderNorm, place: Place::Model(Side::Encoder), hf: "layer_norm", kind: Kind::LayerNorm, ct2: ct2("layer_norm"), what: "encoder output layer norm" },
    Row { part: Part::TokenEmbedding, place: Place::Model(Side::Decoder), hf: "embed_tokens", kind: Kind::Table { rows: Dim::Vocab }, ct2: ct2("embeddings/weight"), what: "token embedding, tied output projection" },
    Row { part: Part::DecoderPositions, place: Place::Model(Side::Decoder), hf: "embed_positions", kind: Kind::Table { rows: Dim::TextCtx }, ct2: ct2("position_encodings/encodings"), what: "decoder learned positions" },
    Row { part: Part::DecoderNorm, place: Place::Model(Side::Decoder), hf: "layer_norm", kind: Kind::LayerNorm, ct2: ct2("layer_norm"), what: "decoder output layer norm" },
    Row { part: Part::SelfAttnQuery, place: Place::EveryLayer, hf: "self_attn.q_proj", kind: SQUARE, ct2: fused("self_attention/linear_0", 0, 3), what: "self-attention query" },
    Row { part: Part::SelfAttnKey, place: Place::EveryLayer, hf: "self_attn.k_proj", kind: Kind::Linear { n_in: Dim::State, n_out: Dim::State, bias: false }, ct2: fused("self_attention/linear_0", 1, 3), what: "self-attention key (no bias; CTranslate2 stores zeros)" },
    Row { part: Part::SelfAttnValue, place: Place::EveryLayer, hf: "self_attn.v_proj", kind: SQUARE, ct2: fused("self_attention/linear_0", 2, 3), what: "self-attention value" },
    Row { part: Part::SelfAttnOut, place: Place::EveryLayer, hf: "self_attn.out_proj", kind: SQUARE, ct2: ct2("self_attention/linear_1"), what: "self-attention output projection" },
    Row { part: Part::SelfAttnNorm, place: Place::EveryLayer, hf: "self_attn_layer_norm", kind: Kind::LayerNorm, ct2: ct2("self_attention/layer_norm"), what: "pre-self-attention layer norm" },
    Row { part: Part::CrossAttnQuery, place: Place::DecoderLayer, hf: "encoder_attn.q_proj", kind: SQUARE, ct2: ct2("attention/linear_0"), what: "cross-attention query" },
    Row { part: Part::CrossAttnKey, place: Place::DecoderLayer, hf: "encoder_attn.k_proj", kind: Kind::Linear { n_in: Dim::State, n_out: Dim::State, bias: false }, ct2: fused("attention/linear_1", 0, 2), what: "cross-attention key (no bias)" },
    Row { part: Part::CrossAttnValue, place: Place::DecoderLayer, hf: "encoder_attn.v_proj", kind: SQUARE, ct2: fused("attention/linear_1", 1, 2), what: "cross-attention value" },
    Row { part: Part::CrossAttnOut, place: Place::DecoderLayer, hf: "encoder_attn.out_proj", kind: SQUARE, ct2: ct2("attention/linear_2"), what: "cross-attention output projection" },
    Row { part: Part::CrossAttnNorm, place: Place::DecoderLayer, hf: "encoder_attn_layer_norm", kind: Kind::LayerNorm, ct2: ct2("attention/layer_norm"), what: "pre-cross-attention layer norm" },
    Row { part: Part::Fc1, place: Place::EveryLayer, hf: "fc1", kind: linear(Dim::State, Dim::Ffn), ct2: ct2("ffn/linear_0"), what: "MLP up-projection (GELU after)" },
    Row { part: Part::Fc2, place: Place::EveryLayer, hf: "fc2", kind: linear(Dim::Ffn, Dim::State), ct2: ct2("ffn/linear_1"), what: "MLP down-projection" },
    Row { part: Part::MlpNorm, place: Place::EveryLayer, hf: "final_layer_norm", kind: Kind::LayerNorm, ct2: ct2("ffn/layer_norm"), what: "pre-MLP layer norm" },
];

fn row(part: Part) -> &'static Row {
    TABLE
        .iter()
        .find(|r| r.part == part)
        .expect("every Part has a row in TABLE")
}

/// One tensor: its Hugging Face name and shape, and where CTranslate2 keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The CTranslate2 variable holding it (the fused one for split projections).
    pub ct2_name: String,
    /// Row block `.0` of `.1` of `ct2_name` (`(0, 1)`: all of it).
    pub ct2_rows: (usize, usize),
}

/// One module placed in a network: its weight and, when it has one, its bias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The Hugging Face prefix, e.g. `model.decoder.layers.3.fc1`.
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Module {
    /// The weight's `[rows, cols]` (a matrix or a table).
    pub fn matrix(&self) -> (usize, usize) {
        (self.weight.shape[0], self.weight.shape[1])
    }

    /// The bias; modules whose kind always has one (norms, convolutions, most projections).
    pub fn bias(&self) -> &Tensor {
        self.bias.as_ref().expect("schema: this module has a bias")
    }

    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.weight).chain(&self.bias)
    }
}

fn place(dims: &ModelDims, r: &Row, side: Side, layer: Option<usize>) -> Module {
    let (hf_prefix, ct2_prefix) = match layer {
        None => (format!("model.{}", side.word()), side.word().to_string()),
        Some(i) => (
            format!("model.{}.layers.{i}", side.word()),
            format!("{}/layer_{i}", side.word()),
        ),
    };
    let name = format!("{hf_prefix}.{}", r.hf);
    let ct2_base = format!("{ct2_prefix}/{}", r.ct2.name);
    let rows = (r.ct2.part, r.ct2.of);
    let d = dims.n_audio_state;
    let at = |x: Dim| x.of(dims, side);
    let tensor = |suffix: &str, ct2_suffix: &str, shape: Vec<usize>| Tensor {
        name: format!("{name}.{suffix}"),
        shape,
        ct2_name: if ct2_suffix.is_empty() {
            ct2_base.clone()
        } else {
            format!("{ct2_base}/{ct2_suffix}")
        },
        ct2_rows: rows,
    };
    let (weight, bias) = match r.kind {
        Kind::Linear { n_in, n_out, bias } => (
            tensor("weight", "weight", vec![at(n_out), at(n_in)]),
            bias.then(|| tensor("bias", "bias", vec![at(n_out)])),
        ),
        Kind::LayerNorm => (
            tensor("weight", "gamma", vec![d]),
            Some(tensor("bias", "beta", vec![d])),
        ),
        Kind::Conv { n_in } => (
            tensor("weight", "weight", vec![d, at(n_in), 3]),
            Some(tensor("bias", "bias", vec![d])),
        ),
        Kind::Table { rows } => (tensor("weight", "", vec![at(rows), d]), None),
    };
    Module { name, weight, bias }
}

/// A module outside the layers (`Part::Conv1` … `Part::DecoderNorm`).
pub fn model(dims: &ModelDims, part: Part) -> Module {
    let r = row(part);
    match r.place {
        Place::Model(side) => place(dims, r, side, None),
        _ => panic!("schema: {part:?} is a layer module; use schema::layer"),
    }
}

/// Module `part` of layer `i` on `side`.
pub fn layer(dims: &ModelDims, side: Side, i: usize, part: Part) -> Module {
    let r = row(part);
    assert!(
        r.place == Place::EveryLayer || (r.place == Place::DecoderLayer && side == Side::Decoder),
        "schema: {part:?} is not in {} layers",
        side.word()
    );
    place(dims, r, side, Some(i))
}

/// Every module the dimensions imply, in table order (model modules, then each side's layers).
pub fn modules(dims: &ModelDims) -> Vec<Module> {
    let mut out: Vec<Module> = TABLE
        .iter()
        .filter_map(|r| match r.place {
            Place::Model(side) => Some(place(dims, r, side, None)),
            _ => None,
        })
        .collect();
    for side in Side::BOTH {
        for i in 0..side.layers(dims) {
            for r in TABLE {
                let here = match r.place {
                    Place::Model(_) => false,
                    Place::EveryLayer => true,
                    Place::DecoderLayer => side == Side::Decoder,
                };
                if here {
                    out.push(place(dims, r, side, Some(i)));
                }
            }
        }
    }
    out
}

/// Every tensor the dimensions imply.
pub fn tensors(dims: &ModelDims) -> Vec<Tensor> {
    modules(dims)
        .iter()
        .flat_map(|m| m.tensors().cloned().collect::<Vec<_>>())
        .collect()
}

/// A checkpoint with more layers than the config names is a config mismatch, not extra data.
pub fn check_no_extra_layers(weights: &Weights, dims: &ModelDims) -> Result<()> {
    for side in Side::BOTH {
        let n = side.layers(dims);
        if weights.contains(&layer(dims, side, n, Part::Fc1).weight.name) {
            return Err(Error::model(
                weights.path(),
                format!(
                    "checkpoint has more {} layers than config.json's {n}",
                    side.word()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelDims {
        ModelDims {
            n_mels: 80,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_audio_ffn: 1536,
            n_vocab: 51864,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_text_ffn: 1536,
        }
    }

    #[test]
    fn tiny_has_openai_whisper_tensor_count() {
        // 11 model tensors; 15 per encoder layer, 24 per decoder layer (k_proj has no bias).
        let t = tensors(&tiny());
        assert_eq!(t.len(), 11 + 4 * 15 + 4 * 24);
        let names: std::collections::BTreeSet<_> = t.iter().map(|t| &t.name).collect();
        assert_eq!(names.len(), t.len(), "names are unique");
    }

    #[test]
    fn names_shapes_and_ct2_places() {
        let d = tiny();
        let m = layer(&d, Side::Decoder, 2, Part::CrossAttnValue);
        assert_eq!(
            m.weight.name,
            "model.decoder.layers.2.encoder_attn.v_proj.weight"
        );
        assert_eq!(
            m.weight.ct2_name,
            "decoder/layer_2/attention/linear_1/weight"
        );
        assert_eq!(m.weight.ct2_rows, (1, 2));
        let fc1 = layer(&d, Side::Encoder, 0, Part::Fc1);
        assert_eq!(fc1.weight.shape, vec![1536, 384]);
        let emb = model(&d, Part::TokenEmbedding);
        assert_eq!(emb.weight.name, "model.decoder.embed_tokens.weight");
        assert_eq!(emb.weight.ct2_name, "decoder/embeddings/weight");
        assert!(emb.bias.is_none());
        let ln = model(&d, Part::EncoderNorm);
        assert_eq!(ln.bias().ct2_name, "encoder/layer_norm/beta");
        assert_eq!(model(&d, Part::Conv1).weight.shape, vec![384, 80, 3]);
    }
}
