// Float convolution as an implicit GEMM (no im2col buffer):
//   out[b, oy, ox, g*OCg + j] = act(bias + sum_{ky, kx, c} x[b, iy, ix, g*Cg + c] * w[g, ky, kx, c, j])
// with iy = oy * stride - pad + ky * dilation (likewise ix); taps outside the image are
// zero. X is NHWC, f32 or f16 (u32 words holding f16 pairs); W is [G, KH, KW, Cg, OCg]
// (the GEMM's B, [K, N] per group, K ordered as the NHWC patch: tap, then channel), f32
// or f16; the output is NHWC [B, OH, OW, OC], f32 or f16 pairs.
//
// Work layout of the row kernels (wgemm.wgsl): invocations of a workgroup lie along the
// output channels of one group, each owns TM output pixels x TN4 groups of 4 consecutive
// channels (WG * 4 apart). X loads are uniform across the workgroup, W loads are
// consecutive across it. No workgroup memory, no barriers.
//
// Compile-time constants: WG, TM, TN4; X_F16, W_F16, OUT_F16 (storage types);
// POINTWISE (1x1, stride 1, no padding: the pixel of a row is the row itself). The
// composer also emits `alias T` (the multiply type), `alias TACC` (the accumulate type)
// and `h2` (u32 -> vec2<T>), which are f16 only with SHADER_F16.

// #import common/store_f16.wgsl
// #import common/epilogue.wgsl
// #import common/window.wgsl
// #import common/conv_load.wgsl

struct Params {
    m: u32,          // output pixels B * OH * OW
    n: u32,          // output channels OC (the output's row length)
    ncols: u32,      // output channels per group OCg
    kc: u32,         // input channels per group Cg
    taps: u32,       // KH * KW
    groups: u32,
    groups_x: u32,   // workgroups along one group's channels
    row_blocks: u32, // ceil(m / TM)
    channels: u32,   // C, the input's row length
    in_h: u32,       // the window (common/window.wgsl), as WindowParams in src/ops/conv.rs
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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

const BN: u32 = WG * TN4 * 4u;


@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lin = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let block = lin / p.groups_x;
    let grp = block / p.row_blocks;
    if (grp >= p.groups) {
        return;
    }
    let row0 = (block % p.row_blocks) * TM;
    let colw = (lin % p.groups_x) * BN + lid.x * 4u;

    // Each row's window (common/window.wgsl); POINTWISE: the row is the input pixel.
    var org: array<Origin, TM>;
    for (var i = 0u; i < TM; i++) {
        let row = min(row0 + i, p.m - 1u);
        if (POINTWISE) {
            org[i] = Origin(row, 0, 0);
        } else {
            org[i] = window_origin(row);
        }
    }
    // Columns past the group's end are clamped (computed, never stored).
    var cols: array<u32, TN4 * 4u>;
    for (var j = 0u; j < TN4 * 4u; j++) {
        cols[j] = min(colw + (j / 4u) * WG * 4u + j % 4u, p.ncols - 1u);
    }
    let wgroup = grp * p.taps * p.kc * p.ncols;

    var acc: array<vec4<TACC>, TM * TN4>;
    for (var t = 0u; t < TM * TN4; t++) {
        acc[t] = vec4<TACC>(TACC(0.0));
    }
    for (var tap = 0u; tap < p.taps; tap++) {
        var base: array<u32, TM>;
        var inside: array<bool, TM>;
        for (var i = 0u; i < TM; i++) {
            if (POINTWISE) {
                base[i] = org[i].img * p.channels + grp * p.kc;
                inside[i] = true;
            } else {
                let t = window_tap(org[i], tap);
                base[i] = t.pix * p.channels + grp * p.kc;
                inside[i] = t.inside;
            }
        }
        for (var c = 0u; c < p.kc; c++) {
            let wrow = wgroup + (tap * p.kc + c) * p.ncols;
            var wv: array<vec4<T>, TN4>;
            for (var g = 0u; g < TN4; g++) {
                for (var q = 0u; q < 4u; q++) {
                    wv[g][q] = w_at(wrow + cols[g * 4u + q]);
                }
            }
            for (var i = 0u; i < TM; i++) {
                var xv = T(0.0);
                if (inside[i]) {
                    xv = x_at(base[i] + c);
                }
                for (var g = 0u; g < TN4; g++) {
                    acc[i * TN4 + g] = acc[i * TN4 + g] + vec4<TACC>(xv * wv[g]);
                }
            }
        }
    }

    // Copy out of the accumulators with a loop the driver unrolls (see gemm_reg.wgsl).
    var res: array<vec4<f32>, TM * TN4>;
    for (var t = 0u; t < TM * TN4; t++) {
        res[t] = vec4<f32>(acc[t]);
    }
    let gcol = grp * p.ncols;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) {
            break;
        }
        for (var g = 0u; g < TN4; g++) {
            let col0 = colw + g * WG * 4u;
            if (col0 >= p.ncols) {
                break;
            }
            var v4 = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let col = gcol + min(col0 + q, p.ncols - 1u);
                v4[q] = bias_act(res[i * TN4 + g][q], p.flags, col);
                if (!OUT_F16 && col0 + q < p.ncols) {
                    atomicStore(&out[row * p.n + col], bitcast<u32>(v4[q]));
                }
            }
            if (OUT_F16) {
                store_f16x4(row * p.n + gcol + col0, min(4u, p.ncols - col0), v4);
            }
        }
    }
}
