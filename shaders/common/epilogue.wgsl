// The bias and activation of a fused GEMM epilogue, from the kernels' shared flag layout:
// bit 0 adds bias[col] (the kernel's `bias` binding), bits 1..2 pick the activation
// (0 none, 1 ReLU, 2 ReLU6). Mirrors `Activation::apply` in src/ops/gemm.rs.
// #expects bias
fn bias_act(x: f32, flags: u32, col: u32) -> f32 {
    var v = x;
    if ((flags & 1u) != 0u) {
        v = v + bias[col];
    }
    let act = (flags >> 1u) & 3u;
    if (act == 1u) {
        v = max(v, 0.0);
    } else if (act == 2u) {
        v = clamp(v, 0.0, 6.0);
    }
    return v;
}
