//! Training kernels, f32: the backward pass of a clip (ReLU, ReLU6: the gradient passes
//! where the forward input lies strictly inside the range, the straight-through
//! estimator's rule), the softmax cross-entropy loss with its gradient, a bias's gradient
//! (column sums), and optimizer steps in place: SGD with momentum and weight decay
//! (PyTorch's `SGD`) and AdamW (decoupled weight decay). A linear layer's input and
//! weight gradients are GEMMs with transposes ([`linear_backward`]).
//!
//! The first pieces of quantization-aware training (docs/ARCHITECTURE.md); each kernel
//! is checked against an f64 reference ([`crate::reference::train`]) and the gradients
//! against finite differences (`tests/train.rs`).
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::train::{softmax_cross_entropy, sgd_step, Sgd};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let logits = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0])?;
//! let labels = Tensor::from_slice(&ctx, &[2], &[1u32, 2])?;
//! let grad = Tensor::zeros(&ctx, &[2, 3], DType::F32)?;
//! let loss = Tensor::zeros(&ctx, &[2], DType::F32)?;
//! let w = Tensor::from_slice(&ctx, &[2, 3], &[0.5f32; 6])?;
//! let v = Tensor::zeros(&ctx, &[2, 3], DType::F32)?;
//! let mut enc = ctx.encoder("step");
//! softmax_cross_entropy(&ctx, &mut enc, &logits, &labels, &grad, &loss)?;
//! let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
//! sgd_step(&ctx, &mut enc, &opt, &w, &grad, &v)?;
//! ctx.submit_and_wait(enc)?;
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::desc::eltwise::Clip;
use crate::desc::gemm::GemmDesc;
use crate::error::{Error, Result};
use crate::ops::{to_u32, Operand};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

crate::shaders::uniform! {
    struct Params {
        total: u32,
        cols: u32,
        rows: u32,
        pad2: u32,
        lo: f32,
        hi: f32,
        scale: f32,
        lr: f32,
        mu: f32,
        wd: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bc1: f32,
        bc2: f32,
        pad3: f32,
    }
}

fn variant(op: u32) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Train,
        vec![("WG", Def::U32(WG)), ("OP", Def::U32(op))],
    )
}

/// Every training variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    (0..5).map(variant).collect()
}

/// The params block (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    vec![(
        ShaderFile::Train,
        crate::shaders::uniform_layout::<Params>(),
    )]
}

/// PyTorch's SGD: `g += weight_decay * w`; with momentum, `v = momentum * v + g`, `g =
/// v`; then `w -= lr * g`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate (positive, finite).
    pub lr: f32,
    /// Momentum in [0, 1).
    pub momentum: f32,
    /// L2 weight decay (0 or more).
    pub weight_decay: f32,
}

/// AdamW: decoupled weight decay, then Adam's step with bias-corrected moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// Learning rate (positive, finite).
    pub lr: f32,
    /// First moment's decay in [0, 1).
    pub beta1: f32,
    /// Second moment's decay in [0, 1).
    pub beta2: f32,
    /// Added to the root of the second moment (positive).
    pub eps: f32,
    /// Decoupled weight decay (0 or more).
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

fn f32_operand(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::invalid(
            op,
            format!("{what} is {:?}; training kernels take f32", t.dtype()),
        ));
    }
    Ok(())
}

fn same_shape(op: &'static str, pairs: &[(&str, &Tensor)]) -> Result<()> {
    let first = pairs[0].1.shape();
    for (name, t) in &pairs[1..] {
        if t.shape() != first {
            return Err(Error::shape(
                op,
                format!(
                    "{name} has shape {:?}; {} has {first:?}",
                    t.shape(),
                    pairs[0].0
                ),
            ));
        }
    }
    Ok(())
}

fn distinct(op: &'static str, ts: &[(&str, &Tensor)]) -> Result<()> {
    for (i, (a, x)) in ts.iter().enumerate() {
        for (b, y) in &ts[i + 1..] {
            if x.buffer() == y.buffer() {
                return Err(Error::invalid(op, format!("{a} and {b} share one buffer")));
            }
        }
    }
    Ok(())
}

