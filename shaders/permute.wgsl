// Strided copies of a row-major tensor of rank 6 or less, one invocation per element. The
// element index is split over dimensions d0..d5 (d5 fastest; a lower rank is padded in
// front with 1s).
//
//   MODE 0, gather: for each output element (of dims d), the input element `base` plus
//     the sum of each coordinate times the input stride s0..s5 of that axis. A transpose
//     (ONNX `Transpose`) permutes the strides; a slice (`Slice`) starts at `base` with its
//     steps times the strides (a negative step is a negative stride, held as its two's
//     complement: u32 arithmetic wraps, so the sum comes out right); a broadcast
//     (`Expand`) has stride 0 on the axes it repeats.
//   MODE 1, scatter: for each input element (of dims d), stored at output element `base`
//     plus the sum of coordinates times the output strides s0..s5 (one input's block of a
//     concatenation along any axis).
//   MODE 2, pad: for each output element (of dims d), the input coordinate on each axis
//     is the output's minus `before` (b0..b5, i32); outside the input (dims n0..n5) it is
//     the constant `value` (pmode 0), the nearest edge (1), the mirror image without the
//     edge (2, ONNX `reflect`; the lowering keeps pads below the dimension) or the
//     coordinate modulo the dimension (3, `wrap`).
//
// Values are copied (f32 or f16 storage each way; f16 to f32 is exact).
//
// Compile-time constants: WG, MODE, X_F16, OUT_F16.

// #import common/store_f16.wgsl

struct Params {
    total: u32,
    base: u32,
    pmode: u32,
    value: f32,
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
    n0: u32,
    n1: u32,
    n2: u32,
    n3: u32,
    n4: u32,
    n5: u32,
    b0: i32,
    b1: i32,
    b2: i32,
    b3: i32,
    b4: i32,
    b5: i32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
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

// The input coordinate of output coordinate `o` on an axis of `n` elements padded by `b`
// in front, or -1 where the constant is read.
fn padded(o: u32, n: u32, b: i32) -> i32 {
    let ni = i32(n);
    var i = i32(o) - b;
    if (i >= 0 && i < ni) {
        return i;
    }
    if (p.pmode == 0u) {
        return -1;
    }
    if (p.pmode == 1u) {
        return clamp(i, 0, ni - 1);
    }
    if (p.pmode == 2u) {
        if (ni == 1) {
            return 0;
        }
        if (i < 0) {
            i = -i;
        }
        if (i >= ni) {
            i = 2 * (ni - 1) - i;
        }
        return clamp(i, 0, ni - 1);
    }
    // wrap: i mod n, the result in [0, n), in u32 arithmetic (GLSL backends differ on
    // the sign of a negative remainder).
    if (i < 0) {
        return ni - 1 - i32(u32(-i - 1) % n);
    }
    return i32(u32(i) % n);
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
    if (MODE == 2u) {
        var n = array<u32, 6>(p.n0, p.n1, p.n2, p.n3, p.n4, p.n5);
        var b = array<i32, 6>(p.b0, p.b1, p.b2, p.b3, p.b4, p.b5);
        var rest = id;
        var e = 0u;
        var stride = 1u;
        var inside = true;
        for (var k = 0; k < 6; k++) {
            let axis = 5 - k;
            let i = padded(rest % d[axis], n[axis], b[axis]);
            rest /= d[axis];
            if (i < 0) {
                inside = false;
            }
            e += u32(max(i, 0)) * stride;
            stride *= n[axis];
        }
        var v = p.value;
        if (inside) {
            v = x_at(e);
        }
        store_float(id, v, OUT_F16);
        return;
    }
    var s = array<u32, 6>(p.s0, p.s1, p.s2, p.s3, p.s4, p.s5);
    var rest = id;
    var e = p.base;
    for (var i = 0; i < 6; i++) {
        let axis = 5 - i;
        e += (rest % d[axis]) * s[axis];
        rest /= d[axis];
    }
    if (MODE == 1u) {
        store_float(e, x_at(id), OUT_F16);
    } else {
        store_float(id, x_at(e), OUT_F16);
    }
}
