//! Elementwise layers: residual add (float, and INT8 with rescaling), clip/ReLU/ReLU6, the
//! unary functions and broadcasting binary ops, softmax and layer normalization along the
//! last axis, and a per-channel affine map along it. Float tensors are f32 or f16 in any
//! combination; INT8 tensors are i8/u8 [`QTensor`]s with one scale and zero point each.
//!
//! The INT8 add dequantizes both operands, adds, clips and requantizes to the output's
//! parameters, `clamp(round_half_even(v / so) + zo)`, with every product and the sum
//! rounded once in f32, exactly as [`crate::reference::qadd`] computes it (bit-exact
//! tests). The parameters are read from the tensors' buffers, so dynamically quantized
//! operands work as well as static ones.
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::eltwise::{add, softmax, Clip};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let a = Tensor::from_slice(&ctx, &[1, 3], &[1.0f32, -2.0, 3.0])?;
//! let b = Tensor::from_slice(&ctx, &[1, 3], &[1.0f32, 1.0, 5.0])?;
//! let y = Tensor::zeros(&ctx, &[1, 3], DType::F32)?;
//! let p = Tensor::zeros(&ctx, &[1, 3], DType::F32)?;
//! let mut enc = ctx.encoder("eltwise");
//! add(&ctx, &mut enc, &a, &b, Clip::RELU6, &y)?; // [2, 0, 6]
//! softmax(&ctx, &mut enc, &y, &p)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![2.0, 0.0, 6.0]);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::quant::QTensor;
use crate::ops::{to_u32, Operand};
use crate::quant::{Granularity, QType};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

pub use crate::desc::eltwise::{BinaryOp, Clip, Reduce, UnaryOp};

const WG: u32 = 64;

crate::shaders::uniform! {
    struct Params {
        total: u32,
        cols: u32,
        words_per_row: u32,
        opaque_zero: u32,
        lo: f32,
        hi: f32,
        qmin: i32,
        qmax: i32,
        a_xor: u32,
        b_xor: u32,
        a_shift: i32,
        b_shift: i32,
        func: u32,
        b_span: u32,
        b_inner: u32,
        base: u32,
        alpha: f32,
        beta: f32,
        pad1: u32,
        pad2: u32,
    }
}

impl Params {
    fn new(total: u32, clip: Clip) -> Params {
        Params {
            total,
            cols: 0,
            words_per_row: 1,
            opaque_zero: 0,
            lo: clip.lo,
            hi: clip.hi,
            qmin: 0,
            qmax: 0,
            a_xor: 0,
            b_xor: 0,
            a_shift: 0,
            b_shift: 0,
            func: 0,
            b_span: 0,
            b_inner: 0,
            base: 0,
            alpha: 0.0,
            beta: 0.0,
            pad1: 0,
            pad2: 0,
        }
    }
}

/// The function codes of OP 5 (`UnaryOp`) and OP 6 (`BinaryOp`), compile-time constants
/// of their variants: CPU drivers run every case of a `switch` on a uniform value under
/// masks, so a runtime code made every map pay for all of them.
const UNARY_FUNCS: u32 = 19;
const BINARY_FUNCS: u32 = 21;

/// The variant's `FUNC`: the function code for OP 5 and 6, 0 for the others (which read
/// theirs, if any, from the parameters).
fn func_const(op: u32, func: u32) -> u32 {
    if op == 5 || op == 6 {
        func
    } else {
        0
    }
}

fn variant(op: u32, func: u32, f16s: [bool; 3]) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Eltwise,
        vec![
            ("WG", Def::U32(WG)),
            ("OP", Def::U32(op)),
            ("FUNC", Def::U32(func_const(op, func))),
            ("A_F16", Def::Bool(f16s[0])),
            ("B_F16", Def::Bool(f16s[1])),
            ("OUT_F16", Def::Bool(f16s[2])),
        ],
    )
}

