//! W8A8 GEMM: 8-bit activations times 8-bit weights with int32 accumulation, four
//! products per instruction with WGSL's `dot4I8Packed`, and fused epilogues.
//!
//! `A` is a [`QTensor`] of shape `[.., K]` (the rows are the `M` activations; one scale
//! and zero point per tensor or per row), `W` is a `[N, K]` [`QTensor`] (a Linear weight;
//! one scale and zero point per tensor or per output channel). Both hold `i8` or `u8`
//! codes packed four per `u32` along `K`. The kernel computes the exact integer
//!
//! ```text
//! r[m, n] = sum_k (a[m, k] - za[m]) * (w[n, k] - zw[n])
//!         = sum_k a*w - zw[n] * sum_k a[m, k] - za[m] * sum_k w[n, k] + K * za[m] * zw[n]
//! ```
//!
//! with the row and column sums taken in the same pass (zero points are never applied by
//! dequantizing first), then one of the epilogues of [`QGemmOutput`]:
//! - `F32` / `F16`: `act(sa[m] * sw[n] * r + bias[n])`, rounded as the Rust reference
//!   rounds it: the product `sa * sw`, then `r * (sa * sw)` and the bias add each rounded
//!   once in f32 (the kernel keeps the compiler from fusing them);
//! - `I32`: `r` itself (ONNX `MatMulInteger`);
//! - `Quantized`: the f32 value above requantized with the output's static scale and
//!   zero point (`clamp(round_half_even(v / so) + zo)`), so static-quantized layers chain
//!   in 8-bit form.
//!
//! `r` is exact when `K * max|a - za| * max|w - zw| <= 2^31 - 1` (see [`max_exact_k`]);
//! a longer `K` is refused with an error, never wrapped.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType};
//! use wgpu_quant::ops::qgemm::{QLinear};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! // A PyTorch quantize_dynamic-style Linear: i8 weights per output channel, f32 in and
//! // out, activations quantized per row on the GPU at every call.
//! let (n, k) = (3, 4);
//! let weight = [0.5f32, -1.0, 0.25, 2.0, 1.0, 1.0, 1.0, 1.0, -0.5, 0.0, 0.5, 0.0];
//! let layer = QLinear::from_f32(&ctx, &weight, n, k, Some(&[0.0, 1.0, -1.0]))?;
//! let x = Tensor::from_slice(&ctx, &[2, k], &[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 0.5])?;
//! let y = Tensor::zeros(&ctx, &[2, n], DType::F32)?;
//! let mut enc = ctx.encoder("linear");
//! layer.forward(&ctx, &mut enc, &x, &y)?;
//! ctx.submit_and_wait(enc)?;
//! let y = y.read_blocking::<f32>(&ctx)?;
//! assert!((y[0] - 7.25).abs() < 0.1 && (y[1] - 11.0).abs() < 0.1);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::conv::{dw_q8_variant, DwParams, WindowParams};
use crate::ops::gemm::Activation;
use crate::ops::quant::{dynamic_quantize, DynamicQuant, QTensor};
use crate::ops::{to_u32, RowTile};
use crate::quant::{Granularity, QType, QuantParams, QuantScheme};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

const OP: &str = "qgemm";

/// The tiles the plan may choose (tests run all of them): 1x8, 2x8, 4x4, 4x8 (the
/// default for 3 rows or more), 8x4 and 8x8 rows x columns per invocation.
pub const TILES: [RowTile; 6] = [
    RowTile::new(64, 1, 2),
    RowTile::new(64, 2, 2),
    RowTile::new(64, 4, 1),
    RowTile::new(64, 4, 2),
    RowTile::new(64, 8, 1),
    RowTile::new(64, 8, 2),
];

/// The default tile for `m` rows (a documented heuristic; see [`crate::plan`]).
pub fn tile_for_rows(m: usize) -> RowTile {
    match m {
        1 => TILES[0],
        2 => TILES[1],
        _ => TILES[3],
    }
}

