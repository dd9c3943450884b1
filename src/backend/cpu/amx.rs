//! What the AMX kernels share (Intel's tile units, Sapphire Rapids and later): whether this
//! process may use the tiles, the one tile configuration they load, and, for tests, an
//! emulator of the instructions they issue.
//!
//! Two kernels use the tiles: int8 products (`int8::amx`, `tdpbusd`) and the bf16 attention
//! (`ops::fused_attention::bf16::amx`, `tdpbf16ps`) of `--dtype int8-bf16`, and of
//! `int8-bf16x3` with split operands (three bf16 products each: near f32). Each drives its
//! tiles through a small trait of its own on top of [`Tiles`], implemented by the CPU's tiles
//! ([`CpuTiles`], inline asm) and, in tests, by the emulator `TileFile`; each checks the
//! CPU's tiles against its AVX-512 twin once per process before the first use.
//!
//! Every tile is configured as 16 rows × 64 bytes: int8 A tiles are 16 rows × 64 inputs, bf16
//! ones 16 rows × 32 inputs, B tiles 16 groups of 4 (int8) or 2 (bf16) inputs × 16 columns,
//! accumulators 16 rows × 16 i32 or f32.
//!
//! x86-64 only (the module is not built elsewhere).

use std::sync::OnceLock;

/// Rows of every tile register.
pub(crate) const TILE_ROWS: usize = 16;
/// Bytes per tile row.
pub(crate) const TILE_ROW_BYTES: usize = 64;

/// The environment variable that turns the AMX kernels off (`0`/`off`): to run, and measure,
/// the AVX-512 kernels on an AMX machine.
pub const AMX_VAR: &str = "DATTAVANI_AMX";

/// For the AMX tests, told whether the CPU's tiles ran for `feature`: where
/// `DATTAVANI_REQUIRE_AMX=1`, they fail when the tiles did not run, saying why, instead of
/// passing on the emulator alone. For runs that must prove the tiles ran
/// (`tools/device/run4.sh` sets it on an AMX host, `tools/amx_bochs/run.sh` in its guest).
#[cfg(test)]
pub(crate) fn assert_tiles_ran_if_required(feature: Feature, ran: bool) {
    if ran || !std::env::var("DATTAVANI_REQUIRE_AMX").is_ok_and(|v| v.trim() == "1") {
        return;
    }
    let why = tile_status(feature)
        .err()
        .unwrap_or_else(|| "the self-check failed, or the AVX-512 twin is missing".into());
    panic!("DATTAVANI_REQUIRE_AMX=1, but the CPU's {feature:?} tiles did not run here: {why}");
}

/// The AMX instruction groups the kernels use (CPUID leaf 7, EDX).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Feature {
    /// `tdpbusd` (bit 25).
    Int8,
    /// `tdpbf16ps` (bit 22).
    Bf16,
}

/// Whether this process may run tile instructions of `feature`: the CPU has them and the
/// palette this code configures, our ISA is not capped below AVX-512 (the kernels' other
/// halves are AVX-512), [`AMX_VAR`] does not turn them off, and Linux granted the tile data
/// state. Decided once (the permission request is made at most once).
pub(crate) fn usable(feature: Feature) -> bool {
    tile_status(feature).is_ok()
}

/// [`usable`], with the reason when not.
pub(crate) fn tile_status(feature: Feature) -> Result<(), String> {
    static GRANTED: OnceLock<Result<(), String>> = OnceLock::new();
    GRANTED
        .get_or_init(|| {
            use super::isa::{isa, Isa};
            if isa() < Isa::Avx512 {
                return Err("the ISA in use is below AVX-512".into());
            }
            if !cpu_has_tiles() {
                return Err("the CPU has no AMX tiles of the palette used".into());
            }
            if let Ok(v) = std::env::var(AMX_VAR) {
                if matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "off" | "false" | "no"
                ) {
                    tracing::info!("{AMX_VAR}={v}: AMX tiles not used");
                    return Err(format!("{AMX_VAR}={v}"));
                }
            }
            request_tile_data().inspect_err(|why| {
                tracing::warn!("AMX present but not usable ({why}): AVX-512 kernels instead")
            })
        })
        .clone()?;
    let bit = match feature {
        Feature::Int8 => 25,
        Feature::Bf16 => 22,
    };
    if std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << bit) == 0 {
        return Err(format!("the CPU has no AMX {feature:?}"));
    }
    Ok(())
}

/// Whether one kernel runs on the CPU's tiles, the decision both take once: its AVX-512 twin
/// runs here (`twin`), the tiles are [`usable`] for `feature`, and `self_check` (the CPU's
/// tiles against the twin) passes; otherwise the twin runs, with a warning if the check failed.
pub(crate) fn decide(feature: Feature, twin: bool, self_check: fn() -> bool, what: &str) -> bool {
    if !twin || !usable(feature) {
        return false;
    }
    if !self_check() {
        tracing::warn!("AMX tiles differ from the AVX-512 kernel on the {what}: that kernel runs");
        return false;
    }
    tracing::debug!("the {what} run on AMX tiles");
    true
}

