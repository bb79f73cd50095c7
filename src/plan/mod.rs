//! The dispatcher's choices: which kernel family, tile and workgroup every op runs with,
//! per (op, dtype, shape, adapter).
//!
//! Each op asks the plan when the caller pins nothing. The plan looks the op's shape
//! class up in the context's autotuning cache ([`crate::tuning`], opt-in: nothing is tuned unless
//! you ask) and otherwise applies the documented heuristic below. Either way the choice
//! must fit the device: kernels needing subgroups, more invocations per workgroup or
//! more workgroup memory than the device grants are never chosen, and a tuned entry that
//! does not fit (another device, or [`crate::context::Overrides`]) is ignored.
//! [`explain_gemm`], [`explain_qgemm`], [`explain_wgemm`] and [`explain_conv`] say what
//! would run and why.
//!
//! Heuristic, FP32 GEMM ([`gemm_kernel`]):
//! - CPU adapters (lavapipe, SwiftShader, WARP) run kernels without workgroup memory:
//!   there it is ordinary memory reached through the same slow per-lane loads, and every
//!   barrier costs a coroutine switch per SIMD batch. With subgroups of 8 or more they run
//!   the subgroup kernel (8 rows x 8 columns per invocation up to M = 8, else 16 x 8,
//!   or 32 x 4 on 8 invocations for tall outputs (M >= 512) of at most 64 columns; A shared by
//!   broadcast), else the register kernel. M = 1 runs the register kernel with
//!   1 row x 4 columns per invocation, M = 2 with 2 x 8 on 32 invocations (tuned on
//!   lavapipe: 1.19x-1.60x over the register kernel's 2x4 and 4x4 tiles for M = 2 to 4).
//! - GPUs run the register kernel for small M (GEMV-like: every weight is read once, and a
//!   128-row tile would be mostly padding; split-K below), else the 64x64 tiled kernel (4x4
//!   per invocation, BK 16). The 128x128 tile (8x8 per invocation) is left to the tuner:
//!   on an NVIDIA H100 it ran 9.9x behind the 64x64 one at 512^3 and 128x768x768 in the
//!   same tune run, and at 2.9 % of the FMA peak at 2048^3 (docs/PERFORMANCE.md). A tiled
//!   kernel that does not fit the device's workgroup limits gives way to the register
//!   kernel.
//! - Everywhere, a register or subgroup kernel is narrowed for narrow outputs
//!   ([`GemmKernel::fit`], down to [`min_gemm_wg`]): a 64-wide workgroup covers 256 or
//!   512 columns, and its invocations past the last column would run the whole reduction
//!   on clamped columns.
//!
//! The row kernels (W8A8 [`qgemm_config`], weight-only/FP16 [`wgemm_config`], float
//! convolution [`conv_config`]) take a tile of rows x columns per invocation chosen by
//! the number of rows, narrowed for narrow outputs, and capped by the device's
//! invocations per workgroup. On CPU adapters the FP16 GEMM runs on the FP32 kernels
//! with f16 storage ([`half_gemm_kernel`]; with subgroups from more than
//! [`HALF_ROWS_MAX_M`] rows), and on CPU adapters with subgroups so does a weight-only
//! GEMM from [`DEQUANT_MIN_M`] rows after dequantizing its weight
//! ([`dequant_gemm_kernel`]); both keep the row kernel for a K of at most
//! [`CPU_ROWS_MAX_K`]. On GPUs that list
//! cooperative matrices the FP16 GEMM of more than 8 rows runs on them
//! ([`wgemm_coop`]).
//!
//! Split-K ([`default_split_k`]): the GEMV-like register kernel and the row GEMMs cut K
//! into up to 16 slices that run in parallel when their output tiles alone would not
//! fill the device (fewer than [`SPLIT_K_TARGET`] workgroups on a GPU; on a CPU adapter,
//! 4 per core, and the FP32 register kernel only); a reduce pass adds the slices and
//! applies the epilogue.
//!
//! Operands larger than `max_storage_buffer_binding_size` are not the plan's concern:
//! the ops split them into pieces that fit (see docs/DISPATCH.md).

pub mod split;

use serde::{Deserialize, Serialize};

use crate::caps::Capabilities;
use crate::context::Context;
use crate::desc::conv::ConvShape;
use crate::desc::gemm::{GemmDesc, GemmKernel, RegConfig, SubgroupConfig};
use crate::desc::rows::RowTile;
use crate::desc::tuning::{AdapterKey, Choice, ConvKind, ShapeClass, TuneRequest, WeightType};
use crate::desc::wgemm::{CoopTile, HalfMath};
use crate::desc::{conv, qgemm, wgemm};

/// The tuned choice of `class` on this context's adapter, if its tuning cache has one
/// (see [`crate::tuning`] and [`Context::set_tuning`]).
pub fn lookup(ctx: &Context, class: &ShapeClass) -> Option<Choice> {
    let cache = ctx.tuning()?;
    let key = AdapterKey::of(&ctx.capabilities().adapter);
    cache.get(&key, class).map(|t| t.choice)
}

/// The W8A8 GEMM's (and INT8 convolution's) tile for `m` rows before narrowing: one row
/// by 8 columns for one row, 2 x 8 for two, else 4 x 8.
pub fn qgemm_rows(m: usize) -> RowTile {
    match m {
        1 => qgemm::TILES[0],
        2 => qgemm::TILES[1],
        _ => qgemm::TILES[3],
    }
}

/// The weight-only / FP16 GEMM's tile for `m` rows: one pass over the weights for
/// `m <= 8` (GEMV), else 4 x 8 tiles.
pub fn wgemm_rows(m: usize) -> RowTile {
    match m {
        1 => wgemm::TILES[0],
        2 => wgemm::TILES[1],
        3 | 4 => wgemm::TILES[3],
        5..=8 => wgemm::TILES[4],
        _ => wgemm::TILES[3],
    }
}

/// The float implicit-GEMM convolution's tile for `m` output pixels before narrowing.
pub fn conv_rows(m: usize) -> RowTile {
    match m {
        1 => conv::TILES[0],
        2..=3 => conv::TILES[1],
        _ => conv::TILES[3],
    }
}

fn reg(tm: u32, tn4: u32, ku: u32) -> GemmKernel {
    GemmKernel::Register(RegConfig::new(64, tm, tn4, ku))
}