/// Where the W8A8 GEMM writes, and in which form.
#[derive(Debug, Clone, Copy)]
pub enum QGemmOutput<'a> {
    /// Dequantized f32 `[.., N]` with bias and activation.
    F32(&'a Tensor),
    /// Dequantized f16 `[.., N]` (works without `SHADER_F16`).
    F16(&'a Tensor),
    /// The exact int32 accumulator `[.., N]` (no bias, no activation).
    I32(&'a Tensor),
    /// Requantized 8-bit codes (i8 or u8, per-tensor static parameters from
    /// [`QTensor::new`]) of the dequantized value with bias and activation.
    Quantized(&'a QTensor),
}

/// Options of [`qgemm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QGemmDesc {
    /// Activation after the bias (float and requantized outputs).
    pub activation: Activation,
    /// Pins a tile instead of the plan's choice.
    pub config: Option<RowTile>,
    /// `Some(false)` runs the unpacked integer fallback instead of `dot4I8Packed` (same
    /// results); `None` uses the packed dot product where the adapter has it.
    pub packed_dot: Option<bool>,
}

impl QGemmDesc {
    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Pins a tile.
    pub fn config(mut self, config: RowTile) -> Self {
        self.config = Some(config);
        self
    }

    /// Chooses the packed dot product (`true`) or the unpacked fallback (`false`).
    pub fn packed_dot(mut self, packed: bool) -> Self {
        self.packed_dot = Some(packed);
        self
    }
}

/// The largest `K` whose accumulator is exact in int32 for operands with these code
/// ranges; `zero_point` says whether the operand may have a non-zero zero point (then
/// `|q - z|` reaches `qmax - qmin`, else `max(|qmin|, |qmax|)`).
///
/// i8 x i8 symmetric: 131071; u8 (asymmetric) x i8 symmetric: 65793; u8 x u8 asymmetric:
/// 33025.
pub fn max_exact_k(
    a_range: (i32, i32),
    a_zero_point: bool,
    w_range: (i32, i32),
    w_zero_point: bool,
) -> usize {
    let span = |(lo, hi): (i32, i32), zp: bool| -> i64 {
        if zp {
            i64::from(hi) - i64::from(lo)
        } else {
            i64::from(lo).abs().max(i64::from(hi).abs())
        }
    };
    let per = (span(a_range, a_zero_point) * span(w_range, w_zero_point)).max(1);
    (i64::from(i32::MAX) / per) as usize
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    kw: u32,
    groups_x: u32,
    flags: u32,
    a_xor: u32,
    w_xor: u32,
    tail_mask: u32,
    a_row_stride: u32,
    w_col_stride: u32,
    a_shift: i32,
    w_shift: i32,
    out_qmin: i32,
    out_qmax: i32,
    out_zero: i32,
    out_scale: f32,
    out_words_per_row: u32,
    opaque_zero: u32,
    kc: u32,
    taps: u32,
    ncols: u32,
    groups: u32,
    row_blocks: u32,
    win: WindowParams,
    pix_words: u32,
    a_words: u32,
    byte_out: u32,
    splits: u32,
    slice_words: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 160);

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DwQ8Params {
    base: DwParams,
    pix_words: u32,
    a_signed: u32,
    w_signed: u32,
    a_row_stride: u32,
    w_col_stride: u32,
    out_qmin: i32,
    out_qmax: i32,
    out_zero: i32,
    out_scale: f32,
    out_words_per_row: u32,
    opaque_zero: u32,
    _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<DwQ8Params>() == 128);

/// The convolution geometry of [`run`] (implicit GEMM over an NHWC image), in the
/// kernel's terms; the GEMM has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Top and left padding (bottom and right follow from the output size).
    pub pad: [usize; 2],
    pub groups: usize,
}

/// One W8A8 problem: `m` output rows of `groups * ncols` columns, each the reduction of
/// `taps` slices of `kc` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub m: usize,
    pub ncols: usize,
    pub kc: usize,
    pub conv: Option<ConvGeom>,
    /// A depthwise convolution (`conv` is set, `kc` is 1): the depthwise kernel runs.
    pub depthwise: bool,
    pub out_shape: Vec<usize>,
}