/// Records kernel `code` over `total` work items with operands `[a, b, c, d, e]` (absent
/// ones bound to scratch buffers), whole.
fn record(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    params: Params,
    ops: [Option<&Tensor>; 5],
) -> Result<()> {
    if params.total == 0 {
        return Ok(());
    }
    const TAGS: [&str; 5] = [
        "train.unused.a",
        "train.unused.b",
        "train.unused.c",
        "train.unused.d",
        "train.unused.e",
    ];
    let names = ["a", "b", "c", "d", "e"];
    let spare: Vec<Option<wgpu::Buffer>> = ops
        .iter()
        .zip(TAGS)
        .map(|(t, tag)| match t {
            Some(_) => Ok(None),
            None => ctx.scratch(tag, 16).map(Some),
        })
        .collect::<Result<_>>()?;
    let operands: Vec<Operand> = ops
        .iter()
        .zip(&spare)
        .zip(names)
        .map(|((t, s), n)| match (t, s) {
            (Some(t), _) => Operand::tensor(n, t, 0, 0),
            (None, Some(b)) => Operand::whole(n, b),
            (None, None) => unreachable!("a scratch buffer stands in"),
        })
        .collect();
    let pieces = super::split(ctx, op, ["-", "-"], (1, 1), &operands)?;
    let kernel = ctx.kernel(&variant(code))?;
    let grid = super::grid_for(ctx, op, u64::from(params.total).div_ceil(u64::from(WG)))?;
    for piece in pieces {
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

fn params(total: u32) -> Params {
    Params {
        total,
        ..bytemuck::Zeroable::zeroed()
    }
}

/// Records `dx = dy` where `clip.lo < x < clip.hi`, else 0: the backward pass of a clip
/// (ReLU: `Clip::RELU`, ReLU6) taken at its forward input `x`. A NaN input passes no
/// gradient.
pub fn clip_backward(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    dy: &Tensor,
    clip: Clip,
    dx: &Tensor,
) -> Result<()> {
    const OP: &str = "clip_backward";
    super::check_devices(
        ctx,
        OP,
        &[("x", Some(x)), ("dy", Some(dy)), ("dx", Some(dx))],
    )?;
    for (n, t) in [("x", x), ("dy", dy), ("dx", dx)] {
        f32_operand(OP, n, t)?;
    }
    same_shape(OP, &[("x", x), ("dy", dy), ("dx", dx)])?;
    distinct(OP, &[("x", x), ("dy", dy), ("dx", dx)])?;
    let mut p = params(to_u32(OP, "elements", x.numel())?);
    (p.lo, p.hi) = (clip.lo, clip.hi);
    record(
        ctx,
        encoder,
        (OP, 0),
        p,
        [Some(x), Some(dy), Some(dx), None, None],
    )
}

/// Records the softmax cross-entropy of `logits` `[B, K]` against `labels` (`U32`
/// `[B]`): `loss[b] = logsumexp(logits[b]) - logits[b, labels[b]]` and `grad` `[B, K]`
/// the gradient of the batch's mean loss, `(softmax(logits[b]) - onehot) / B`. A label
/// of `K` or more gives a NaN loss (the trainer's finite-loss check names it).
pub fn softmax_cross_entropy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    logits: &Tensor,
    labels: &Tensor,
    grad: &Tensor,
    loss: &Tensor,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    super::check_devices(
        ctx,
        OP,
        &[
            ("logits", Some(logits)),
            ("labels", Some(labels)),
            ("grad", Some(grad)),
            ("loss", Some(loss)),
        ],
    )?;
    for (n, t) in [("logits", logits), ("grad", grad), ("loss", loss)] {
        f32_operand(OP, n, t)?;
    }
    let &[b, k] = logits.shape() else {
        return Err(Error::shape(
            OP,
            format!("logits have shape {:?}; [B, K] is needed", logits.shape()),
        ));
    };
    if labels.dtype() != DType::U32 || labels.shape() != [b] || loss.shape() != [b] || k == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "logits {:?} need U32 labels [{b}] and a loss [{b}] (labels are {:?} {:?}, \
                 the loss {:?})",
                logits.shape(),
                labels.dtype(),
                labels.shape(),
                loss.shape()
            ),
        ));
    }
    same_shape(OP, &[("logits", logits), ("grad", grad)])?;
    distinct(OP, &[("logits", logits), ("grad", grad), ("loss", loss)])?;
    let mut p = params(to_u32(OP, "rows", b)?);
    p.cols = to_u32(OP, "classes", k)?;
    p.scale = 1.0 / b as f32;
    record(
        ctx,
        encoder,
        (OP, 1),
        p,
        [Some(logits), Some(labels), Some(grad), Some(loss), None],
    )
}

/// Records `out[j] = sum_r x[r, j]` for `x` `[R, N]`, `out` `[N]` (a bias's gradient
/// from the output's).
pub fn column_sums(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "column_sums";
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
    f32_operand(OP, "x", x)?;
    f32_operand(OP, "output", out)?;
    let &[r, n] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("x has shape {:?}; [R, N] is needed", x.shape()),
        ));
    };
    if out.shape() != [n] {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?} sums to [{n}]; the output is {:?}",
                x.shape(),
                out.shape()
            ),
        ));
    }
    distinct(OP, &[("x", x), ("output", out)])?;
    let mut p = params(to_u32(OP, "columns", n)?);
    p.cols = p.total;
    p.rows = to_u32(OP, "rows", r)?;
    record(
        ctx,
        encoder,
        (OP, 2),
        p,
        [Some(x), None, Some(out), None, None],
    )
}

fn check_rate(op: &'static str, what: &str, v: f32, range: std::ops::Range<f32>) -> Result<()> {
    if !(v.is_finite() && range.contains(&v)) {
        return Err(Error::invalid(
            op,
            format!("{what} = {v} must lie in [{}, {})", range.start, range.end),
        ));
    }
    Ok(())
}

