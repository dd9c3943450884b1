//! Deterministic benchmark data shared by the bench binaries.

/// `n` uniform numbers in [-1, 1) from a 64-bit LCG (Knuth's constants) seeded by `seed`.
pub fn rand_vec(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
