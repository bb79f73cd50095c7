// Image input: RGBA8 pixels (a buffer of packed u32 pixels, or a texture a renderer drew)
// to a normalized NHWC tensor [1, OH, OW, 3], with a bilinear resize to [RH, RW] (pixel
// centers aligned, edges clamped: PIL/torchvision's "antialias=False" bilinear) and a crop
// at [top, left] of the resized image, then (v - mean[c]) * inv_std[c] on 0..255 values.
// One invocation per output pixel. The composer emits the source binding and
// `fn px(x: u32, y: u32) -> vec4<f32>` (RGBA in 0..255) for the buffer or texture form.
//
// Compile-time constants: WG; OUT_F16.

// #import common/store_f16.wgsl

struct Params {
    src_w: u32,
    src_h: u32,
    out_w: u32,
    out_h: u32,
    top: u32,        // crop offset in the resized image
    left: u32,
    total: u32,      // out_w * out_h
    _pad0: u32,
    scale_x: f32,    // src_w / resized width
    scale_y: f32,
    _pad1: u32,
    _pad2: u32,
    mean: vec4<f32>,
    inv_std: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> out: array<atomic<u32>>;

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
    let ox = id % p.out_w;
    let oy = id / p.out_w;
    // Source coordinates of the resized pixel's center.
    let sx = max((f32(ox + p.left) + 0.5) * p.scale_x - 0.5, 0.0);
    let sy = max((f32(oy + p.top) + 0.5) * p.scale_y - 0.5, 0.0);
    let x0 = min(u32(floor(sx)), p.src_w - 1u);
    let y0 = min(u32(floor(sy)), p.src_h - 1u);
    let x1 = min(x0 + 1u, p.src_w - 1u);
    let y1 = min(y0 + 1u, p.src_h - 1u);
    let fx = sx - floor(sx);
    let fy = sy - floor(sy);
    let top = mix(px(x0, y0), px(x1, y0), fx);
    let bottom = mix(px(x0, y1), px(x1, y1), fx);
    let v = (mix(top, bottom, fy) - p.mean) * p.inv_std;
    for (var c = 0u; c < 3u; c++) {
        store_float(id * 3u + c, v[c], OUT_F16);
    }
}