/// Workgroups below which the split-K heuristic ([`default_split_k`]) considers a GPU
/// under-filled: two per compute unit on the largest GPUs (an H100 has 132 SMs).
pub const SPLIT_K_TARGET: u64 = 256;
/// K values each split-K slice keeps at least, so that the partial sums (one write per
/// output and slice, one read in the reduce pass) stay small beside the reduction.
pub const SPLIT_K_MIN_SLICE: usize = 256;
/// Most K slices the heuristic chooses.
pub const SPLIT_K_MAX: u32 = 16;
/// [`SPLIT_K_MIN_SLICE`] on CPU adapters, where the reduce pass costs a dispatch of
/// about 0.2 ms (lavapipe): a 2x768x768 FP32 GEMM ran 0.47 ms unsplit against 0.75 ms
/// in 2 slices once the K-vector loads made its slices short (docs/PERFORMANCE.md, "No
/// cliffs").
pub const SPLIT_K_MIN_SLICE_CPU: usize = 1024;

/// The workgroups below which [`default_split_k`] splits: [`SPLIT_K_TARGET`] on GPUs; on
/// CPU adapters, 4 per core of this machine (the driver's threads; lavapipe runs one per
/// core), so that a few workgroups do not leave cores idle or unevenly loaded.
pub fn split_k_target(caps: &Capabilities) -> u64 {
    if caps.is_cpu() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        4 * cores as u64
    } else {
        SPLIT_K_TARGET
    }
}

/// The documented split-K heuristic of the GEMV-like row kernels (FP32 register kernel,
/// W8A8 and weight-only GEMMs): a shape whose `workgroups` fall short of
/// [`split_k_target`] (256 on GPUs, 4 per core on CPU adapters) cuts its `k` into the
/// power of two slices that comes closest to the target from below, each at least
/// [`SPLIT_K_MIN_SLICE`] long ([`SPLIT_K_MIN_SLICE_CPU`] on CPU adapters), at most
/// [`SPLIT_K_MAX`]. On lavapipe (2 cores) a 2x768x768 FP32 GEMM (3 workgroups) and a
/// 4096x4096 GEMV (16 workgroups) are left whole.
pub fn default_split_k(caps: &Capabilities, workgroups: u64, k: usize) -> u32 {
    let target = split_k_target(caps);
    if workgroups >= target {
        return 1;
    }
    let want = target / workgroups.max(1);
    let min_slice = if caps.is_cpu() {
        SPLIT_K_MIN_SLICE_CPU
    } else {
        SPLIT_K_MIN_SLICE
    };
    let by_k = (k / min_slice) as u64;
    let s = want.min(by_k).min(u64::from(SPLIT_K_MAX)).max(1);
    1 << s.ilog2()
}

/// The documented heuristic of [`gemm_kernel`], without the tuning cache.
pub fn default_gemm_kernel(caps: &Capabilities, desc: &GemmDesc) -> GemmKernel {
    let small_m = |m: usize| match m {
        1 => reg(1, 1, 4),
        2 => reg(2, 1, 4),
        3..=4 => reg(4, 1, 4),
        _ => reg(8, 1, 4),
    };
    let pick = if caps.is_cpu() {
        let sg = |tm, tn4| GemmKernel::Subgroup(SubgroupConfig { wg: 64, tm, tn4 });
        // A transposed B with K a multiple of 4 takes the K-vector loads (four K values
        // of a column per load, `shaders/common/gemm_load_b.wgsl`); its best subgroup
        // tiles are one group of 4 columns wide (lavapipe, 2 cores, docs/PERFORMANCE.md:
        // 1024^3 290 -> 85 ms against the [K, N] layout's 16x8 tile).
        let kv = desc.trans_b && desc.k.is_multiple_of(4);
        if desc.m == 1 {
            small_m(1)
        } else if desc.m == 2 {
            GemmKernel::Register(RegConfig::new(32, 2, 2, 4))
        } else if sg(8, 1).supported(caps) {
            match desc.m {
                ..=8 if kv => sg(8, 1),
                ..=8 => sg(8, 2),
                _ if kv => GemmKernel::Subgroup(SubgroupConfig {
                    wg: 16,
                    tm: 16,
                    tn4: 1,
                }),
                // Tall, narrow outputs (N <= 64, M >= 512: an implicit-GEMM convolution):
                // 32 rows by 4 columns on one subgroup of 8, so tall and narrow shapes
                // get many small workgroups (lavapipe, 2 cores: 1.1x-2.1x over the
                // narrowed 16x8 tile on nine such shapes, docs/PERFORMANCE.md).
                _ if desc.n <= 64 && desc.m >= 512 => GemmKernel::Subgroup(SubgroupConfig {
                    wg: 8,
                    tm: 32,
                    tn4: 1,
                }),
                _ => sg(16, 2),
            }
        } else if desc.m <= 4 {
            reg(4, 1, 4)
        } else {
            // No subgroups (llvmpipe through GL): 8 rows per invocation beat 4 by
            // 1.28-1.34x on 5 of 6 shapes of M >= 8 (docs/PERFORMANCE.md, "No cliffs").
            reg(8, 1, 4)
        }
    } else if desc.m <= 8 {
        small_m(desc.m)
    } else if GemmKernel::Tiled(GemmKernel::TILED[0]).fits(caps) {
        GemmKernel::Tiled(GemmKernel::TILED[0])
    } else {
        reg(8, 1, 4)
    };
    // Narrow outputs take a narrower workgroup (at least a subgroup), before split-K
    // counts the workgroups.
    let pick = pick.fit(desc.n, min_gemm_wg(caps));
    // GEMV-like register kernels split K when their tiles are too few for the device.
    let pick = match pick {
        GemmKernel::Register(c) if desc.m <= 8 => {
            let wgs = (desc.n as u64).div_ceil(u64::from(c.wg * c.tn4 * 4))
                * (desc.m as u64).div_ceil(u64::from(c.tm))
                * desc.batch as u64;
            GemmKernel::Register(c.split_k(default_split_k(caps, wgs, desc.k)))
        }
        k => k,
    };
    narrow_gemm(caps, pick)
}