impl Problem {
    fn groups(&self) -> usize {
        self.conv.map_or(1, |c| c.groups)
    }
    fn taps(&self) -> usize {
        self.conv.map_or(1, |c| c.kernel[0] * c.kernel[1])
    }
    fn n(&self) -> usize {
        self.groups() * self.ncols
    }
    /// The reduction length of one output.
    pub fn k(&self) -> usize {
        self.taps() * self.kc
    }
}

/// The W8A8 kernel; `reduce` is split-K's second pass (GEMM only, without zero points).
fn variant(
    cfg: RowTile,
    dot4: bool,
    za: bool,
    zw: bool,
    out: u32,
    conv: bool,
    reduce: bool,
) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::QGemm,
        vec![
            ("WG", Def::U32(cfg.wg)),
            ("TM", Def::U32(cfg.tm)),
            ("TN4", Def::U32(cfg.tn4)),
            ("DOT4", Def::Bool(dot4)),
            ("ZA", Def::Bool(za)),
            ("ZW", Def::Bool(zw)),
            ("OUT", Def::U32(out)),
            ("CONV", Def::Bool(conv)),
            ("REDUCE", Def::Bool(reduce)),
        ],
    )
}

/// Every W8A8 kernel variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    let narrowed = TILES
        .into_iter()
        .flat_map(|t| RowTile::NARROW_WG.map(|wg| RowTile { wg, ..t }));
    for cfg in TILES.into_iter().chain(narrowed) {
        for dot4 in [false, true] {
            for za in [false, true] {
                for zw in [false, true] {
                    for out in 0..4 {
                        for conv in [false, true] {
                            v.push(variant(cfg, dot4, za, zw, out, conv, false));
                        }
                    }
                }
            }
        }
        for out in 0..4 {
            v.push(variant(cfg, false, false, false, out, false, true));
        }
    }
    v
}

fn check_8bit(operand: &'static str, q: &QTensor) -> Result<()> {
    if !matches!(q.qtype(), QType::I8 | QType::U8) {
        return Err(Error::invalid(
            OP,
            format!(
                "{operand} holds {} codes; the W8A8 GEMM takes i8 or u8 (use ops::wgemm for \
                 4-bit weights)",
                q.qtype().name()
            ),
        ));
    }
    Ok(())
}

/// 1 when a conv weight (`[OC, KH, KW, C / groups]`, or `[KH, KW, OC]` when depthwise)
/// has one parameter pair per output channel, 0 when it has one per tensor.
fn conv_weight_stride(w: &QTensor, depthwise: bool) -> Result<u32> {
    let channel_axis = if depthwise { 2 } else { 0 };
    match w.granularity() {
        Granularity::PerTensor => Ok(0),
        Granularity::PerChannel { axis } if axis == channel_axis => Ok(1),
        g => Err(Error::invalid(
            OP,
            format!(
                "the conv weight (shape {:?}) is quantized {g:?}; the INT8 convolution takes \
                 parameters per tensor or per output channel",
                w.shape()
            ),
        )),
    }
}

/// 1 when `q`'s parameters are one per row of its `[rows, cols]` view, 0 when they are
/// one per tensor; an error for any other granularity.
fn row_stride(operand: &str, what: &str, q: &QTensor) -> Result<u32> {
    let layout = q.granularity().layout(OP, q.shape())?;
    if layout.slots == 1 {
        return Ok(0);
    }
    let packed = q.layout();
    if layout.is_per_row(packed.rows, packed.cols) {
        Ok(1)
    } else {
        Err(Error::invalid(
            OP,
            format!(
                "{operand} (shape {:?}) is quantized {:?}; the W8A8 GEMM takes parameters per \
                 tensor or per {what}",
                q.shape(),
                q.granularity()
            ),
        ))
    }
}

