// Element `e` of the float convolution kernels' `x` and `w` bindings (f32, or f16 pairs
// when X_F16 / W_F16), in the multiply type T.
// #expects x, w
fn x_at(e: u32) -> T {
    if (X_F16) {
        return h2(x[e >> 1u] >> ((e & 1u) * 16u)).x;
    }
    return T(bitcast<f32>(x[e]));
}

fn w_at(e: u32) -> T {
    if (W_F16) {
        return h2(w[e >> 1u] >> ((e & 1u) * 16u)).x;
    }
    return T(bitcast<f32>(w[e]));
}
