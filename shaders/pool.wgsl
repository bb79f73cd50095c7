// Max and average pooling over NHWC images (global average pooling is the window of the
// whole image). One invocation per output element; consecutive invocations take
// consecutive channels, so loads and stores are contiguous across a workgroup.
//   max: out = max over the window's taps inside the image (padding never wins)
//   avg: out = sum over taps inside / count, count = taps inside the image, or every tap
//        of the window (padding counted as zeros) when `count_pad` is set
// Sums are f32 whatever the storage type.
//
// Compile-time constants: WG; MAX (else average); X_F16, OUT_F16 (storage types).

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
        return unpack2x16float(x[e >> 1u] >> ((e & 1u) * 16u)).x;
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
    let plane = p.out_h * p.out_w;
    let img = pix / plane;
    let rem = pix % plane;
    let iy0 = i32((rem / p.out_w) * p.stride_h) - i32(p.pad_t);
    let ix0 = i32((rem % p.out_w) * p.stride_w) - i32(p.pad_l);
    var acc = 0.0;
    if (MAX) {
        acc = -3.40282347e38;
    }
    var count = 0u;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = iy0 + i32(ky * p.dil_h);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = ix0 + i32(kx * p.dil_w);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let v = x_at(((img * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.channels + c);
            if (MAX) {
                acc = max(acc, v);
            } else {
                acc = acc + v;
            }
            count++;
        }
    }
    if (!MAX) {
        if (p.count_pad != 0u) {
            count = p.k_h * p.k_w;
        }
        acc = acc / f32(max(count, 1u));
    }
    if (OUT_F16) {
        let sh = (id & 1u) * 16u;
        atomicAnd(&out[id >> 1u], ~(0xffffu << sh));
        atomicOr(&out[id >> 1u], (pack2x16float(vec2<f32>(acc, 0.0)) & 0xffffu) << sh);
    } else {
        atomicStore(&out[id], bitcast<u32>(acc));
    }
}