/// Records the W8A8 GEMM `out = epilogue(A * W^T)` into `encoder`; see the module docs.
/// `a` is `[.., K]`, `w` is `[N, K]`, `bias` (f32, `N`) and the activation apply to the
/// float and requantized outputs. Nothing is submitted.
pub fn qgemm(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &QGemmDesc,
    a: &QTensor,
    w: &QTensor,
    bias: Option<&Tensor>,
    out: QGemmOutput<'_>,
) -> Result<()> {
    check_8bit("A", a)?;
    check_8bit("W", w)?;
    if w.shape().len() != 2 {
        return Err(Error::shape(
            OP,
            format!("W has shape {:?}; expected [N, K]", w.shape()),
        ));
    }
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let a_shape = a.shape();
    if a_shape.last() != Some(&k) {
        return Err(Error::shape(
            OP,
            format!(
                "A has shape {a_shape:?} and W {:?}: A's last dimension must be K = {k}",
                w.shape()
            ),
        ));
    }
    let mut out_shape = a_shape.to_vec();
    *out_shape.last_mut().expect("A has a last dimension") = n;
    let problem = Problem {
        m: a.layout().rows,
        ncols: n,
        kc: k,
        conv: None,
        depthwise: false,
        out_shape,
    };
    run(ctx, encoder, desc, a, w, bias, out, &problem)
}

/// The slice count and words of K per slice of a split-K run of the W8A8 GEMM with
/// `tile` over `m x n x k`, or `None` to run unsplit: `split_k` 1, K too short for two
/// slices of a word, or scratch larger than one binding.
fn split_k(ctx: &Context, tile: RowTile, m: usize, n: usize, k: usize) -> Option<super::SplitK> {
    super::SplitK::plan(ctx, tile.split_k, k.div_ceil(4), 1, m * n)
}

/// The K slices the W8A8 GEMM with `tile` runs over `m x n x k` (1: unsplit).
pub fn effective_split_k(ctx: &Context, tile: RowTile, m: usize, n: usize, k: usize) -> u32 {
    split_k(ctx, tile, m, n, k).map_or(1, |s| s.splits)
}

