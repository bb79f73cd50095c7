// A gather along one axis of a row-major tensor viewed as [outer, n_in, inner]: output
// [outer, n_out, inner] with out[o, j, i] = x[o, idx[j], i], one invocation per output
// element. The indices are u32 below n_in (the caller checks them). ONNX `Gather` of an
// activation by constant indices, and a nearest `Resize` by any factors as one gather
// per axis with ONNX's picks. Values are copied (f32 or f16 storage each way; f16 to
// f32 is exact).
//
// Compile-time constants: WG, X_F16, OUT_F16.

// #import common/store_f16.wgsl

struct Params {
    total: u32,
    n_in: u32,
    n_out: u32,
    inner: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;

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
    let i = id % p.inner;
    let rest = id / p.inner;
    let j = rest % p.n_out;
    let o = rest / p.n_out;
    store_float(id, x_at((o * p.n_in + idx[j]) * p.inner + i), OUT_F16);
}
