//! Data movement between NHWC images: nearest upsampling by integer factors (ONNX
//! `Resize` in nearest mode), bilinear resizing to any size (its linear mode), depth to
//! space (the second half of a transposed convolution whose kernel equals its stride,
//! [`depth_to_space`]), the concatenation of images along channels, the transposes
//! between NCHW and NHWC, and a general transpose of any tensor of rank 6 or less
//! ([`permute`]). Values are
//! copied, f32 or f16 each way (f16 to f32 exact); the bilinear resize weighs its four
//! neighbours in f32.
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::layout::{concat_channels, upsample_nearest};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let x = Tensor::from_slice(&ctx, &[1, 1, 2, 1], &[1.0f32, 2.0])?;
//! let up = Tensor::zeros(&ctx, &[1, 2, 4, 1], DType::F32)?;
//! let cat = Tensor::zeros(&ctx, &[1, 2, 4, 2], DType::F32)?;
//! let mut enc = ctx.encoder("layout");
//! upsample_nearest(&ctx, &mut enc, &x, [2, 2], &up)?;
//! concat_channels(&ctx, &mut enc, &[&up, &up], &cat)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(up.read_blocking::<f32>(&ctx)?, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::to_u32;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

pub use crate::desc::layout::{PadMode, ResizeCoords};

const WG: u32 = 64;

crate::shaders::uniform! {
    struct Params {
        total: u32,
        in_h: u32,
        in_w: u32,
        in_c: u32,
        out_h: u32,
        out_w: u32,
        out_c: u32,
        fh: u32,
        fw: u32,
        c0: u32,
        mode: u32,
        pad1: u32,
        sh: f32,
        sw: f32,
        pad2: u32,
        pad3: u32,
    }
}

fn variant(op: u32, x_f16: bool, out_f16: bool) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Layout,
        vec![
            ("WG", Def::U32(WG)),
            ("OP", Def::U32(op)),
            ("X_F16", Def::Bool(x_f16)),
            ("OUT_F16", Def::Bool(out_f16)),
        ],
    )
}

crate::shaders::uniform! {
    struct PermuteParams {
        total: u32,
        base: u32,
        pmode: u32,
        value: f32,
        d0: u32,
        d1: u32,
        d2: u32,
        d3: u32,
        d4: u32,
        d5: u32,
        s0: u32,
        s1: u32,
        s2: u32,
        s3: u32,
        s4: u32,
        s5: u32,
        n0: u32,
        n1: u32,
        n2: u32,
        n3: u32,
        n4: u32,
        n5: u32,
        b0: i32,
        b1: i32,
        b2: i32,
        b3: i32,
        b4: i32,
        b5: i32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
        pad4: u32,
    }
}

crate::shaders::uniform! {
    struct GatherParams {
        total: u32,
        n_in: u32,
        n_out: u32,
        inner: u32,
    }
}

fn gather_variant(x_f16: bool, out_f16: bool) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Gather,
        vec![
            ("WG", Def::U32(WG)),
            ("X_F16", Def::Bool(x_f16)),
            ("OUT_F16", Def::Bool(out_f16)),
        ],
    )
}

/// permute.wgsl's modes.
#[derive(Clone, Copy)]
enum Strided {
    Gather = 0,
    Scatter = 1,
    Pad = 2,
}

fn permute_variant(mode: Strided, x_f16: bool, out_f16: bool) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Permute,
        vec![
            ("WG", Def::U32(WG)),
            ("MODE", Def::U32(mode as u32)),
            ("X_F16", Def::Bool(x_f16)),
            ("OUT_F16", Def::Bool(out_f16)),
        ],
    )
}

/// Every layout variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for bits in 0..4u32 {
        for op in 0..7 {
            v.push(variant(op, bits & 1 != 0, bits & 2 != 0));
        }
        for mode in [Strided::Gather, Strided::Scatter, Strided::Pad] {
            v.push(permute_variant(mode, bits & 1 != 0, bits & 2 != 0));
        }
        v.push(gather_variant(bits & 1 != 0, bits & 2 != 0));
    }
    v
}

/// The params blocks of these kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    vec![
        (
            ShaderFile::Layout,
            crate::shaders::uniform_layout::<Params>(),
        ),
        (
            ShaderFile::Permute,
            crate::shaders::uniform_layout::<PermuteParams>(),
        ),
        (
            ShaderFile::Gather,
            crate::shaders::uniform_layout::<GatherParams>(),
        ),
    ]
}

fn nhwc(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [n, h, w, c] => Ok([n, h, w, c]),
        _ => Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}; an NHWC image [N, H, W, C] is needed",
                t.shape()
            ),
        )),
    }
}

