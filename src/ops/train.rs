//! Training kernels, f32: the backward pass of a clip (ReLU, ReLU6: the gradient passes
//! where the forward input lies strictly inside the range, the straight-through
//! estimator's rule), the softmax cross-entropy loss with its gradient, a bias's gradient
//! (column sums), and optimizer steps in place: SGD with momentum and weight decay
//! (PyTorch's `SGD`) and AdamW (decoupled weight decay). A linear layer's input and
//! weight gradients are GEMMs with transposes ([`linear_backward`]). Fake quantization
//! ([`fake_quantize`], PyTorch's `fake_quantize_per_{tensor,channel}_affine`) with its
//! straight-through backward and LSQ's scale gradient. A convolution's input and weight
//! gradients ([`conv2d_backward_input`], [`conv2d_backward_weight`]: NHWC, OIHW weights,
//! groups, stride, padding, dilation) by direct summation; max and average pooling's
//! input gradients ([`pool2d_backward`]); a convolution's forward pass on the OIHW
//! weights training updates ([`conv2d_oihw`]).
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
        qmin: i32,
        qmax: i32,
        channels: u32,
        inner: u32,
        n: u32,
        h: u32,
        w: u32,
        cin: u32,
        oh: u32,
        ow: u32,
        oc: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        top: u32,
        left: u32,
        dh: u32,
        dw: u32,
        cg: u32,
        ocg: u32,
        pad4: u32,
        pad5: u32,
        pad6: u32,
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
    (0..17).map(variant).collect()
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

/// The fake quantization of a tensor viewed as `[outer, channels, inner]`: channel `k`
/// (per tensor: one channel) quantized with its scale and zero point to the integer
/// range `[qmin, qmax]` (2 to 256 codes: 1 to 8 bits) and dequantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeQuant {
    /// Channels (1 per tensor).
    pub channels: usize,
    /// Elements after the channel axis.
    pub inner: usize,
    /// Smallest code.
    pub qmin: i32,
    /// Largest code.
    pub qmax: i32,
}

/// The per-channel parameters [`fake_quantize`] reads: `(scale, 1 / scale, zero point)`
/// per channel as a `U32` tensor of f32 bits (the inverse computed here in f32, as PyTorch
/// computes it; the zero point an integral f32). Scales must be positive and finite with
/// a finite inverse, zero points within ±2^24. [`observe_range`] and
/// [`scales_to_params`] write the same layout on the GPU.
pub fn fake_quant_params(ctx: &Context, scales: &[f32], zero_points: &[i32]) -> Result<Tensor> {
    const OP: &str = "fake_quant_params";
    if scales.is_empty() || scales.len() != zero_points.len() {
        return Err(Error::invalid(
            OP,
            format!(
                "{} scales and {} zero points: one of each per channel",
                scales.len(),
                zero_points.len()
            ),
        ));
    }
    let mut words = Vec::with_capacity(3 * scales.len());
    for (k, (&s, &z)) in scales.iter().zip(zero_points).enumerate() {
        let inv = 1.0f32 / s;
        if !(s.is_finite() && s > 0.0 && inv.is_finite()) {
            return Err(Error::invalid(OP, format!("channel {k}: scale {s}")));
        }
        if z.unsigned_abs() > 1 << 24 {
            return Err(Error::invalid(
                OP,
                format!("channel {k}: zero point {z} is beyond ±2^24"),
            ));
        }
        words.extend([s.to_bits(), inv.to_bits(), (z as f32).to_bits()]);
    }
    Tensor::from_slice(ctx, &[words.len()], &words)
}

