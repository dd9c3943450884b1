//! Vectorisable scalar functions the ops share: `exp` (softmax, GELU's `erf`), `erf`, and the
//! lane-wise reduction the row reductions use.

/// Cephes `expf`'s polynomial for e^r − 1 − r, divided by r², highest power first: what [`exp`]
/// and the fused attention kernels' vector `exp`s evaluate.
pub(super) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` in f32, written so the compiler vectorises loops over it (`f32::exp` is a libm call per
/// element, which made softmax and GELU cost as much as the encoder's matrix products).
/// Cephes `expf`: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, then 2^n via
/// the exponent bits. Relative error ≤ 2 ulp over the normal range; 0 below −87.3 (underflow),
/// so masked scores (−∞) give exactly 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a round instruction.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.3);
    let n = (xc * LOG2_E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    // 2^n from the exponent bits. `n as i32` would be a saturating conversion, which compilers
    // do not vectorise (it made softmax a scalar loop); instead the integer n + 127 (in 1..=254)
    // is read from the low mantissa bits of n + 127 + 1.5·2^23, which holds it exactly.
    let biased = (n + (127.0 + ROUND))
        .to_bits()
        .wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(biased << 23);
    if x < -87.3 {
        0.0
    } else {
        er * scale
    }
}

/// The error function, vectorisable: Abramowitz & Stegun 7.1.26, absolute error ≤ 1.5e-7 (the
/// size of f32 rounding near 1), so GELU's error is ≤ 0.75e-7·|x|.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

/// Reduce `x` with `f` over 8 independent lanes, then across them: the same association a SIMD
/// reduction uses, which lets the compiler vectorise it (a single accumulator cannot be).
pub(super) fn lanes_reduce(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let mut r = acc.into_iter().fold(init, &f);
    for &v in tail {
        r = f(r, v);
    }
    r
}
