// Packed INT8 dot-product throughput probe (`dot4I8Packed`, the instruction the W8A8
// kernels are built on): CHAINS independent vec4<u32> chains per invocation, ITERS steps
// each. One step of a lane is `x = dot4I8Packed(x, m) + x`: four 8-bit products and their
// sum plus the accumulation, 8 integer operations, each step depending on the last (the
// packed bytes of x change every step, so nothing can be hoisted). Sums wrap in u32 and
// the benchmark runner recomputes a sample of them exactly.
//
// Compile-time constants: WG, CHAINS, ITERS.

struct DotParams {
    seed: u32,
    mult: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: DotParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * WG;
    var x: array<vec4<u32>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        let b = (id * CHAINS + c) * 4u;
        x[c] = vec4<u32>(b, b + 1u, b + 2u, b + 3u) * 0x9e3779b9u + p.seed;
    }
    let m = p.mult;
    for (var i = 0u; i < ITERS; i++) {
        for (var c = 0u; c < CHAINS; c++) {
            let v = x[c];
            x[c] = v + bitcast<vec4<u32>>(vec4<i32>(
                dot4I8Packed(v.x, m),
                dot4I8Packed(v.y, m),
                dot4I8Packed(v.z, m),
                dot4I8Packed(v.w, m),
            ));
        }
    }
    var t = 0u;
    for (var c = 0u; c < CHAINS; c++) {
        t += x[c].x + x[c].y + x[c].z + x[c].w;
    }
    out[id] = t;
}