/// Records one layout kernel (`code`) with both tensors bound whole.
fn record(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    code: u32,
    x: &Tensor,
    out: &Tensor,
    params: Params,
) -> Result<()> {
    let kernel = |xf, of| variant(code, xf, of);
    record_copy(
        ctx,
        encoder,
        op,
        kernel,
        (x, out),
        params.total,
        bytemuck::bytes_of(&params),
    )
}

/// Records a copy kernel (`kernel` of the operands' f16-ness) over `total` output
/// elements with both tensors bound whole.
fn record_copy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    kernel: impl Fn(bool, bool) -> ShaderVariant,
    (x, out): (&Tensor, &Tensor),
    total: u32,
    params: &[u8],
) -> Result<()> {
    let xf = super::check_float(op, "x", x)?;
    let of = super::check_float(op, "output", out)?;
    if x.buffer() == out.buffer() {
        return Err(Error::invalid(op, "the output shares its buffer with x"));
    }
    if total == 0 {
        return Ok(());
    }
    let pieces = super::split(
        ctx,
        op,
        ["-", "-"],
        (1, 1),
        &[
            super::Operand::tensor("x", x, 0, 0),
            super::Operand::tensor("output", out, 0, 0),
        ],
    )?;
    let kernel = ctx.kernel(&kernel(xf, of))?;
    let grid = super::grid_for(ctx, op, u64::from(total).div_ceil(u64::from(WG)))?;
    for piece in pieces {
        super::record_resources(ctx, encoder, op, &kernel, params, &piece.res, grid)?;
    }
    Ok(())
}

/// The highest rank [`permute`] takes.
pub const MAX_PERMUTE_RANK: usize = 6;

/// Records `out = transpose(x, perm)` (ONNX `Transpose`): `out.shape[i] =
/// x.shape[perm[i]]`, both row-major, rank 1 to [`MAX_PERMUTE_RANK`], f32 or f16 each way.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::permute;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let t = Tensor::zeros(&ctx, &[3, 2], DType::F32)?;
/// let mut enc = ctx.encoder("permute");
/// permute(&ctx, &mut enc, &x, &[1, 0], &t)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(t.read_blocking::<f32>(&ctx)?, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// # Ok(()) }
/// ```
pub fn permute(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    perm: &[usize],
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "permute";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let xs = x.shape();
    let want = permuted_shape(xs, perm).map_err(|m| Error::invalid(OP, m))?;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "x {xs:?} permuted by {perm:?} is {want:?}; the output has shape {:?}",
                out.shape()
            ),
        ));
    }
    // Row-major strides of x, taken in the output's axis order.
    let stride = row_major_strides(xs);
    let dims: Vec<usize> = perm.iter().map(|&a| xs[a]).collect();
    let strides: Vec<usize> = perm.iter().map(|&a| stride[a]).collect();
    record_strided(
        ctx,
        encoder,
        (OP, Strided::Gather),
        (x, out),
        &dims,
        &signed(&strides),
        0,
    )
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut stride = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * shape[i + 1];
    }
    stride
}

/// Records the strided copy of permute.wgsl: in [`Strided::Gather`], `out` (of `dims`,
/// rank 6 or less) element by element from `x` at `base + sum(index[i] * strides[i])`;
/// in [`Strided::Scatter`], `x` (of `dims`) element by element into `out` at that place.
/// A stride may be negative (a slice with a negative step): the kernel's u32 arithmetic
/// wraps, and the caller has checked that every element read or written is inside.
fn record_strided(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, mode): (&'static str, Strided),
    (x, out): (&Tensor, &Tensor),
    dims: &[usize],
    strides: &[isize],
    base: usize,
) -> Result<()> {
    let mut p = strided_params(op, dims)?;
    let mut s = [0u32; MAX_PERMUTE_RANK];
    let pad = MAX_PERMUTE_RANK - dims.len();
    for (i, &st) in strides.iter().enumerate() {
        s[pad + i] = match usize::try_from(st) {
            Ok(u) => to_u32(op, "stride", u)?,
            Err(_) => i32::try_from(st).map_err(|_| {
                Error::invalid(
                    op,
                    format!("stride {st} exceeds the kernels' 32-bit indexing"),
                )
            })? as u32,
        };
    }
    [p.s0, p.s1, p.s2, p.s3, p.s4, p.s5] = s;
    p.base = to_u32(op, "offset", base)?;
    let moved = match mode {
        Strided::Scatter => x.numel(),
        _ => out.numel(),
    };
    p.total = to_u32(op, "elements", moved)?;
    let bytes = bytemuck::bytes_of(&p);
    let kernel = |xf, of| permute_variant(mode, xf, of);
    record_copy(ctx, encoder, op, kernel, (x, out), p.total, bytes)
}

