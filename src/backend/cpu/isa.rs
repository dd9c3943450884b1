//! Which vector instruction set the CPU ops take, detected once per process.
//!
//! Every op family with hand-vectorised or target-compiled variants dispatches on [`isa`]:
//! AVX-512 (F/BW/VL/DQ) where the CPU has it, else AVX2, else the portable code (what every
//! other architecture compiles, aarch64 included). The int8 GEMM has its own finer test
//! ([`super::int8::has_vnni`], which also needs [`Isa::Avx512`]), and so has the bf16 attention
//! of `--dtype int8-bf16` (`ops::Products::on_this_cpu`: AVX-512 BF16). AMX (Intel's tile
//! units, module `super::amx`) runs the int8 products of 16+ rows where
//! [`super::int8::has_amx`] (VNNI's integers exactly) and the bf16 attention where
//! [`super::ops::bf16_amx_available`]; `DATTAVANI_AMX=0` turns both off.

use std::sync::OnceLock;

/// Vector instruction sets, narrowest first (so `min` picks the narrower of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The name `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The environment variable that caps [`isa`] (`portable`, `avx2` or `avx512`): to run, and
/// measure, the narrower paths on a wider CPU, as `ONEDNN_MAX_CPU_ISA` does for oneDNN.
pub const MAX_ISA_VAR: &str = "DATTAVANI_MAX_ISA";

/// The widest [`Isa`] this CPU runs, capped by [`MAX_ISA_VAR`] (read on the first call, then
/// cached).
pub fn isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let cap = std::env::var(MAX_ISA_VAR).ok().and_then(|name| {
            let cap = [Isa::Portable, Isa::Avx2, Isa::Avx512]
                .into_iter()
                .find(|isa| isa.name() == name.trim().to_ascii_lowercase());
            if cap.is_none() {
                tracing::warn!("{MAX_ISA_VAR}={name:?} is not portable, avx2 or avx512: ignored");
            }
            cap
        });
        detect().min(cap.unwrap_or(Isa::Avx512))
    })
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The CPU's model name (`/proc/cpuinfo` on Linux, else the architecture).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The code path each CPU op family takes on this machine, as (family, path): what `bench`
/// prints.
pub fn cpu_op_paths() -> Vec<(&'static str, String)> {
    let simd = isa();
    let vnni = super::int8::has_vnni();
    let (int8, quantize) = if vnni && super::int8::has_amx() {
        (
            "amx-int8 tiles (16-row blocks), avx512-vnni (the rest)",
            "avx512",
        )
    } else if vnni {
        ("avx512-vnni", "avx512")
    } else if simd >= Isa::Avx2 {
        ("avx2 (rows kernel)", "portable")
    } else {
        ("portable", "portable")
    };
    let fused = if simd >= Isa::Avx2 {
        format!("{} fused (online softmax)", simd.name())
    } else {
        format!("gemm crate + softmax ({})", simd.name())
    };
    use super::ops::Products;
    let bf16_kernel = match Products::Bf16.on_this_cpu() {
        Products::F32 => None,
        _ if super::ops::bf16_amx_available() => Some("amx-bf16 tiles fused"),
        _ => Some("avx512-bf16 fused"),
    };
    let (bf16_attention, bf16x3_attention, bf16v_attention) = match bf16_kernel {
        Some(kernel) => (
            format!("{kernel} (bf16 products)"),
            format!("{kernel} (3 bf16 products of split operands)"),
            // The AMX kernel has bf16 scores only: f32 scores run on AVX-512.
            "avx512-bf16 fused (f32 scores, bf16 weights x values)".into(),
        ),
        None => (
            "as int8 (no AVX-512 BF16)".into(),
            "as int8".into(),
            "as int8".into(),
        ),
    };
    vec![
        ("matmul f32", "gemm crate (its own dispatch)".to_string()),
        ("matmul int8", int8.to_string()),
        ("int8 row quantization", quantize.to_string()),
        ("attention, 32+ queries", fused),
        ("attention, int8-bf16 encoder", bf16_attention),
        ("attention, int8-bf16x3 encoder", bf16x3_attention),
        ("attention, int8-bf16v encoder", bf16v_attention),
        ("attention, decoder steps", simd.name().to_string()),
        ("softmax, layer norm, GELU, add", simd.name().to_string()),
    ]
}
