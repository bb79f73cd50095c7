// Shared GEMM parameter block. Mirrors `GemmParams` in src/ops/gemm.rs field for field
// (20 x 4-byte words, std140-compatible because every member is a scalar).
// #import common/epilogue.wgsl
// #expects c
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
    // bit 0: add bias[n]; bits 1..2: activation (0 none, 1 ReLU, 2 ReLU6); bit 3: add
    // the value already in C (a later K chunk of a GEMM split to fit binding limits).
    flags: u32,
    // Workgroups along x per batch slice row (the grid is folded when it exceeds the
    // per-dimension dispatch limit).
    groups_x: u32,
    groups_y: u32,
    // Element offsets of the operands inside their bindings (non-zero when the op binds
    // a window of a tensor larger than one binding may be).
    off_a: u32,
    off_b: u32,
    off_c: u32,
    off_bias: u32,
    // Parallel split-K (register kernel only): the K range is cut into `splits` slices of
    // `kslice` values, one per grid slice; 1 and k when the GEMM is not split.
    splits: u32,
    kslice: u32,
}

// The epilogue of C element `ci` in column `col` (uses the kernel's `c` and `bias`).
fn gemm_epilogue(g: GemmParams, acc: f32, col: u32, ci: u32) -> f32 {
    var v = acc * g.alpha;
    if ((g.flags & 8u) != 0u) {
        v = v + c[ci];
    }
    return bias_act(v, g.flags, g.off_bias + col);
}
