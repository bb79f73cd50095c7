// W8A8 GEMM: C = epilogue(sum_k (a[m,k] - za[m]) * (w[n,k] - zw[n])) with 8-bit codes
// packed four per u32 along K (src/quant/pack.rs), int32 accumulation four products at a
// time with dot4I8Packed, zero points applied exactly through row and column sums.
//
// A is [M, K] (activations, one scale/zero point per tensor or per row), W is [N, K]
// (a Linear weight, one scale/zero point per tensor or per output channel). u8 codes are
// shifted to i8 by flipping each byte's top bit (q - 128), and the zero point by the same
// 128, so every operand pair is i8 x i8; the raw-0 padding of a row's last word is masked
// back to zero after the flip. The exact result fits int32 whenever the host-side bound
// K * max|a - za| * max|w - zw| <= 2^31 - 1 holds (checked before dispatch); the partial
// terms may wrap, and WGSL's wrapping integer arithmetic makes the sum exact anyway.
//
// Layout of the work like gemm_reg.wgsl: invocations of a workgroup lie along N, each
// owns TM rows x TN4 groups of 4 consecutive columns (WG * 4 apart), so a group of 4
// output columns is one output word for 8-bit requantized output. A's loads are uniform
// across the workgroup; no workgroup memory, no barriers.
//
// Compile-time constants: WG, TM, TN4, DOT4 (dot4I8Packed, else an unpacked fallback with
// identical results), ZA (A has zero points: needs W's column sums), ZW (W has zero
// points: needs A's row sums), OUT (0: f32, 1: f16 pairs, 2: i32, 3: 8-bit requantized).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Words per row of A and W: ceil(k / 4).
    kw: u32,
    groups_x: u32,
    flags: u32,          // bit 0: bias; bits 1..2: activation (0 none, 1 ReLU, 2 ReLU6)
    a_xor: u32,          // 0x80808080 when A holds u8 codes, else 0
    w_xor: u32,
    tail_mask: u32,      // valid bytes of a row's last word (all ones when k % 4 == 0)
    a_row_stride: u32,   // 1: per-row parameters, 0: per tensor
    w_col_stride: u32,   // 1: per-channel parameters, 0: per tensor
    a_shift: i32,        // 128 when A holds u8 codes: za' = za - 128
    w_shift: i32,
    out_qmin: i32,
    out_qmax: i32,
    out_zero: i32,
    out_scale: f32,
    out_words_per_row: u32,
    opaque_zero: u32,    // always 0; blocks multiply-add fusion in the epilogue
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> a_scales: array<f32>;
@group(0) @binding(3) var<storage, read> a_zeros: array<i32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scales: array<f32>;
@group(0) @binding(6) var<storage, read> w_zeros: array<i32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<atomic<u32>>;

const BN: u32 = WG * TN4 * 4u;
const TN: u32 = TN4 * 4u;
const ONES: u32 = 0x01010101u;

fn dot4(x: u32, y: u32) -> i32 {
    if (DOT4) {
        return dot4I8Packed(x, y);
    }
    let xs = bitcast<i32>(x);
    let ys = bitcast<i32>(y);
    return extractBits(xs, 0u, 8u) * extractBits(ys, 0u, 8u)
        + extractBits(xs, 8u, 8u) * extractBits(ys, 8u, 8u)
        + extractBits(xs, 16u, 8u) * extractBits(ys, 16u, 8u)
        + extractBits(xs, 24u, 8u) * extractBits(ys, 24u, 8u);
}

// f32 product whose result cannot be fused into a following add: the OR with a uniform
// zero is opaque to the compiler, so `no_fuse(x * y) + b` rounds twice, like the Rust
// reference. Vulkan, Metal and D3D all round f32 add and multiply correctly.
fn no_fuse(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | p.opaque_zero);
}

