// W8A8 GEMM and convolution: C = epilogue(sum_k (a[m,k] - za[m]) * (w[n,k] - zw[n])) with
// 8-bit codes packed four per u32 along K (src/quant/pack.rs), int32 accumulation four
// products at a time with dot4I8Packed, zero points applied exactly through row and column
// sums.
//
// GEMM: A is [M, K] (activations, one scale/zero point per tensor or per row), W is [N, K]
// (a Linear weight, one scale/zero point per tensor or per output channel).
// CONV (implicit GEMM, no im2col buffer): A is an NHWC image [B, H, W, C] packed four
// channels per u32 per pixel, W is [OC, KH, KW, C / groups] packed along its channels, a
// row of C is an output pixel and K runs over the taps (ky, kx) and then the channels of
// the row's group. A tap outside the image reads the padding word, the zero point's code
// in every byte, so (a - za) is 0 there and the sums below stay exact. A group whose
// channel slice does not start on a word boundary is read with a funnel shift. The GEMM
// is the special case of one tap and one group.
//
// u8 codes are shifted to i8 by flipping each byte's top bit (q - 128), and the zero point
// by the same 128, so every operand pair is i8 x i8; the bytes of a slice's last word past
// its length (raw-0 padding, or the next group's channels) are masked to zero after the
// flip. The exact result fits int32 whenever the host-side bound
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
// points: needs A's row sums), OUT (0: f32, 1: f16 pairs, 2: i32, 3: 8-bit requantized),
// CONV (the convolution addressing above), REDUCE (below), W4 (words per row and per
// split-K slice multiples of 4: W is bound as vec4<u32> and each column's words are loaded
// four at a time, as in wgemm.wgsl: a CPU driver such as llvmpipe loads lane by lane, so
// this makes four loads one). The composer also emits W's element type `WW` with its
// accessors `w_word` (one word) and `w_quad` (the four words from index 4 * i), and A's
// binding (binding 1) with its accessor `a_at`: a storage array, or for a
// GEMM whose A fits one (ShaderFile::QGemmUniformA) a uniform block, which every
// invocation of a workgroup reads alike (wgemm.wgsl says why that is faster there).
//
// Parallel split-K (GEMM only): with `p.splits` > 1 the grid holds every tile once per K
// slice of `p.slice_words` words; each slice stores its exact partial result, zero-point
// corrections included (they are sums over K too), as i32 with OUT = 2 into a dense
// scratch [splits, m, n] bound as `out`. The REDUCE variant (ZA and ZW off) has the
// scratch bound as `a`, adds the slices with wrapping i32 arithmetic (exact, as above)
// and runs the epilogue of the requested output.

// #import common/quant_math.wgsl
// #import common/store_f16.wgsl
// #import common/epilogue.wgsl
// #import common/q8_epilogue.wgsl
// #import common/window.wgsl

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Words per tap slice of A and W: ceil(kc / 4).
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
    kc: u32,             // values per tap slice: K (GEMM) or channels per group (CONV)
    taps: u32,           // kernel taps KH * KW (1 for the GEMM); k = taps * kc
    ncols: u32,          // output columns per group (n for the GEMM)
    groups: u32,
    row_blocks: u32,     // ceil(m / TM)
    in_h: u32,           // CONV geometry from here on
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_w: u32,            // kernel width
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_t: u32,
    pad_l: u32,
    pix_words: u32,      // words per input pixel: ceil(C / 4)
    a_words: u32,        // words in A's binding
    byte_out: u32,       // 1: requantized columns of a group are not word aligned
    splits: u32,         // K slices (1: not split)
    slice_words: u32,    // words of K per slice (kw when not split)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> a_scales: array<f32>;
@group(0) @binding(3) var<storage, read> a_zeros: array<i32>;
@group(0) @binding(4) var<storage, read> w: array<WW>;
@group(0) @binding(5) var<storage, read> w_scales: array<f32>;
@group(0) @binding(6) var<storage, read> w_zeros: array<i32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<atomic<u32>>;

