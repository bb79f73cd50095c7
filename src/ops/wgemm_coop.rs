//! The FP16 GEMM on cooperative matrices (tensor cores), a kernel of [`super::wgemm`]: f16
//! activations times f16 weights `[N, K]`, f16 products summed in f32, on adapters that
//! list 16x16x16 f16 cooperative matrices with f32 accumulation
//! ([`crate::Capabilities::coop_f16`]; NVIDIA's Vulkan driver does) and have 32-wide
//! subgroups. [`super::wgemm::wgemm`] takes it where [`plan::wgemm_coop`] says so
//! (GEMMs of more than [`plan::COOP_MIN_M`] rows) or [`WGemmDesc::cooperative`] pins it;
//! elsewhere the row kernel runs. Its error budget is that of f16 products with f32
//! accumulation (`2e-3`); the products of two f16 values are exact in f32, so the result
//! differs from f32 arithmetic on the same f16 operands only by the order of the sums.
//!
//! The kernel needs wgpu's experimental cooperative-matrix feature, which
//! [`crate::Context::request`] asks for where the adapter lists the configuration.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::to_u32;
use crate::plan;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

use crate::desc::wgemm::{CoopTile, HalfMath, WGemmDesc};

const OP: &str = "wgemm";

crate::shaders::uniform! {
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        ldo: u32,
        flags: u32,
        splits: u32,
        slice_tiles: u32,
        _pad: u32,
    }
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

const ENABLE: &str = "enable wgpu_cooperative_matrix;";

// Eight halves of row `r` from column `k0` (a multiple of 8, as K is): one vec4 load.
const LOAD_VEC4: &str = "alias XW = vec4<u32>;
fn x8(r: u32, k0: u32) -> vec4<u32> {
    if (r >= p.m || k0 >= p.k) { return vec4<u32>(0u); }
    return x[(r * p.k + k0) >> 3u];
}
fn w8(r: u32, k0: u32) -> vec4<u32> {
    if (r >= p.n || k0 >= p.k) { return vec4<u32>(0u); }
    return w[(r * p.k + k0) >> 3u];
}";

// Any K: half by half from the u32 pairs, zeros past the row's end.
const LOAD_PAIRS: &str = "alias XW = u32;
fn half_of(word: u32, e: u32) -> u32 { return (word >> ((e & 1u) * 16u)) & 0xffffu; }
fn x8(r: u32, k0: u32) -> vec4<u32> {
    var v = vec4<u32>(0u);
    if (r < p.m) {
        for (var i = 0u; i < 8u; i++) {
            let e = r * p.k + k0 + i;
            if (k0 + i < p.k) { v[i >> 1u] |= half_of(x[e >> 1u], e) << ((i & 1u) * 16u); }
        }
    }
    return v;
}
fn w8(r: u32, k0: u32) -> vec4<u32> {
    var v = vec4<u32>(0u);
    if (r < p.n) {
        for (var i = 0u; i < 8u; i++) {
            let e = r * p.k + k0 + i;
            if (k0 + i < p.k) { v[i >> 1u] |= half_of(w[e >> 1u], e) << ((i & 1u) * 16u); }
        }
    }
    return v;
}";

/// The kernel: `tile` (its split-K is a runtime parameter), eight-half loads (`vec4`, K a multiple of 8) or half by half,
/// f16 or f32 output.
pub(crate) fn variant(tile: CoopTile, vec4: bool, out_f16: bool) -> ShaderVariant {
    let tile = tile.split_k(1);
    let load = if vec4 {
        ("LOAD_VEC4", Def::Code(LOAD_VEC4))
    } else {
        ("LOAD_PAIRS", Def::Code(LOAD_PAIRS))
    };
    let mut v = ShaderVariant::new(
        ShaderFile::WGemmCoop,
        vec![
            ("COOP", Def::Code(ENABLE)),
            ("WM", Def::U32(tile.wm)),
            ("WN", Def::U32(tile.wn)),
            ("OUT_F16", Def::Bool(out_f16)),
            load,
        ],
    );
    v.f16 = true;
    v
}

pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for tile in CoopTile::TILES {
        for vec4 in [false, true] {
            for out_f16 in [false, true] {
                v.push(variant(tile, vec4, out_f16));
            }
        }
    }
    v
}

pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    vec![(
        ShaderFile::WGemmCoop,
        crate::shaders::uniform_layout::<Params>(),
    )]
}

/// What the cooperative kernel needs besides the adapter, as [`route`] sees it.
pub(crate) struct Route {
    /// f16 weights (not codes).
    pub half_weights: bool,
    /// f16 activations.
    pub x_f16: bool,
    /// The resolved arithmetic.
    pub math: HalfMath,
    /// Pieces the operands are bound in (the kernel binds each whole).
    pub pieces: usize,
}

