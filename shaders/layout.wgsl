// Data movement between NHWC images, one invocation per element moved:
//   OP 0, nearest upsampling by integer factors:
//         out[n, y, x, c] = in[n, y / fh, x / fw, c]
//   OP 1, depth to space (the second half of a transposed convolution whose kernel equals
//         its stride): in [n, h, w, C * fh * fw], channel (c * fh + dy) * fw + dx, to
//         out[n, y * fh + dy, x * fw + dx, c]
//   OP 2, a channel slice of a concatenation: out[n, y, x, c0 + c] = in[n, y, x, c] for
//         the input's in_c channels, out having out_c channels
// Values are copied (f32 or f16 storage each way; f16 to f32 is exact).
//
// Compile-time constants: WG, OP, X_F16, OUT_F16.

// #import common/store_f16.wgsl

struct Params {
    total: u32,      // elements moved (OP 0, 1: output elements; OP 2: input elements)
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    fh: u32,
    fw: u32,
    c0: u32,
    pad0: u32,
    pad1: u32,
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
    if (OP == 2u) {
        let c = id % p.in_c;
        let pix = id / p.in_c;
        store_float(pix * p.out_c + p.c0 + c, x_at(id), OUT_F16);
        return;
    }
    let c = id % p.out_c;
    let ox = (id / p.out_c) % p.out_w;
    let oy = (id / (p.out_c * p.out_w)) % p.out_h;
    let n = id / (p.out_c * p.out_w * p.out_h);
    let iy = oy / p.fh;
    let ix = ox / p.fw;
    var ic = c;
    if (OP == 1u) {
        ic = (c * p.fh + oy % p.fh) * p.fw + ox % p.fw;
    }
    let e = ((n * p.in_h + iy) * p.in_w + ix) * p.in_c + ic;
    store_float(id, x_at(e), OUT_F16);
}
