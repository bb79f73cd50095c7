// The FP16 GEMM on cooperative matrices (tensor cores where the GPU has them):
// C[m, n] = act(sum_k x[m, k] * w[n, k] + bias[n]) with X [M, K] and W [N, K] (a Linear
// weight) both f16, read as u32 pairs; the products are f16 x f16 (exact in f32) and the
// sums are f32; the output is f32 or f16.
//
// One workgroup computes a BM x BN block (BM = 32 * WM, BN = 64 * WN) with WM * WN
// subgroups of exactly 32 invocations (the plan asks for an adapter whose subgroups are
// 32 wide: plan::coop_capable). Each subgroup owns a 32 x 64 part of the block as 2 x 4
// accumulators of 16 x 16 (coop_mat16x16<f32, C>), each its own variable (an array of
// cooperative matrices indexed in a loop is valid WGSL, but has not run on a GPU here).
// K advances BK = 32 values at a time:
// the invocations stage X's and W's tiles in workgroup memory as f16 (rows padded to
// LDS halves, 80 bytes, a multiple of 16 as cooperative loads want; out-of-range values
// are zeros), and load the next tile into registers while the subgroups multiply the
// current one. naga 30 cannot write cooperative loads or stores through a dynamic pointer
// into a storage buffer, so the operands come from workgroup memory and the accumulators
// leave through it: each subgroup stores one accumulator at a time to its 16 x 16 slot of
// `sc`, and the whole workgroup applies bias, activation and the output type to the
// slots (the epilogue of the other kernels, common/epilogue.wgsl and store_f16.wgsl).
//
// The composer emits `enable wgpu_cooperative_matrix;`, the operand element type `XW`
// (vec4<u32>: eight halves per load, when K is a multiple of 8; u32 otherwise) and the
// loaders `x8`/`w8`, which return the eight halves of row `r` from column `k0` as four
// u32 pairs, zeros past M (or N) and K. Constants: WM, WN, OUT_F16.
//
// Split-K: with p.splits > 1 the grid's z index is a slice of p.slice_tiles tiles of K;
// each slice stores its raw f32 sums (flags 0, f32 output, ldo = N) at z * M * N of a
// dense scratch bound as `out`, and wgemm.wgsl's REDUCE pass adds the slices and applies
// bias, activation and the output type.

// #import common/store_f16.wgsl
// #import common/epilogue.wgsl

