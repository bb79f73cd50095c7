// FP32 FMA throughput probe: CHAINS independent vec4 FMA chains per invocation, ITERS
// steps each, so the adapter's ALUs (not memory) are the limit. FLOPs per invocation:
// ITERS * CHAINS * 4 lanes * 2. The sums are written out so nothing is dead code.
//
// Compile-time constants: WG, CHAINS, ITERS.

struct PeakParams {
    seed: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: PeakParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * WG;
    var x: array<vec4<f32>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        x[c] = vec4<f32>(f32(id) * 1e-7 + f32(c) * 1e-3, 0.5, 0.25, 0.125);
    }
    let m = vec4<f32>(p.scale);
    let s = vec4<f32>(p.seed);
    for (var i = 0u; i < ITERS; i++) {
        for (var c = 0u; c < CHAINS; c++) {
            x[c] = fma(x[c], m, s);
        }
    }
    var t = vec4<f32>(0.0);
    for (var c = 0u; c < CHAINS; c++) {
        t += x[c];
    }
    out[id] = t.x + t.y + t.z + t.w;
}