/// Every elementwise variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for op in 0..10 {
        let funcs = match op {
            5 => UNARY_FUNCS,
            6 => BINARY_FUNCS,
            _ => 1,
        };
        for func in 0..funcs {
            for bits in 0..8u32 {
                // OP 5 binds x as b too, read never: B_F16 is always false there.
                if op == 5 && bits & 2 != 0 {
                    continue;
                }
                v.push(variant(
                    op,
                    func,
                    [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0],
                ));
            }
        }
    }
    v
}

/// Records `code` over `rows` rows of `per_row` work items each (elements, packed words
/// or one softmax row). Operands over the binding limit run in pieces of whole rows,
/// bound as aligned windows.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    code: u32,
    f16s: [bool; 3],
    params: &Params,
    operands: [Operand; 4],
    (rows, per_row): (usize, usize),
) -> Result<()> {
    if rows * per_row == 0 {
        return Ok(());
    }
    let pieces = super::split(ctx, op, ["rows", "-"], (rows, 1), &operands)?;
    let kernel = ctx.kernel(&variant(code, params.func, f16s))?;
    for piece in pieces {
        let total = to_u32(op, "work items", piece.rows * per_row)?;
        let grid = super::grid_for(ctx, op, u64::from(total).div_ceil(u64::from(WG)))?;
        let base = to_u32(op, "work items", piece.r0 * per_row)?;
        let params = Params {
            total,
            base,
            ..*params
        };
        super::record_resources(
            ctx,
            encoder,
            op,
            &kernel,
            bytemuck::bytes_of(&params),
            &piece.res,
            grid,
        )?;
    }
    Ok(())
}

/// An elementwise operand: bytes per element.
fn elems<'a>(name: &'a str, t: &'a Tensor) -> Operand<'a> {
    Operand::tensor(name, t, t.dtype().size() as u64, 0)
}

fn check_same(op: &'static str, what: &str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            format!("{what}: shapes {a:?} and {b:?} differ (no broadcasting)"),
        ));
    }
    Ok(())
}

fn check_float_io(
    op: &'static str,
    inputs: &[(&'static str, &Tensor)],
    out: &Tensor,
) -> Result<Vec<bool>> {
    let mut f16s = Vec::new();
    for &(name, t) in inputs {
        f16s.push(super::check_float(op, name, t)?);
        check_same(
            op,
            &format!("{name} and the output"),
            t.shape(),
            out.shape(),
        )?;
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                op,
                format!("the output shares its buffer with {name} (no in-place update)"),
            ));
        }
    }
    f16s.push(super::check_float(op, "output", out)?);
    Ok(f16s)
}

/// Records `out = clip(a + b)` (same shapes; f32 or f16 each).
pub fn add(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    a: &Tensor,
    b: &Tensor,
    clip: Clip,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "add",
        &[("a", Some(a)), ("b", Some(b)), ("output", Some(out))],
    )?;
    const OP: &str = "add";
    clip.check(OP)?;
    let f = check_float_io(OP, &[("a", a), ("b", b)], out)?;
    let params = Params::new(to_u32(OP, "elements", out.numel())?, clip);
    dispatch(
        ctx,
        encoder,
        OP,
        0,
        [f[0], f[1], f[2]],
        &params,
        [
            elems("a", a),
            elems("b", b),
            Operand::whole("-", ctx.dummy_buffer()),
            elems("output", out),
        ],
        (out.numel(), 1),
    )
}

/// Records `out = clip(x)` (ReLU: [`Clip::RELU`], ReLU6: [`Clip::RELU6`]).
pub fn clip(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    clip: Clip,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, "clip", &[("x", Some(x)), ("output", Some(out))])?;
    clip.check("clip")?;
    unary(ctx, encoder, ("clip", 1), x, clip, out)
}

/// Records `out = x` converted to `out`'s dtype (f32 or f16 each, same shape). f16 to
/// f32 is exact (infinities and NaN included); f32 to f16 rounds as WGSL's
/// `pack2x16float` does (within half an f16 ulp), and a value outside f16's finite range
/// gives an indeterminate result there, as in WGSL.
pub fn cast(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, "cast", &[("x", Some(x)), ("output", Some(out))])?;
    unary(ctx, encoder, ("cast", 4), x, Clip::NONE, out)
}

