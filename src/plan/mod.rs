//! The dispatcher's choices. For now one documented heuristic per op; autotuning and its
//! per-adapter cache build on the same kernel lists.
//!
//! GEMM:
//! - CPU adapters (lavapipe, SwiftShader, WARP) run kernels without workgroup memory:
//!   there it is ordinary memory reached through the same slow per-lane loads, and every
//!   barrier costs a coroutine switch per SIMD batch. With subgroups of 8 or more they run
//!   the subgroup kernel (16 rows x 8 columns per invocation; A shared by broadcast), else
//!   the register kernel. GEMV-like shapes (M <= 4) run the register kernel.
//! - GPUs run the register kernel for small M (GEMV-like: every weight is read once, and a
//!   128-row tile would be mostly padding), the 128x128 tiled kernel when both M and N fill
//!   it, and the 64x64 tiled kernel otherwise.

use crate::context::Capabilities;
use crate::ops::gemm::{GemmDesc, GemmKernel, RegConfig, SubgroupConfig};
use crate::ops::wgemm::HalfMath;
use crate::ops::{qgemm, wgemm, RowTile};

fn reg(tm: u32, tn4: u32, ku: u32) -> GemmKernel {
    GemmKernel::Register(RegConfig {
        wg: 64,
        tm,
        tn4,
        ku,
    })
}

/// The kernel [`crate::ops::gemm::gemm`] uses when the description pins none.
pub fn gemm_kernel(caps: &Capabilities, desc: &GemmDesc) -> GemmKernel {
    let small_m = |m: usize| match m {
        1 => reg(1, 1, 4),
        2 => reg(2, 1, 4),
        3..=4 => reg(4, 1, 4),
        _ => reg(8, 1, 4),
    };
    if caps.is_cpu() {
        if desc.m <= 4 {
            return small_m(desc.m);
        }
        let sg = |tm, tn4| GemmKernel::Subgroup(SubgroupConfig { wg: 64, tm, tn4 });
        if sg(8, 1).supported(caps) {
            return match desc.m {
                ..=8 => sg(8, 2),
                _ => sg(16, 2),
            };
        }
        return reg(4, 1, 4);
    }
    if desc.m <= 8 {
        return small_m(desc.m);
    }
    if desc.m >= 128 && desc.n >= 128 {
        GemmKernel::Tiled(GemmKernel::TILED[1])
    } else {
        GemmKernel::Tiled(GemmKernel::TILED[0])
    }
}

/// The W8A8 GEMM tile ([`crate::ops::qgemm`]): one row per invocation with 8 columns for
/// a single row (GEMV: every weight word is read once per row), 2 rows for two, else
/// 4 rows by 8 columns, which keeps 32 int32 accumulators per invocation (more collapses
/// lavapipe's throughput, where registers spill). The workgroup is narrowed for narrow
/// outputs ([`RowTile::fit`]; `n` is the output columns of one group for a grouped
/// convolution).
pub fn qgemm_config(_caps: &Capabilities, m: usize, n: usize, _k: usize) -> RowTile {
    qgemm::tile_for_rows(m).fit(n)
}

/// The float implicit-GEMM convolution tile ([`crate::ops::conv`]): as the W8A8 GEMM's,
/// 4 output pixels by 8 channels, narrowed to the channels of one group.
pub fn conv_config(_caps: &Capabilities, m: usize, ncols: usize) -> RowTile {
    crate::ops::conv::tile_for_rows(m).fit(ncols)
}

/// The weight-only / FP16 GEMM tile ([`crate::ops::wgemm`]): up to 8 rows in one pass
/// over the weights (GEMV reads each weight byte once), else 4 rows by 8 columns.
pub fn wgemm_config(_caps: &Capabilities, m: usize, _n: usize, _k: usize) -> RowTile {
    wgemm::tile_for_rows(m)
}

/// Arithmetic of the FP16 GEMM when the caller leaves it to the plan: f16 products with
/// f32 accumulation on GPUs with `SHADER_F16`; f32 on CPU adapters (x86 has no f16
/// arithmetic, so the driver widens every f16 operation) and without the feature.
pub fn half_math(caps: &Capabilities) -> HalfMath {
    if caps.shader_f16 && !caps.is_cpu() {
        HalfMath::F16AccF32
    } else {
        HalfMath::F32
    }
}