/// The FP32-family kernel the FP16 GEMM ([`crate::ops::wgemm`] with f16 weights and f32
/// arithmetic) runs on, f16 operands widened as they are loaded, or `None` for the row
/// kernel. CPU adapters take it: x86 has no f16 arithmetic (the driver emulates every
/// operation), so the FP16 GEMM's gain there is its halved bytes, and the FP32 subgroup
/// and register kernels are the fastest family (lavapipe, 128x3072x768: rows 99 ms, this
/// route 23 ms). GPUs keep the row kernel (or f16 arithmetic).
///
/// Except for a K of at most [`CPU_ROWS_MAX_K`], and for up to [`HALF_ROWS_MAX_M`] rows on
/// CPU adapters with subgroups (lavapipe), [`HALF_ROWS_MAX_M_NO_SUBGROUPS`] without
/// (llvmpipe through GL): for so few rows the row kernel reads the
/// activations from a uniform block
/// ([`wgemm_uniform_x`]), which made it the faster one for GEMV-like products (two tune
/// runs at 7d95bb7 and 78a5a70, docs/PERFORMANCE.md: 1x4096x4096 1.86x and 1.91x ahead of
/// this route, 2x768x768 1.31x and level, 4x768x768 1.12x and 1.18x).
pub fn half_gemm_kernel(caps: &Capabilities, m: usize, n: usize, k: usize) -> Option<GemmKernel> {
    let rows_max = if caps.subgroups {
        HALF_ROWS_MAX_M
    } else {
        HALF_ROWS_MAX_M_NO_SUBGROUPS
    };
    (caps.is_cpu() && m > rows_max && k > CPU_ROWS_MAX_K)
        .then(|| default_gemm_kernel(caps, &GemmDesc::new(m, n, k).transpose(false, true)))
}

/// The most rows for which the FP16 GEMM keeps the row kernel on CPU adapters with
/// subgroups ([`half_gemm_kernel`]).
pub const HALF_ROWS_MAX_M: usize = 4;

/// The most rows for which the FP16 GEMM keeps the row kernel on CPU adapters without
/// subgroups ([`half_gemm_kernel`]; llvmpipe through GL). Since the row kernel's
/// GEMV loop order (`X_FIRST` in `shaders/wgemm.wgsl`) it ran ahead of the register
/// kernel with f16 storage there at 1x4096x4096 (1.32x), 1x11008x4096 (1.34x) and
/// 2x768x768 (1.16x) in an interleaved tune run of 2026-12-05, level at 4 rows, behind
/// at 8 (docs/PERFORMANCE.md, "Slow stretches, idle columns").
pub const HALF_ROWS_MAX_M_NO_SUBGROUPS: usize = 2;

/// The largest K for which the FP16 GEMM and the weight-only GEMM with codes keep the row
/// kernel on CPU adapters ([`half_gemm_kernel`], [`dequant_gemm_kernel`]). With so short
/// a reduction the FP32 kernels' K loops barely run and their per-output overhead (and
/// for codes the dequantizing pass) dominates. llvmpipe through GL, FP16: the row kernel
/// ran 1.26x-1.56x ahead at K = 4-16 (2048x512x4, x8, x16, 1024x1024x8, 512x2048x16;
/// 4096x256x12 1.18x) and level at K = 32 in one interleaved tune run, 1.38x ahead at
/// 2048x512x8 in two more. lavapipe (subgroup kernel), one interleaved run of 2048x512x8,
/// x16, x32, 1024x1024x8, 4096x256x16, 512x2048x12: W8A16 1.31x, 1.22x and 1.18x behind
/// the best row tile at K = 8, 8 and 12 (1.13x at 16, level at 32), FP16 1.25x and 1.15x
/// at K = 8, while the row kernel's default tile stayed within 1.12x of the best there;
/// W4A16 level either way (docs/PERFORMANCE.md, "Short K").
pub const CPU_ROWS_MAX_K: usize = 16;

/// The fewest rows from which a weight-only GEMM with 8- or 4-bit codes on a CPU adapter
/// dequantizes its weight and runs an FP32 kernel ([`dequant_gemm_kernel`]).
pub const DEQUANT_MIN_M: usize = 128;

/// The FP32 subgroup kernel a weight-only GEMM with 8- or 4-bit codes
/// ([`crate::ops::wgemm`]) runs on after dequantizing its weight into an f32 scratch
/// (once per call, a pass over the codes), or `None` for the row kernel. CPU adapters
/// with subgroups (lavapipe) from [`DEQUANT_MIN_M`] rows take it where that scratch fits
/// one binding: the row kernel unpacks every code for every multiply-add and cannot share
/// activations across lanes, while the FP32 subgroup kernel shares each loaded value
/// across 8 lanes. Below the threshold (GEMVs included) the dequantizing pass costs more
/// than it saves (lavapipe: about 20 ns per weight; docs/DISPATCH.md). CPU adapters
/// without subgroups (llvmpipe through GL) keep the row kernel: their FP32 kernel is the
/// register one, and the route ran behind the row kernel on 19 of 20 weight-only classes
/// of 128 rows and more (14 of them beyond 1.25x, up to 2.17x) in the interleaved tune
/// runs of docs/PERFORMANCE.md. GPUs keep the row kernel, whose reads of the codes are
/// the point of weight-only quantization there.
pub fn dequant_gemm_kernel(
    caps: &Capabilities,
    m: usize,
    n: usize,
    k: usize,
) -> Option<GemmKernel> {
    let fits =
        (n as u64 * k as u64).saturating_mul(4) <= caps.limits.max_storage_buffer_binding_size;
    (caps.is_cpu() && caps.subgroups && m >= DEQUANT_MIN_M && k > CPU_ROWS_MAX_K && fits)
        .then(|| default_gemm_kernel(caps, &GemmDesc::new(m, n, k).transpose(false, true)))
}

/// The FP32 kernel the weight-only / FP16 GEMM runs on by default for `wtype` weights
/// (with f32 arithmetic for f16 weights): [`half_gemm_kernel`] for f16,
/// [`dequant_gemm_kernel`] for codes; `None`: the row kernel.
pub fn wgemm_fp32_kernel(
    caps: &Capabilities,
    m: usize,
    n: usize,
    k: usize,
    wtype: WeightType,
) -> Option<GemmKernel> {
    match wtype {
        WeightType::F16 => half_gemm_kernel(caps, m, n, k),
        _ => dequant_gemm_kernel(caps, m, n, k),
    }
}