/// CPUID: AMX-TILE (leaf 7), and palette 1 with at least 8 tiles of 16 rows × 64 bytes (leaf
/// 0x1D), the configuration [`Tiles::configure`] loads.
fn cpu_has_tiles() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 0x1D || __cpuid_count(7, 0).edx & (1 << 24) == 0 {
        return false;
    }
    if __cpuid_count(0x1D, 0).eax < 1 {
        return false;
    }
    let palette = __cpuid_count(0x1D, 1);
    let bytes_per_row = (palette.ebx & 0xFFFF) as usize;
    let names = palette.ebx >> 16;
    let max_rows = (palette.ecx & 0xFFFF) as usize;
    bytes_per_row >= TILE_ROW_BYTES && names >= 8 && max_rows >= TILE_ROWS
}

/// Ask Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
/// Linux 5.16+), which a process must hold before its first tile instruction; the grant covers
/// every thread of the process.
fn request_tile_data() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with these codes reads an integer or writes one u64 we own.
        unsafe {
            if libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) != 0
            {
                return Err(format!(
                    "arch_prctl(ARCH_REQ_XCOMP_PERM): {}",
                    std::io::Error::last_os_error()
                ));
            }
            let mut granted: u64 = 0;
            let got = libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_GET_XCOMP_PERM,
                &mut granted as *mut u64,
            );
            if got != 0 || granted & (1 << XFEATURE_XTILEDATA) == 0 {
                return Err("the kernel did not grant the tile data state".into());
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("the tile permission is only requested on Linux".into())
    }
}

/// `ldtilecfg`'s 64-byte operand: palette 1, tiles 0-7 of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// What both kernels' tile units do alike: one per task, configured, accumulators tmm0-3
/// zeroed, released. The CPU's tiles ([`CpuTiles`]) and the emulator (`TileFile`) implement
/// it, and each kernel's own trait of loads, products and stores on top.
pub(crate) trait Tiles: Sized {
    /// A unit for one task, which touches only these buffers (start address, bytes).
    fn new(buffers: &[(usize, usize)]) -> Self;
    /// Configure tiles 0-7 as 16 rows × 64 bytes (`ldtilecfg`), on this thread.
    ///
    /// # Safety
    /// [`usable`] for the feature the caller then runs.
    unsafe fn configure(&mut self);
    /// Return this thread's tiles to their initial state (`tilerelease`), so that a context
    /// switch need not save them.
    ///
    /// # Safety
    /// As [`Tiles::configure`].
    unsafe fn release(&mut self);
    /// Zero tmm0-3, the accumulators of both kernels (`tilezero`).
    ///
    /// # Safety
    /// Configured.
    unsafe fn zero_accumulators(&mut self);
}

/// The CPU's tile registers, through inline asm (Rust's AMX intrinsics are unstable). The
/// compiler never allocates tile registers, so they keep their values between asm blocks.
pub(crate) struct CpuTiles;

impl Tiles for CpuTiles {
    fn new(_: &[(usize, usize)]) -> Self {
        CpuTiles
    }

    #[inline(always)]
    unsafe fn configure(&mut self) {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly));
    }

    #[inline(always)]
    unsafe fn release(&mut self) {
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }

    #[inline(always)]
    unsafe fn zero_accumulators(&mut self) {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }
}

/// `tileloadd tmm$t, [$src + $stride]`: 16 rows of 64 bytes, `$stride` bytes apart.
macro_rules! tile_load {
    ($t:literal, $src:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tileloadd tmm", $t, ", [{0} + {1}*1]"),
            in(reg) $src,
            in(reg) $stride,
            options(nostack, readonly)
        )
    };
}

/// `tilestored [$dst + $stride], tmm$t`.
macro_rules! tile_store {
    ($t:literal, $dst:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tilestored [{0} + {1}*1], tmm", $t),
            in(reg) $dst,
            in(reg) $stride,
            options(nostack)
        )
    };
}
pub(crate) use {tile_load, tile_store};

/// Tile registers in memory, each instruction as Intel's pseudo-code defines it for the
/// 16 × 64-byte configuration, every row read or written checked to lie inside one of the
/// buffers the kernel declared: a kernel's addressing and blocking, tested on any machine.
#[cfg(test)]
pub(crate) struct TileFile {
    tiles: [[[u8; TILE_ROW_BYTES]; TILE_ROWS]; 8],
    configured: bool,
    /// (start address, bytes) of each buffer the kernel may touch.
    buffers: Vec<(usize, usize)>,
}