/// Records `out = clip(f(x))` for an elementwise function `f` (sigmoid, hard sigmoid,
/// hard swish, tanh, leaky ReLU, affine), computed in f32 on f32 or f16 storage.
pub fn map(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    f: UnaryOp,
    clip: Clip,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, "map", &[("x", Some(x)), ("output", Some(out))])?;
    const OP: &str = "map";
    clip.check(OP)?;
    f.check(OP)?;
    let (func, alpha, beta) = f.code();
    unary_with(ctx, encoder, (OP, 5), x, clip, out, (func, alpha, beta))
}

/// Records `out = clip(a op b)`: `b` of `a`'s shape, or of `a`'s rank with length 1 on
/// one contiguous run of axes where `a`'s are longer (broadcast over them: `[N, 1, .., 1,
/// C]` against `[N, .., C]`, a squeeze-excite scale; `[.., T, 1]` against `[.., T, C]`,
/// a row statistic; `[1, .., C]` against `[.., C]`); f32 or f16 each, computed in f32.
/// [`BinaryOp::RSub`] and [`BinaryOp::RDiv`] put the broadcast operand first.
pub fn binary(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    clip: Clip,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "binary",
        &[("a", Some(a)), ("b", Some(b)), ("output", Some(out))],
    )?;
    const OP: &str = "binary";
    clip.check(OP)?;
    let f = check_float_io(OP, &[("a", a)], out)?;
    let fb = super::check_float(OP, "b", b)?;
    let (sa, sb) = (a.shape(), b.shape());
    let (span, inner) = if sa == sb {
        (0, 0)
    } else {
        broadcast_block(sa, sb).ok_or_else(|| {
            Error::shape(
                OP,
                format!(
                    "b {sb:?} neither matches a {sa:?} nor broadcasts over one run of its axes \
                     (b of a's rank, 1 on a contiguous run of axes, equal elsewhere)"
                ),
            )
        })?
    };
    if b.buffer() == out.buffer() {
        return Err(Error::invalid(
            OP,
            "the output shares its buffer with b (no in-place update)",
        ));
    }
    let mut params = Params::new(to_u32(OP, "elements", out.numel())?, clip);
    params.func = op.code();
    params.b_span = to_u32(OP, "elements", span)?;
    params.b_inner = to_u32(OP, "elements", inner)?;
    // A broadcast b is bound whole in every piece (checked to fit one binding); a
    // same-shape b is split with a.
    let bo = if sa == sb {
        elems("b", b)
    } else {
        Operand::tensor("b", b, 0, 0)
    };
    dispatch(
        ctx,
        encoder,
        OP,
        6,
        [f[0], fb, f[1]],
        &params,
        [
            elems("a", a),
            bo,
            Operand::whole("-", ctx.dummy_buffer()),
            elems("output", out),
        ],
        (out.numel(), 1),
    )
}

/// Records the one-input float kernel `code` of `op` (clip or conversion) over `x`.
fn unary(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    x: &Tensor,
    clip: Clip,
    out: &Tensor,
) -> Result<()> {
    unary_with(ctx, encoder, (op, code), x, clip, out, (0, 0.0, 0.0))
}

/// [`unary`] with a function code and its parameters (OP 5).
fn unary_with(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    x: &Tensor,
    clip: Clip,
    out: &Tensor,
    (func, alpha, beta): (u32, f32, f32),
) -> Result<()> {
    let f = check_float_io(op, &[("x", x)], out)?;
    let mut params = Params::new(to_u32(op, "elements", out.numel())?, clip);
    params.func = func;
    params.alpha = alpha;
    params.beta = beta;
    dispatch(
        ctx,
        encoder,
        op,
        code,
        [f[0], false, f[1]],
        &params,
        [
            elems("x", x),
            elems("x", x),
            Operand::whole("-", ctx.dummy_buffer()),
            elems("output", out),
        ],
        (out.numel(), 1),
    )
}