/// permute.wgsl's parameters with `dims` (rank 6 or less, padded in front with 1s) set,
/// everything else 0.
fn strided_params(op: &'static str, dims: &[usize]) -> Result<PermuteParams> {
    let mut d = [1u32; MAX_PERMUTE_RANK];
    let pad = MAX_PERMUTE_RANK.checked_sub(dims.len()).ok_or_else(|| {
        Error::invalid(
            op,
            format!("rank {} exceeds {MAX_PERMUTE_RANK}", dims.len()),
        )
    })?;
    for (i, &n) in dims.iter().enumerate() {
        d[pad + i] = to_u32(op, "dimension", n)?;
    }
    let mut p: PermuteParams = bytemuck::Zeroable::zeroed();
    [p.d0, p.d1, p.d2, p.d3, p.d4, p.d5] = d;
    Ok(p)
}

fn signed(v: &[usize]) -> Vec<isize> {
    v.iter().map(|&s| s as isize).collect()
}

/// Records `out = x[start[0] :: step[0], start[1] :: step[1], ..]` with `out.shape` the
/// count taken on each axis: ONNX `Slice` with any non-zero steps (a negative step walks
/// back from `start`), row-major, rank 1 to [`MAX_PERMUTE_RANK`], f32 or f16 each way.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::slice;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let y = Tensor::zeros(&ctx, &[1, 2], DType::F32)?;
/// let mut enc = ctx.encoder("slice");
/// slice(&ctx, &mut enc, &x, &[1, 2], &[1, -2], &y)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![6.0, 4.0]);
/// # Ok(()) }
/// ```
pub fn slice(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    start: &[usize],
    step: &[isize],
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "slice";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let (xs, size) = (x.shape(), out.shape());
    check_slice(xs, start, step, size).map_err(|m| Error::shape(OP, m))?;
    let stride = row_major_strides(xs);
    let base = start.iter().zip(&stride).map(|(a, b)| a * b).sum();
    let strides: Vec<isize> = stride
        .iter()
        .zip(step)
        .map(|(&s, &k)| s as isize * k)
        .collect();
    record_strided(
        ctx,
        encoder,
        (OP, Strided::Gather),
        (x, out),
        size,
        &strides,
        base,
    )
}

/// Records a gather along `axis` of row-major `x`: `out` is `x` with that axis replaced
/// by `indices.len()` entries, entry `j` being `x`'s slice `indices[j]` (ONNX `Gather`
/// with 1-D indices; a nearest resize along one axis). `indices` is a `U32` tensor of
/// values below `x.shape[axis]`, checked on the host when the layer is built (the
/// kernel reads them as given); f32 or f16 each way.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::gather;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let idx = Tensor::from_slice(&ctx, &[4], &[2u32, 0, 0, 1])?;
/// let y = Tensor::zeros(&ctx, &[2, 4], DType::F32)?;
/// let mut enc = ctx.encoder("gather");
/// gather(&ctx, &mut enc, &x, 1, &idx, &y)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![3.0, 1.0, 1.0, 2.0, 6.0, 4.0, 4.0, 5.0]);
/// # Ok(()) }
/// ```
pub fn gather(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    axis: usize,
    indices: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "gather";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("indices", Some(indices)),
            ("output", Some(out)),
        ],
    )?;
    let xs = x.shape();
    if indices.dtype() != crate::tensor::DType::U32 || indices.shape().len() != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "indices are {:?} {:?}; a 1-D U32 tensor is needed",
                indices.dtype(),
                indices.shape()
            ),
        ));
    }
    let want = gathered_shape(xs, axis, indices.numel()).map_err(|m| Error::shape(OP, m))?;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "x {xs:?} gathered along axis {axis} by {} indices is {want:?}; the output is {:?}",
                indices.numel(),
                out.shape()
            ),
        ));
    }
    let xf = super::check_float(OP, "x", x)?;
    let of = super::check_float(OP, "output", out)?;
    if x.buffer() == out.buffer() || indices.buffer() == out.buffer() {
        return Err(Error::invalid(
            OP,
            "the output shares its buffer with an input",
        ));
    }
    let p = GatherParams {
        total: to_u32(OP, "elements", out.numel())?,
        n_in: to_u32(OP, "dimension", xs[axis])?,
        n_out: to_u32(OP, "indices", indices.numel())?,
        inner: to_u32(OP, "elements", xs[axis + 1..].iter().product())?,
    };
    if p.total == 0 {
        return Ok(());
    }
    let pieces = super::split(
        ctx,
        OP,
        ["-", "-"],
        (1, 1),
        &[
            super::Operand::tensor("x", x, 0, 0),
            super::Operand::tensor("indices", indices, 0, 0),
            super::Operand::tensor("output", out, 0, 0),
        ],
    )?;
    let kernel = ctx.kernel(&gather_variant(xf, of))?;
    let grid = super::grid_for(ctx, OP, u64::from(p.total).div_ceil(u64::from(WG)))?;
    for piece in pieces {
        super::record_resources(
            ctx,
            encoder,
            OP,
            &kernel,
            bytemuck::bytes_of(&p),
            &piece.res,
            grid,
        )?;
    }
    Ok(())
}