fn fq_params(op: &'static str, fq: &FakeQuant, x: &Tensor, qp: &Tensor) -> Result<Params> {
    let codes = i64::from(fq.qmax) - i64::from(fq.qmin);
    if !(1..=255).contains(&codes) {
        return Err(Error::invalid(
            op,
            format!(
                "codes [{}, {}]: 2 to 256 codes (1 to 8 bits)",
                fq.qmin, fq.qmax
            ),
        ));
    }
    let per = fq.channels.checked_mul(fq.inner).filter(|&v| v > 0);
    if per.is_none_or(|v| !x.numel().is_multiple_of(v)) {
        return Err(Error::shape(
            op,
            format!(
                "x {:?} is not [outer, {}, {}] (channels, inner)",
                x.shape(),
                fq.channels,
                fq.inner
            ),
        ));
    }
    if qp.dtype() != DType::U32 || qp.shape() != [3 * fq.channels] {
        return Err(Error::shape(
            op,
            format!(
                "the parameters are {:?} {:?}; {} channels need [{}] U32 (fake_quant_params)",
                qp.dtype(),
                qp.shape(),
                fq.channels,
                3 * fq.channels
            ),
        ));
    }
    f32_operand(op, "x", x)?;
    let mut p = params(to_u32(op, "elements", x.numel())?);
    (p.qmin, p.qmax) = (fq.qmin, fq.qmax);
    p.channels = to_u32(op, "channels", fq.channels)?;
    p.inner = to_u32(op, "inner", fq.inner)?;
    p.rows = to_u32(op, "outer", x.numel() / (fq.channels * fq.inner))?;
    Ok(p)
}

/// Records `out = (clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale` per channel
/// (the division as a product by the inverse scale, rounding half to even).
pub fn fake_quantize(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    fq: &FakeQuant,
    x: &Tensor,
    qp: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "fake_quantize";
    super::check_devices(
        ctx,
        OP,
        &[("x", Some(x)), ("params", Some(qp)), ("output", Some(out))],
    )?;
    let p = fq_params(OP, fq, x, qp)?;
    f32_operand(OP, "output", out)?;
    same_shape(OP, &[("x", x), ("output", out)])?;
    distinct(OP, &[("x", x), ("output", out)])?;
    record(
        ctx,
        encoder,
        (OP, 5),
        p,
        [Some(x), Some(qp), Some(out), None, None],
    )
}

/// Records the straight-through estimator: `dx = dy` where `x`'s code before clamping
/// lies in `[qmin, qmax]`, else 0.
pub fn fake_quantize_backward(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    fq: &FakeQuant,
    (x, qp): (&Tensor, &Tensor),
    dy: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    const OP: &str = "fake_quantize_backward";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("params", Some(qp)),
            ("dy", Some(dy)),
            ("dx", Some(dx)),
        ],
    )?;
    let p = fq_params(OP, fq, x, qp)?;
    f32_operand(OP, "dy", dy)?;
    f32_operand(OP, "dx", dx)?;
    same_shape(OP, &[("x", x), ("dy", dy), ("dx", dx)])?;
    distinct(OP, &[("x", x), ("dy", dy), ("dx", dx)])?;
    record(
        ctx,
        encoder,
        (OP, 6),
        p,
        [Some(x), Some(qp), Some(dx), Some(dy), None],
    )
}

/// Records LSQ's scale gradient per channel: `ds[k] = grad_scale * sum dy * d(out)/d(scale)`
/// over channel `k`'s elements, with `d(out)/d(scale)` = `round(x / s) - x / s` inside
/// the range, `qmin - zp` below it and `qmax - zp` above it (LSQ's gradient scale is
/// `1 / sqrt(elements * qmax)` in the paper; the caller passes it).
pub fn lsq_scale_grad(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    fq: &FakeQuant,
    (x, qp): (&Tensor, &Tensor),
    dy: &Tensor,
    grad_scale: f32,
    ds: &Tensor,
) -> Result<()> {
    const OP: &str = "lsq_scale_grad";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("params", Some(qp)),
            ("dy", Some(dy)),
            ("ds", Some(ds)),
        ],
    )?;
    let mut p = fq_params(OP, fq, x, qp)?;
    check_rate(OP, "grad_scale", grad_scale, f32::MIN_POSITIVE..f32::MAX)?;
    f32_operand(OP, "dy", dy)?;
    f32_operand(OP, "ds", ds)?;
    same_shape(OP, &[("x", x), ("dy", dy)])?;
    if ds.shape() != [fq.channels] {
        return Err(Error::shape(
            OP,
            format!(
                "ds has shape {:?}; one value per channel: [{}]",
                ds.shape(),
                fq.channels
            ),
        ));
    }
    distinct(OP, &[("x", x), ("dy", dy), ("ds", ds)])?;
    p.total = p.channels;
    p.scale = grad_scale;
    record(
        ctx,
        encoder,
        (OP, 7),
        p,
        [Some(x), Some(qp), None, Some(dy), Some(ds)],
    )
}

