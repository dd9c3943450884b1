//! Token embedding gather plus positional embedding, `shaders/embed.wgsl`, from an f32 or int8
//! table (the int8 row dequantized as it is read), in row ranges when the table exceeds one
//! storage binding.
//!
//! CPU twin: `backend/cpu/ops/embed.rs` (`ops::embed`). Test: `tests/kernels_vs_cpu/embed.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::matrix::{MatrixRef, WeightType};
use super::op::Op;
use super::{binding, groups, need, ranges, whole, Kernels};

super::wgsl_params! {
    EmbedParams in "embed.wgsl" {
        n_tok: u32,
        d: u32,
        pos0: u32,
        /// First table row of this binding.
        row_base: u32,
        /// Table rows in this binding.
        table_rows: u32,
        /// Tokens per sequence: token i sits at position `pos0 + i % per_seq`.
        per_seq: u32,
        /// 32-bit words per table row (f32: values; int8: quads).
        row_stride: u32,
    }
}

impl EmbedParams {
    /// A table row, a position row and an output row per token.
    fn work(&self) -> Work {
        let (n_tok, d) = (self.n_tok as f64, self.d as f64);
        Work::new(n_tok * d, 4.0 * (n_tok + 3.0 * n_tok * d))
    }
}

/// The gather for f32 tables and for int8 ones.
pub(super) struct Pipelines {
    f32: Kernel,
    int8: Kernel,
}

/// What `shaders/embed.wgsl` expects prepended for a table stored as `ty` (f32 or int8): binding
/// 1 and `tload(r, c)` (element c of table row r, in f32).
fn prelude(ty: WeightType) -> &'static str {
    match ty {
        WeightType::Int8 => {
            "@group(0) @binding(1) var<storage, read> table: array<u32>;\n\
             @group(0) @binding(5) var<storage, read> t_scale: array<f32>;\n\
             fn tload(r: u32, c: u32) -> f32 {\n\
             let q = unpack4xI8(table[r * p.row_stride + c / 4u]);\n\
             return f32(q[c % 4u]) * t_scale[r];\n}\n"
        }
        WeightType::F32 | WeightType::F16 => {
            "@group(0) @binding(1) var<storage, read> table: array<f32>;\n\
             fn tload(r: u32, c: u32) -> f32 { return table[r * p.row_stride + c]; }\n"
        }
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let consts = [("EM_WG", b.config.embed_wg)];
    let f32 = b.module::<EmbedParams>("embed", &consts, prelude(WeightType::F32));
    let int8 = b.module::<EmbedParams>("embed int8", &consts, prelude(WeightType::Int8));
    Pipelines {
        f32: b.pipeline(&f32, "embed", &b.layouts.weights),
        int8: b.pipeline(&int8, "embed", &b.layouts.weights),
    }
}

super::op::kernel_ops! {
    /// `out[i] = table[ids[i]] + pos[pos0 + i % per_seq]` for `n_tok` ids (u32) into
    /// `[n_tok, d]`: `n_tok / per_seq` sequences of `per_seq` tokens, each starting at `pos0`,
    /// from a table of `table.rows` tokens stored as f32 or int8 (an int8 row is dequantized as
    /// it is read); the first `d` of its `table.cols` columns are used.
    Embed(EmbedParams) { ids, pos, out; n_tok, d, pos0, per_seq; table: MatrixRef<'a> }
}

impl Op for Embed<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (n_tok, d, pos0, per_seq, table) =
            (self.n_tok, self.d, self.pos0, self.per_seq, self.table);
        if n_tok == 0 || d == 0 {
            return Ok(());
        }
        if per_seq == 0 || !n_tok.is_multiple_of(per_seq) {
            return Err(Error::Device(format!(
                "embed: {n_tok} tokens are not sequences of {per_seq}"
            )));
        }
        let (kernel, row_stride) = match table.ty {
            WeightType::F32 => (&k.embed.f32, table.cols),
            WeightType::Int8 if table.cols.is_multiple_of(4) => (&k.embed.int8, table.cols / 4),
            ty => {
                return Err(Error::Device(format!(
                    "embed: no kernel for a {} table of {} columns",
                    ty.name(),
                    table.cols
                )))
            }
        };
        if d > table.cols {
            return Err(Error::Device(format!(
                "embed: d = {d} exceeds the table's {} columns",
                table.cols
            )));
        }
        let vocab = table.rows;
        need(self.ids, n_tok, "embed ids")?;
        need(table.data, vocab * table.row_bytes() / 4, "embed table")?;
        let scale = table.scales("embed scales")?;
        need(self.pos, (pos0 + per_seq) * d, "embed positions")?;
        need(self.out, n_tok * d, "embed out")?;
        let row_bytes = table.row_bytes();
        let chunk = k.rows_per_binding(row_bytes as u64).min(vocab);
        for (r0, rows) in ranges(vocab, chunk) {
            let params = EmbedParams {
                row_base: r0 as u32,
                table_rows: rows as u32,
                row_stride: row_stride as u32,
                ..self.params()?
            };
            let (first, len) = ((r0 * row_bytes) as u64, (rows * row_bytes) as u64);
            let tb = binding(table.data, first, len);
            let sb = match scale {
                Some(s) => binding(s, (r0 * 4) as u64, (rows * 4) as u64),
                None => whole(&k.dummy),
            };
            let wg = (groups(d, k.config.embed_wg), n_tok as u32, 1);
            let binds = [whole(self.ids), tb, whole(self.pos), whole(self.out), sb];
            k.launch(pass, kernel, &params, &binds, wg, || params.work())?;
        }
        Ok(())
    }
}
