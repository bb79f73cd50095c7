// Operand loads of the register kernels (gemm_reg, gemm_sg). The variant binds A and B
// either as f32 arrays or as vec4<f32> arrays and defines, through the composer, the
// element types `AW`/`BW` and the accessors `a_at`/`b_at` (one element) and
// `a_vec`/`b_vec` (the four elements from index 4 * i), so the code below reads both
// bindings alike. A vec4 binding turns four per-lane loads into one, which is what a
// CPU driver such as llvmpipe pays for (it loads lane by lane).
//
// load_b4: B[k, col..col+4]: TRANS_B (B stored n x k), VEC_B (4 contiguous in-range
// columns, B bound as vec4s), else scalar loads with columns clamped into [0, n). `col`
// is a multiple of 4, already clamped by the caller.
// load_a4: A[row, k..k+4] for the K-vector path (KV): `base` is the row's offset; A4
// means A is bound as vec4s and the row and k are multiples of 4.
// #expects p.n, p.ldb, p.lda, b, a
fn load_b4(b_off: u32, k: u32, col: u32) -> vec4<f32> {
    if (TRANS_B) {
        let n1 = p.n - 1u;
        return vec4<f32>(
            b_at(b_off + col * p.ldb + k),
            b_at(b_off + min(col + 1u, n1) * p.ldb + k),
            b_at(b_off + min(col + 2u, n1) * p.ldb + k),
            b_at(b_off + min(col + 3u, n1) * p.ldb + k),
        );
    } else if (VEC_B) {
        return b_vec((b_off + k * p.ldb + col) / 4u);
    } else {
        let n1 = p.n - 1u;
        let base = b_off + k * p.ldb;
        return vec4<f32>(
            b_at(base + col),
            b_at(base + min(col + 1u, n1)),
            b_at(base + min(col + 2u, n1)),
            b_at(base + min(col + 3u, n1)),
        );
    }
}

fn load_a4(base: u32, k: u32) -> vec4<f32> {
    if (TRANS_A) {
        return vec4<f32>(
            a_at(base + k * p.lda),
            a_at(base + (k + 1u) * p.lda),
            a_at(base + (k + 2u) * p.lda),
            a_at(base + (k + 3u) * p.lda),
        );
    } else if (A4) {
        return a_vec((base + k) / 4u);
    } else {
        return vec4<f32>(a_at(base + k), a_at(base + k + 1u), a_at(base + k + 2u), a_at(base + k + 3u));
    }
}

// The rows of B (in vec4 units) holding the four columns col..col+4 of a lane, clamped
// into [0, n), for the K-vector path.
fn b_rows4(b_off: u32, col: u32) -> vec4<u32> {
    let n1 = p.n - 1u;
    return vec4<u32>(
        (b_off + min(col, n1) * p.ldb) / 4u,
        (b_off + min(col + 1u, n1) * p.ldb) / 4u,
        (b_off + min(col + 2u, n1) * p.ldb) / 4u,
        (b_off + min(col + 3u, n1) * p.ldb) / 4u,
    );
}