/// The convolution geometry of `x_shape` (NHWC) under `dims`/`desc`, as the params block.
fn conv_params(
    op: &'static str,
    dims: &crate::desc::conv::ConvDims,
    desc: &crate::desc::conv::ConvDesc,
    x_shape: &[usize],
) -> Result<(Params, Vec<usize>)> {
    let sh = desc
        .shape(dims, x_shape)
        .map_err(|e| Error::shape(op, e.to_string()))?;
    let u = |what: &str, v: usize| to_u32(op, what, v);
    let mut p = params(0);
    p.n = u("batch", sh.batch)?;
    p.h = u("height", sh.in_h)?;
    p.w = u("width", sh.in_w)?;
    p.cin = u("channels", dims.in_channels)?;
    p.oh = u("output height", sh.out_h)?;
    p.ow = u("output width", sh.out_w)?;
    p.oc = u("output channels", dims.out_channels)?;
    (p.kh, p.kw) = (u("kernel", dims.kernel[0])?, u("kernel", dims.kernel[1])?);
    (p.sh, p.sw) = (u("stride", sh.stride[0])?, u("stride", sh.stride[1])?);
    (p.top, p.left) = (u("padding", sh.pad[0])?, u("padding", sh.pad[1])?);
    (p.dh, p.dw) = (
        u("dilation", sh.dilation[0])?,
        u("dilation", sh.dilation[1])?,
    );
    p.cg = u("channels", dims.in_channels / dims.groups)?;
    p.ocg = u("output channels", dims.out_channels / dims.groups)?;
    let out = vec![sh.batch, sh.out_h, sh.out_w, dims.out_channels];
    Ok((p, out))
}

fn check_shape(op: &'static str, what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    f32_operand(op, what, t)?;
    if t.shape() != want {
        return Err(Error::shape(
            op,
            format!("{what} has shape {:?}; {want:?} is needed", t.shape()),
        ));
    }
    Ok(())
}