/// Records the softmax of `x` along its last axis into `out` (same shape; f32 or f16
/// each), `exp(x - max) / sum exp(x - max)` with f32 sums.
pub fn softmax(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, "softmax", &[("x", Some(x)), ("output", Some(out))])?;
    const OP: &str = "softmax";
    let f = check_float_io(OP, &[("x", x)], out)?;
    let Some((params, rows, row)) = row_params(OP, x)? else {
        return Ok(());
    };
    let out_row = row(out);
    dispatch_rows(
        ctx,
        encoder,
        (OP, 3),
        [f[0], f[1]],
        &params,
        (rows, row(x)),
        x,
        (out, out_row),
    )
}

/// Records row kernel `code` (one invocation per row of `x`, rows of `x_row` bytes) into
/// `out` (rows of `out_row` bytes).
#[allow(clippy::too_many_arguments)]
fn dispatch_rows(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    [fx, fo]: [bool; 2],
    params: &Params,
    (rows, x_row): (usize, u64),
    x: &Tensor,
    (out, out_row): (&Tensor, u64),
) -> Result<()> {
    dispatch(
        ctx,
        encoder,
        op,
        code,
        [fx, false, fo],
        params,
        [
            Operand::tensor("x", x, x_row, 0),
            Operand::tensor("x", x, x_row, 0),
            Operand::whole("-", ctx.dummy_buffer()),
            Operand::tensor("output", out, out_row, 0),
        ],
        (rows, 1),
    )
}

/// Records layer normalization along the last axis of `x` into `out` (same shape; f32
/// or f16 each): per row of `C` values, `(x - mean) / sqrt(var + eps) * gamma + beta`
/// with the biased variance, mean and variance in f32 in two passes (as ONNX's
/// `LayerNormalization` and its decomposed ReduceMean/Sub/Pow/Sqrt/Div form compute
/// them). `gamma` and `beta` are optional f32 tensors of `[C]` values (absent: 1 and
/// 0). `eps` must be finite and not negative.
///
/// ```no_run
/// # use wgpu_quant::{Context, DType, Tensor};
/// # use wgpu_quant::ops::eltwise::layer_norm;
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let x = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 5.0, 5.0, 8.0])?;
/// let gamma = Tensor::from_slice(&ctx, &[3], &[1.0f32, 1.0, 2.0])?;
/// let y = Tensor::zeros(&ctx, &[2, 3], DType::F32)?;
/// let mut enc = ctx.encoder("layer norm");
/// layer_norm(&ctx, &mut enc, &x, Some(&gamma), None, 1e-5, &y)?;
/// ctx.submit_and_wait(enc)?;
/// let v = y.read_blocking::<f32>(&ctx)?; // row 0: about [-1.22, 0, 2.45]
/// assert!((v[2] - 2.449).abs() < 1e-3);
/// # Ok(()) }
/// ```
pub fn layer_norm(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "layer_norm";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("gamma", gamma),
            ("beta", beta),
            ("output", Some(out)),
        ],
    )?;
    let f = check_float_io(OP, &[("x", x)], out)?;
    if !eps.is_finite() || eps < 0.0 {
        return Err(Error::invalid(
            OP,
            format!("epsilon {eps} must be finite and not negative"),
        ));
    }
    check_per_channel(OP, x, &[("gamma", gamma), ("beta", beta)], out)?;
    let Some((mut params, rows, row)) = row_params(OP, x)? else {
        return Ok(());
    };
    params.alpha = eps;
    params.func = u32::from(gamma.is_some()) | (u32::from(beta.is_some()) << 1);
    dispatch(
        ctx,
        encoder,
        OP,
        7,
        [f[0], false, f[1]],
        &params,
        [
            Operand::tensor("x", x, row(x), 0),
            Operand::optional(ctx, "gamma", gamma, 0, 0),
            Operand::optional(ctx, "beta", beta, 0, 0),
            Operand::tensor("output", out, row(out), 0),
        ],
        (rows, 1),
    )
}