/// The route [`crate::ops::wgemm::wgemm`] takes for `wtype` weights (f16 ones in f32
/// arithmetic) without a pinned tile: the tuning cache's choice for the shape (a GEMM
/// kernel takes the FP32-kernel route, a row tile the row kernel), else
/// [`wgemm_fp32_kernel`].
pub fn wgemm_route(
    ctx: &Context,
    m: usize,
    n: usize,
    k: usize,
    wtype: WeightType,
) -> Option<GemmKernel> {
    match lookup(ctx, &ShapeClass::wgemm(m, n, k, wtype)) {
        Some(Choice::Gemm(kernel)) if kernel.fits(ctx.capabilities()) => Some(kernel),
        Some(_) => None,
        None => wgemm_fp32_kernel(ctx.capabilities(), m, n, k, wtype),
    }
}

/// The FP16 GEMM on cooperative matrices runs from this many rows on: a GEMV-like
/// product of 8 rows or fewer stays on the row kernel, which reads every weight byte
/// once and is bound by memory, where 16-row matrix tiles would be mostly empty.
pub const COOP_MIN_M: usize = 9;

/// Whether the adapter runs the cooperative-matrix FP16 GEMM at all: a GPU (not a CPU
/// adapter) listing 16x16x16 f16 matrices with f32 sums ([`Capabilities::coop_f16`]),
/// with `SHADER_F16` and subgroups of exactly 32 invocations (each subgroup of the kernel
/// owns a fixed part of the block).
pub fn coop_capable(caps: &Capabilities) -> bool {
    caps.coop_f16
        && caps.shader_f16
        && caps.subgroups
        && !caps.is_cpu()
        && caps.subgroup_size == (32, 32)
}

/// Whether `tile` runs on this adapter: [`coop_capable`], a valid block within the
/// workgroup's invocation and memory limits, split-K of at most [`SPLIT_K_MAX`].
pub fn coop_tile_fits(caps: &Capabilities, tile: CoopTile) -> bool {
    coop_capable(caps)
        && tile.is_valid()
        && tile.split_k <= SPLIT_K_MAX
        && tile.invocations() <= caps.limits.max_compute_invocations_per_workgroup
        && tile.workgroup_bytes() <= caps.limits.max_compute_workgroup_storage_size
}

/// The block of the cooperative-matrix FP16 GEMM for `m x n` outputs, `None` where the
/// adapter cannot run it ([`coop_capable`]) or no block fits its limits: 128 x 128 where
/// those make at least 64 workgroups, else 64 x 128 from 64 rows, else 32 x 128 (or the
/// largest smaller block that fits). K is not split: the rule is the one measured on an
/// H200 (docs/PERFORMANCE.md); split-K ([`coop_split`]) is offered to the tuner.
pub fn coop_tile(caps: &Capabilities, m: usize, n: usize) -> Option<CoopTile> {
    let blocks = m.div_ceil(128).saturating_mul(n.div_ceil(128));
    let want = if m >= 128 && blocks >= 64 {
        4
    } else if m >= 64 {
        2
    } else {
        1
    };
    CoopTile::TILES
        .into_iter()
        .filter(|t| t.wm <= want)
        .find(|t| coop_tile_fits(caps, *t))
}

/// The split of K the tuner offers with the cooperative-matrix block `tile` for
/// `m x n x k`: none where the block makes 128 workgroups or more (about one per
/// multiprocessor of the largest GPUs; wgpu does not say how many an adapter has), else
/// towards 256 workgroups in slices of at least 128 values of K, at most
/// [`SPLIT_K_MAX`].
pub fn coop_split(tile: CoopTile, m: usize, n: usize, k: usize) -> u32 {
    let blocks = (m as u64).div_ceil(u64::from(tile.rows()))
        * (n as u64).div_ceil(u64::from(tile.columns()));
    if blocks >= 128 {
        return 1;
    }
    let k_tiles = (k as u64).div_ceil(32);
    let want = 256u64.div_ceil(blocks.max(1));
    want.min(k_tiles / 4).clamp(1, u64::from(SPLIT_K_MAX)) as u32
}

/// Whether the FP16 GEMM (f16 activations and weights, f16 products) runs on
/// cooperative matrices by default, and on which block: from [`COOP_MIN_M`] rows where
/// [`coop_tile`] has one. CPU adapters never list cooperative matrices.
pub fn wgemm_coop(caps: &Capabilities, m: usize, n: usize, _k: usize) -> Option<CoopTile> {
    if m < COOP_MIN_M {
        return None;
    }
    coop_tile(caps, m, n)
}

/// The cooperative-matrix block of an FP16 GEMM (f16 activations, f16 products) of
/// `m x n x k`: the tuned choice for its shape class where the cache has one (a tuned
/// row tile or FP32 kernel means the row kernel or FP32 route won there), else
/// [`wgemm_coop`].
pub fn wgemm_coop_tuned(ctx: &Context, m: usize, n: usize, k: usize) -> Option<CoopTile> {
    let caps = ctx.capabilities();
    // No cache lookup on every call where the kernel cannot run at all.
    if !coop_capable(caps) {
        return None;
    }
    match lookup(ctx, &ShapeClass::wgemm(m, n, k, WeightType::F16)) {
        Some(Choice::Coop(t)) if coop_tile_fits(caps, t) => Some(t),
        Some(Choice::Coop(_)) | None => wgemm_coop(caps, m, n, k),
        Some(_) => None,
    }
}

/// The size of the uniform block the weight-only / FP16 row kernel can read its
/// activations from (WebGPU's default `max_uniform_buffer_binding_size`).
pub const X_UNIFORM_BYTES: u64 = 64 << 10;

/// Whether `m x k` activations of `elem` bytes each (rounded up to whole words) fit the
/// row kernel's uniform block on this device.
pub fn x_uniform_fits(caps: &Capabilities, m: usize, k: usize, elem: usize) -> bool {
    let bytes = (m as u64)
        .checked_mul(k as u64)
        .and_then(|v| v.checked_mul(elem as u64))
        .and_then(|v| v.checked_next_multiple_of(4));
    bytes.is_some_and(|b| b <= X_UNIFORM_BYTES)
        && caps.limits.max_uniform_buffer_binding_size >= X_UNIFORM_BYTES
}