struct Params {
    m: u32,
    n: u32,
    k: u32,
    ldo: u32,         // output row pitch in elements
    flags: u32,       // bit 0: bias; bits 1..2: activation
    splits: u32,      // K slices (1: not split)
    slice_tiles: u32, // BK-tiles of K per slice
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<XW>;
@group(0) @binding(2) var<storage, read> w: array<XW>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

const WTM: u32 = 32u;
const WTN: u32 = 64u;
const BM: u32 = WM * WTM;
const BN: u32 = WN * WTN;
const BK: u32 = 32u;
const LDS: u32 = 40u;
const THREADS: u32 = WM * WN * 32u;
// Eight-half chunks of one tile per invocation (the plan's blocks divide evenly).
const A_LOADS: u32 = BM * 4u / THREADS;
const B_LOADS: u32 = BN * 4u / THREADS;

var<workgroup> sa: array<f16, BM * LDS>;
var<workgroup> sb: array<f16, BN * LDS>;
var<workgroup> sc: array<f32, WM * WN * 256u>;

// Stores the eight halves of `v` at `base` of sa (is_a) or sb.
fn stage(is_a: bool, base: u32, v: vec4<u32>) {
    for (var j = 0u; j < 4u; j++) {
        let h = vec2<f16>(unpack2x16float(v[j]));
        if (is_a) {
            sa[base + 2u * j] = h.x;
            sa[base + 2u * j + 1u] = h.y;
        } else {
            sb[base + 2u * j] = h.x;
            sb[base + 2u * j + 1u] = h.y;
        }
    }
}

// Applies the epilogue to slot `s` of sc, which holds the accumulator (fi, fj) of the
// subgroup whose index is `s`: every invocation takes two groups of four columns.
fn drain(t: u32, row0: u32, col0: u32, slice: u32, fi: u32, fj: u32) {
    let s = t / 32u;
    let r_base = row0 + (s / WN) * WTM + fi * 16u;
    let c_base = col0 + (s % WN) * WTN + fj * 16u;
    let out0 = slice * p.m * p.ldo;
    for (var h = 0u; h < 2u; h++) {
        let q = t % 32u + h * 32u;
        let r = q / 4u;
        let c = (q % 4u) * 4u;
        let row = r_base + r;
        let col = c_base + c;
        if (row < p.m && col < p.n) {
            let cnt = min(4u, p.n - col);
            var o = vec4<f32>(0.0);
            for (var e = 0u; e < cnt; e++) {
                o[e] = bias_act(sc[s * 256u + r * 16u + c + e], p.flags, col + e);
            }
            let at = out0 + row * p.ldo + col;
            if (OUT_F16) {
                store_f16x4(at, cnt, o);
            } else {
                for (var e = 0u; e < cnt; e++) {
                    atomicStore(&out[at + e], bitcast<u32>(o[e]));
                }
            }
        }
    }
}

@compute @workgroup_size(THREADS)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
) {
    let col0 = wg.x * BN;
    let row0 = wg.y * BM;
    let wr = (sg / WN) * WTM;
    let wc = (sg % WN) * WTN;
    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc02 = coop_mat16x16<f32, C>();
    var acc03 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    var acc12 = coop_mat16x16<f32, C>();
    var acc13 = coop_mat16x16<f32, C>();

    let tiles = (p.k + BK - 1u) / BK;
    let kt0 = wg.z * p.slice_tiles;
    let kt1 = min(kt0 + p.slice_tiles, tiles);
    // Chunk c of a tile is row c / 4, halves (c % 4) * 8 .. + 8.
    var ra: array<vec4<u32>, A_LOADS>;
    var rb: array<vec4<u32>, B_LOADS>;
    for (var i = 0u; i < A_LOADS; i++) {
        let c = t + i * THREADS;
        ra[i] = x8(row0 + c / 4u, kt0 * BK + (c % 4u) * 8u);
    }
    for (var i = 0u; i < B_LOADS; i++) {
        let c = t + i * THREADS;
        rb[i] = w8(col0 + c / 4u, kt0 * BK + (c % 4u) * 8u);
    }
    for (var kt = kt0; kt < kt1; kt++) {
        workgroupBarrier();
        for (var i = 0u; i < A_LOADS; i++) {
            let c = t + i * THREADS;
            stage(true, (c / 4u) * LDS + (c % 4u) * 8u, ra[i]);
        }
        for (var i = 0u; i < B_LOADS; i++) {
            let c = t + i * THREADS;
            stage(false, (c / 4u) * LDS + (c % 4u) * 8u, rb[i]);
        }
        workgroupBarrier();
        if (kt + 1u < kt1) {
            let kn = (kt + 1u) * BK;
            for (var i = 0u; i < A_LOADS; i++) {
                let c = t + i * THREADS;
                ra[i] = x8(row0 + c / 4u, kn + (c % 4u) * 8u);
            }
            for (var i = 0u; i < B_LOADS; i++) {
                let c = t + i * THREADS;
                rb[i] = w8(col0 + c / 4u, kn + (c % 4u) * 8u);
            }
        }
        for (var kk = 0u; kk < BK; kk += 16u) {
            // A row-major (row m at m * LDS); B = W^T, column-major (column n at n * LDS).
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[wr * LDS + kk], LDS);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[(wr + 16u) * LDS + kk], LDS);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&sb[wc * LDS + kk], LDS);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&sb[(wc + 16u) * LDS + kk], LDS);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&sb[(wc + 32u) * LDS + kk], LDS);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&sb[(wc + 48u) * LDS + kk], LDS);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc02 = coopMultiplyAdd(a0, b2, acc02);
            acc03 = coopMultiplyAdd(a0, b3, acc03);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
            acc12 = coopMultiplyAdd(a1, b2, acc12);
            acc13 = coopMultiplyAdd(a1, b3, acc13);
        }
    }

    let slot = sg * 256u;
    workgroupBarrier();
    coopStoreT(acc00, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 0u, 0u);
    workgroupBarrier();
    coopStoreT(acc01, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 0u, 1u);
    workgroupBarrier();
    coopStoreT(acc02, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 0u, 2u);
    workgroupBarrier();
    coopStoreT(acc03, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 0u, 3u);
    workgroupBarrier();
    coopStoreT(acc10, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 1u, 0u);
    workgroupBarrier();
    coopStoreT(acc11, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 1u, 1u);
    workgroupBarrier();
    coopStoreT(acc12, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 1u, 2u);
    workgroupBarrier();
    coopStoreT(acc13, &sc[slot], 16u);
    workgroupBarrier();
    drain(t, row0, col0, wg.z, 1u, 3u);
}
