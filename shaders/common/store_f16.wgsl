// Stores up to four f16 values at element `e` of `out` (an array<atomic<u32>> holding f16
// pairs). Whole words the caller owns are stored directly; a word shared with another
// invocation (odd offsets, row ends) is updated half by half with atomicAnd/atomicOr, which
// touch disjoint bits and so commute with the other invocation's update. Works without
// SHADER_F16.
// #expects out
fn store_f16x4(e: u32, count: u32, v: vec4<f32>) {
    if ((e & 1u) == 0u && count == 4u) {
        atomicStore(&out[e >> 1u], pack2x16float(v.xy));
        atomicStore(&out[(e >> 1u) + 1u], pack2x16float(v.zw));
        return;
    }
    for (var q = 0u; q < count; q++) {
        store_half(e + q, v[q]);
    }
}

// Stores one f16 at element `e`, half by half as above.
fn store_half(e: u32, v: f32) {
    let sh = (e & 1u) * 16u;
    atomicAnd(&out[e >> 1u], ~(0xffffu << sh));
    atomicOr(&out[e >> 1u], (pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu) << sh);
}

// Stores `v` at element `e` of `out` as f16 (`as_f16`) or f32.
fn store_float(e: u32, v: f32, as_f16: bool) {
    if (as_f16) {
        store_half(e, v);
    } else {
        atomicStore(&out[e], bitcast<u32>(v));
    }
}

// The f16 at element `e` of a pair-packed buffer, given the word holding it, as f32.
fn half_at(word: u32, e: u32) -> f32 {
    return unpack2x16float(word >> ((e & 1u) * 16u)).x;
}