/// Whether the weight-only / FP16 row kernel ([`crate::ops::wgemm`]) reads its `m x k`
/// activations from a uniform copy of them rather than from their storage binding. CPU
/// adapters take it where they fit ([`x_uniform_fits`]): every invocation of a workgroup
/// reads the same activation words, and llvmpipe loads a storage word lane by lane in a
/// loop with a branch per lane, while a uniform word is one straight-line gather
/// (lavapipe, the GEMVs: docs/DISPATCH.md). The copy costs one buffer copy of at most
/// 64 KiB. GPUs keep the storage binding (not measured there).
pub fn wgemm_uniform_x(caps: &Capabilities, m: usize, k: usize, elem: usize) -> bool {
    caps.is_cpu() && x_uniform_fits(caps, m, k, elem)
}

/// Whether the W8A8 GEMM ([`crate::ops::qgemm`]) reads its `m x k` activation codes
/// (`ceil(k / 4)` words per row) from a uniform copy of them: the rule of
/// [`wgemm_uniform_x`], for GEMMs (convolutions read their windows from storage).
pub fn qgemm_uniform_a(caps: &Capabilities, m: usize, k: usize) -> bool {
    wgemm_uniform_x(caps, m, k.div_ceil(4), 4)
}

/// Whether a linear layer's FP32 weight should be stored `[N, K]` (PyTorch's layout, the
/// GEMM's B transposed) rather than `[K, N]`. CPU adapters with `K` a multiple of 4 take
/// `[N, K]`: each invocation then streams whole rows with the K-vector loads, where the
/// `[K, N]` layout strides across rows (lavapipe, 1x4096x4096: 78 -> 11-17 ms). GPUs keep
/// `[K, N]`, where the invocations of a workgroup read one row together.
pub fn linear_weight_transposed(caps: &Capabilities, k: usize) -> bool {
    caps.is_cpu() && k.is_multiple_of(4)
}

/// The narrowest workgroup [`GemmKernel::fit`] may give the FP32 register and subgroup
/// kernels: the device's largest subgroup, and at least 8 (the subgroup kernel shares
/// rows of A across 8 lanes).
pub fn min_gemm_wg(caps: &Capabilities) -> u32 {
    if !caps.subgroups && caps.is_cpu() {
        // No subgroup kernel runs, and a CPU driver has no SIMD width to fill beyond its
        // own vector (llvmpipe GL reports subgroups of 4 to 128, which would keep
        // 64 invocations on a 16-column output: 3136x64x576 ran 105 ms, 1.7x the best).
        return 8;
    }
    caps.subgroup_size.1.max(8)
}

/// `wg` halved until it is within the device's invocations per workgroup.
fn cap_wg(caps: &Capabilities, wg: u32) -> u32 {
    let lim = caps.limits.max_compute_invocations_per_workgroup.max(1);
    let mut w = wg;
    while w > lim && w > 1 {
        w /= 2;
    }
    w
}

/// `k` with its workgroup shrunk to the device's invocation limit (register and
/// subgroup kernels; their tiles keep working with fewer invocations).
fn narrow_gemm(caps: &Capabilities, k: GemmKernel) -> GemmKernel {
    let fit = |wg| cap_wg(caps, wg);
    match k {
        GemmKernel::Register(c) => GemmKernel::Register(RegConfig { wg: fit(c.wg), ..c }),
        GemmKernel::Subgroup(c) => GemmKernel::Subgroup(SubgroupConfig { wg: fit(c.wg), ..c }),
        t => t,
    }
}

/// The kernel [`crate::ops::gemm::gemm`] uses when the description pins none: the
/// context's tuned choice for this shape class if there is one that fits the device,
/// else [`default_gemm_kernel`].
pub fn gemm_kernel(ctx: &Context, desc: &GemmDesc) -> GemmKernel {
    ctx.learn(|| TuneRequest::Gemm(desc.clone()));
    let caps = ctx.capabilities();
    match lookup(ctx, &ShapeClass::gemm(desc)) {
        Some(Choice::Gemm(k)) if k.fits(caps) => k,
        _ => default_gemm_kernel(caps, desc),
    }
}

/// A row tile with its workgroup shrunk to the device's invocation limit.
fn cap_rows(caps: &Capabilities, t: RowTile) -> RowTile {
    RowTile {
        wg: cap_wg(caps, t.wg),
        ..t
    }
}

fn tuned_rows(ctx: &Context, class: &ShapeClass) -> Option<RowTile> {
    match lookup(ctx, class) {
        Some(Choice::Rows(t))
            if t.wg
                <= ctx
                    .capabilities()
                    .limits
                    .max_compute_invocations_per_workgroup =>
        {
            Some(t)
        }
        _ => None,
    }
}

/// `t` with the split-K of [`default_split_k`] for an `m x n x k` GEMM, on GPUs only:
/// on lavapipe the row kernels lost 4-9 % with 2 slices at 1x768x768 (2 workgroups, an
/// extra pass on a 1 ms op) and gained nothing at 4096.
fn with_split_k(caps: &Capabilities, t: RowTile, m: usize, n: usize, k: usize) -> RowTile {
    if caps.is_cpu() {
        return t;
    }
    let workgroups =
        (n as u64).div_ceil(u64::from(t.columns())) * (m as u64).div_ceil(u64::from(t.tm));
    t.split_k(default_split_k(caps, workgroups, k))
}

/// The documented tile heuristic of the INT8 convolution ([`qgemm_config`] with `conv`),
/// and of the W8A8 GEMM before split-K: one row per invocation with 8 columns for a
/// single row (GEMV: every weight word is read once per row), 2 rows for two, else 4 rows
/// by 8 columns, which keeps 32 int32 accumulators per invocation (more collapses
/// lavapipe's throughput, where registers spill); on CPU adapters, 4 rows by 4 columns
/// for at most 32 output columns. The workgroup is narrowed for narrow outputs
/// ([`RowTile::fit`]; `n` is the output columns of one group for a grouped convolution).
pub fn default_qconv_config(caps: &Capabilities, m: usize, n: usize) -> RowTile {
    // CPU adapters, at most 32 output channels: one group of 4 columns, as for the float
    // convolutions (EfficientNet's stem in INT8 on lavapipe: 4x8 16.8 ms, 4x4 13.3).
    let t = if caps.is_cpu() && m > 3 && n <= 32 {
        qgemm::TILES[2]
    } else {
        qgemm_rows(m)
    };
    cap_rows(caps, t.fit(n))
}