/// The shape of `shape` gathered along `axis` by `n` indices, or what is wrong.
pub fn gathered_shape(
    shape: &[usize],
    axis: usize,
    n: usize,
) -> std::result::Result<Vec<usize>, String> {
    if axis >= shape.len() || n == 0 || shape.contains(&0) {
        return Err(format!(
            "axis {axis} of x {shape:?} with {n} indices (the axis below the rank, at least \
             one index, no empty axis)"
        ));
    }
    let mut out = shape.to_vec();
    out[axis] = n;
    Ok(out)
}

/// The rank of `shape` where the strided kernels take it (1 to [`MAX_PERMUTE_RANK`]).
fn check_rank(shape: &[usize]) -> std::result::Result<usize, String> {
    match shape.len() {
        rank @ 1..=MAX_PERMUTE_RANK => Ok(rank),
        rank => Err(format!(
            "x has rank {rank} ({shape:?}); ranks 1 to {MAX_PERMUTE_RANK} are supported"
        )),
    }
}

/// Whether taking `size[a]` elements from `start[a]` by `step[a]` on each axis stays
/// inside `shape` (same rank, 1 to [`MAX_PERMUTE_RANK`], steps not 0), or what is wrong.
pub fn check_slice(
    shape: &[usize],
    start: &[usize],
    step: &[isize],
    size: &[usize],
) -> std::result::Result<(), String> {
    let rank = check_rank(shape)?;
    if start.len() != rank || step.len() != rank || size.len() != rank {
        return Err(format!(
            "start {start:?}, step {step:?} and size {size:?} must each give one value per \
             axis of x {shape:?}"
        ));
    }
    for a in 0..rank {
        let (n, s, k, c) = (shape[a] as i128, start[a] as i128, step[a] as i128, size[a]);
        let last = s + (c as i128 - 1) * k;
        if k == 0 || c == 0 || s >= n || last < 0 || last >= n {
            return Err(format!(
                "axis {a}: {c} elements from {s} by step {k} do not fit in x {shape:?} \
                 (steps are not 0, counts positive)"
            ));
        }
    }
    Ok(())
}

/// Records `out = x` broadcast to `out`'s shape (ONNX `Expand`, numpy's rules): `x`'s
/// axes are aligned to the right, each of `x`'s dimensions equals `out`'s or is 1
/// (repeated); rank up to [`MAX_PERMUTE_RANK`], f32 or f16 each way.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::expand;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 1], &[1.0f32, 2.0])?;
/// let y = Tensor::zeros(&ctx, &[2, 3], DType::F32)?;
/// let mut enc = ctx.encoder("expand");
/// expand(&ctx, &mut enc, &x, &y)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
/// # Ok(()) }
/// ```
pub fn expand(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "expand";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let (xs, os) = (x.shape(), out.shape());
    let strides = expand_strides(xs, os).map_err(|m| Error::shape(OP, m))?;
    record_strided(
        ctx,
        encoder,
        (OP, Strided::Gather),
        (x, out),
        os,
        &signed(&strides),
        0,
    )
}

/// The strides that read `x` of `shape` broadcast to `to` (0 on repeated axes), or why
/// it does not broadcast.
pub fn expand_strides(shape: &[usize], to: &[usize]) -> std::result::Result<Vec<usize>, String> {
    if to.is_empty() || to.len() > MAX_PERMUTE_RANK || shape.len() > to.len() {
        return Err(format!(
            "x {shape:?} cannot be broadcast to {to:?} (ranks 1 to {MAX_PERMUTE_RANK}, x's \
             rank not above the output's)"
        ));
    }
    let lead = to.len() - shape.len();
    let xstride = row_major_strides(shape);
    let mut strides = vec![0usize; to.len()];
    for (a, &n) in shape.iter().enumerate() {
        match n {
            1 => {}
            _ if n == to[lead + a] => strides[lead + a] = xstride[a],
            _ => {
                return Err(format!(
                    "x {shape:?} cannot be broadcast to {to:?}: axis {a} has {n} elements, \
                     not 1 or {}",
                    to[lead + a]
                ))
            }
        }
    }
    if to.contains(&0) {
        return Err(format!("the output {to:?} has an empty axis"));
    }
    Ok(strides)
}

