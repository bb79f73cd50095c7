// Shared GEMM parameter block. Mirrors `GemmParams` in src/ops/gemm.rs field for field
// (16 x 4-byte words, std140-compatible because every member is a scalar).
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // Element offsets between consecutive matrices of a batch (0 broadcasts one matrix).
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    // Leading dimensions (row pitch in elements) of A, B and C as stored.
    lda: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    // bit 0: add bias[n]; bits 1..2: activation (0 none, 1 ReLU, 2 ReLU6).
    flags: u32,
    // Workgroups along x per batch slice row (the grid is folded when it exceeds the
    // per-dimension dispatch limit).
    groups_x: u32,
    groups_y: u32,
    _pad0: u32,
    _pad1: u32,
}

fn gemm_epilogue(p: GemmParams, acc: f32, col: u32) -> f32 {
    return bias_act(acc * p.alpha, p.flags, col);
}
