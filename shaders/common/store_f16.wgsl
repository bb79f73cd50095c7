// Stores up to four f16 values at element `e` of `out` (an array<atomic<u32>> holding f16
// pairs). Whole words the caller owns are stored directly; a word shared with another
// invocation (odd offsets, row ends) is updated half by half with atomicAnd/atomicOr, which
// touch disjoint bits and so commute with the other invocation's update. Works without
// SHADER_F16.
fn store_f16x4(e: u32, count: u32, v: vec4<f32>) {
    if ((e & 1u) == 0u && count == 4u) {
        atomicStore(&out[e >> 1u], pack2x16float(v.xy));
        atomicStore(&out[(e >> 1u) + 1u], pack2x16float(v.zw));
        return;
    }
    for (var q = 0u; q < count; q++) {
        let idx = e + q;
        let sh = (idx & 1u) * 16u;
        let h = pack2x16float(vec2<f32>(v[q], 0.0)) & 0xffffu;
        atomicAnd(&out[idx >> 1u], ~(0xffffu << sh));
        atomicOr(&out[idx >> 1u], h << sh);
    }
}