/// Records one SGD step in place: `w` and its momentum buffer `v` (zeros at first) from
/// the gradient `g`, all f32 of one shape.
pub fn sgd_step(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    opt: &Sgd,
    w: &Tensor,
    g: &Tensor,
    v: &Tensor,
) -> Result<()> {
    const OP: &str = "sgd_step";
    super::check_devices(ctx, OP, &[("w", Some(w)), ("g", Some(g)), ("v", Some(v))])?;
    check_rate(OP, "lr", opt.lr, f32::MIN_POSITIVE..f32::MAX)?;
    check_rate(OP, "momentum", opt.momentum, 0.0..1.0)?;
    check_rate(OP, "weight_decay", opt.weight_decay, 0.0..f32::MAX)?;
    for (n, t) in [("w", w), ("g", g), ("v", v)] {
        f32_operand(OP, n, t)?;
    }
    same_shape(OP, &[("w", w), ("g", g), ("v", v)])?;
    distinct(OP, &[("w", w), ("g", g), ("v", v)])?;
    let mut p = params(to_u32(OP, "elements", w.numel())?);
    (p.lr, p.mu, p.wd) = (opt.lr, opt.momentum, opt.weight_decay);
    record(
        ctx,
        encoder,
        (OP, 3),
        p,
        [Some(g), None, Some(w), Some(v), None],
    )
}

/// Records AdamW's step `step` (from 1) in place: `w`, its first and second moments `m`
/// and `v` (zeros at first) from the gradient `g`, all f32 of one shape.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    opt: &Adam,
    step: u32,
    w: &Tensor,
    g: &Tensor,
    (m, v): (&Tensor, &Tensor),
) -> Result<()> {
    const OP: &str = "adam_step";
    super::check_devices(
        ctx,
        OP,
        &[
            ("w", Some(w)),
            ("g", Some(g)),
            ("m", Some(m)),
            ("v", Some(v)),
        ],
    )?;
    check_rate(OP, "lr", opt.lr, f32::MIN_POSITIVE..f32::MAX)?;
    check_rate(OP, "beta1", opt.beta1, 0.0..1.0)?;
    check_rate(OP, "beta2", opt.beta2, 0.0..1.0)?;
    check_rate(OP, "eps", opt.eps, f32::MIN_POSITIVE..f32::MAX)?;
    check_rate(OP, "weight_decay", opt.weight_decay, 0.0..f32::MAX)?;
    if step == 0 {
        return Err(Error::invalid(OP, "step 0: steps count from 1"));
    }
    for (n, t) in [("w", w), ("g", g), ("m", m), ("v", v)] {
        f32_operand(OP, n, t)?;
    }
    same_shape(OP, &[("w", w), ("g", g), ("m", m), ("v", v)])?;
    distinct(OP, &[("w", w), ("g", g), ("m", m), ("v", v)])?;
    let mut p = params(to_u32(OP, "elements", w.numel())?);
    (p.lr, p.wd, p.beta1, p.beta2, p.eps) =
        (opt.lr, opt.weight_decay, opt.beta1, opt.beta2, opt.eps);
    let t = step as i32;
    p.bc1 = (1.0 - f64::from(opt.beta1).powi(t)) as f32;
    p.bc2 = (1.0 - f64::from(opt.beta2).powi(t)) as f32;
    record(
        ctx,
        encoder,
        (OP, 4),
        p,
        [Some(g), None, Some(w), Some(m), Some(v)],
    )
}

/// Records a linear layer's backward pass, `y[B, N] = x[B, K] W^T + b` with `W` `[N, K]`:
/// `dx = dy W` (`[B, K]`, when asked for), `dw = dy^T x` (`[N, K]`) and `db` the column
/// sums of `dy` (`[N]`, when asked for), as GEMMs on the library's kernels.
pub fn linear_backward(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (x, w, dy): (&Tensor, &Tensor, &Tensor),
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<()> {
    const OP: &str = "linear_backward";
    let (&[b, k], &[n, kw], &[by, ny]) = (x.shape(), w.shape(), dy.shape()) else {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?}, W {:?} and dy {:?} must be matrices",
                x.shape(),
                w.shape(),
                dy.shape()
            ),
        ));
    };
    if kw != k || by != b || ny != n || dw.shape() != [n, k] {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?}, W {:?}, dy {:?}, dW {:?}: x [B, K], W [N, K], dy [B, N], dW [N, K]",
                x.shape(),
                w.shape(),
                dy.shape(),
                dw.shape()
            ),
        ));
    }
    if let Some(dx) = dx {
        let desc = GemmDesc::new(b, k, n);
        super::gemm::gemm(ctx, encoder, &desc, dy, w, None, dx)?;
    }
    let desc = GemmDesc {
        trans_a: true,
        ..GemmDesc::new(n, k, b)
    };
    super::gemm::gemm(ctx, encoder, &desc, dy, x, None, dw)?;
    if let Some(db) = db {
        column_sums(ctx, encoder, dy, db)?;
    }
    Ok(())
}
