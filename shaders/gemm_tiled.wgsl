// FP32 GEMM for GPUs: C = act(alpha * op(A) * op(B) + bias).
//
// Each workgroup computes a BM x BN tile of C (BM = WG_Y * TM, BN = WG_X * TN), staging
// BK-deep slices of A and B in workgroup memory; each invocation keeps a TM x TN register
// tile and reads vec4s from workgroup memory. Tiles are zero-filled past the matrix edges,
// so any M, N, K works; only the final store is bounds-checked.
//
// Compile-time constants (prepended by the registry): WG_X, WG_Y, TM, TN, BK, TRANS_A,
// TRANS_B. TM and TN are multiples of 4.

// #import common/gemm_params.wgsl
// #import common/epilogue.wgsl

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const BM: u32 = WG_Y * TM;
const BN: u32 = WG_X * TN;
const NT: u32 = WG_X * WG_Y;
const TM4: u32 = TM / 4u;
const TN4: u32 = TN / 4u;

// Stored k-major so that the inner loop reads contiguous vec4s along m and n.
var<workgroup> as_: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> bs: array<vec4<f32>, BK * BN / 4u>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let lin = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let per_batch = p.groups_x * p.groups_y;
    let batch = lin / per_batch;
    if (batch >= p.batch) {
        return;
    }
    let rem = lin % per_batch;
    let row0 = (rem / p.groups_x) * BM;
    let col0 = (rem % p.groups_x) * BN;
    let a_off = p.off_a + batch * p.stride_a;
    let b_off = p.off_b + batch * p.stride_b;

    var acc: array<vec4<f32>, TM * TN4>;
    for (var i = 0u; i < TM * TN4; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Stage A[row0 .. row0+BM, k0 .. k0+BK] as as_[kk][r].
        for (var e = tid; e < BM * BK; e += NT) {
            var r: u32;
            var kk: u32;
            if (TRANS_A) {
                kk = e / BM;
                r = e % BM;
            } else {
                r = e / BK;
                kk = e % BK;
            }
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < p.m && gk < p.k) {
                if (TRANS_A) {
                    v = a[a_off + gk * p.lda + gr];
                } else {
                    v = a[a_off + gr * p.lda + gk];
                }
            }
            as_[(kk * BM + r) / 4u][r % 4u] = v;
        }
        // Stage B[k0 .. k0+BK, col0 .. col0+BN] as bs[kk][n].
        for (var e = tid; e < BN * BK; e += NT) {
            var nn: u32;
            var kk: u32;
            if (TRANS_B) {
                nn = e / BK;
                kk = e % BK;
            } else {
                kk = e / BN;
                nn = e % BN;
            }
            let gn = col0 + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gn < p.n && gk < p.k) {
                if (TRANS_B) {
                    v = b[b_off + gn * p.ldb + gk];
                } else {
                    v = b[b_off + gk * p.ldb + gn];
                }
            }
            bs[(kk * BN + nn) / 4u][nn % 4u] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < BK; kk++) {
            var bv: array<vec4<f32>, TN4>;
            for (var j = 0u; j < TN4; j++) {
                bv[j] = bs[(kk * BN) / 4u + lid.x * TN4 + j];
            }
            for (var i4 = 0u; i4 < TM4; i4++) {
                let av = as_[(kk * BM) / 4u + lid.y * TM4 + i4];
                for (var j = 0u; j < TN4; j++) {
                    acc[(i4 * 4u + 0u) * TN4 + j] += av.x * bv[j];
                    acc[(i4 * 4u + 1u) * TN4 + j] += av.y * bv[j];
                    acc[(i4 * 4u + 2u) * TN4 + j] += av.z * bv[j];
                    acc[(i4 * 4u + 3u) * TN4 + j] += av.w * bv[j];
                }
            }
        }
        workgroupBarrier();
    }

    // Constant trip counts (no early exit), so every compiler can unroll this and keep
    // `acc` in registers.
    let c_off = p.off_c + batch * p.stride_c;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        for (var j = 0u; j < TN4; j++) {
            let v = acc[i * TN4 + j];
            let colb = col0 + (lid.x * TN4 + j) * 4u;
            for (var q = 0u; q < 4u; q++) {
                let col = colb + q;
                if (row < p.m && col < p.n) {
                    let ci = c_off + row * p.ldc + col;
                    c[ci] = gemm_epilogue(p, v[q], col, ci);
                }
            }
        }
    }
}
