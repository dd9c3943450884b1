// Fully connected layer: out[m, col0 + n] = act(x[m, :] · w[n, :] + bias[n]).
//
// Layouts: x is [M, K] row-major, w is PyTorch's [N, K] (f32, f16 pairs packed in u32, or int8
// quads packed in u32 with one f32 scale per row) (so this is x·Wᵀ: both operands are
// contiguous along K, which is what makes vec4 loads along K possible). Rows are bound as
// vec4<f32>: the host guarantees K % 4 == 0 (callers with odd K zero-pad rows to a multiple of 4;
// padding contributes 0 to every dot product). out is [M, out_stride] f32, written at columns
// col0 .. col0 + N, so a weight larger than one storage binding can be processed as several row
// ranges (each a separate binding at a byte offset) writing disjoint column ranges of one output.
//
// Tile sizes are `const`s that the host prepends (see `kernels.rs`, `MatmulConfig`):
//   MM_WG_X, MM_WG_Y   workgroup shape
//   MM_TM, MM_TN       rows / columns of the output each thread owns
//   MM_BK4             K-tile depth in vec4s (shared-memory kernel only)
//   GV_LANES, GV_ROWS  GEMV: threads cooperating along K per output, outputs per workgroup
//
// Bounds: row and column indices are clamped to M-1 / N-1 for loads (always in range; the
// clamped results are never stored) and stores are guarded by m < M, n < N; K needs no guard
// because K4 = K / 4 exactly and the host checks every buffer's size against M, N, K before
// dispatching. That is why the host may compile this module without naga's runtime checks.

// `p: Params` (m, n, k4, flags, out_stride, col0) is declared by the host from `MatmulParams` in kernels/matmul.rs.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
// binding 1, the weights, `fn wload(i) -> vec4<f32>` (the i-th group of 4 weights along K) and
// `fn row_scaled(v, n) -> f32` are prepended by the host (see `kernels.rs`): f32
// (`array<vec4<f32>>`), f16 packed in pairs (`array<vec2<u32>>`, unpacked with unpack2x16float:
// storage and bandwidth halved), or int8 packed in quads (`array<u32>`, unpacked with
// unpack4xI8: a quarter of f32) whose row scales (binding 5, bound over the same row range as
// the weights) multiply the finished K-sum of each output column: x·(q·s) = (x·q)·s. Arithmetic
// is f32 throughout; for f32 and f16, row_scaled returns its argument.
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// GELU (`gelu_erf`) is shaders/gelu.wgsl, appended by the host.