/// The documented heuristic of the W8A8 GEMM ([`qgemm_config`]): the tile of
/// [`default_qconv_config`] (on CPU adapters beyond M = 2 the tiles of `cpu_rows`: 4x4
/// up to M = 4, else 4x8 with subgroups and 8x4 without, on the workgroup width that
/// leaves the fewest columns idle) with K split by
/// [`default_split_k`] on GPUs.
pub fn default_qgemm_config(caps: &Capabilities, m: usize, n: usize, k: usize) -> RowTile {
    let t = match cpu_rows(caps, m, n, None) {
        Some(t) => cap_rows(caps, t.fit(n)),
        None => default_qconv_config(caps, m, n),
    };
    with_split_k(caps, t, m, n, k)
}

/// The CPU adapters' own row tiles for the linear layers beyond M = 2 (None: the shared
/// rule), from the lavapipe sweep in docs/PERFORMANCE.md ("No cliffs"), where the vector
/// weight loads moved the best tiles to one group of 4 columns or to 2 rows:
/// - W8A8 (`wtype` None): 4x4 for M = 3-4; beyond, on CPU adapters with subgroups
///   (lavapipe) 4x8 from 33 output columns (768 wide it ran 1.36x and 1.38x behind the
///   best on 64 invocations in two of three runs at 128x768x768; on 32, see below, within
///   1.06x of 8x4 at its fastest). In four interleaved tune runs (docs/PERFORMANCE.md,
///   "Interleaved timing") the 8x4 tile was 1.25x-1.53x behind the best in 11 of 19
///   measurements of 12 shapes, 4x8 in 2 (both 128x768x768 on 64 invocations): 8x4 runs
///   1.2-1.9x slower in stretches of a few seconds that come and go on the same buffers,
///   more often and harder than the other tiles ("Slow stretches" there). Else 8x4
///   (llvmpipe through GL, where 8x4 stayed the best; before the four-word loads the
///   4x8 default was 1.2-2.9x slower on 7 of 14 shapes), except for outputs of 33-64 columns, which take the INT8
///   convolution's 4x8 tile ([`default_qconv_config`], narrowed; after the uniform
///   activation block 3136x64x576 ran 1.57x and 1.53x ahead of 8x4 in two tune runs, and
///   1.10x behind it in a third); up to 32 columns 8x4 stays (4x4 won 1.31x and lost
///   1.06x at 4096x16x64 in two runs, won 1.04x and lost 1.38x at 12544x32x28);
/// - 4-bit weights: 4x4 on CPU adapters with subgroups (lavapipe; after the uniform
///   activation block it beat the earlier 2x8 in two tune runs: 4x768x768 1.43x and
///   1.09x, 8x4096x4096 1.55x and 1.05x; before it, 2x8 had beaten 4x8 and 8x4 by
///   1.3-2.6x on 10 of 14 shapes); without subgroups (llvmpipe through GL, where the
///   same kernel compiles to other loads) 4x8, which the GL tuner chose over 2x8 by
///   1.13-1.52x on 256^3, 8x4096x4096 and 3136x64x576 in two sweeps (docs/PERFORMANCE.md,
///   "No cliffs");
/// - f16 weights with M = 3-4 on CPU adapters with subgroups (the row kernel, see
///   [`half_gemm_kernel`]): 4x4 (4x768x768 0.63 ms against 4x8's 0.85). With 2 rows the
///   shared rule's 2x8, since the GEMV loop order (`X_FIRST`, 2026-12-05) applies to it:
///   2x768x768 0.34 ms against 4x4's 0.46 in an interleaved tune run, 2x4096x4096 5.6
///   against 8.0 pinned (before it, 4x4 0.43 against 2x8's 0.71);
/// - 8-bit and f16 weights: 4x8 for M = 5-8 as beyond (8x4 lost 1.37x at 8x4096x4096);
/// - weight-only with at most 32 output columns: one group of 4 columns (4x4 for 4-bit,
///   8x4 for 8-bit weights), since even 8 invocations of 8 columns would cover 64 (1.5-1.9x
///   at 12544x32x28 and 4096x16x64);
/// - every tile above on 64, 32 or 16 invocations, whichever covers the output with the
///   fewest idle columns ([`fewest_idle`]); lavapipe and GL, 2026-12-05, against the
///   same tile on 64: W8A16 4x8 64x768x768 1.33x (32) and 1.29x (GL), 32x640x1024 1.55x
///   (16) and 1.53x (GL); W4A16 4x4 32x640x1024 1.18x (32); GL W8A8 8x4 32x640x1024
///   1.18x (32).
fn cpu_rows(caps: &Capabilities, m: usize, n: usize, wtype: Option<WeightType>) -> Option<RowTile> {
    if !caps.is_cpu() || m <= 1 {
        return None;
    }
    let half = wtype == Some(WeightType::F16);
    let four_bit = matches!(wtype, Some(WeightType::I4 | WeightType::U4));
    let tile = match wtype {
        _ if half && caps.subgroups && m > 2 && m <= HALF_ROWS_MAX_M && n > 32 => wgemm::TILES[2],
        _ if m <= 2 => return None,
        None if m <= 4 => qgemm::TILES[2],
        None if n > 32 && n <= 64 => return None,
        None if n > 32 && caps.subgroups => qgemm::TILES[3],
        None => qgemm::TILES[4],
        Some(_) if n <= 32 && four_bit => wgemm::TILES[2],
        Some(_) if n <= 32 => wgemm::TILES[4],
        Some(_) if four_bit && caps.subgroups => wgemm::TILES[2],
        Some(_) => wgemm::TILES[3],
    };
    Some(fewest_idle(tile, n))
}

/// `tile` with the widest workgroup of 64 (or `tile.wg`, if fewer), 32 or 16 invocations
/// that covers an output `n` columns wide with the fewest columns: a workgroup past the
/// last column still runs its idle invocations on a CPU adapter, so the cost follows the
/// columns covered. 4x8 on 64 invocations covers 512 columns and leaves a quarter of 768
/// idle; on 32 it covers 768 exactly, on 16 640 (lavapipe W8A8, 2026-12-05: 128x768x3072
/// 23.6 ms on 32 against 28.2 for 4x4 and 31.0 for 4x8 on 64; 256x640x1024 13.6 ms on
/// 16, 16.2 on 32, 21.2 on 64; docs/PERFORMANCE.md, "Idle columns").
fn fewest_idle(tile: RowTile, n: usize) -> RowTile {
    let covered = |t: RowTile| {
        let c = t.fit(n).columns().max(1) as usize;
        n.div_ceil(c) * c
    };
    [64, 32, 16]
        .into_iter()
        .filter(|&wg| wg <= tile.wg)
        .map(|wg| RowTile { wg, ..tile })
        .min_by_key(|&t| covered(t))
        .unwrap_or(tile)
}