/// Records `out = x * scale[c] + shift[c]` with `c` the index along the last axis of
/// `x` (a per-channel affine map of a row-major activation: `[.., C]` against `[C]`
/// scale and shift, both F32); `x` and `out` f32 or f16 each, computed in f32.
pub fn channel_affine(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "channel_affine";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("scale", Some(scale)),
            ("shift", Some(shift)),
            ("output", Some(out)),
        ],
    )?;
    let f = check_float_io(OP, &[("x", x)], out)?;
    check_per_channel(
        OP,
        x,
        &[("scale", Some(scale)), ("shift", Some(shift))],
        out,
    )?;
    let cols = x.shape().last().copied().unwrap_or(1);
    if cols == 0 {
        return Ok(());
    }
    let mut params = Params::new(to_u32(OP, "elements", out.numel())?, Clip::NONE);
    params.cols = to_u32(OP, "channels", cols)?;
    dispatch(
        ctx,
        encoder,
        OP,
        8,
        [f[0], false, f[1]],
        &params,
        [
            elems("x", x),
            Operand::tensor("scale", scale, 0, 0),
            Operand::tensor("shift", shift, 0, 0),
            elems("output", out),
        ],
        (out.numel(), 1),
    )
}

/// Per-channel parameters of an op along the last axis of `x`: each given one must be
/// F32 with one value per element of that axis, and not share the output's buffer.
fn check_per_channel(
    op: &'static str,
    x: &Tensor,
    params: &[(&str, Option<&Tensor>)],
    out: &Tensor,
) -> Result<()> {
    let cols = x.shape().last().copied().unwrap_or(1);
    for &(name, t) in params {
        let Some(t) = t else { continue };
        if t.dtype() != crate::DType::F32 || t.shape() != [cols] {
            return Err(Error::shape(
                op,
                format!(
                    "{name} is {:?} {:?}; it must be F32 [{cols}] (one value per element of the last axis of x {:?})",
                    t.dtype(),
                    t.shape(),
                    x.shape()
                ),
            ));
        }
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                op,
                format!("the output shares its buffer with {name}"),
            ));
        }
    }
    Ok(())
}

/// `b`'s broadcast against `a` (same rank; 1 on one contiguous run of axes where `a` is
/// longer, equal elsewhere) as the kernel's `(b_span, b_inner)`: `a`'s elements from the
/// run on, and from after it. `None` when `b` does not broadcast so (or equals `a`).
pub(crate) fn broadcast_block(sa: &[usize], sb: &[usize]) -> Option<(usize, usize)> {
    if sa.len() != sb.len() || sa == sb {
        return None;
    }
    let differs: Vec<usize> = (0..sa.len()).filter(|&i| sa[i] != sb[i]).collect();
    let (first, last) = (*differs.first()?, *differs.last()?);
    let run_ok = (first..=last).all(|i| sb[i] == 1);
    if !run_ok {
        return None;
    }
    let span: usize = sa[first..].iter().product();
    let inner: usize = sa[last + 1..].iter().product();
    (span > 0).then_some((span, inner))
}

/// Records the mean, sum, maximum, or the index of the maximum or minimum of `x` along
/// its last axis into `out` (`x`'s shape with the last axis 1; f32 or f16 each), in f32
/// over each row (ONNX `ReduceMean`, `ReduceSum`, `ReduceMax`, `ArgMax`, `ArgMin` over
/// the last axis with `keepdims`). An index into an f16 output is refused for rows
/// longer than 2049 values.
pub fn row_reduce(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kind: Reduce,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "row_reduce";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    let fx = super::check_float(OP, "x", x)?;
    let fo = super::check_float(OP, "output", out)?;
    let mut want = x.shape().to_vec();
    match want.last_mut() {
        Some(l) => *l = 1,
        None => return Err(Error::shape(OP, "x is a scalar (no last axis to reduce)")),
    }
    check_same(
        OP,
        "the output and x with its last axis 1",
        out.shape(),
        &want,
    )?;
    if x.buffer() == out.buffer() {
        return Err(Error::invalid(
            OP,
            "the output shares its buffer with x (no in-place update)",
        ));
    }
    let cols = x.shape().last().copied().unwrap_or(0);
    if kind.is_index() && fo && cols > 2049 {
        return Err(Error::invalid(
            OP,
            format!("{kind:?} of rows of {cols} values into an f16 output (indices above 2048 are not exact in f16)"),
        ));
    }
    let Some((mut params, rows, row)) = row_params(OP, x)? else {
        return Ok(());
    };
    params.func = kind.code();
    let out_row = out.dtype().size() as u64;
    dispatch_rows(
        ctx,
        encoder,
        (OP, 9),
        [fx, fo],
        &params,
        (rows, row(x)),
        x,
        (out, out_row),
    )
}

