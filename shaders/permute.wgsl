// A strided copy of a row-major tensor of rank 6 or less, one invocation per output
// element: the output index is split over the output's dimensions d0..d5 (d5 fastest; a
// lower rank is padded in front with 1s) and the input element is `base` plus the sum of
// each coordinate times the input stride s0..s5 of the axis that output axis takes. A
// transpose (ONNX `Transpose`) permutes the strides; a crop (ONNX `Slice` with step 1)
// keeps them and starts at `base`. Values are copied (f32 or f16 storage each way; f16
// to f32 is exact).
//
// Compile-time constants: WG, X_F16, OUT_F16.

// #import common/store_f16.wgsl

struct Params {
    total: u32,
    base: u32,
    pad1: u32,
    pad2: u32,
    d0: u32,
    d1: u32,
    d2: u32,
    d3: u32,
    d4: u32,
    d5: u32,
    s0: u32,
    s1: u32,
    s2: u32,
    s3: u32,
    s4: u32,
    s5: u32,
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
    var d = array<u32, 6>(p.d0, p.d1, p.d2, p.d3, p.d4, p.d5);
    var s = array<u32, 6>(p.s0, p.s1, p.s2, p.s3, p.s4, p.s5);
    var rest = id;
    var e = p.base;
    for (var i = 0; i < 6; i++) {
        let axis = 5 - i;
        e += (rest % d[axis]) * s[axis];
        rest /= d[axis];
    }
    store_float(id, x_at(e), OUT_F16);
}