const BN: u32 = WG * TN4 * 4u;
const TN: u32 = TN4 * 4u;
const ONES: u32 = 0x01010101u;
// Words per step of the K loop: W4 loads four words of a weight row at once.
const STEP: u32 = select(1u, 4u, W4);

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

// Word `kw` of a row's slice: GEMM, word `base + kw` of A; CONV, the four bytes at byte
// offset `base + 4 kw` of A (funnel-shifted when the slice is not word aligned), or the
// padding word for a tap outside the image.
fn a_word(base: u32, inside: bool, kw: u32, pad: u32) -> u32 {
    if (!CONV) {
        return a_at(base + kw);
    }
    if (!inside) {
        return pad;
    }
    let byte = base + 4u * kw;
    let lo = a_at(byte >> 2u);
    let sh = (byte & 3u) * 8u;
    if (sh == 0u) {
        return lo;
    }
    let hi = a_at(min((byte >> 2u) + 1u, p.a_words - 1u));
    return (lo >> sh) | (hi << (32u - sh));
}

// Stores the 8-bit code `code` at byte `e` of `out`, sharing its word with other
// invocations (atomicAnd/atomicOr touch disjoint bits, so the updates commute).
fn store_byte(e: u32, code: i32) {
    let sh = (e & 3u) * 8u;
    atomicAnd(&out[e >> 2u], ~(0xffu << sh));
    atomicOr(&out[e >> 2u], (bitcast<u32>(code) & 0xffu) << sh);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lin0 = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let tiles = p.groups_x * p.row_blocks * p.groups;
    let slice = lin0 / tiles;
    if (slice >= p.splits) {
        return;
    }
    let lin = lin0 % tiles;
    let block = lin / p.groups_x;
    let grp = block / p.row_blocks;
    if (grp >= p.groups) {
        return;
    }
    let row0 = (block % p.row_blocks) * TM;
    let colw = (lin % p.groups_x) * BN + lid.x * 4u;
    // First output column of this group: columns below are local to the group.
    let gcol = grp * p.ncols;

    // GEMM: the first word of each row. CONV: each row's window (common/window.wgsl).
    var arow: array<u32, TM>;
    var org: array<Origin, TM>;
    for (var i = 0u; i < TM; i++) {
        let row = min(row0 + i, p.m - 1u);
        if (CONV) {
            org[i] = window_origin(row);
        } else {
            arow[i] = row * p.kw;
        }
    }
    var wrow: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        let col = colw + (j / 4u) * WG * 4u + j % 4u;
        wrow[j] = (gcol + min(col, p.ncols - 1u)) * p.taps * p.kw;
    }
    // The padding word of CONV: the zero point's code in every byte (per-tensor A).
    let pad = (bitcast<u32>(a_zeros[0]) & 0xffu) * ONES;

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

    let kfull = p.kc / 4u;
    // This slice's words of each tap's slice of K (all of them unless split).
    let kw0 = slice * p.slice_words;
    let kw1 = min(kw0 + p.slice_words, p.kw);
    var ntaps = p.taps;
    if (REDUCE) {
        ntaps = 0u;
        for (var s = 0u; s < p.splits; s++) {
            for (var i = 0u; i < TM; i++) {
                let base = s * p.m * p.n + min(row0 + i, p.m - 1u) * p.n + gcol;
                for (var j = 0u; j < TN; j++) {
                    let col = min(colw + (j / 4u) * WG * 4u + j % 4u, p.ncols - 1u);
                    acc[i * TN + j] = acc[i * TN + j] + bitcast<i32>(a_at(base + col));
                }
            }
        }
    }
    for (var tap = 0u; tap < ntaps; tap++) {
        // Where each row reads this tap: a word index (GEMM), or a byte offset into A and
        // whether the tap lies inside the image (CONV).
        var abase: array<u32, TM>;
        var inside: array<bool, TM>;
        for (var i = 0u; i < TM; i++) {
            if (CONV) {
                let t = window_tap(org[i], tap);
                inside[i] = t.inside;
                abase[i] = t.pix * p.pix_words * 4u + grp * p.kc;
            } else {
                abase[i] = arow[i];
                inside[i] = true;
            }
        }
        let wtap = tap * p.kw;
        for (var kq = kw0; kq < kw1; kq += STEP) {
            // W4: four words of each column in one load.
            var quad: array<vec4<u32>, TN>;
            if (W4) {
                for (var j = 0u; j < TN; j++) {
                    quad[j] = w_quad((wrow[j] + wtap + kq) / 4u);
                }
            }
            for (var u = 0u; u < STEP; u++) {
                let kw = kq + u;
                // Bytes past the slice (raw-0 padding, flipped for u8, or the next group's
                // channels) are masked to zero.
                let mask = select(0xffffffffu, p.tail_mask, kw == kfull);
                var wv: array<u32, TN>;
                for (var j = 0u; j < TN; j++) {
                    var word: u32;
                    if (W4) {
                        word = quad[j][u];
                    } else {
                        word = w_word(wrow[j] + wtap + kw);
                    }
                    wv[j] = (word ^ p.w_xor) & mask;
                    if (ZA) {
                        wsum[j] = wsum[j] + dot4(wv[j], ONES);
                    }
                }
                for (var i = 0u; i < TM; i++) {
                    let av = (a_word(abase[i], inside[i], kw, pad) ^ p.a_xor) & mask;
                    if (ZW) {
                        asum[i] = asum[i] + dot4(av, ONES);
                    }
                    for (var j = 0u; j < TN; j++) {
                        acc[i * TN + j] = acc[i * TN + j] + dot4(av, wv[j]);
                    }
                }
            }
        }
    }

    // Copy out of the accumulators with a loop the driver unrolls, so that the epilogue's
    // dynamic indexing touches `res` only (see gemm_reg.wgsl).
    var res: array<i32, TM * TN>;
    for (var t = 0u; t < TM * TN; t++) {
        res[t] = acc[t];
    }
    // Values of K this slice covered (the whole of K unless split).
    let kk = i32(p.taps * (min(kw1 * 4u, p.kc) - kw0 * 4u));
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
            if (col0 >= p.ncols) {
                break;
            }
            var word = 0u;
            var pair = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let col = gcol + col0 + q;
                let j = g * 4u + q;
                // sum (a - za)(w - zw) = sum aw - zw sum a - za sum w + k za zw
                var r = res[i * TN + j];
                var zw = 0;
                if (ZW) {
                    zw = w_zeros[(gcol + min(col0 + q, p.ncols - 1u)) * p.w_col_stride] - p.w_shift;
                    r = r - zw * asum[i];
                }
                if (ZA) {
                    r = r - za * wsum[j] + kk * za * zw;
                }
                if (col0 + q < p.ncols) {
                    if (OUT == 0u) {
                        atomicStore(&out[row * p.n + col], bitcast<u32>(dequant(r, row, col)));
                    } else if (OUT == 1u) {
                        pair[q] = dequant(r, row, col);
                    } else if (OUT == 2u) {
                        atomicStore(&out[slice * p.m * p.n + row * p.n + col], bitcast<u32>(r));
                    } else {
                        let code = requant_code(r, row, col);
                        if (p.byte_out != 0u) {
                            store_byte(row * p.out_words_per_row * 4u + col, code);
                        }
                        word = word | ((bitcast<u32>(code) & 0xffu) << (8u * q));
                    }
                }
            }
            if (OUT == 3u && p.byte_out != 0u && grp + 1u == p.groups && col0 + 4u >= p.ncols) {
                // The owner of the row's last column zeroes the padding bytes of its last
                // word (raw 0, src/quant/pack.rs).
                for (var e = p.n; e < p.out_words_per_row * 4u; e++) {
                    store_byte(row * p.out_words_per_row * 4u + e, 0);
                }
            }
            if (OUT == 1u) {
                store_f16x4(row * p.n + gcol + col0, min(4u, p.ncols - col0), pair);
            } else if (OUT == 3u && p.byte_out == 0u) {
                atomicStore(&out[row * p.out_words_per_row + (gcol + col0) / 4u], word);
            }
        }
    }
}