fn epilogue(v: f32, n: u32) -> f32 {
    var r = row_scaled(v, n);
    if ((p.flags & 1u) != 0u) {
        r = r + bias[n];
    }
    if ((p.flags & 2u) != 0u) {
        r = gelu_erf(r);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Shared-memory tiled kernel (the design for real GPUs): a workgroup owns a
// (MM_WG_Y*MM_TM) x (MM_WG_X*MM_TN) output tile; per K-tile every thread loads vec4s of x and w
// into workgroup memory (coalesced along K), then each thread accumulates its MM_TM x MM_TN
// micro-tile from workgroup memory. Thread (tx, ty) owns rows ty + i*MM_WG_Y and columns
// tx + j*MM_WG_X, so neighbouring threads store neighbouring columns.
const BM: u32 = MM_WG_Y * MM_TM;
const BN: u32 = MM_WG_X * MM_TN;
const NT: u32 = MM_WG_X * MM_WG_Y;

var<workgroup> xs: array<vec4<f32>, BM * MM_BK4>;
var<workgroup> ws: array<vec4<f32>, BN * MM_BK4>;

@compute @workgroup_size(MM_WG_X, MM_WG_Y, 1)
fn matmul_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * MM_WG_X + lid.x;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<array<f32, MM_TN>, MM_TM>;
    for (var i = 0u; i < MM_TM; i++) {
        for (var j = 0u; j < MM_TN; j++) {
            acc[i][j] = 0.0;
        }
    }
    let zero = vec4<f32>(0.0);
    for (var kt = 0u; kt < p.k4; kt += MM_BK4) {
        for (var e = tid; e < BM * MM_BK4; e += NT) {
            let r = row0 + e / MM_BK4;
            let kk = kt + e % MM_BK4;
            let v = x[min(r, p.m - 1u) * p.k4 + min(kk, p.k4 - 1u)];
            xs[e] = select(zero, v, kk < p.k4);
        }
        for (var e = tid; e < BN * MM_BK4; e += NT) {
            let c = col0 + e / MM_BK4;
            let kk = kt + e % MM_BK4;
            let v = wload(min(c, p.n - 1u) * p.k4 + min(kk, p.k4 - 1u));
            ws[e] = select(zero, v, kk < p.k4);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < MM_BK4; kk++) {
            var b: array<vec4<f32>, MM_TN>;
            for (var j = 0u; j < MM_TN; j++) {
                b[j] = ws[(lid.x + j * MM_WG_X) * MM_BK4 + kk];
            }
            for (var i = 0u; i < MM_TM; i++) {
                let a = xs[(lid.y + i * MM_WG_Y) * MM_BK4 + kk];
                for (var j = 0u; j < MM_TN; j++) {
                    acc[i][j] += dot(a, b[j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < MM_TM; i++) {
        let r = row0 + lid.y + i * MM_WG_Y;
        for (var j = 0u; j < MM_TN; j++) {
            let c = col0 + lid.x + j * MM_WG_X;
            if (r < p.m && c < p.n) {
                out[r * p.out_stride + p.col0 + c] = epilogue(acc[i][j], c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Register-blocked kernel without workgroup memory or barriers: each thread owns MM_TM
// consecutive rows and MM_TN consecutive columns and streams its operands from memory (caches
// provide the reuse). Chosen for CPU-type adapters (lavapipe), where barriers are expensive.
@compute @workgroup_size(MM_WG_X, MM_WG_Y, 1)
fn matmul_reg(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * MM_TM;
    let col0 = gid.x * MM_TN;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    var xo: array<u32, MM_TM>;
    var wo: array<u32, MM_TN>;
    for (var i = 0u; i < MM_TM; i++) {
        xo[i] = min(row0 + i, p.m - 1u) * p.k4;
    }
    for (var j = 0u; j < MM_TN; j++) {
        wo[j] = min(col0 + j, p.n - 1u) * p.k4;
    }
    var acc: array<array<f32, MM_TN>, MM_TM>;
    for (var i = 0u; i < MM_TM; i++) {
        for (var j = 0u; j < MM_TN; j++) {
            acc[i][j] = 0.0;
        }
    }
    for (var k = 0u; k < p.k4; k++) {
        var b: array<vec4<f32>, MM_TN>;
        for (var j = 0u; j < MM_TN; j++) {
            b[j] = wload(wo[j] + k);
        }
        for (var i = 0u; i < MM_TM; i++) {
            let a = x[xo[i] + k];
            for (var j = 0u; j < MM_TN; j++) {
                acc[i][j] += dot(a, b[j]);
            }
        }
    }
    for (var i = 0u; i < MM_TM; i++) {
        let r = row0 + i;
        for (var j = 0u; j < MM_TN; j++) {
            let c = col0 + j;
            if (r < p.m && c < p.n) {
                out[r * p.out_stride + p.col0 + c] = epilogue(acc[i][j], c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMV for few-row inputs (decoder steps, the vocabulary projection): workgroup (GV_LANES,
// GV_ROWS) computes GV_ROWS outputs of input row m = workgroup_id.y; the GV_LANES threads of an
// output stride along K (coalesced vec4 loads) and reduce in workgroup memory. GV_LANES = 1
// degenerates to one thread per output with no reduction.
var<workgroup> gv_part: array<f32, GV_LANES * GV_ROWS>;

@compute @workgroup_size(GV_LANES, GV_ROWS, 1)
fn gemv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x * GV_ROWS + lid.y;
    let m = wid.y;
    let wrow = min(n, p.n - 1u) * p.k4;
    let xrow = min(m, p.m - 1u) * p.k4;
    var s = vec4<f32>(0.0);
    for (var k = lid.x; k < p.k4; k += GV_LANES) {
        s += x[xrow + k] * wload(wrow + k);
    }
    var total = s.x + s.y + s.z + s.w;
    if (GV_LANES > 1u) {
        gv_part[lid.y * GV_LANES + lid.x] = total;
        workgroupBarrier();
        for (var stride = GV_LANES / 2u; stride > 0u; stride /= 2u) {
            if (lid.x < stride) {
                gv_part[lid.y * GV_LANES + lid.x] += gv_part[lid.y * GV_LANES + lid.x + stride];
            }
            workgroupBarrier();
        }
        total = gv_part[lid.y * GV_LANES];
    }
    if (lid.x == 0u && n < p.n && m < p.m) {
        out[m * p.out_stride + p.col0 + n] = epilogue(total, n);
    }
}
