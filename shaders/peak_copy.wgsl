// Memory bandwidth probe: every invocation copies one 16-byte vec4<u32> from `src` to
// `dst`, so the bytes moved are 2 x the buffer. The runner checks a sample of the copy.
//
// Compile-time constants: WG.

struct CopyParams {
    vecs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i < p.vecs {
        dst[i] = src[i];
    }
}