/// A row-wise op over the last axis of `x`: its parameters (rows, row length), the row
/// count, and the bytes of a row of a tensor; `None` for empty rows (nothing to do).
#[allow(clippy::type_complexity)]
fn row_params(
    op: &'static str,
    x: &Tensor,
) -> Result<Option<(Params, usize, impl Fn(&Tensor) -> u64)>> {
    let cols = x.shape().last().copied().unwrap_or(1);
    if cols == 0 {
        return Ok(None);
    }
    let rows = x.numel() / cols;
    let mut params = Params::new(to_u32(op, "rows", rows)?, Clip::NONE);
    params.cols = to_u32(op, "row length", cols)?;
    Ok(Some((params, rows, move |t: &Tensor| {
        (cols * t.dtype().size()) as u64
    })))
}

/// Records the INT8 residual add `out = quantize(clip(dequant(a) + dequant(b)))`: all
/// three i8/u8 with one scale and zero point each (read from their buffers), `a` and `b`
/// of the output's shape.
pub fn qadd(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    a: &QTensor,
    b: &QTensor,
    clip: Clip,
    out: &QTensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "qadd",
        &[
            ("a", Some(a.data())),
            ("b", Some(b.data())),
            ("output", Some(out.data())),
        ],
    )?;
    const OP: &str = "qadd";
    clip.check(OP)?;
    for (name, q) in [("a", a), ("b", b), ("output", out)] {
        if !matches!(q.qtype(), QType::I8 | QType::U8) {
            return Err(Error::invalid(
                OP,
                format!(
                    "{name} holds {} codes; qadd takes i8 or u8",
                    q.qtype().name()
                ),
            ));
        }
        if q.granularity() != Granularity::PerTensor {
            return Err(Error::invalid(
                OP,
                format!(
                    "{name} is quantized {:?}; qadd takes one scale and zero point per tensor",
                    q.granularity()
                ),
            ));
        }
    }
    check_same(OP, "a and the output", a.shape(), out.shape())?;
    check_same(OP, "b and the output", b.shape(), out.shape())?;
    for (name, q) in [("a", a), ("b", b)] {
        if q.data().buffer() == out.data().buffer() {
            return Err(Error::invalid(
                OP,
                format!("the output shares its buffer with {name} (no in-place update)"),
            ));
        }
    }
    let layout = out.layout();
    let words = layout.words();
    if words == 0 {
        return Ok(());
    }
    // The six parameters gathered into one small buffer on the GPU (they may have been
    // computed there, by dynamic quantization). The buffer is the context's scratch,
    // shared by every qadd: each recording fills it right before its own dispatch.
    let qp = ctx.scratch("wgpu-quant qadd params", 24)?;
    for (i, q) in [a, b, out].into_iter().enumerate() {
        let at = (8 * i) as u64;
        encoder.copy_buffer_to_buffer(q.scales().buffer(), 0, &qp, at, 4);
        encoder.copy_buffer_to_buffer(q.zero_points().buffer(), 0, &qp, at + 4, 4);
    }
    let (qmin, qmax) = out.qrange();
    let u8x = |q: &QTensor| q.qtype() == QType::U8;
    let params = Params {
        cols: to_u32(OP, "row length", layout.cols)?,
        words_per_row: to_u32(OP, "words per row", layout.words_per_row)?,
        qmin,
        qmax,
        a_xor: if u8x(a) { 0x8080_8080 } else { 0 },
        b_xor: if u8x(b) { 0x8080_8080 } else { 0 },
        a_shift: if u8x(a) { 128 } else { 0 },
        b_shift: if u8x(b) { 128 } else { 0 },
        ..Params::new(to_u32(OP, "words", words)?, clip)
    };
    let row = (4 * layout.words_per_row) as u64;
    dispatch(
        ctx,
        encoder,
        OP,
        2,
        [false; 3],
        &params,
        [
            Operand::tensor("a", a.data(), row, 0),
            Operand::tensor("b", b.data(), row, 0),
            Operand::whole("parameters", &qp),
            Operand::tensor("output", out.data(), row, 0),
        ],
        (layout.rows, layout.words_per_row),
    )
}

