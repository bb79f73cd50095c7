// Float FMA throughput probe: CHAINS independent vec4 FMA chains per invocation, ITERS
// steps each, so the adapter's ALUs (not memory) are the limit. FLOPs per invocation:
// ITERS * CHAINS * 4 lanes * 2. The sums are written out so nothing is dead code, and
// the benchmark runner checks a sample of them against an f64 model of the chain.
//
// Compile-time constants: WG, CHAINS, ITERS, and the scalar type `S` (an alias to f32, or
// to f16 with `enable f16`).

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
    var x: array<vec4<S>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        x[c] = vec4<S>(S(f32(id) * 1e-7 + f32(c) * 1e-3), S(0.5), S(0.25), S(0.125));
    }
    let m = vec4<S>(S(p.scale));
    let s = vec4<S>(S(p.seed));
    for (var i = 0u; i < ITERS; i++) {
        for (var c = 0u; c < CHAINS; c++) {
            x[c] = fma(x[c], m, s);
        }
    }
    var t = 0.0;
    for (var c = 0u; c < CHAINS; c++) {
        let v = vec4<f32>(x[c]);
        t += v.x + v.y + v.z + v.w;
    }
    out[id] = t;
}