/// Records the concatenation of row-major tensors along `axis`: `out` holds `inputs[0]`,
/// then `inputs[1]`, ... along that axis (ONNX `Concat`); every other dimension equal,
/// rank 1 to [`MAX_PERMUTE_RANK`], f32 or f16 each way. ([`concat_channels`] is the
/// case of NHWC images along channels.)
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::concat;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let a = Tensor::from_slice(&ctx, &[2, 1], &[1.0f32, 2.0])?;
/// let b = Tensor::from_slice(&ctx, &[2, 2], &[3.0f32, 4.0, 5.0, 6.0])?;
/// let y = Tensor::zeros(&ctx, &[2, 3], DType::F32)?;
/// let mut enc = ctx.encoder("concat");
/// concat(&ctx, &mut enc, &[&a, &b], 1, &y)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
/// # Ok(()) }
/// ```
pub fn concat(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    inputs: &[&Tensor],
    axis: usize,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "concat";
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("input {i}")).collect();
    let operands: Vec<(&str, Option<&Tensor>)> = names
        .iter()
        .zip(inputs)
        .map(|(n, x)| (n.as_str(), Some(*x)))
        .chain(std::iter::once(("output", Some(out))))
        .collect();
    super::check_devices(ctx, OP, &operands)?;
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let want = concat_shape(&shapes, axis).map_err(|m| Error::shape(OP, m))?;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "the inputs concatenated along axis {axis} are {want:?}; the output is {:?}",
                out.shape()
            ),
        ));
    }
    let ostride = row_major_strides(&want);
    let mut offset = 0usize;
    for x in inputs {
        let base = offset * ostride[axis];
        let strides = signed(&ostride);
        record_strided(
            ctx,
            encoder,
            (OP, Strided::Scatter),
            (x, out),
            x.shape(),
            &strides,
            base,
        )?;
        offset += x.shape()[axis];
    }
    Ok(())
}

/// The shape of `shapes` concatenated along `axis`, or what is wrong.
pub fn concat_shape(shapes: &[&[usize]], axis: usize) -> std::result::Result<Vec<usize>, String> {
    let first = shapes
        .first()
        .ok_or("no input to concatenate (give at least one)")?;
    let rank = first.len();
    if rank == 0 || rank > MAX_PERMUTE_RANK || axis >= rank {
        return Err(format!(
            "axis {axis} of rank {rank} ({first:?}): ranks 1 to {MAX_PERMUTE_RANK}, the axis \
             below the rank"
        ));
    }
    let mut out = first.to_vec();
    for (i, s) in shapes.iter().enumerate().skip(1) {
        let same = s.len() == rank && (0..rank).all(|a| a == axis || s[a] == first[a]);
        if !same {
            return Err(format!(
                "input {i} {s:?} does not match input 0 {first:?} outside axis {axis}"
            ));
        }
        out[axis] = out[axis]
            .checked_add(s[axis])
            .ok_or("the concatenated axis overflows")?;
    }
    Ok(out)
}

/// Records `out = x` padded by `before[a]` elements in front and `after[a]` behind on
/// each axis `a`, filled as `mode` says (ONNX `Pad`; [`PadMode::Reflect`] needs pads
/// below the dimension), row-major, rank 1 to [`MAX_PERMUTE_RANK`], f32 or f16 each
/// way. `out`'s shape is `x`'s plus the pads.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::{pad, PadMode};
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[1, 3], &[1.0f32, 2.0, 3.0])?;
/// let y = Tensor::zeros(&ctx, &[1, 6], DType::F32)?;
/// let mut enc = ctx.encoder("pad");
/// pad(&ctx, &mut enc, &x, &[0, 2], &[0, 1], PadMode::Reflect, &y)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
/// # Ok(()) }
/// ```
pub fn pad(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    before: &[usize],
    after: &[usize],
    mode: PadMode,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "pad";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let xs = x.shape();
    let want = padded_shape(xs, before, after, mode).map_err(|m| Error::shape(OP, m))?;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "x {xs:?} padded by {before:?} and {after:?} is {want:?}; the output is {:?}",
                out.shape()
            ),
        ));
    }
    let mut p = strided_params(OP, &want)?;
    let mut n = [1u32; MAX_PERMUTE_RANK];
    let mut b = [0i32; MAX_PERMUTE_RANK];
    let lead = MAX_PERMUTE_RANK - xs.len();
    for (a, (&d, &f)) in xs.iter().zip(before).enumerate() {
        n[lead + a] = to_u32(OP, "dimension", d)?;
        b[lead + a] = i32::try_from(f)
            .map_err(|_| Error::invalid(OP, format!("pad {f} exceeds 32-bit indexing")))?;
    }
    [p.n0, p.n1, p.n2, p.n3, p.n4, p.n5] = n;
    [p.b0, p.b1, p.b2, p.b3, p.b4, p.b5] = b;
    (p.pmode, p.value) = mode.code();
    p.total = to_u32(OP, "elements", out.numel())?;
    let kernel = |xf, of| permute_variant(Strided::Pad, xf, of);
    record_copy(
        ctx,
        encoder,
        OP,
        kernel,
        (x, out),
        p.total,
        bytemuck::bytes_of(&p),
    )
}

