// B[k, col..col+4] for the register kernels (gemm_reg, gemm_sg): TRANS_B (B stored
// n x k), VEC_B (4 contiguous in-range columns), else scalar loads with columns clamped
// into [0, n). `col` is a multiple of 4, already clamped by the caller. Uses the kernel's
// `p` and `b` (WGSL module scope is order-independent).
// #expects p.n, p.ldb, b
fn load_b4(b_off: u32, k: u32, col: u32) -> vec4<f32> {
    if (TRANS_B) {
        let n1 = p.n - 1u;
        return vec4<f32>(
            b[b_off + col * p.ldb + k],
            b[b_off + min(col + 1u, n1) * p.ldb + k],
            b[b_off + min(col + 2u, n1) * p.ldb + k],
            b[b_off + min(col + 3u, n1) * p.ldb + k],
        );
    } else if (VEC_B) {
        let base = b_off + k * p.ldb + col;
        return vec4<f32>(b[base], b[base + 1u], b[base + 2u], b[base + 3u]);
    } else {
        let n1 = p.n - 1u;
        let base = b_off + k * p.ldb;
        return vec4<f32>(
            b[base + col],
            b[base + min(col + 1u, n1)],
            b[base + min(col + 2u, n1)],
            b[base + min(col + 3u, n1)],
        );
    }
}