/// The params block of this op's kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![(ShaderFile::Eltwise, uniform_layout::<Params>())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each function (the match below stops compiling when one is added, so
    /// that this list and `UNARY_FUNCS` are looked at again).
    fn every_unary() -> Vec<UnaryOp> {
        let all = vec![
            UnaryOp::Sigmoid,
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            UnaryOp::HardSwish,
            UnaryOp::Tanh,
            UnaryOp::LeakyRelu { alpha: 0.1 },
            UnaryOp::IDENTITY,
            UnaryOp::Sqrt,
            UnaryOp::Pow { exponent: 2.0 },
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Abs,
            UnaryOp::Rdiv { numerator: 1.0 },
            UnaryOp::Erf,
            UnaryOp::Gelu { tanh: false },
            UnaryOp::Elu {
                alpha: 1.0,
                scale: 1.0,
            },
            UnaryOp::Celu { alpha: 1.0 },
            UnaryOp::Softplus,
            UnaryOp::Softsign,
            UnaryOp::Mish,
        ];
        for f in &all {
            match f {
                UnaryOp::Sigmoid
                | UnaryOp::HardSigmoid { .. }
                | UnaryOp::HardSwish
                | UnaryOp::Tanh
                | UnaryOp::LeakyRelu { .. }
                | UnaryOp::Affine { .. }
                | UnaryOp::Sqrt
                | UnaryOp::Pow { .. }
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Abs
                | UnaryOp::Rdiv { .. }
                | UnaryOp::Erf
                | UnaryOp::Gelu { .. }
                | UnaryOp::Elu { .. }
                | UnaryOp::Celu { .. }
                | UnaryOp::Softplus
                | UnaryOp::Softsign
                | UnaryOp::Mish => {}
            }
        }
        all
    }

    #[test]
    fn every_function_code_has_a_listed_variant() {
        let mut unary: Vec<u32> = every_unary().iter().map(|f| f.code().0).collect();
        unary.sort_unstable();
        assert_eq!(unary, (0..UNARY_FUNCS).collect::<Vec<_>>());
        let binary = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::RSub,
            BinaryOp::RDiv,
            BinaryOp::Max,
            BinaryOp::Min,
            BinaryOp::PRelu,
            BinaryOp::RPRelu,
            BinaryOp::Less,
            BinaryOp::Greater,
            BinaryOp::LessOrEqual,
            BinaryOp::GreaterOrEqual,
            BinaryOp::Equal,
            BinaryOp::Mask,
            BinaryOp::RMask,
            BinaryOp::MaskNot,
            BinaryOp::RMaskNot,
            BinaryOp::Pow,
            BinaryOp::RPow,
        ];
        for op in binary {
            // Exhaustive as above.
            match op {
                BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::RSub
                | BinaryOp::RDiv
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::PRelu
                | BinaryOp::RPRelu
                | BinaryOp::Less
                | BinaryOp::Greater
                | BinaryOp::LessOrEqual
                | BinaryOp::GreaterOrEqual
                | BinaryOp::Equal
                | BinaryOp::Mask
                | BinaryOp::RMask
                | BinaryOp::MaskNot
                | BinaryOp::RMaskNot
                | BinaryOp::Pow
                | BinaryOp::RPow => {}
            }
        }
        let mut codes: Vec<u32> = binary.iter().map(|op| op.code()).collect();
        codes.sort_unstable();
        assert_eq!(codes, (0..BINARY_FUNCS).collect::<Vec<_>>());
        // Every (OP, FUNC) a dispatch can ask for is among the validated variants.
        let listed = all_variants();
        for (op, funcs) in [(5, UNARY_FUNCS), (6, BINARY_FUNCS)] {
            for func in 0..funcs {
                let want = variant(op, func, [false, false, false]);
                assert!(listed.contains(&want), "OP {op} FUNC {func} is not listed");
            }
        }
    }
}