/// The shape of `shape` padded by `before` and `after` in `mode`, or what is wrong.
pub fn padded_shape(
    shape: &[usize],
    before: &[usize],
    after: &[usize],
    mode: PadMode,
) -> std::result::Result<Vec<usize>, String> {
    let rank = shape.len();
    if rank == 0 || rank > MAX_PERMUTE_RANK || before.len() != rank || after.len() != rank {
        return Err(format!(
            "x {shape:?} with pads {before:?} and {after:?}: ranks 1 to {MAX_PERMUTE_RANK}, \
             one pad per axis in front and behind"
        ));
    }
    let mut out = Vec::with_capacity(rank);
    for a in 0..rank {
        let (n, f, e) = (shape[a], before[a], after[a]);
        if n == 0 {
            return Err(format!("x {shape:?} has an empty axis"));
        }
        if mode == PadMode::Reflect && (f >= n || e >= n) && n > 1 {
            return Err(format!(
                "reflect pads {f} and {e} on axis {a} of {n} elements: pads below the \
                 dimension are supported"
            ));
        }
        let o = n
            .checked_add(f)
            .and_then(|v| v.checked_add(e))
            .filter(|&v| v <= u32::MAX as usize)
            .ok_or_else(|| format!("axis {a}: {n} + {f} + {e} overflows"))?;
        out.push(o);
    }
    Ok(out)
}

/// Records `out = x[start[0]..start[0] + out.shape[0], start[1].., ..]`: a block of
/// row-major `x` (ONNX `Slice` with step 1), rank 1 to [`MAX_PERMUTE_RANK`], f32 or f16
/// each way. `out`'s shape is the block's size.
///
/// ```no_run
/// use wgpu_quant::{Context, DType, Tensor};
/// use wgpu_quant::ops::layout::crop;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let c = Tensor::zeros(&ctx, &[2, 2], DType::F32)?;
/// let mut enc = ctx.encoder("crop");
/// crop(&ctx, &mut enc, &x, &[0, 1], &c)?;
/// ctx.submit_and_wait(enc)?;
/// assert_eq!(c.read_blocking::<f32>(&ctx)?, vec![2.0, 3.0, 5.0, 6.0]);
/// # Ok(()) }
/// ```
pub fn crop(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    start: &[usize],
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "crop";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let (xs, size) = (x.shape(), out.shape());
    check_crop(xs, start, size).map_err(|m| Error::shape(OP, m))?;
    let stride = row_major_strides(xs);
    let base = start.iter().zip(&stride).map(|(a, b)| a * b).sum();
    record_strided(
        ctx,
        encoder,
        (OP, Strided::Gather),
        (x, out),
        size,
        &signed(&stride),
        base,
    )
}

/// Whether a block of `size` at `start` lies inside `shape` (same rank, 1 to
/// [`MAX_PERMUTE_RANK`]), or what is wrong.
pub fn check_crop(
    shape: &[usize],
    start: &[usize],
    size: &[usize],
) -> std::result::Result<(), String> {
    let rank = check_rank(shape)?;
    let inside = start.len() == rank
        && size.len() == rank
        && (0..rank).all(|a| start[a].checked_add(size[a]).is_some_and(|e| e <= shape[a]));
    if !inside {
        return Err(format!(
            "a block of {size:?} at {start:?} does not fit in x {shape:?}"
        ));
    }
    Ok(())
}

/// `shape` permuted by `perm` (`out[i] = shape[perm[i]]`), or what is wrong with `perm`.
pub fn permuted_shape(shape: &[usize], perm: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let rank = check_rank(shape)?;
    let mut seen = [false; MAX_PERMUTE_RANK];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&a| a >= rank || std::mem::replace(&mut seen[a], true))
    {
        return Err(format!(
            "perm {perm:?} is not a permutation of the {rank} axes of {shape:?}"
        ));
    }
    Ok(perm.iter().map(|&a| shape[a]).collect())
}

