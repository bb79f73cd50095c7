// Max and average pooling over NHWC images (global average pooling is the window of the
// whole image). One invocation per output element; consecutive invocations take
// consecutive channels, so loads and stores are contiguous across a workgroup.
//   max: out = max over the window's taps inside the image (padding never wins)
//   avg: out = sum over taps inside / count, count = taps inside the image, or every tap
//        of the window (padding counted as zeros) when `count_pad` is set
// Sums are f32 whatever the storage type.
//
// Compile-time constants: WG; MAX (else average); X_F16, OUT_F16 (storage types).

// #import common/store_f16.wgsl
// #import common/window.wgsl

struct Params {
    total: u32,      // output elements
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_t: u32,
    pad_l: u32,
    count_pad: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<atomic<u32>>;

fn x_at(e: u32) -> f32 {
    if (X_F16) {
        return half_at(x[e >> 1u], e);
    }
    return bitcast<f32>(x[e]);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let id = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * WG + lid.x;
    if (id >= p.total) {
        return;
    }
    let c = id % p.channels;
    let pix = id / p.channels;
    let org = window_origin(pix);
    var acc = 0.0;
    if (MAX) {
        acc = -0x1.fffffep+127f;
    }
    var count = 0u;
    for (var tap = 0u; tap < p.k_h * p.k_w; tap++) {
        let t = window_tap(org, tap);
        if (!t.inside) {
            continue;
        }
        let v = x_at(t.pix * p.channels + c);
        if (MAX) {
            acc = max(acc, v);
        } else {
            acc = acc + v;
        }
        count++;
    }
    if (!MAX) {
        if (p.count_pad != 0u) {
            count = p.k_h * p.k_w;
        }
        acc = acc / f32(max(count, 1u));
    }
    store_float(id, acc, OUT_F16);
}
