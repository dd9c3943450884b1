
// ---------------------------------------------------------------------------------------------
// shaders/gelu.wgsl, appended to the families that apply GELU (`+ "gelu.wgsl"` in their
// parameter block). GELU, the exact erf form OpenAI's Whisper uses: 0.5 x (1 + erf(x / sqrt 2)).
// WGSL has no erf; we use Abramowitz & Stegun 7.1.26: erf(z) ~ 1 - (a1 t + ... + a5 t^5)
// exp(-z^2), t = 1 / (1 + 0.3275911 |z|), odd extension for z < 0. Its maximum absolute error is
// 1.5e-7 for erf, hence <= 0.75e-7 |x| for GELU, plus a few f32 ulps of rounding in evaluation.

fn erf_as(z: f32) -> f32 {
    let az = abs(z);
    let t = 1.0 / (1.0 + 0.3275911 * az);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-az * az);
    return select(r, -r, z < 0.0);
}

fn gelu_erf(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_as(x * 0.70710678118654752));
}