/// Records a 2-D convolution's input gradient `dx` (NHWC, the input's shape) from the
/// output's gradient `dy` and the weights `w` (`[OC, C / groups, KH, KW]`), for the
/// convolution `dims`/`desc` describe (its activation is not applied here: take its
/// backward first).
pub fn conv2d_backward_input(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    geometry: (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    let ops = [("dy", dy), ("w", w), ("dx", dx)];
    conv_grad(
        ctx,
        encoder,
        ("conv2d_backward_input", 8),
        geometry,
        dx.shape(),
        ops,
    )
}

/// Records a 2-D convolution's weight gradient `dw` (`[OC, C / groups, KH, KW]`) from its
/// input `x` (NHWC) and the output's gradient `dy`.
pub fn conv2d_backward_weight(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    geometry: (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<()> {
    let ops = [("x", x), ("dy", dy), ("dw", dw)];
    conv_grad(
        ctx,
        encoder,
        ("conv2d_backward_weight", 9),
        geometry,
        x.shape(),
        ops,
    )
}

/// Both convolution gradients: `ops` are the kernel's a, b and c (`dy, w, dx` or `x,
/// dy, dw`), each checked against the geometry of an input of `x_shape`.
fn conv_grad(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    (dims, desc): (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    x_shape: &[usize],
    ops: [(&'static str, &Tensor); 3],
) -> Result<()> {
    let named: Vec<(&str, Option<&Tensor>)> = ops.iter().map(|(n, t)| (*n, Some(*t))).collect();
    super::check_devices(ctx, op, &named)?;
    let (mut p, out) = conv_params(op, dims, desc, x_shape)?;
    let want = |name: &str| -> Vec<usize> {
        match name {
            "dy" => out.clone(),
            "w" | "dw" => dims.oihw().to_vec(),
            _ => x_shape.to_vec(),
        }
    };
    for (name, t) in ops {
        check_shape(op, name, t, &want(name))?;
    }
    distinct(op, &ops)?;
    p.total = to_u32(op, "elements", ops[2].1.numel())?;
    let [a, b, c] = ops.map(|(_, t)| Some(t));
    record(ctx, encoder, (op, code), p, [a, b, c, None, None])
}

/// Records pooling's input gradient `dx` (NHWC, `x`'s shape) from the forward input `x`
/// and the output's gradient `dy`: max pooling routes each window's gradient to its
/// largest element (the first in row-major order on ties, as PyTorch), average pooling
/// spreads it over the window's count (as the forward divides). Global pooling too.
pub fn pool2d_backward(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &crate::desc::pool::PoolDesc,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    const OP: &str = "pool2d_backward";
    super::check_devices(
        ctx,
        OP,
        &[("x", Some(x)), ("dy", Some(dy)), ("dx", Some(dx))],
    )?;
    let (oh, ow, [top, left], kernel) = desc.geometry(x.shape())?;
    let xs = x.shape().to_vec();
    check_shape(OP, "x", x, &xs)?;
    check_shape(OP, "dy", dy, &[xs[0], oh, ow, xs[3]])?;
    check_shape(OP, "dx", dx, &xs)?;
    distinct(OP, &[("x", x), ("dy", dy), ("dx", dx)])?;
    let u = |what: &str, v: usize| to_u32(OP, what, v);
    let mut p = params(u("elements", x.numel())?);
    (p.n, p.h, p.w, p.cin) = (
        u("batch", xs[0])?,
        u("height", xs[1])?,
        u("width", xs[2])?,
        u("channels", xs[3])?,
    );
    (p.oh, p.ow) = (u("output height", oh)?, u("output width", ow)?);
    (p.kh, p.kw) = (u("kernel", kernel[0])?, u("kernel", kernel[1])?);
    (p.sh, p.sw) = (u("stride", desc.stride[0])?, u("stride", desc.stride[1])?);
    (p.dh, p.dw) = (
        u("dilation", desc.dilation[0])?,
        u("dilation", desc.dilation[1])?,
    );
    (p.top, p.left) = (u("padding", top)?, u("padding", left)?);
    p.pad4 = u32::from(desc.count_pad);
    let code = match desc.kind {
        crate::desc::pool::PoolKind::Max => 10,
        crate::desc::pool::PoolKind::Avg => 11,
    };
    record(
        ctx,
        encoder,
        (OP, code),
        p,
        [Some(x), Some(dy), Some(dx), None, None],
    )
}

/// Records a 2-D convolution (NHWC input, `out` `[B, OH, OW, OC]`) with f32 OIHW weights
/// `w` (`[OC, C / groups, KH, KW]`, as training keeps and updates them: no
/// rearrangement) and an optional bias `[OC]`; no activation. Direct sums in f32.
pub fn conv2d_oihw(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (dims, desc): (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    x: &Tensor,
    (w, bias): (&Tensor, Option<&Tensor>),
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "conv2d_oihw";
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("w", Some(w)),
            ("bias", bias),
            ("output", Some(out)),
        ],
    )?;
    let (mut p, shape) = conv_params(OP, dims, desc, x.shape())?;
    check_shape(OP, "x", x, x.shape())?;
    check_shape(OP, "w", w, &dims.oihw())?;
    check_shape(OP, "output", out, &shape)?;
    if let Some(b) = bias {
        check_shape(OP, "bias", b, &[dims.out_channels])?;
        distinct(OP, &[("bias", b), ("output", out)])?;
    }
    distinct(OP, &[("x", x), ("w", w), ("output", out)])?;
    p.total = to_u32(OP, "elements", out.numel())?;
    p.pad5 = u32::from(bias.is_some());
    record(
        ctx,
        encoder,
        (OP, 12),
        p,
        [Some(x), Some(w), Some(out), bias, None],
    )
}

/// How [`observe_range`] turns a range into parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeObserver {
    /// Symmetric (zero point 0, scale `max(|min|, |max|) / ((qmax - qmin) / 2)`: weights)
    /// or asymmetric (the range widened to hold 0, zero point from its minimum:
    /// activations).
    pub symmetric: bool,
    /// The moving average's weight on the old range, in [0, 1) (0: the current range).
    pub decay: f32,
    /// The first observation: the state is set to the current range, not averaged.
    pub first: bool,
}

/// The smallest scale the GPU writes (a constant tensor would otherwise get scale 0).
pub const MIN_SCALE: f32 = f32::EPSILON;

/// Records the range observation of `x` viewed as `fq` says (`[outer, channels, inner]`)
/// into `state` (`[2 * channels]` f32: each channel's minimum and maximum, averaged with
/// `obs.decay` unless `obs.first`) and the fake quantization parameters of that range
/// into `qp` (as [`fake_quant_params`] lays them out), one workgroup per channel. Ranges
/// are tracked on the GPU, so training records without reading anything back.
pub fn observe_range(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    fq: &FakeQuant,
    obs: RangeObserver,
    x: &Tensor,
    (state, qp): (&Tensor, &Tensor),
) -> Result<()> {
    const OP: &str = "observe_range";
    super::check_devices(
        ctx,
        OP,
        &[("x", Some(x)), ("state", Some(state)), ("params", Some(qp))],
    )?;
    let mut p = fq_params(OP, fq, x, qp)?;
    check_rate(OP, "decay", obs.decay, 0.0..1.0)?;
    let two = fq.channels.saturating_mul(2);
    check_shape(OP, "state", state, &[two])?;
    distinct(OP, &[("x", x), ("state", state), ("params", qp)])?;
    p.total = to_u32(OP, "channels", fq.channels)?
        .checked_mul(WG)
        .ok_or_else(|| Error::invalid(OP, format!("{} channels", fq.channels)))?;
    p.mu = obs.decay;
    p.eps = MIN_SCALE;
    p.pad5 = u32::from(!obs.first);
    p.pad6 = u32::from(!obs.symmetric);
    record(
        ctx,
        encoder,
        (OP, 13),
        p,
        [Some(x), None, Some(qp), Some(state), None],
    )
}

/// Records `qp`'s scales (and inverses) from the learned scales `s` (`[channels]` f32,
/// each at least [`MIN_SCALE`]), keeping its zero points: LSQ's step sizes as the
/// parameters [`fake_quantize`] reads.
pub fn scales_to_params(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    s: &Tensor,
    qp: &Tensor,
) -> Result<()> {
    const OP: &str = "scales_to_params";
    super::check_devices(ctx, OP, &[("scales", Some(s)), ("params", Some(qp))])?;
    f32_operand(OP, "scales", s)?;
    let &[c] = s.shape() else {
        return Err(Error::shape(
            OP,
            format!("scales have shape {:?}; [channels] is needed", s.shape()),
        ));
    };
    if qp.dtype() != DType::U32 || qp.shape() != [c.saturating_mul(3)] {
        return Err(Error::shape(
            OP,
            format!(
                "the parameters are {:?} {:?}; {c} scales need [{}] U32 (fake_quant_params)",
                qp.dtype(),
                qp.shape(),
                c.saturating_mul(3)
            ),
        ));
    }
    distinct(OP, &[("scales", s), ("params", qp)])?;
    let mut p = params(to_u32(OP, "channels", c)?);
    p.eps = MIN_SCALE;
    record(
        ctx,
        encoder,
        (OP, 14),
        p,
        [Some(s), None, Some(qp), None, None],
    )
}

/// The im2col matrix of a convolution with one group: `[N * OH * OW, C * KH * KW]`.
pub fn columns_shape(
    dims: &crate::desc::conv::ConvDims,
    desc: &crate::desc::conv::ConvDesc,
    x_shape: &[usize],
) -> Result<[usize; 2]> {
    let sh = desc.shape(dims, x_shape)?;
    let rows = [sh.batch, sh.out_h, sh.out_w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let cols = dims
        .in_channels
        .checked_mul(dims.kernel[0] * dims.kernel[1]);
    match (rows, cols) {
        (Some(r), Some(c)) if r.checked_mul(c).is_some() => Ok([r, c]),
        _ => Err(Error::shape(
            "columns_shape",
            format!("the columns of input {x_shape:?} overflow usize"),
        )),
    }
}

/// The geometry of an im2col or col2im between `x_shape` and `cols`.
fn columns_params(
    op: &'static str,
    (dims, desc): (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    x_shape: &[usize],
    cols: &Tensor,
) -> Result<Params> {
    if dims.groups != 1 {
        return Err(Error::invalid(
            op,
            format!(
                "{} groups: the columns hold one group (grouped convolutions use \
                 conv2d_oihw and the direct gradients)",
                dims.groups
            ),
        ));
    }
    let (p, _) = conv_params(op, dims, desc, x_shape)?;
    let want = columns_shape(dims, desc, x_shape)?;
    check_shape(op, "columns", cols, &want)?;
    Ok(p)
}

/// Records the im2col matrix `cols` (`[N * OH * OW, C * KH * KW]`, columns in OIHW's
/// `(c, ky, kx)` order, zeros in the padding) of `x` (NHWC) for a one-group convolution:
/// `cols x W^T` with the OIHW weights seen as `[OC, C * KH * KW]` is the convolution
/// (NHWC), and `dy^T cols` its weight gradient, both GEMMs.
pub fn im2col(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    geometry: (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    x: &Tensor,
    cols: &Tensor,
) -> Result<()> {
    record_columns(
        ctx,
        encoder,
        ("im2col", 15),
        geometry,
        (("x", x), cols),
        true,
    )
}

/// Records col2im, the adjoint of [`im2col`]: `dx` (NHWC) sums the entries of `dcols`
/// that each input element was copied to (a convolution's input gradient from `dy W`).
pub fn col2im(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    geometry: (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    dcols: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    record_columns(
        ctx,
        encoder,
        ("col2im", 16),
        geometry,
        (("dx", dx), dcols),
        false,
    )
}

/// im2col (`to_cols`: image to columns) or col2im (columns to image), checked.
fn record_columns(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (op, code): (&'static str, u32),
    geometry: (&crate::desc::conv::ConvDims, &crate::desc::conv::ConvDesc),
    ((name, image), cols): ((&'static str, &Tensor), &Tensor),
    to_cols: bool,
) -> Result<()> {
    super::check_devices(ctx, op, &[(name, Some(image)), ("columns", Some(cols))])?;
    f32_operand(op, name, image)?;
    let mut p = columns_params(op, geometry, image.shape(), cols)?;
    distinct(op, &[(name, image), ("columns", cols)])?;
    let (src, dst) = if to_cols {
        (image, cols)
    } else {
        (cols, image)
    };
    p.total = to_u32(op, "elements", dst.numel())?;
    record(
        ctx,
        encoder,
        (op, code),
        p,
        [Some(src), None, Some(dst), None, None],
    )
}
