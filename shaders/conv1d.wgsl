// 1-D convolution, kernel 3, padding 1, stride 1 or 2 (Whisper's encoder stem), optional GELU.
// input [c_in, t_in] (channels first, as the mel is), weight [c_out, c_in, 3], bias [c_out];
// output time-major [t_out, c_out] (the twin is ops::conv1d_k3).
// Each thread owns CV_TT time steps x CV_TC output channels; neighbouring threads own
// neighbouring channel blocks, so stores along c_out are contiguous.
// Bounds: loads use clamped indices (always in range) and zero the padding taps with select;
// stores are guarded.

// `p: Params` (c_in, t_in, c_out, t_out, stride, gelu) is declared by the host from `Conv1dParams` in kernels/conv1d.rs.

@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// GELU (`gelu_erf`) is shaders/gelu.wgsl, appended by the host.

@compute @workgroup_size(CV_WG_X, CV_WG_Y, 1)
fn conv1d_k3(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co0 = gid.x * CV_TC;
    let t0 = gid.y * CV_TT;
    if (co0 >= p.c_out || t0 >= p.t_out) {
        return;
    }
    var acc: array<array<f32, CV_TC>, CV_TT>;
    for (var i = 0u; i < CV_TT; i++) {
        for (var j = 0u; j < CV_TC; j++) {
            acc[i][j] = 0.0;
        }
    }
    var wrow: array<u32, CV_TC>;
    for (var j = 0u; j < CV_TC; j++) {
        wrow[j] = min(co0 + j, p.c_out - 1u) * p.c_in * 3u;
    }
    for (var c = 0u; c < p.c_in; c++) {
        let xrow = c * p.t_in;
        for (var tap = 0u; tap < 3u; tap++) {
            var wv: array<f32, CV_TC>;
            for (var j = 0u; j < CV_TC; j++) {
                wv[j] = wt[wrow[j] + c * 3u + tap];
            }
            for (var i = 0u; i < CV_TT; i++) {
                // source time = t * stride + tap - 1, computed without underflow
                let s1 = (t0 + i) * p.stride + tap; // = src + 1
                let ok = s1 >= 1u && s1 <= p.t_in;
                let xv = select(0.0, inp[xrow + clamp(s1, 1u, p.t_in) - 1u], ok);
                for (var j = 0u; j < CV_TC; j++) {
                    acc[i][j] += xv * wv[j];
                }
            }
        }
    }
    for (var i = 0u; i < CV_TT; i++) {
        let t = t0 + i;
        for (var j = 0u; j < CV_TC; j++) {
            let co = co0 + j;
            if (t < p.t_out && co < p.c_out) {
                var v = acc[i][j] + bias[co];
                if (p.gelu != 0u) {
                    v = gelu_erf(v);
                }
                out[t * p.c_out + co] = v;
            }
        }
    }
}
