// GEMM and GEMV with float activations and a compressed weight stream:
// C[m, n] = act(sum_k x[m, k] * w(n, k) + bias[n]) where W is [N, K] (a Linear weight)
// stored as 8- or 4-bit codes packed along K (src/quant/pack.rs) and dequantized in the
// kernel per group, w(n, k) = s[n, g] * (q[n, k] - z[n, g]), or as f16 pairs (the FP16
// GEMM). X is f32, or f16 read as u32 pairs.
//
// Quantized weights are accumulated per group and scaled once per group:
//   sum_k x*w = sum_g s_g * (sum_{k in g} x*q - z_g * sum_{k in g} x)
// so the inner loop is one multiply-add per weight on its raw code.
//
// Invocations of a workgroup lie along N, each owns TM rows x TN4 groups of 4 columns
// (WG * 4 apart). Each invocation reads each of its weight words once for all TM rows,
// so a GEMV with M <= TM reads every weight byte exactly once. No workgroup memory.
// Per step of the K loop the weight words of all TN columns are loaded first; then
// either (X_FIRST: at most X_FIRST_MAX activations per step, as in a GEMV) every row's
// activations are read and the columns are unpacked and multiplied one at a time, so only
// one column's weight values are live, or the values of all TN columns are unpacked and
// each row's activations are read and multiplied in turn. On lavapipe X_FIRST makes the
// W8A16 1x4096x4096 GEMV 1.3x faster (1.8x on llvmpipe-GL) and leaves the other
// precisions level; with more rows its activations outnumber the registers (8x4096x4096:
// 0.3-0.6x), hence the bound (docs/PERFORMANCE.md).
//
// Compile-time constants: WG, TM, TN4; W_BITS (4, 8: codes; 16: f16 pairs); W_SIGNED;
// QUANT (W holds codes with scales); ZW (codes have zero points); A_F16 (X is f16);
// PAIRS (K is even, so f16 rows start on word boundaries); W4 (words per row, per group and
// per split-K slice all multiples of 4: the weight is bound as vec4<u32> and each column's
// words are loaded four at a time; a CPU driver such as llvmpipe loads lane by lane, so
// this makes four loads one); OUT_F16; REDUCE. The composer also
// emits `alias T` (the multiply type), `alias TACC` (the accumulate type) and `h2`
// (u32 -> vec2<T>), which are f16 only on adapters with SHADER_F16, and the weight
// binding's element type `WW` with its accessors `w_word` (one word) and `w_quad` (the
// four words from index 4 * i), and the X binding (binding 1) with its accessor `a_word`:
// a storage array, or a 64 KiB uniform block (plan::X_UNIFORM_BYTES; ShaderFile::
// WGemmUniformX, when X fits it). Every invocation of a workgroup reads the same X words;
// a CPU driver such as llvmpipe loads a storage word lane by lane in a loop with a branch
// per lane, a uniform word with one straight-line gather (lavapipe: the W8A16 and W4A16
// GEMVs 1.19x-1.25x faster, docs/PERFORMANCE.md).
//
// Parallel split-K: with `p.splits` > 1 the grid holds every tile once per K slice of
// `p.slice_words` weight words (a slice may cut a parameter group: the per-group scaling
// is linear, so the parts add up); each slice stores its raw f32 sums (flags 0, f32
// output) to a dense scratch [splits, m, n] bound as `out`. The REDUCE variant has the
// scratch bound as `a`, adds the slices in order and applies bias and activation.

// #import common/store_f16.wgsl
// #import common/epilogue.wgsl