fn params(
    op: &'static str,
    x: [usize; 4],
    o: [usize; 4],
    f: [usize; 2],
    c0: usize,
    total: usize,
) -> Result<Params> {
    let u = |what: &str, v: usize| to_u32(op, what, v);
    Ok(Params {
        total: u("elements", total)?,
        in_h: u("input height", x[1])?,
        in_w: u("input width", x[2])?,
        in_c: u("input channels", x[3])?,
        out_h: u("output height", o[1])?,
        out_w: u("output width", o[2])?,
        out_c: u("output channels", o[3])?,
        fh: u("factor", f[0])?,
        fw: u("factor", f[1])?,
        c0: u("channel offset", c0)?,
        mode: 0,
        pad1: 0,
        sh: 1.0,
        sw: 1.0,
        pad2: 0,
        pad3: 0,
    })
}

fn check_factors(op: &'static str, f: [usize; 2]) -> Result<()> {
    if f.contains(&0) {
        return Err(Error::invalid(
            op,
            format!("factors {f:?} must be positive"),
        ));
    }
    Ok(())
}

fn check_out(op: &'static str, out: &Tensor, want: [Option<usize>; 4]) -> Result<()> {
    if want.contains(&None) {
        return Err(Error::shape(
            op,
            format!(
                "the output size overflows usize (output given: {:?})",
                out.shape()
            ),
        ));
    }
    let want: Vec<usize> = want.iter().map(|d| d.unwrap_or(usize::MAX)).collect();
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            op,
            format!("the output has shape {:?}; {want:?} is needed", out.shape()),
        ));
    }
    Ok(())
}

/// Records `out[n, y, x, c] = x[n, y / fh, x / fw, c]`: `x` `[N, H, W, C]`, `out`
/// `[N, H * fh, W * fw, C]`.
pub fn upsample_nearest(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    factors: [usize; 2],
    out: &Tensor,
) -> Result<()> {
    let grow = |d: usize, f: usize| d.checked_mul(f);
    record_grown(ctx, encoder, ("upsample_nearest", 0), x, factors, grow, out)
}

/// Records op `code` that grows each image axis of `x` `[N, H, W, C]` by its factor as
/// `grow(length, factor)` into `out`.
fn record_grown(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    x: &Tensor,
    factors: [usize; 2],
    grow: impl Fn(usize, usize) -> Option<usize>,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, op, &[("x", Some(x)), ("output", Some(out))])?;
    check_factors(op, factors)?;
    let s = nhwc(op, "x", x)?;
    let want = [
        Some(s[0]),
        grow(s[1], factors[0]),
        grow(s[2], factors[1]),
        Some(s[3]),
    ];
    check_out(op, out, want)?;
    let o = nhwc(op, "output", out)?;
    let p = params(op, s, o, factors, 0, out.numel())?;
    record(ctx, encoder, op, code, x, out, p)
}

/// Records zero insertion into `x` `[N, H, W, C]` by `factors` `[fh, fw]`: `out` `[N,
/// (H - 1) fh + 1, (W - 1) fw + 1, C]` holds `x`'s pixels at multiples of the factors
/// and zeros between them (a strided transposed convolution is this, then a convolution
/// with stride 1).
pub fn zero_insert(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    factors: [usize; 2],
    out: &Tensor,
) -> Result<()> {
    let grow = |d: usize, f: usize| d.checked_sub(1)?.checked_mul(f)?.checked_add(1);
    record_grown(ctx, encoder, ("zero_insert", 6), x, factors, grow, out)
}

/// Records a bilinear resize of `x` `[N, H, W, C]` to `out` `[N, OH, OW, C]`: each output
/// pixel's input coordinate by `coords` with `scales` = output size / input size per
/// axis (ONNX passes its `scales`; from `sizes` they are `OH / H`, `OW / W`), clamped to
/// the image, and the four neighbours weighted in f32.
pub fn resize_bilinear(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    coords: ResizeCoords,
    scales: [f32; 2],
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "resize_bilinear",
        &[("x", Some(x)), ("output", Some(out))],
    )?;
    const OP: &str = "resize_bilinear";
    let s = nhwc(OP, "x", x)?;
    let o = nhwc(OP, "output", out)?;
    if o[0] != s[0] || o[3] != s[3] || o[1] == 0 || o[2] == 0 || s[1] == 0 || s[2] == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "resizes {:?} to {:?}: the batch and channels must stay, sizes be positive",
                x.shape(),
                out.shape()
            ),
        ));
    }
    if scales.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::invalid(
            OP,
            format!("scales {scales:?} must be finite and positive"),
        ));
    }
    let mut p = params(OP, s, o, [1, 1], 0, out.numel())?;
    p.mode = coords.code();
    p.sh = scales[0];
    p.sw = scales[1];
    record(ctx, encoder, OP, 3, x, out, p)
}