/// Validates and records one W8A8 GEMM or convolution whose operand shapes the caller
/// has checked against `problem`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &QGemmDesc,
    a: &QTensor,
    w: &QTensor,
    bias: Option<&Tensor>,
    out: QGemmOutput<'_>,
    problem: &Problem,
) -> Result<()> {
    let (m, n, k) = (problem.m, problem.n(), problem.k());
    let out_shape = &problem.out_shape;
    let a_shape = a.shape();
    let a_stride = row_stride("A", "row", a)?;
    let w_stride = if problem.conv.is_some() {
        conv_weight_stride(w, problem.depthwise)?
    } else {
        row_stride("W", "output channel", w)?
    };
    if problem.conv.is_some() && a_stride != 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "the convolution takes activations quantized per tensor; A (shape {a_shape:?}) \
                 is quantized {:?}",
                a.granularity()
            ),
        ));
    }

    let a_u8 = a.qtype() == QType::U8;
    let w_u8 = w.qtype() == QType::U8;
    // A u8 operand is shifted to i8, which gives it a zero point of -128 even when its
    // own zero point is 0.
    let za = !a.is_symmetric() || a_u8;
    let zw = !w.is_symmetric() || w_u8;
    let limit = max_exact_k(a.qrange(), !a.is_symmetric(), w.qrange(), !w.is_symmetric());
    if k > limit {
        return Err(Error::invalid(
            OP,
            format!(
                "K = {k} exceeds {limit}, the longest reduction whose int32 accumulator is \
                 exact for A codes in {:?}{} and W codes in {:?}{}; split K into chunks of at \
                 most {limit} and add the dequantized results",
                a.qrange(),
                if a.is_symmetric() {
                    ""
                } else {
                    " with zero points"
                },
                w.qrange(),
                if w.is_symmetric() {
                    ""
                } else {
                    " with zero points"
                },
            ),
        ));
    }

    let expect_float = |operand: &'static str, t: &Tensor, dtype: DType| -> Result<()> {
        if t.dtype() != dtype {
            return Err(Error::DType {
                op: OP,
                operand,
                expected: dtype,
                got: t.dtype(),
            });
        }
        if t.shape() != out_shape.as_slice() {
            return Err(Error::shape(
                OP,
                format!(
                    "{operand} has shape {:?}; A {a_shape:?} times W {:?} gives {out_shape:?}",
                    t.shape(),
                    w.shape()
                ),
            ));
        }
        Ok(())
    };
    let (out_code, out_buf, out_name) = match out {
        QGemmOutput::F32(t) => {
            expect_float("output", t, DType::F32)?;
            (0u32, t.buffer(), t)
        }
        QGemmOutput::F16(t) => {
            expect_float("output", t, DType::F16)?;
            (1, t.buffer(), t)
        }
        QGemmOutput::I32(t) => {
            expect_float("output", t, DType::I32)?;
            if bias.is_some() || desc.activation != Activation::None {
                return Err(Error::invalid(
                    OP,
                    "the i32 output is the raw accumulator: it takes no bias and no activation",
                ));
            }
            (2, t.buffer(), t)
        }
        QGemmOutput::Quantized(q) => {
            check_8bit("output", q)?;
            if q.shape() != out_shape.as_slice() {
                return Err(Error::shape(
                    OP,
                    format!(
                        "the quantized output has shape {:?}; A {a_shape:?} times W {:?} gives \
                         {out_shape:?}",
                        q.shape(),
                        w.shape()
                    ),
                ));
            }
            (3, q.data().buffer(), q.data())
        }
    };
    let (out_scale, out_zero, (out_qmin, out_qmax)) = match out {
        QGemmOutput::Quantized(q) => {
            let params = q
                .static_params()
                .filter(|p| p.scales.len() == 1)
                .ok_or_else(|| {
                    Error::invalid(
                    OP,
                    "a requantized output needs static per-tensor parameters (QTensor::new with \
                     a per-tensor QuantParams): its scale and zero point are fixed at \
                     calibration",
                )
                })?;
            (params.scales[0], params.zero_points[0], q.qrange())
        }
        _ => (1.0, 0, (0, 0)),
    };
    super::check_bias(OP, bias, n)?;
    let inputs = [
        ("A", a.data()),
        ("A scales", a.scales()),
        ("A zero points", a.zero_points()),
        ("W", w.data()),
        ("W scales", w.scales()),
        ("W zero points", w.zero_points()),
    ];
    for (name, t) in inputs.iter().copied().chain(bias.map(|b| ("bias", b))) {
        if t.buffer() == out_buf {
            return Err(Error::invalid(
                OP,
                format!("the output shares its buffer with {name}"),
            ));
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        return Err(Error::shape(OP, "K must be at least 1"));
    }

    let caps = ctx.capabilities();
    let dot4 = match desc.packed_dot {
        Some(true) if !caps.packed_int8_dot => {
            return Err(Error::MissingFeature {
                op: OP,
                feature: "the packed_4x8_integer_dot_product WGSL language feature",
                adapter: caps.adapter.name.clone(),
            })
        }
        Some(p) => p,
        None => caps.packed_int8_dot,
    };
    let cfg = desc.config.unwrap_or_else(|| {
        crate::plan::qgemm_config(ctx, m, problem.ncols, k, problem.conv.is_some())
    });
    cfg.check(ctx, OP)?;
    if problem.conv.is_some() && cfg.split_k != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "tile {cfg:?}: split-K applies to the GEMM only; a convolution's tile takes                  split_k = 1"
            ),
        ));
    }
    let geom = problem.conv;
    let to_u32 = |what: &str, v: usize| to_u32(OP, what, v);
    to_u32("elements of the output", m * n)?;
    to_u32("bytes of A", a.data().numel() * 4)?;
    let groups = problem.groups();
    let tail = problem.kc % 4;
    let params = Params {
        m: to_u32("M", m)?,
        n: to_u32("N", n)?,
        k: to_u32("K", k)?,
        kw: to_u32("words per row", problem.kc.div_ceil(4))?,
        // Per piece, with m, ncols, row_blocks and a_words.
        groups_x: 0,
        flags: u32::from(bias.is_some()) | (desc.activation.code() << 1),
        a_xor: if a_u8 { 0x8080_8080 } else { 0 },
        w_xor: if w_u8 { 0x8080_8080 } else { 0 },
        tail_mask: if tail == 0 {
            u32::MAX
        } else {
            (1u32 << (8 * tail)) - 1
        },
        a_row_stride: a_stride,
        w_col_stride: w_stride,
        a_shift: if a_u8 { 128 } else { 0 },
        w_shift: if w_u8 { 128 } else { 0 },
        out_qmin,
        out_qmax,
        out_zero,
        out_scale,
        out_words_per_row: to_u32("output words per row", n.div_ceil(4))?,
        opaque_zero: 0,
        kc: to_u32("K", problem.kc)?,
        taps: to_u32("kernel taps", problem.taps())?,
        ncols: to_u32("N", problem.ncols)?,
        groups: to_u32("groups", groups)?,
        row_blocks: 0,
        win: geom.map_or(Ok(WindowParams::default()), |g| WindowParams::new(OP, &g))?,
        pix_words: to_u32(
            "words per pixel",
            geom.map_or(0, |g| g.channels.div_ceil(4)),
        )?,
        a_words: 0,
        byte_out: u32::from(groups > 1 && !problem.ncols.is_multiple_of(4)),
        splits: 1,
        slice_words: to_u32("words per row", problem.kc.div_ceil(4))?,
    };

    // Operands over the binding limit run in pieces (module docs): GEMM rows and weight
    // rows (output columns), convolution images. Each operand lists its bytes per unit of
    // the row axis and of the column axis; one that grows along neither must fit whole.
    let out_elem: u64 = match out_code {
        1 => 2,
        3 => 1,
        _ => 4,
    };
    let out_row = match out_code {
        3 => 4 * u64::from(params.out_words_per_row),
        _ => out_elem * n as u64,
    };
    let (plane, images) = match geom {
        Some(g) => (
            g.out_h * g.out_w,
            g.in_h * g.in_w * g.channels.div_ceil(4) * 4,
        ),
        None => (1, 0),
    };
    let per_row = |stride: u32| 4 * u64::from(stride);
    let gemm = geom.is_none();
    // Per-row A parameters and the column axis split only in the GEMM.
    let row = |b: u64| if gemm { b } else { 0 };
    let col = row;
    use super::Operand as O;
    let a_unit = if gemm {
        4 * problem.kc.div_ceil(4) as u64
    } else {
        images as u64
    };
    let pieces = super::split(
        ctx,
        OP,
        [if gemm { "rows" } else { "images" }, "output columns"],
        (m / plane, n),
        &[
            O::tensor("A", a.data(), a_unit, 0),
            O::tensor("A scales", a.scales(), row(per_row(a_stride)), 0),
            O::tensor("A zero points", a.zero_points(), row(per_row(a_stride)), 0),
            O::tensor("W", w.data(), 0, col(4 * problem.kc.div_ceil(4) as u64)),
            O::tensor("W scales", w.scales(), 0, col(per_row(w_stride))),
            O::tensor("W zero points", w.zero_points(), 0, col(per_row(w_stride))),
            O::optional(ctx, "bias", bias, 0, col(4)),
            O::tensor("output", out_name, out_row * plane as u64, col(out_elem)),
        ],
    )?;
    if let (true, [piece]) = (gemm, &pieces[..]) {
        if let Some(sk) = split_k(ctx, cfg, m, n, problem.kc) {
            // Parallel split-K: each slice's exact partial result (i32, zero-point
            // corrections included) into a dense scratch, then a reduce pass that adds them
            // and runs the requested epilogue.
            let scratch = sk.scratch(ctx, "qgemm split-k")?;
            let (splits, slice_words) = (sk.splits, sk.per);
            let groups_x = (n as u64).div_ceil(u64::from(cfg.columns()));
            let row_blocks = (m as u64).div_ceil(u64::from(cfg.tm));
            let base = Params {
                groups_x: to_u32("workgroups per row block", groups_x as usize)?,
                row_blocks: to_u32("row blocks", row_blocks as usize)?,
                a_words: to_u32(
                    "words of A",
                    super::bound_words(&piece.res[0], a.data().buffer().size()) as usize,
                )?,
                splits,
                slice_words,
                ..params
            };
            let mut res = piece.res.clone();
            res[7] = super::Res::whole(&scratch);
            let partial = ctx.kernel(&variant(cfg, dot4, za, zw, 2, false, false))?;
            let tiles = groups_x * row_blocks;
            let grid = super::grid_for(ctx, OP, tiles * u64::from(splits))?;
            super::record_resources(
                ctx,
                encoder,
                OP,
                &partial,
                bytemuck::bytes_of(&base),
                &res,
                grid,
            )?;
            let mut res = piece.res.clone();
            res[0] = super::Res::whole(&scratch);
            let reduce = ctx.kernel(&variant(cfg, false, false, false, out_code, false, true))?;
            return super::record_resources(
                ctx,
                encoder,
                OP,
                &reduce,
                bytemuck::bytes_of(&base),
                &res,
                super::grid_for(ctx, OP, tiles)?,
            );
        }
    }
    let kernel = if problem.depthwise {
        ctx.kernel(&dw_q8_variant(out_code))?
    } else {
        ctx.kernel(&variant(cfg, dot4, za, zw, out_code, geom.is_some(), false))?
    };
    for piece in pieces {
        let res = piece.res;
        // Output rows of the piece; output columns per group (a GEMM piece's columns).
        let (mp, np) = (
            piece.rows * plane,
            if gemm { piece.cols } else { problem.ncols },
        );
        if let (true, Some(g)) = (problem.depthwise, geom) {
            let dw = DwQ8Params {
                base: DwParams::new(OP, &g, mp, n, params.flags)?,
                pix_words: params.pix_words,
                a_signed: u32::from(!a_u8),
                w_signed: u32::from(!w_u8),
                a_row_stride: 0,
                w_col_stride: w_stride,
                out_qmin,
                out_qmax,
                out_zero,
                out_scale,
                out_words_per_row: params.out_words_per_row,
                opaque_zero: 0,
                _pad: [0; 3],
            };
            let grid = dw.base.grid(ctx, OP)?;
            super::record_resources(
                ctx,
                encoder,
                OP,
                &kernel,
                bytemuck::bytes_of(&dw),
                &res,
                grid,
            )?;
            continue;
        }
        let groups_x = (np as u64).div_ceil(u64::from(cfg.columns()));
        let row_blocks = (mp as u64).div_ceil(u64::from(cfg.tm));
        let grid = super::grid_for(ctx, OP, groups_x * row_blocks * groups as u64)?;
        let part = Params {
            m: to_u32("M", mp)?,
            ncols: to_u32("N", np)?,
            groups_x: to_u32("workgroups per row block", groups_x as usize)?,
            row_blocks: to_u32("row blocks", row_blocks as usize)?,
            a_words: to_u32(
                "words of A",
                super::bound_words(&res[0], a.data().buffer().size()) as usize,
            )?,
            ..params
        };
        super::record_resources(
            ctx,
            encoder,
            OP,
            &kernel,
            bytemuck::bytes_of(&part),
            &res,
            grid,
        )?;
    }
    Ok(())
}

