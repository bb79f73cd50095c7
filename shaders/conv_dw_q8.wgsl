// INT8 depthwise convolution (groups = C, channel multiplier M = OC / C) with the
// epilogues of qgemm.wgsl:
//   r[b, oy, ox, oc] = sum_{ky, kx inside the image} (a[b, iy, ix, oc / M] - za) * (w[ky, kx, oc] - zw[oc])
// A is an NHWC image of 8-bit codes packed four channels per u32 per pixel (one scale and
// zero point per tensor), W is [KH, KW, OC] packed along OC (one scale/zero point per
// tensor or per output channel). A tap in the padding contributes (za - za) * ... = 0,
// so it is skipped. The products are exact int32 (|r| <= KH*KW*255*255, checked on the
// host), then dequantized, biased, activated and stored as f32, f16, i32 or requantized
// 8-bit codes, rounded exactly as in qgemm.wgsl (common/q8_epilogue.wgsl).
//
// One invocation computes 4 consecutive output channels (one output word of 8-bit codes)
// of one output pixel. dot4I8Packed does not apply: the reduction runs over taps, not
// over the packed channels, so each byte is extracted and multiplied on its own.
//
// Compile-time constants: WG, OUT (0: f32, 1: f16 pairs, 2: i32, 3: 8-bit requantized).

// #import common/quant_math.wgsl
// #import common/store_f16.wgsl
// #import common/epilogue.wgsl
// #import common/q8_epilogue.wgsl
// #import common/window.wgsl

struct Params {
    m: u32,
    n: u32,
    channels: u32,
    mult: u32,
    taps: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_t: u32,
    pad_l: u32,
    flags: u32,
    quads: u32,
    pix_words: u32,      // words per input pixel: ceil(C / 4)
    a_signed: u32,       // 1: A holds i8 codes, 0: u8
    w_signed: u32,
    a_row_stride: u32,   // always 0 (per-tensor A); named for common/q8_epilogue.wgsl
    w_col_stride: u32,   // 1: per-channel W parameters, 0: per tensor
    out_qmin: i32,
    out_qmax: i32,
    out_zero: i32,
    out_scale: f32,
    out_words_per_row: u32,
    opaque_zero: u32,    // always 0; blocks multiply-add fusion in the epilogue
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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

// Byte `e` of a packed buffer word, sign-extended when `signed`.
fn code(word: u32, e: u32, signed: bool) -> i32 {
    if (signed) {
        return extractBits(bitcast<i32>(word), (e & 3u) * 8u, 8u);
    }
    return i32(extractBits(word, (e & 3u) * 8u, 8u));
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let id = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * WG + lid.x;
    let row = id / p.quads;
    if (row >= p.m) {
        return;
    }
    let oc0 = (id % p.quads) * 4u;
    let org = window_origin(row);
    let za = a_zeros[0];
    let a_signed = p.a_signed != 0u;
    let w_signed = p.w_signed != 0u;
    var oc: array<u32, 4>;
    var ic: array<u32, 4>;
    var zw: array<i32, 4>;
    for (var q = 0u; q < 4u; q++) {
        oc[q] = min(oc0 + q, p.n - 1u);
        ic[q] = oc[q] / p.mult;
        zw[q] = w_zeros[oc[q] * p.w_col_stride];
    }
    let w_words = p.quads;

    var acc = vec4<i32>(0);
    for (var tap = 0u; tap < p.taps; tap++) {
        let t = window_tap(org, tap);
        if (!t.inside) {
            continue;
        }
        let base = t.pix * p.pix_words;
        let wword = w[tap * w_words + oc0 / 4u];
        for (var q = 0u; q < 4u; q++) {
            let av = code(a[base + ic[q] / 4u], ic[q], a_signed) - za;
            let wv = code(wword, q, w_signed) - zw[q];
            acc[q] = acc[q] + av * wv;
        }
    }

    var word = 0u;
    var v4 = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (OUT == 2u) {
            if (oc0 + q < p.n) {
                atomicStore(&out[row * p.n + oc0 + q], bitcast<u32>(acc[q]));
            }
            continue;
        }
        let v = dequant(acc[q], row, oc[q]);
        v4[q] = v;
        if (OUT == 0u && oc0 + q < p.n) {
            atomicStore(&out[row * p.n + oc0 + q], bitcast<u32>(v));
        }
        if (OUT == 3u && oc0 + q < p.n) {
            let c = requant_code(acc[q], row, oc[q]);
            word = word | ((bitcast<u32>(c) & 0xffu) << (8u * q));
        }
    }
    if (OUT == 1u) {
        store_f16x4(row * p.n + oc0, min(4u, p.n - oc0), v4);
    } else if (OUT == 3u) {
        atomicStore(&out[row * p.out_words_per_row + oc0 / 4u], word);
    }
}