/// Records `out[n, h, w, c] = x[n, c, h, w]`: an NCHW tensor (an ONNX model's input, say)
/// into the NHWC layout the kernels use; `out` `[N, H, W, C]`.
pub fn transpose_to_nhwc(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "transpose_to_nhwc",
        &[("x", Some(x)), ("output", Some(out))],
    )?;
    const OP: &str = "transpose_to_nhwc";
    let [n, c, h, w] = nhwc(OP, "x", x)?;
    check_out(OP, out, [Some(n), Some(h), Some(w), Some(c)])?;
    let p = params(OP, [n, h, w, c], [n, h, w, c], [1, 1], 0, out.numel())?;
    record(ctx, encoder, OP, 4, x, out, p)
}

/// Records `out[n, c, h, w] = x[n, h, w, c]`: the inverse of [`transpose_to_nhwc`];
/// `x` `[N, H, W, C]`, `out` `[N, C, H, W]`.
pub fn transpose_to_nchw(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "transpose_to_nchw",
        &[("x", Some(x)), ("output", Some(out))],
    )?;
    const OP: &str = "transpose_to_nchw";
    let [n, h, w, c] = nhwc(OP, "x", x)?;
    check_out(OP, out, [Some(n), Some(c), Some(h), Some(w)])?;
    let p = params(OP, [n, h, w, c], [n, h, w, c], [1, 1], 0, out.numel())?;
    record(ctx, encoder, OP, 5, x, out, p)
}

/// Records depth to space: `x` `[N, H, W, C * fh * fw]` with channel
/// `(c * fh + dy) * fw + dx` going to `out[n, y * fh + dy, x * fw + dx, c]`, `out`
/// `[N, H * fh, W * fw, C]`. A transposed convolution whose kernel equals its stride is a
/// 1x1 convolution to `C * fh * fw` channels followed by this.
pub fn depth_to_space(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    block: [usize; 2],
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "depth_to_space",
        &[("x", Some(x)), ("output", Some(out))],
    )?;
    const OP: &str = "depth_to_space";
    check_factors(OP, block)?;
    let s = nhwc(OP, "x", x)?;
    let per = block[0] * block[1];
    if !s[3].is_multiple_of(per) {
        return Err(Error::shape(
            OP,
            format!(
                "x has {} channels, not a multiple of the block {block:?}",
                s[3]
            ),
        ));
    }
    check_out(
        OP,
        out,
        [
            Some(s[0]),
            s[1].checked_mul(block[0]),
            s[2].checked_mul(block[1]),
            Some(s[3] / per),
        ],
    )?;
    let o = nhwc(OP, "output", out)?;
    let p = params(OP, s, o, block, 0, out.numel())?;
    record(ctx, encoder, OP, 1, x, out, p)
}

/// Records the concatenation of NHWC images along channels: `out` `[N, H, W, sum C_i]`
/// holds `inputs[0]`'s channels, then `inputs[1]`'s, ...
pub fn concat_channels(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    inputs: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("input {i}")).collect();
    let operands: Vec<(&str, Option<&Tensor>)> = names
        .iter()
        .zip(inputs)
        .map(|(n, x)| (n.as_str(), Some(*x)))
        .chain(std::iter::once(("output", Some(out))))
        .collect();
    super::check_devices(ctx, "concat_channels", &operands)?;
    const OP: &str = "concat_channels";
    if inputs.is_empty() {
        return Err(Error::invalid(
            OP,
            "no input to concatenate (give at least one)",
        ));
    }
    let o = nhwc(OP, "output", out)?;
    // Every input is checked before anything is recorded.
    let mut shapes = Vec::with_capacity(inputs.len());
    for (i, x) in inputs.iter().enumerate() {
        let s = nhwc(OP, &format!("input {i}"), x)?;
        if s[..3] != o[..3] {
            return Err(Error::shape(
                OP,
                format!(
                    "input {i} has shape {:?}; the output is {:?}",
                    x.shape(),
                    out.shape()
                ),
            ));
        }
        shapes.push(s);
    }
    let channels: usize = shapes.iter().map(|s| s[3]).sum();
    if channels != o[3] {
        return Err(Error::shape(
            OP,
            format!(
                "the inputs have {channels} channels in all; the output has {}",
                o[3]
            ),
        ));
    }
    let mut c0 = 0usize;
    for (x, s) in inputs.iter().zip(shapes) {
        let p = params(OP, s, o, [1, 1], c0, x.numel())?;
        record(ctx, encoder, OP, 2, x, out, p)?;
        c0 += s[3];
    }
    Ok(())
}