/// A Linear layer with int8 weights and dynamically quantized int8 activations, like
/// PyTorch's `quantize_dynamic`: each call quantizes its f32/f16 input per row on the GPU
/// ([`DynamicQuant::per_row_i8`]), runs the W8A8 GEMM and writes f32 or f16.
#[derive(Debug, Clone)]
pub struct QLinear {
    weight: QTensor,
    bias: Option<Tensor>,
    activation: Activation,
    spec: DynamicQuant,
    /// The quantized activations of the last `forward`, reused while the input shape
    /// stays the same (so a layer run every frame allocates nothing after the first).
    scratch: std::sync::Arc<std::sync::Mutex<Option<QTensor>>>,
}

impl QLinear {
    /// Quantizes an f32 `[n, k]` weight (row-major, PyTorch's Linear layout) to i8 with
    /// one symmetric scale per output channel and uploads it with the optional bias.
    pub fn from_f32(
        ctx: &Context,
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> Result<QLinear> {
        const OPL: &str = "QLinear::from_f32";
        if weight.len() != n * k {
            return Err(Error::shape(
                OPL,
                format!(
                    "weight has {} values; [n, k] = [{n}, {k}] needs {}",
                    weight.len(),
                    n * k
                ),
            ));
        }
        let scheme = QuantScheme::symmetric(QType::I8).per_channel(0);
        let params = QuantParams::from_data(&scheme, &[n, k], weight)?;
        let codes = params.quantize(weight)?;
        let weight = QTensor::from_codes(ctx, &params, &codes)?;
        let bias = match bias {
            Some(b) if b.len() != n => {
                return Err(Error::shape(
                    OPL,
                    format!("bias has {} values; expected n = {n}", b.len()),
                ))
            }
            Some(b) => Some(Tensor::from_slice(ctx, &[n], b)?),
            None => None,
        };
        QLinear::new(weight, bias)
    }

    /// A layer from an already quantized `[N, K]` weight (i8 or u8, per tensor or per
    /// output channel) and an optional f32 bias of `N` values.
    pub fn new(weight: QTensor, bias: Option<Tensor>) -> Result<QLinear> {
        const OPL: &str = "QLinear::new";
        check_8bit("weight", &weight)?;
        if weight.shape().len() != 2 {
            return Err(Error::shape(
                OPL,
                format!("weight has shape {:?}; expected [N, K]", weight.shape()),
            ));
        }
        row_stride("weight", "output channel", &weight)?;
        if let Some(b) = &bias {
            if b.numel() != weight.shape()[0] || b.dtype() != DType::F32 {
                return Err(Error::shape(
                    OPL,
                    format!(
                        "bias is {} {:?}; expected f32 with N = {} elements",
                        b.dtype(),
                        b.shape(),
                        weight.shape()[0]
                    ),
                ));
            }
        }
        Ok(QLinear {
            weight,
            bias,
            activation: Activation::None,
            spec: DynamicQuant::per_row_i8(),
            scratch: Default::default(),
        })
    }

    /// The same layer with a fused activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The same layer with another dynamic activation scheme (e.g. ONNX's per-tensor u8,
    /// [`DynamicQuant::onnx`]); per-group schemes are refused when the layer runs.
    pub fn with_activation_quant(mut self, spec: DynamicQuant) -> Self {
        self.spec = spec;
        self
    }

    /// The quantized weight.
    pub fn weight(&self) -> &QTensor {
        &self.weight
    }

    /// `(N, K)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.weight.shape()[0], self.weight.shape()[1])
    }

    /// Records `y = act(dequant(quant(x) * W^T) + bias)`: `x` is f32 or f16 `[.., K]`,
    /// `y` is f32 or f16 `[.., N]`. Allocates the quantized copy of `x` per call.
    pub fn forward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<()> {
        if matches!(self.spec.scheme.granularity, Granularity::PerGroup { .. }) {
            return Err(Error::invalid(
                "QLinear::forward",
                "activations are quantized per tensor or per row",
            ));
        }
        let xq = {
            let mut slot = self.scratch.lock().expect("QLinear scratch");
            match slot.as_ref() {
                Some(q) if q.shape() == x.shape() => q.clone(),
                _ => {
                    let q = QTensor::for_dynamic(ctx, &self.spec, x.shape())?;
                    *slot = Some(q.clone());
                    q
                }
            }
        };
        dynamic_quantize(ctx, encoder, x, &self.spec, &xq)?;
        let out = match y.dtype() {
            DType::F16 => QGemmOutput::F16(y),
            _ => QGemmOutput::F32(y),
        };
        qgemm(
            ctx,
            encoder,
            &QGemmDesc::default().activation(self.activation),
            &xq,
            &self.weight,
            self.bias.as_ref(),
            out,
        )
    }
}