/// The W8A8 GEMM tile ([`crate::ops::qgemm`]): tuned, else [`default_qgemm_config`].
/// Convolutions (`conv`) take [`default_qconv_config`] here (their tuned tiles come from
/// [`tuned_qconv_config`]).
pub fn qgemm_config(ctx: &Context, m: usize, n: usize, k: usize, conv: bool) -> RowTile {
    let caps = ctx.capabilities();
    if conv {
        return default_qconv_config(caps, m, n);
    }
    ctx.learn(|| TuneRequest::QGemm { m, n, k });
    tuned_rows(ctx, &ShapeClass::qgemm(m, n, k))
        .unwrap_or_else(|| default_qgemm_config(caps, m, n, k))
}

/// The documented heuristic of [`conv_config`]: as the W8A8 GEMM's, 4 output pixels by 8
/// channels, narrowed to the channels of one group.
pub fn default_conv_config(caps: &Capabilities, m: usize, ncols: usize) -> RowTile {
    // CPU adapters, at most 32 output channels per group: one group of 4 columns per
    // invocation, since 8 invocations of 8 would cover 64 (lavapipe, EfficientNet's stem
    // 224x224x3 -> 32: 4x8 8.95 ms, 4x4 6.15; docs/PERFORMANCE.md, "No cliffs").
    let t = if caps.is_cpu() && m > 3 && ncols <= 32 {
        conv::TILES[2]
    } else {
        conv_rows(m)
    };
    cap_rows(caps, t.fit(ncols))
}

/// The float implicit-GEMM convolution tile ([`crate::ops::conv`]) for `shape` with
/// `kind` storage (f32 or f16): tuned, else [`default_conv_config`].
pub fn conv_config(ctx: &Context, shape: &ConvShape, kind: ConvKind) -> RowTile {
    ctx.learn(|| TuneRequest::Conv {
        shape: *shape,
        kind,
    });
    let d = shape.dims;
    tuned_rows(ctx, &ShapeClass::conv(shape, kind)).unwrap_or_else(|| {
        default_conv_config(ctx.capabilities(), shape.rows(), d.out_channels / d.groups)
    })
}

/// The INT8 convolution's tile when the tuning cache has one for `shape` (otherwise the
/// W8A8 kernel's convolution heuristic, [`default_qconv_config`], applies).
pub fn tuned_qconv_config(ctx: &Context, shape: &ConvShape) -> Option<RowTile> {
    ctx.learn(|| TuneRequest::Conv {
        shape: *shape,
        kind: ConvKind::W8A8,
    });
    tuned_rows(ctx, &ShapeClass::conv(shape, ConvKind::W8A8))
}

/// The documented heuristic of [`wgemm_config`] for `wtype` weights: up to 8 rows in
/// one pass over the weights (GEMV reads each weight byte once), else 4 rows by 8
/// columns; on CPU adapters beyond M = 2 the tiles of the CPU rule (2x8 for 4-bit
/// weights, 4x8 otherwise); the workgroup narrowed for narrow outputs
/// ([`RowTile::fit`]); on GPUs, K split by [`default_split_k`].
pub fn default_wgemm_config(
    caps: &Capabilities,
    m: usize,
    n: usize,
    k: usize,
    wtype: WeightType,
) -> RowTile {
    let t = cpu_rows(caps, m, n, Some(wtype)).unwrap_or_else(|| wgemm_rows(m));
    with_split_k(caps, cap_rows(caps, t.fit(n)), m, n, k)
}

/// The weight-only / FP16 GEMM tile ([`crate::ops::wgemm`]) for weights of `wtype`:
/// tuned, else [`default_wgemm_config`].
pub fn wgemm_config(ctx: &Context, m: usize, n: usize, k: usize, wtype: WeightType) -> RowTile {
    if matches!(wtype, WeightType::I8 | WeightType::I4 | WeightType::F16) {
        ctx.learn(|| TuneRequest::WGemm { m, n, k, wtype });
    }
    tuned_rows(ctx, &ShapeClass::wgemm(m, n, k, wtype))
        .unwrap_or_else(|| default_wgemm_config(ctx.capabilities(), m, n, k, wtype))
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

/// The arithmetic an FP16 GEMM or convolution runs: `requested`, or for
/// [`HalfMath::Auto`] the plan's [`half_math`] on f16 activations and f32 on f32 ones
/// (f32 activations never get f16 products behind the caller's back).
pub fn resolve_half_math(caps: &Capabilities, requested: HalfMath, x_f16: bool) -> HalfMath {
    match requested {
        HalfMath::Auto if x_f16 => half_math(caps),
        HalfMath::Auto => HalfMath::F32,
        m => m,
    }
}

/// Where a plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The documented heuristic.
    Heuristic,
    /// The context's autotuning cache.
    Tuned,
}

/// What an op would run: the answer to "which kernel, and why".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The shape class (also the tuning cache key).
    pub class: ShapeClass,
    /// Kernel family: `gemv` (one pass over the weights, M <= 8), `small_m`, `tiled`,
    /// `register` or `subgroup` for FP32; `rows` for the row kernels.
    pub family: String,
    /// The kernel configuration.
    pub choice: Choice,
    /// Workgroup size (x, y).
    pub workgroup: [u32; 2],
    /// Output rows x columns one workgroup covers.
    pub tile: [u32; 2],
    /// Elements per vector load of the weight / B operand.
    pub vector_width: u32,
    /// K slices run in parallel and added by a reduce pass (1: no split-K). The
    /// configuration's `split_k`, cut to what K and the binding limit allow.
    pub split_k: u32,
    /// Pieces the op is split into to fit `max_storage_buffer_binding_size` (1 when
    /// everything fits); for FP32 GEMM, K pieces accumulate.
    pub pieces: usize,
    /// Heuristic or tuned.
    pub source: Source,
}

