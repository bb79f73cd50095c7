// FP32 GEMM without workgroup memory, for adapters that are CPUs underneath (lavapipe,
// SwiftShader, WARP) and for GEMV-like shapes on any GPU.
//
// Invocations of a workgroup lie along N; each computes TM rows x 4*TN4 columns. The row
// block depends only on the workgroup id, so every load of A is uniform across the
// workgroup (a CPU driver turns it into one scalar load and a broadcast, a GPU into one
// cached line), and the only per-lane loads are B's, contiguous along N. No barriers:
// lavapipe runs each workgroup as a sequence of SIMD batches and pays a coroutine switch
// per barrier. Indices are clamped instead of branched on; the store is masked.
//
// Compile-time constants: WG, TM, TN4, TRANS_A, TRANS_B, VEC_B (B bound as vec4s along N:
// needs !TRANS_B and N, ldb, the offset and the batch stride of B all multiples of 4),
// KV (TRANS_B with B bound as vec4s along K: K, ldb, the offset and the batch stride of B
// multiples of 4; each lane loads four K values of each of its columns at once and
// reduces them with dot products), A4 (with KV: A not transposed and bound as vec4s), KU
// (k unroll), SPLIT.
//
// Parallel split-K, for GEMV-like shapes whose few output tiles would leave most of a GPU
// idle: SPLIT = 1 runs `p.splits` slices of the K range in one dispatch (the grid holds
// every tile once per slice) and stores each slice's raw sums to `c`, bound to a dense
// scratch [splits, batch, m, n]; SPLIT = 2 is the reduce pass, with the scratch bound to
// `a`: each invocation adds its tile's slices and applies the epilogue. SPLIT = 0 is the
// plain kernel (one slice).

// #import common/gemm_params.wgsl
// #import common/gemm_load_b.wgsl
// #import common/epilogue.wgsl

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<AW>;
@group(0) @binding(2) var<storage, read> b: array<BW>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const BN: u32 = WG * TN4 * 4u;


