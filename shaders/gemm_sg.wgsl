// FP32 GEMM for CPU adapters with subgroups (lavapipe): C = act(alpha * op(A) * op(B) + bias).
//
// Why this shape: llvmpipe (Mesa 22/23) lowers every storage- and workgroup-memory load to
// a scalar loop over the SIMD lanes, so the cost of a kernel is its number of loaded
// elements per lane, whatever their addresses. Here each invocation owns TM rows x
// 4*TN4 columns; the 8 lanes of a subgroup load 8 different rows of A for one k and share
// them with subgroupBroadcast (a register shuffle), so one load feeds 8 rows. Per lane and
// k step: TM/8 loads of A, 4*TN4 loads of B, 4*TM*TN4 FMAs.
//
// Requires every subgroup to hold at least 8 invocations (the plan checks the adapter's
// minimum subgroup size). Lanes never diverge before a broadcast: out-of-range rows and
// columns are clamped, and only the store is masked.
//
// KV (B transposed, K and every offset and pitch of B multiples of 4): B bound as vec4s
// along K, so each lane loads four K values of a column at once, and A's rows are read
// (vec4s with A4) and broadcast four K values at a time; four dot products per row and
// group of columns. Per lane and four k: TM/8 loads of A, 4*TN4 of B.
//
// Compile-time constants: WG, TM (multiple of 8), TN4, TRANS_A, TRANS_B, VEC_B, KV, A4.

// #import common/gemm_params.wgsl
// #import common/gemm_load_b.wgsl
// #import common/epilogue.wgsl

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<AW>;
@group(0) @binding(2) var<storage, read> b: array<BW>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const BN: u32 = WG * TN4 * 4u;
const TM8: u32 = TM / 8u;

// The values of lanes 0..8 of the subgroup (subgroupBroadcast takes a constant lane
// index). Called from uniform control flow only.
fn broadcast8(x: f32) -> array<f32, 8> {
    return array<f32, 8>(
        subgroupBroadcast(x, 0u),
        subgroupBroadcast(x, 1u),
        subgroupBroadcast(x, 2u),
        subgroupBroadcast(x, 3u),
        subgroupBroadcast(x, 4u),
        subgroupBroadcast(x, 5u),
        subgroupBroadcast(x, 6u),
        subgroupBroadcast(x, 7u),
    );
}

fn broadcast8v(x: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(x, 0u),
        subgroupBroadcast(x, 1u),
        subgroupBroadcast(x, 2u),
        subgroupBroadcast(x, 3u),
        subgroupBroadcast(x, 4u),
        subgroupBroadcast(x, 5u),
        subgroupBroadcast(x, 6u),
        subgroupBroadcast(x, 7u),
    );
}


@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let lin = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let per_batch = p.groups_x * p.groups_y;
    let batch = lin / per_batch;
    if (batch >= p.batch) {
        return;
    }
    let rem = lin % per_batch;
    let row0 = (rem / p.groups_x) * TM;
    let colw = (rem % p.groups_x) * BN + lid.x * 4u;
    let a_off = p.off_a + batch * p.stride_a;
    let b_off = p.off_b + batch * p.stride_b;

    // The row of A this lane fetches for each group of 8 rows (clamped into [0, m)).
    var arow: array<u32, TM8>;
    for (var r8 = 0u; r8 < TM8; r8++) {
        let r = min(row0 + r8 * 8u + lane % 8u, p.m - 1u);
        if (TRANS_A) {
            arow[r8] = a_off + r;
        } else {
            arow[r8] = a_off + r * p.lda;
        }
    }
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

    var kstart = 0u;
    if (KV) {
        var brow: array<vec4<u32>, TN4>;
        for (var j = 0u; j < TN4; j++) {
            brow[j] = b_rows4(b_off, colw + j * WG * 4u);
        }
        for (; kstart < p.k; kstart += 4u) {
            let k4 = kstart / 4u;
            var bv: array<vec4<f32>, TN4 * 4u>;
            for (var j = 0u; j < TN4; j++) {
                bv[j * 4u] = b_vec(brow[j].x + k4);
                bv[j * 4u + 1u] = b_vec(brow[j].y + k4);
                bv[j * 4u + 2u] = b_vec(brow[j].z + k4);
                bv[j * 4u + 3u] = b_vec(brow[j].w + k4);
            }
            for (var r8 = 0u; r8 < TM8; r8++) {
                var av = broadcast8v(load_a4(arow[r8], kstart));
                for (var r = 0u; r < 8u; r++) {
                    let x = av[r];
                    for (var j = 0u; j < TN4; j++) {
                        let t = (r8 * 8u + r) * TN4 + j;
                        acc[t] = acc[t] + vec4<f32>(
                            dot(x, bv[j * 4u]),
                            dot(x, bv[j * 4u + 1u]),
                            dot(x, bv[j * 4u + 2u]),
                            dot(x, bv[j * 4u + 3u]),
                        );
                    }
                }
            }
        }
    }
    for (var k = kstart; k < p.k; k++) {
        var bv: array<vec4<f32>, TN4>;
        for (var j = 0u; j < TN4; j++) {
            bv[j] = load_b4(b_off, k, bcol[j]);
        }
        for (var r8 = 0u; r8 < TM8; r8++) {
            var mine: f32;
            if (TRANS_A) {
                mine = a_at(arow[r8] + k * p.lda);
            } else {
                mine = a_at(arow[r8] + k);
            }
            var av = broadcast8(mine);
            for (var r = 0u; r < 8u; r++) {
                for (var j = 0u; j < TN4; j++) {
                    let t = (r8 * 8u + r) * TN4 + j;
                    acc[t] = fma(vec4<f32>(av[r]), bv[j], acc[t]);
                }
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
                    let ci = c_off + row * p.ldc + col + q;
                    c[ci] = gemm_epilogue(p, v[q], col + q, ci);
                }
            }
        }
    }
}
