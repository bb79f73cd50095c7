// Data movement between NHWC images, one invocation per element moved:
//   OP 0, nearest upsampling by integer factors:
//         out[n, y, x, c] = in[n, y / fh, x / fw, c]
//   OP 1, depth to space (the second half of a transposed convolution whose kernel equals
//         its stride): in [n, h, w, C * fh * fw], channel (c * fh + dy) * fw + dx, to
//         out[n, y * fh + dy, x * fw + dx, c]
//   OP 2, a channel slice of a concatenation: out[n, y, x, c0 + c] = in[n, y, x, c] for
//         the input's in_c channels, out having out_c channels
//   OP 3, bilinear resize: each output pixel's input coordinate by `mode`
//         (`desc::layout::ResizeCoords`: 0 half pixel, 1 PyTorch half pixel, 2 align
//         corners, 3 asymmetric, 4 half pixel symmetric; sh, sw = output size / input
//         size), clamped to the image, then the four neighbours weighted in f32
//   OP 4, NCHW to NHWC: out[n, y, x, c] = in[n, c, y, x] (out_h, out_w, out_c = H, W, C)
//   OP 5, NHWC to NCHW: out[n, c, y, x] = in[n, y, x, c] (same dimensions)
//   OP 6, zero insertion (the first half of a strided transposed convolution):
//         out[n, y, x, c] = in[n, y / fh, x / fw, c] where fh divides y and fw divides
//         x, else 0; out is ((H - 1) fh + 1) x ((W - 1) fw + 1)
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
    mode: u32,       // OP 3: the coordinate transformation
    pad1: u32,
    sh: f32,         // OP 3: output height / input height
    sw: f32,
    pad2: u32,
    pad3: u32,
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

// The input coordinate of output index `o` along an axis of `n_in` -> `n_out` pixels.
fn source(o: u32, n_in: u32, n_out: u32, scale: f32) -> f32 {
    let oc = f32(o);
    switch p.mode {
        case 0u: {
            return (oc + 0.5) / scale - 0.5;
        }
        case 1u: {
            return select(0.0, (oc + 0.5) / scale - 0.5, n_out > 1u);
        }
        case 2u: {
            // ONNX divides by the resized length n_in * scale (not the whole output
            // size: they differ for fractional scales).
            return select(0.0, oc * f32(n_in - 1u) / (f32(n_in) * scale - 1.0), n_out > 1u);
        }
        case 3u: {
            return oc / scale;
        }
        default: {
            // half_pixel_symmetric: half pixel, centred where the output size is rounded.
            let n = f32(n_in);
            let adjustment = f32(n_out) / (n * scale);
            return n / 2.0 * (1.0 - adjustment) + (oc + 0.5) / scale - 0.5;
        }
    }
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
    if (OP == 5u) {
        let ox5 = id % p.out_w;
        let oy5 = (id / p.out_w) % p.out_h;
        let c5 = (id / (p.out_w * p.out_h)) % p.out_c;
        let n5 = id / (p.out_w * p.out_h * p.out_c);
        store_float(id, x_at(((n5 * p.out_h + oy5) * p.out_w + ox5) * p.out_c + c5), OUT_F16);
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
    if (OP == 4u) {
        store_float(id, x_at(((n * p.out_c + c) * p.out_h + oy) * p.out_w + ox), OUT_F16);
        return;
    }
    if (OP == 3u) {
        let fy = clamp(source(oy, p.in_h, p.out_h, p.sh), 0.0, f32(p.in_h - 1u));
        let fx = clamp(source(ox, p.in_w, p.out_w, p.sw), 0.0, f32(p.in_w - 1u));
        let y0 = u32(floor(fy));
        let x0 = u32(floor(fx));
        let y1 = min(y0 + 1u, p.in_h - 1u);
        let x1 = min(x0 + 1u, p.in_w - 1u);
        let wy = fy - f32(y0);
        let wx = fx - f32(x0);
        let row = n * p.in_h;
        let v00 = x_at(((row + y0) * p.in_w + x0) * p.in_c + c);
        let v01 = x_at(((row + y0) * p.in_w + x1) * p.in_c + c);
        let v10 = x_at(((row + y1) * p.in_w + x0) * p.in_c + c);
        let v11 = x_at(((row + y1) * p.in_w + x1) * p.in_c + c);
        let top = v00 + (v01 - v00) * wx;
        let bottom = v10 + (v11 - v10) * wx;
        store_float(id, top + (bottom - top) * wy, OUT_F16);
        return;
    }
    if (OP == 6u && (oy % p.fh != 0u || ox % p.fw != 0u)) {
        store_float(id, 0.0, OUT_F16);
        return;
    }
    let iy = oy / p.fh;
    let ix = ox / p.fw;
    var ic = c;
    if (OP == 1u) {
        ic = (c * p.fh + oy % p.fh) * p.fw + ox % p.fw;
    }
    let e = ((n * p.in_h + iy) * p.in_w + ix) * p.in_c + ic;
    store_float(id, x_at(e), OUT_F16);
}