/// The block of the cooperative kernel if this product takes it: as `desc.cooperative`
/// pins it (an error where it cannot apply), else the plan's choice.
pub(crate) fn route(
    ctx: &Context,
    desc: &WGemmDesc,
    r: &Route,
    (m, n, k): (usize, usize, usize),
) -> Result<Option<CoopTile>> {
    let caps = ctx.capabilities();
    let others = desc.config.is_some() || desc.fp32_kernel.is_some() || desc.uniform_x.is_some();
    let operands = r.half_weights && r.x_f16 && r.math != HalfMath::F32 && r.pieces == 1;
    let runs = |t: &CoopTile| plan::coop_tile_fits(caps, *t) && grid(ctx, *t, m, n).is_ok();
    let pinned = desc.cooperative.or(desc.coop_tile.map(|_| true));
    match pinned {
        Some(false) if desc.coop_tile.is_some() => Err(Error::invalid(
            OP,
            "coop_tile pins the cooperative kernel, which cooperative(false) refuses",
        )),
        Some(false) => Ok(None),
        Some(true) => match desc
            .coop_tile
            .or_else(|| plan::coop_tile(caps, m, n))
            .filter(runs)
        {
            Some(t) if operands && !others => Ok(Some(t)),
            _ => Err(Error::invalid(
                OP,
                format!(
                    "cooperative: the FP16 GEMM on cooperative matrices needs f16 weights \
                     and activations with f16 products (here: f16 weights {}, f16 x {}, {:?} \
                     arithmetic), operands bound whole (here {} pieces), no row tile, FP32 \
                     kernel or uniform_x pinned, and an adapter listing 16x16x16 f16 \
                     cooperative matrices with f32 sums and 32-wide subgroups (here: {}, \
                     subgroups {:?}) and a block ({:?}) within its workgroup and grid limits \
                     for [{m}, {n}]",
                    r.half_weights,
                    r.x_f16,
                    r.math,
                    r.pieces,
                    if caps.coop_f16 {
                        "listed"
                    } else {
                        "not listed"
                    },
                    caps.subgroup_size,
                    desc.coop_tile
                ),
            )),
        },
        None if operands && !others => Ok(plan::wgemm_coop_tuned(ctx, m, n, k).filter(runs)),
        None => Ok(None),
    }
}

/// The workgroup grid: blocks of columns along x, of rows along y, K slices along z.
fn grid(ctx: &Context, tile: CoopTile, m: usize, n: usize) -> Result<[u32; 3]> {
    let max = u64::from(
        ctx.capabilities()
            .limits
            .max_compute_workgroups_per_dimension,
    );
    let gx = (n as u64).div_ceil(u64::from(tile.columns()));
    let gy = (m as u64).div_ceil(u64::from(tile.rows()));
    let gz = u64::from(tile.split_k);
    if gx > max || gy > max || gz > max {
        return Err(Error::invalid(
            OP,
            format!(
                "[{m}, {n}] in blocks of {}x{} split {gz} ways needs a grid of {gx} x {gy} x \
                 {gz} workgroups; the device allows {max} per dimension",
                tile.rows(),
                tile.columns()
            ),
        ));
    }
    Ok([gx as u32, gy as u32, gz as u32])
}

/// Records the product: `x` `[.., K]` f16, `w` `[N, K]` f16, `bias` f32 `[N]`, `out`
/// f32 or f16 `[.., N]`, each bound whole. With split-K the slices' f32 sums go to a
/// pooled scratch `[splits, M, N]` (where it fits one binding; else K is not split) and
/// `wgemm`'s reduce pass adds them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &WGemmDesc,
    tile: CoopTile,
    [x, w]: [&Tensor; 2],
    bias: Option<&Tensor>,
    out: &Tensor,
    (m, n, k): (usize, usize, usize),
) -> Result<()> {
    let vec4 = k % 8 == 0;
    let out_f16 = out.dtype() == crate::tensor::DType::F16;
    to_u32(OP, "elements of x", m * k)?;
    to_u32(OP, "elements of the weight", n * k)?;
    to_u32(OP, "elements of the output", m * n)?;
    // Whole slices of 32 values of K; the scratch of the slices' sums within one binding.
    let tiles = k.div_ceil(32) as u32;
    let per = tiles.div_ceil(tile.split_k.max(1));
    let splits = tiles.div_ceil(per.max(1)).max(1);
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    let scratch_bytes = (m as u64 * n as u64)
        .checked_mul(4 * u64::from(splits))
        .filter(|b| *b <= limit);
    let (splits, per) = match scratch_bytes {
        Some(_) if splits > 1 => (splits, per),
        _ => (1, tiles),
    };
    let tile = tile.split_k(splits);
    let g = grid(ctx, tile, m, n)?;
    let params = Params {
        m: to_u32(OP, "M", m)?,
        n: to_u32(OP, "N", n)?,
        k: to_u32(OP, "K", k)?,
        ldo: to_u32(OP, "N", n)?,
        flags: u32::from(bias.is_some()) | (desc.activation.code() << 1),
        splits,
        slice_tiles: per,
        _pad: 0,
    };
    let bias_res = match bias {
        Some(b) => super::Res::whole(b.buffer()),
        None => super::Res::whole(ctx.dummy_buffer()),
    };
    let (xr, wr) = (super::Res::whole(x.buffer()), super::Res::whole(w.buffer()));
    if splits == 1 {
        let kernel = ctx.kernel(&variant(tile, vec4, out_f16))?;
        let res = [xr, wr, bias_res, super::Res::whole(out.buffer())];
        let bytes = bytemuck::bytes_of(&params);
        return super::record_resources(ctx, encoder, OP, &kernel, bytes, &res, g);
    }
    ctx.note_split_k();
    let bytes = 4 * u64::from(splits) * m as u64 * n as u64;
    let scratch = ctx.scratch("wgemm coop split-k", bytes.next_power_of_two().min(limit))?;
    let partial = Params { flags: 0, ..params };
    let kernel = ctx.kernel(&variant(tile, vec4, false))?;
    let res = [xr, wr, bias_res, super::Res::whole(&scratch)];
    let pbytes = bytemuck::bytes_of(&partial);
    super::record_resources(ctx, encoder, OP, &kernel, pbytes, &res, g)?;
    super::wgemm::record_reduce(ctx, encoder, desc, &scratch, splits, (m, n), bias, out)
}
