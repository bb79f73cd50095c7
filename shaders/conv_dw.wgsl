// Float depthwise convolution (groups = C, channel multiplier M = OC / C):
//   out[b, oy, ox, oc] = act(bias[oc] + sum_{ky, kx} x[b, iy, ix, oc / M] * w[ky, kx, oc])
// with iy = oy * stride - pad + ky * dilation (likewise ix); taps outside the image are
// zero. X is NHWC (f32 or f16 pairs), W is [KH, KW, OC] (f32 or f16), the output NHWC
// [B, OH, OW, OC] (f32 or f16 pairs).
//
// One invocation computes 4 consecutive output channels of one output pixel; consecutive
// invocations take consecutive channel quads, so loads and stores are contiguous across
// a workgroup. A depthwise layer does KH*KW multiply-adds per output and is bound by
// memory traffic, not by arithmetic: no tiling beyond the quad.
//
// Compile-time constants: WG; X_F16, W_F16, OUT_F16 (storage types). The composer also
// emits `alias T`, `alias TACC` and `h2` as for conv_gemm.wgsl.

// #import common/store_f16.wgsl
// #import common/epilogue.wgsl
// #import common/window.wgsl
// #import common/conv_load.wgsl

struct Params {
    m: u32,          // output pixels B * OH * OW
    n: u32,          // output channels OC
    channels: u32,   // input channels C
    mult: u32,       // channel multiplier OC / C
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
    flags: u32,      // bit 0: bias; bits 1..2: activation (common/epilogue.wgsl)
    quads: u32,      // ceil(OC / 4)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;


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
    var oc: array<u32, 4>;
    var ic: array<u32, 4>;
    for (var q = 0u; q < 4u; q++) {
        oc[q] = min(oc0 + q, p.n - 1u);
        ic[q] = oc[q] / p.mult;
    }

    var acc = vec4<TACC>(TACC(0.0));
    for (var tap = 0u; tap < p.taps; tap++) {
        let t = window_tap(org, tap);
        if (!t.inside) {
            continue;
        }
        let base = t.pix * p.channels;
        var xv: vec4<T>;
        var wv: vec4<T>;
        for (var q = 0u; q < 4u; q++) {
            xv[q] = x_at(base + ic[q]);
            wv[q] = w_at(tap * p.n + oc[q]);
        }
        acc = acc + vec4<TACC>(xv * wv);
    }

    let res = vec4<f32>(acc);
    var v4 = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        v4[q] = bias_act(res[q], p.flags, oc[q]);
        if (!OUT_F16 && oc0 + q < p.n) {
            atomicStore(&out[row * p.n + oc0 + q], bitcast<u32>(v4[q]));
        }
    }
    if (OUT_F16) {
        store_f16x4(row * p.n + oc0, min(4u, p.n - oc0), v4);
    }
}