struct Params {
    m: u32,
    n: u32,
    k: u32,
    kw: u32,             // W words per row (quantized or K even), else ceil(K / 2)
    kfull: u32,          // words whose PW values all lie below K
    groups_x: u32,
    flags: u32,          // bit 0: bias; bits 1..2: activation
    ngroups: u32,        // parameter groups per weight row
    group_words: u32,    // words per group
    w_col_stride: u32,   // slot stride between columns (0: per tensor)
    w_group_stride: u32, // slot stride between groups
    a_words: u32,        // words in the X binding (loads are clamped into it)
    w_words: u32,
    ldo: u32,            // output row pitch in elements (N, or more for a piece of N)
    splits: u32,         // K slices (1: not split)
    slice_words: u32,    // weight words per slice (kw when not split)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> w: array<WW>;
@group(0) @binding(3) var<storage, read> w_scales: array<f32>;
@group(0) @binding(4) var<storage, read> w_zeros: array<i32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;

const BN: u32 = WG * TN4 * 4u;
const TN: u32 = TN4 * 4u;
const PW: u32 = 32u / W_BITS;
// Words per step of the K loop: W4 loads four words of a weight row at once.
const STEP: u32 = select(1u, 4u, W4);
// Activations per step (rows x values) up to which the K loop takes the X_FIRST order.
const X_FIRST_MAX: u32 = 16u;
const X_FIRST: bool = TM * STEP * PW <= X_FIRST_MAX;

// The f16 at element index e of a pair-packed buffer word stream, as raw bits.
fn half_bits(word: u32, e: u32) -> u32 {
    return (word >> ((e & 1u) * 16u)) & 0xffffu;
}

// The PW weight values of word `kw` of weight row `n` (codes, or f16 values).
fn w_vals(n: u32, kw: u32) -> array<T, PW> {
    if (W_BITS == 16u && !PAIRS) {
        // Odd K: rows start mid-word; gather the two halves.
        let e = n * p.k + 2u * kw;
        let e1 = min(e + 1u, p.n * p.k - 1u);
        return word_vals(half_bits(w_word(e >> 1u), e) | (half_bits(w_word(e1 >> 1u), e1) << 16u));
    }
    return word_vals(w_word(min(n * p.kw + kw, p.w_words - 1u)));
}

// The PW values of one weight word (codes, or an f16 pair).
fn word_vals(word: u32) -> array<T, PW> {
    var v: array<T, PW>;
    if (W_BITS == 16u) {
        let h = h2(word);
        v[0] = h.x;
        v[1 % PW] = h.y;
    } else {
        for (var t = 0u; t < PW; t++) {
            if (W_SIGNED) {
                v[t] = T(extractBits(bitcast<i32>(word), t * W_BITS, W_BITS));
            } else {
                v[t] = T(extractBits(word, t * W_BITS, W_BITS));
            }
        }
    }
    return v;
}

// The PW activations of row `row` at k = kw * PW ... (clamped into the buffer; values at
// k >= K are masked by the caller).
fn x_vals(row: u32, kw: u32) -> array<T, PW> {
    var v: array<T, PW>;
    let e0 = row * p.k + kw * PW;
    if (A_F16) {
        if (PAIRS) {
            for (var t = 0u; t < PW; t += 2u) {
                let h = h2(a_word(min((e0 + t) >> 1u, p.a_words - 1u)));
                v[t] = h.x;
                v[(t + 1u) % PW] = h.y;
            }
        } else {
            for (var t = 0u; t < PW; t++) {
                let e = e0 + t;
                let word = a_word(min(e >> 1u, p.a_words - 1u));
                v[t] = h2(half_bits(word, e)).x;
            }
        }
    } else {
        for (var t = 0u; t < PW; t++) {
            v[t] = T(bitcast<f32>(a_word(min(e0 + t, p.a_words - 1u))));
        }
    }
    return v;
}

// The PW activations of row `row` at word `kw`, zeroed at k >= K.
fn x_masked(row: u32, kw: u32) -> array<T, PW> {
    var v = x_vals(row, kw);
    if (kw >= p.kfull) {
        for (var t = 0u; t < PW; t++) {
            if (kw * PW + t >= p.k) {
                v[t] = T(0.0);
            }
        }
    }
    return v;
}

// The PW weight values of column `col` at word `kw` (`word`: that word, already loaded,
// with W4); f16 weights zeroed at k >= K, where they belong to the next row.
fn w_masked(col: u32, kw: u32, word: u32) -> array<T, PW> {
    var v: array<T, PW>;
    if (W4) {
        v = word_vals(word);
    } else {
        v = w_vals(col, kw);
    }
    if (W_BITS == 16u && kw >= p.kfull) {
        for (var t = 0u; t < PW; t++) {
            if (kw * PW + t >= p.k) {
                v[t] = T(0.0);
            }
        }
    }
    return v;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lin0 = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let tiles = p.groups_x * ((p.m + TM - 1u) / TM);
    let slice = lin0 / tiles;
    if (slice >= p.splits) {
        return;
    }
    let lin = lin0 % tiles;
    let row0 = (lin / p.groups_x) * TM;
    let colw = (lin % p.groups_x) * BN + lid.x * 4u;

    var rows: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        rows[i] = min(row0 + i, p.m - 1u);
    }
    var cols: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        cols[j] = min(colw + (j / 4u) * WG * 4u + j % 4u, p.n - 1u);
    }

    var acc: array<f32, TM * TN>;
    for (var t = 0u; t < TM * TN; t++) {
        acc[t] = 0.0;
    }

    // This slice's weight words, and the parameter groups they touch.
    let s0 = slice * p.slice_words;
    let s1 = min(s0 + p.slice_words, p.kw);
    var g1 = min((s1 + p.group_words - 1u) / p.group_words, p.ngroups);
    if (REDUCE) {
        g1 = 0u;
        for (var s = 0u; s < p.splits; s++) {
            for (var i = 0u; i < TM; i++) {
                let base = s * p.m * p.n + rows[i] * p.n;
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = acc[i * TN + j] + bitcast<f32>(a_word(base + cols[j]));
                }
            }
        }
    }
    for (var g = s0 / p.group_words; g < g1; g++) {
        let kw0 = max(g * p.group_words, s0);
        let kw_end = min(min(g * p.group_words + p.group_words, p.kw), s1);
        var part: array<TACC, TM * TN>;
        var xs: array<T, TM>;
        for (var t = 0u; t < TM * TN; t++) {
            part[t] = TACC(0.0);
        }
        for (var i = 0u; i < TM; i++) {
            xs[i] = T(0.0);
        }
        for (var kq = kw0; kq < kw_end; kq += STEP) {
            // W4: four words of each column in one load.
            var quad: array<vec4<u32>, TN>;
            if (W4) {
                for (var j = 0u; j < TN; j++) {
                    quad[j] = w_quad((cols[j] * p.kw + kq) / 4u);
                }
            }
            if (X_FIRST) {
                // Few rows: every row's activations of the step first, then one column at a
                // time, so that only one column's weight values are live.
                var xv: array<array<array<T, PW>, STEP>, TM>;
                for (var i = 0u; i < TM; i++) {
                    for (var u = 0u; u < STEP; u++) {
                        xv[i][u] = x_masked(rows[i], kq + u);
                        if (ZW) {
                            for (var t = 0u; t < PW; t++) {
                                xs[i] = xs[i] + xv[i][u][t];
                            }
                        }
                    }
                }
                for (var j = 0u; j < TN; j++) {
                    for (var u = 0u; u < STEP; u++) {
                        let wv = w_masked(cols[j], kq + u, quad[j][u]);
                        for (var i = 0u; i < TM; i++) {
                            var d = part[i * TN + j];
                            for (var t = 0u; t < PW; t++) {
                                d = d + TACC(xv[i][u][t] * wv[t]);
                            }
                            part[i * TN + j] = d;
                        }
                    }
                }
                continue;
            }
            for (var u = 0u; u < STEP; u++) {
                let kw = kq + u;
                // Only the last word of a row can reach past K; its values there are zeroed
                // (x always, f16 weights too, which there belong to the next row).
                var wv: array<array<T, PW>, TN>;
                for (var j = 0u; j < TN; j++) {
                    wv[j] = w_masked(cols[j], kw, quad[j][u]);
                }
                for (var i = 0u; i < TM; i++) {
                    let xv = x_masked(rows[i], kw);
                    if (ZW) {
                        for (var t = 0u; t < PW; t++) {
                            xs[i] = xs[i] + xv[t];
                        }
                    }
                    for (var j = 0u; j < TN; j++) {
                        var d = part[i * TN + j];
                        for (var t = 0u; t < PW; t++) {
                            d = d + TACC(xv[t] * wv[j][t]);
                        }
                        part[i * TN + j] = d;
                    }
                }
            }
        }
        if (QUANT) {
            for (var j = 0u; j < TN; j++) {
                let slot = cols[j] * p.w_col_stride + g * p.w_group_stride;
                let s = w_scales[slot];
                var z = 0.0;
                if (ZW) {
                    z = f32(w_zeros[slot]);
                }
                for (var i = 0u; i < TM; i++) {
                    let t = i * TN + j;
                    acc[t] = acc[t] + s * (f32(part[t]) - z * f32(xs[i]));
                }
            }
        } else {
            for (var t = 0u; t < TM * TN; t++) {
                acc[t] = acc[t] + f32(part[t]);
            }
        }
    }

    var res: array<f32, TM * TN>;
    for (var t = 0u; t < TM * TN; t++) {
        res[t] = acc[t];
    }
    let out0 = slice * p.m * p.ldo;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) {
            break;
        }
        for (var g4 = 0u; g4 < TN4; g4++) {
            let col0 = colw + g4 * WG * 4u;
            if (col0 >= p.n) {
                break;
            }
            var v4 = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let col = min(col0 + q, p.n - 1u);
                let v = bias_act(res[i * TN + g4 * 4u + q], p.flags, col);
                v4[q] = v;
                if (!OUT_F16 && col0 + q < p.n) {
                    atomicStore(&out[out0 + row * p.ldo + col0 + q], bitcast<u32>(v));
                }
            }
            if (OUT_F16) {
                store_f16x4(row * p.ldo + col0, min(4u, p.n - col0), v4);
            }
        }
    }
}