fn dequant(r: i32, row: u32, col: u32) -> f32 {
    let s = a_scales[row * p.a_row_stride] * w_scales[col * p.w_col_stride];
    return bias_act(no_fuse(f32(r) * s), p.flags, col);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lin = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let row0 = (lin / p.groups_x) * TM;
    if (row0 >= p.m) {
        return;
    }
    let colw = (lin % p.groups_x) * BN + lid.x * 4u;

    var arow: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        arow[i] = min(row0 + i, p.m - 1u) * p.kw;
    }
    var wrow: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        let col = colw + (j / 4u) * WG * 4u + j % 4u;
        wrow[j] = min(col, p.n - 1u) * p.kw;
    }

    var acc: array<i32, TM * TN>;
    var asum: array<i32, TM>;
    var wsum: array<i32, TN>;
    for (var t = 0u; t < TM * TN; t++) {
        acc[t] = 0;
    }
    for (var i = 0u; i < TM; i++) {
        asum[i] = 0;
    }
    for (var j = 0u; j < TN; j++) {
        wsum[j] = 0;
    }

    let kfull = p.k / 4u;
    for (var kw = 0u; kw < p.kw; kw++) {
        // Only the flipped padding of a u8 operand needs masking; i8 padding is raw 0.
        let mask = select(0xffffffffu, p.tail_mask, kw == kfull);
        var wv: array<u32, TN>;
        for (var j = 0u; j < TN; j++) {
            wv[j] = (w[wrow[j] + kw] ^ p.w_xor) & mask;
            if (ZA) {
                wsum[j] = wsum[j] + dot4(wv[j], ONES);
            }
        }
        for (var i = 0u; i < TM; i++) {
            let av = (a[arow[i] + kw] ^ p.a_xor) & mask;
            if (ZW) {
                asum[i] = asum[i] + dot4(av, ONES);
            }
            for (var j = 0u; j < TN; j++) {
                acc[i * TN + j] = acc[i * TN + j] + dot4(av, wv[j]);
            }
        }
    }

    // Copy out of the accumulators with a loop the driver unrolls, so that the epilogue's
    // dynamic indexing touches `res` only (see gemm_reg.wgsl).
    var res: array<i32, TM * TN>;
    for (var t = 0u; t < TM * TN; t++) {
        res[t] = acc[t];
    }
    let kk = i32(p.k);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) {
            break;
        }
        var za = 0;
        if (ZA) {
            za = a_zeros[row * p.a_row_stride] - p.a_shift;
        }
        for (var g = 0u; g < TN4; g++) {
            let col0 = colw + g * WG * 4u;
            if (col0 >= p.n) {
                break;
            }
            var word = 0u;
            var pair = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let col = col0 + q;
                let j = g * 4u + q;
                // sum (a - za)(w - zw) = sum aw - zw sum a - za sum w + k za zw
                var r = res[i * TN + j];
                var zw = 0;
                if (ZW) {
                    zw = w_zeros[min(col, p.n - 1u) * p.w_col_stride] - p.w_shift;
                    r = r - zw * asum[i];
                }
                if (ZA) {
                    r = r - za * wsum[j] + kk * za * zw;
                }
                if (col < p.n) {
                    if (OUT == 0u) {
                        atomicStore(&out[row * p.n + col], bitcast<u32>(dequant(r, row, col)));
                    } else if (OUT == 1u) {
                        pair[q] = dequant(r, row, col);
                    } else if (OUT == 2u) {
                        atomicStore(&out[row * p.n + col], bitcast<u32>(r));
                    } else {
                        let v = dequant(r, row, col);
                        let code = quantize_one(v, p.out_scale, p.out_zero, p.out_qmin, p.out_qmax);
                        word = word | ((bitcast<u32>(code) & 0xffu) << (8u * q));
                    }
                }
            }
            if (OUT == 1u) {
                store_f16x4(row * p.n + col0, min(4u, p.n - col0), pair);
            } else if (OUT == 3u) {
                atomicStore(&out[row * p.out_words_per_row + col0 / 4u], word);
            }
        }
    }
}