fn source(ctx: &Context, class: &ShapeClass) -> Source {
    if lookup(ctx, class).is_some() {
        Source::Tuned
    } else {
        Source::Heuristic
    }
}

/// The plan of an FP32 GEMM (operand strides as the op derives them for dense batches).
pub fn explain_gemm(ctx: &Context, desc: &GemmDesc) -> crate::Result<Plan> {
    let class = ShapeClass::gemm(desc);
    let k = desc.kernel.unwrap_or_else(|| gemm_kernel(ctx, desc));
    let (bm, bn) = k.tile();
    let (family, workgroup, vector_width) = match k {
        GemmKernel::Tiled(c) => ("tiled", [c.wg_x, c.wg_y], 4),
        GemmKernel::Register(c) if desc.m <= 8 => ("gemv", [c.wg, 1], 4),
        GemmKernel::Register(c) => ("register", [c.wg, 1], 4),
        GemmKernel::Subgroup(c) => ("subgroup", [c.wg, 1], 4),
    };
    let (ar, ac) = desc.stored_a();
    let (br, bc) = desc.stored_b();
    let strides = [ar * ac, br * bc, desc.m * desc.n];
    let limits = ctx.capabilities().limits;
    let bytes = |n: usize| crate::dtype::padded_bytes(n * desc.batch, crate::dtype::DType::F32);
    let fits = [ar * ac, br * bc, desc.m * desc.n]
        .into_iter()
        .all(|n| bytes(n) <= limits.max_storage_buffer_binding_size);
    let pieces = if fits {
        1
    } else {
        split::gemm_pieces(
            desc,
            strides,
            limits.max_storage_buffer_binding_size,
            u64::from(limits.min_storage_buffer_offset_alignment).max(16),
        )?
        .len()
    };
    Ok(Plan {
        source: if desc.kernel.is_some() {
            Source::Heuristic
        } else {
            source(ctx, &class)
        },
        class,
        family: family.into(),
        choice: Choice::Gemm(k),
        workgroup,
        tile: [bm, bn],
        vector_width,
        split_k: if pieces == 1 {
            split::slices(split::gemm_split_k(ctx.capabilities(), k, desc))
        } else {
            1
        },
        pieces,
    })
}

fn rows_plan(
    ctx: &Context,
    class: ShapeClass,
    t: RowTile,
    m: usize,
    vector_width: u32,
    split_k: u32,
) -> Plan {
    Plan {
        source: source(ctx, &class),
        class,
        family: if m <= 8 { "gemv" } else { "rows" }.into(),
        choice: Choice::Rows(t),
        workgroup: [t.wg, 1],
        tile: [t.tm, t.columns()],
        vector_width,
        split_k,
        pieces: 1,
    }
}

/// The plan of a W8A8 GEMM of `m x k` activations by an `n x k` weight.
pub fn explain_qgemm(ctx: &Context, m: usize, n: usize, k: usize) -> Plan {
    let t = qgemm_config(ctx, m, n, k, false);
    let s = split::slices(split::qgemm_split_k(ctx.capabilities(), t, m, n, k));
    rows_plan(ctx, ShapeClass::qgemm(m, n, k), t, m, 4, s)
}

/// The plan of a weight-only / FP16 GEMM with `wtype` weights.
pub fn explain_wgemm(ctx: &Context, m: usize, n: usize, k: usize, wtype: WeightType) -> Plan {
    let class = ShapeClass::wgemm(m, n, k, wtype);
    let f16_products = resolve_half_math(ctx.capabilities(), HalfMath::Auto, true) != HalfMath::F32;
    if let (WeightType::F16, true, Some(t)) = (wtype, f16_products, wgemm_coop_tuned(ctx, m, n, k))
    {
        // Shown for f16 activations, which the cooperative kernel needs.
        return Plan {
            source: source(ctx, &class),
            class,
            family: "cooperative matrices (f16 activations)".into(),
            choice: Choice::Coop(t),
            workgroup: [t.invocations(), 1],
            tile: [t.rows(), t.columns()],
            vector_width: 8,
            split_k: t.split_k,
            pieces: 1,
        };
    }
    let f32_math = resolve_half_math(ctx.capabilities(), HalfMath::Auto, true) == HalfMath::F32;
    let half = wtype == WeightType::F16;
    if let (true, Some(kernel)) = (f32_math || !half, wgemm_route(ctx, m, n, k, wtype)) {
        let desc = GemmDesc::new(m, n, k).transpose(false, true).kernel(kernel);
        if let Ok(p) = explain_gemm(ctx, &desc) {
            let how = if half {
                "f16 storage"
            } else {
                "dequantized weight"
            };
            return Plan {
                source: source(ctx, &class),
                class,
                family: format!("{} ({how})", p.family),
                ..p
            };
        }
    }
    let t = wgemm_config(ctx, m, n, k, wtype);
    let vw = wtype.per_word();
    let caps = ctx.capabilities();
    let s = split::slices(split::wgemm_split_k(caps, t, m, n, k.div_ceil(vw as usize)));
    let mut p = rows_plan(ctx, ShapeClass::wgemm(m, n, k, wtype), t, m, vw, s);
    // The activations' dtype is not part of the shape class: name both cases.
    if wgemm_uniform_x(caps, m, k, 4) {
        p.family.push_str(" (uniform x)");
    } else if wgemm_uniform_x(caps, m, k, 2) {
        p.family.push_str(" (uniform x for f16 activations)");
    }
    p
}

/// The plan of a convolution's implicit GEMM of `shape` with `kind` storage. Depthwise convolutions run their own kernel and FP32 1x1
/// convolutions the GEMM's plan ([`explain_gemm`]); their plans are not shown here.
pub fn explain_conv(ctx: &Context, shape: &ConvShape, kind: ConvKind) -> Plan {
    let d = shape.dims;
    let ncols = d.out_channels / d.groups;
    let t = if kind == ConvKind::W8A8 {
        tuned_qconv_config(ctx, shape)
            .unwrap_or_else(|| default_qconv_config(ctx.capabilities(), shape.rows(), ncols))
    } else {
        conv_config(ctx, shape, kind)
    };
    let mut p = rows_plan(ctx, ShapeClass::conv(shape, kind), t, shape.rows(), 4, 1);
    p.family = "implicit_gemm".into();
    p
}