@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lin = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let per_batch = p.groups_x * p.groups_y;
    let tiles = per_batch * p.batch;
    let slice = lin / tiles;
    if (slice >= p.splits) {
        return;
    }
    let batch = (lin % tiles) / per_batch;
    let rem = lin % per_batch;
    let row0 = (rem / p.groups_x) * TM;
    let colw = (rem % p.groups_x) * BN + lid.x * 4u;
    let a_off = p.off_a + batch * p.stride_a;
    let b_off = p.off_b + batch * p.stride_b;

    // Uniform row offsets into A, clamped so that rows past M re-read the last row.
    var arow: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        let r = min(row0 + i, p.m - 1u);
        if (TRANS_A) {
            arow[i] = a_off + r;
        } else {
            arow[i] = a_off + r * p.lda;
        }
    }
    // Per-lane column starts (each lane owns TN4 groups of 4, WG*4 apart), clamped.
    var bcol: array<u32, TN4>;
    for (var j = 0u; j < TN4; j++) {
        let col = colw + j * WG * 4u;
        if (VEC_B) {
            bcol[j] = min(col, p.n - 4u);
        } else {
            bcol[j] = min(col, p.n - 1u);
        }
    }

    var acc: array<vec4<f32>, TM * TN4>;
    for (var i = 0u; i < TM * TN4; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    // Dense [splits, batch, m, n] scratch: one slice's sums are this far apart.
    let slice_stride = p.batch * p.m * p.n;
    if (SPLIT == 2u) {
        // Reduce pass: `a` holds the slices' sums; add them in slice order.
        for (var s = 0u; s < p.splits; s++) {
            for (var i = 0u; i < TM; i++) {
                let r = min(row0 + i, p.m - 1u);
                let base = s * slice_stride + batch * p.m * p.n + r * p.n;
                for (var j = 0u; j < TN4; j++) {
                    let col = min(colw + j * WG * 4u, p.n - 1u);
                    let n1 = p.n - 1u;
                    let part = vec4<f32>(
                        a_at(base + col),
                        a_at(base + min(col + 1u, n1)),
                        a_at(base + min(col + 2u, n1)),
                        a_at(base + min(col + 3u, n1)),
                    );
                    acc[i * TN4 + j] = acc[i * TN4 + j] + part;
                }
            }
        }
    }
    // This slice's K range (the whole of K unless split; none in the reduce pass).
    var k = slice * p.kslice;
    var kend = min(k + p.kslice, p.k);
    if (SPLIT == 2u) {
        kend = k;
    }
    if (KV) {
        // K four at a time (the slice starts and K are multiples of 4): per column one
        // vec4 of B, per row one vec4 of A, four dot products per row and group.
        var brow: array<vec4<u32>, TN4>;
        for (var j = 0u; j < TN4; j++) {
            brow[j] = b_rows4(b_off, colw + j * WG * 4u);
        }
        for (; k < kend; k += 4u) {
            let k4 = k / 4u;
            var av: array<vec4<f32>, TM>;
            for (var i = 0u; i < TM; i++) {
                av[i] = load_a4(arow[i], k);
            }
            for (var j = 0u; j < TN4; j++) {
                let r = brow[j];
                let b0 = b_vec(r.x + k4);
                let b1 = b_vec(r.y + k4);
                let b2 = b_vec(r.z + k4);
                let b3 = b_vec(r.w + k4);
                for (var i = 0u; i < TM; i++) {
                    let x = av[i];
                    acc[i * TN4 + j] = acc[i * TN4 + j]
                        + vec4<f32>(dot(x, b0), dot(x, b1), dot(x, b2), dot(x, b3));
                }
            }
        }
    }
    let kmain = kend - (kend - k) % KU;
    for (; k < kmain; k += KU) {
        for (var u = 0u; u < KU; u++) {
            let kk = k + u;
            var bv: array<vec4<f32>, TN4>;
            for (var j = 0u; j < TN4; j++) {
                bv[j] = load_b4(b_off, kk, bcol[j]);
            }
            for (var i = 0u; i < TM; i++) {
                var av: f32;
                if (TRANS_A) {
                    av = a_at(arow[i] + kk * p.lda);
                } else {
                    av = a_at(arow[i] + kk);
                }
                for (var j = 0u; j < TN4; j++) {
                    acc[i * TN4 + j] = fma(vec4<f32>(av), bv[j], acc[i * TN4 + j]);
                }
            }
        }
    }
    for (; k < kend; k++) {
        var bv: array<vec4<f32>, TN4>;
        for (var j = 0u; j < TN4; j++) {
            bv[j] = load_b4(b_off, k, bcol[j]);
        }
        for (var i = 0u; i < TM; i++) {
            var av: f32;
            if (TRANS_A) {
                av = a_at(arow[i] + k * p.lda);
            } else {
                av = a_at(arow[i] + k);
            }
            for (var j = 0u; j < TN4; j++) {
                acc[i * TN4 + j] = fma(vec4<f32>(av), bv[j], acc[i * TN4 + j]);
            }
        }
    }

    // Copy the tile out with a loop small enough for the driver to unroll, so that only
    // `res` is indexed dynamically by the epilogue below. If the epilogue indexed `acc`,
    // lavapipe would keep `acc` in scratch memory for the whole K loop (measured: 2x
    // slower). Same reason for the epilogue reading `res` rather than branching inside
    // the accumulation.
    var res: array<vec4<f32>, TM * TN4>;
    for (var t = 0u; t < TM * TN4; t++) {
        res[t] = acc[t];
    }
    let c_off = p.off_c + batch * p.stride_c;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        for (var j = 0u; j < TN4; j++) {
            let col = colw + j * WG * 4u;
            let v = res[i * TN4 + j];
            for (var q = 0u; q < 4u; q++) {
                if (row < p.m && col + q < p.n) {
                    if (SPLIT == 1u) {
                        // Raw sums of this slice; the reduce pass applies the epilogue.
                        c[slice * slice_stride + batch * p.m * p.n + row * p.n + col + q] = v[q];
                    } else {
                        let ci = c_off + row * p.ldc + col + q;
                        c[ci] = gemm_epilogue(p, v[q], col + q, ci);
                    }
                }
            }
        }
    }
}