#[cfg(test)]
impl Tiles for TileFile {
    fn new(buffers: &[(usize, usize)]) -> Self {
        TileFile {
            tiles: [[[0; TILE_ROW_BYTES]; TILE_ROWS]; 8],
            configured: false,
            buffers: buffers.to_vec(),
        }
    }

    unsafe fn configure(&mut self) {
        self.configured = true;
    }

    unsafe fn release(&mut self) {
        assert!(self.configured, "tilerelease without ldtilecfg");
        *self = TileFile::new(&self.buffers);
    }

    unsafe fn zero_accumulators(&mut self) {
        assert!(self.configured, "tile instruction before ldtilecfg");
        for t in 0..4 {
            self.tiles[t] = [[0; TILE_ROW_BYTES]; TILE_ROWS];
        }
    }
}

#[cfg(test)]
impl TileFile {
    fn check(&self, at: usize) {
        assert!(self.configured, "tile instruction before ldtilecfg");
        assert!(
            self.buffers
                .iter()
                .any(|&(s, len)| at >= s && at + TILE_ROW_BYTES <= s + len),
            "tile row at {at:#x} is outside every buffer"
        );
    }

    /// `tileloadd`.
    ///
    /// # Safety
    /// Rows that [`Self::check`] accepts are readable.
    pub(crate) unsafe fn load(&mut self, t: usize, src: *const u8, stride: usize) {
        for row in 0..TILE_ROWS {
            let at = src.wrapping_add(row * stride);
            self.check(at as usize);
            std::ptr::copy_nonoverlapping(at, self.tiles[t][row].as_mut_ptr(), TILE_ROW_BYTES);
        }
    }

    /// `tilestored`.
    ///
    /// # Safety
    /// Rows that [`Self::check`] accepts are writable.
    pub(crate) unsafe fn store(&mut self, t: usize, dst: *mut u8, stride: usize) {
        for row in 0..TILE_ROWS {
            let at = dst.wrapping_add(row * stride);
            self.check(at as usize);
            std::ptr::copy_nonoverlapping(self.tiles[t][row].as_ptr(), at, TILE_ROW_BYTES);
        }
    }

    fn word(&self, t: usize, row: usize, j: usize) -> [u8; 4] {
        self.tiles[t][row][4 * j..4 * j + 4].try_into().unwrap()
    }

    /// `tdpbusd c, a, b`: `c[m][n] += Σ_k Σ_i u8(a[m][4k+i]) · i8(b[k][4n+i])`.
    pub(crate) fn dpbusd(&mut self, c: usize, a: usize, b: usize) {
        assert!(self.configured, "tile instruction before ldtilecfg");
        for m in 0..TILE_ROWS {
            for n in 0..TILE_ROW_BYTES / 4 {
                let mut sum = i32::from_le_bytes(self.word(c, m, n));
                for k in 0..TILE_ROW_BYTES / 4 {
                    let (x, y) = (self.word(a, m, k), self.word(b, k, n));
                    for i in 0..4 {
                        sum = sum.wrapping_add(x[i] as i32 * y[i] as i8 as i32);
                    }
                }
                self.tiles[c][m][4 * n..4 * n + 4].copy_from_slice(&sum.to_le_bytes());
            }
        }
    }

    /// `tdpbf16ps c, a, b` in the SDM's order: for each row m and column n, the even and the
    /// odd products of the 16 pairs k summed apart (`a[m][2k]·b[k][2n]`, `a[m][2k+1]·b[k][2n+1]`,
    /// each step rounded to f32), then the two sums added, then that added to `c[m][n]`;
    /// denormal inputs and results are zero (DAZ, FTZ).
    pub(crate) fn dpbf16ps(&mut self, c: usize, a: usize, b: usize) {
        assert!(self.configured, "tile instruction before ldtilecfg");
        let flush = |x: f32| if x.is_subnormal() { 0.0 } else { x };
        let bf16 = |w: [u8; 4], i: usize| {
            flush(f32::from_bits(
                (u16::from_le_bytes([w[2 * i], w[2 * i + 1]]) as u32) << 16,
            ))
        };
        for m in 0..TILE_ROWS {
            for n in 0..TILE_ROW_BYTES / 4 {
                let (mut even, mut odd) = (0.0f32, 0.0f32);
                for k in 0..TILE_ROW_BYTES / 4 {
                    let (x, y) = (self.word(a, m, k), self.word(b, k, n));
                    even = flush(even + bf16(x, 0) * bf16(y, 0));
                    odd = flush(odd + bf16(x, 1) * bf16(y, 1));
                }
                let c_mn = flush(f32::from_le_bytes(self.word(c, m, n)));
                let sum = flush(c_mn + flush(even + odd));
                self.tiles[c][m][4 * n..4 * n + 4].copy_from_slice(&sum.to_le_bytes());
            }
        }
    }
}
