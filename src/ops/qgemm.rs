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
//! The dynamically quantized Linear layer built on it is [`crate::model::QLinear`].

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::conv::{dw_q8_variant, WindowParams};
use crate::ops::gemm::Activation;
use crate::ops::quant::QTensor;
use crate::ops::{to_u32, RowTile};
use crate::plan;
use crate::quant::{Granularity, QType};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

pub use crate::desc::qgemm::{QGemmDesc, TILES};

const OP: &str = "qgemm";

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

impl QGemmOutput<'_> {
    /// The tensor written (a requantized output's codes).
    pub fn tensor(&self) -> &Tensor {
        match self {
            QGemmOutput::F32(t) | QGemmOutput::F16(t) | QGemmOutput::I32(t) => t,
            QGemmOutput::Quantized(q) => q.data(),
        }
    }

    /// The output's logical shape (a requantized output's, not its packed words').
    pub fn shape(&self) -> &[usize] {
        match self {
            QGemmOutput::F32(t) | QGemmOutput::F16(t) | QGemmOutput::I32(t) => t.shape(),
            QGemmOutput::Quantized(q) => q.shape(),
        }
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

crate::shaders::uniform! {
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
}
const _: () = assert!(std::mem::size_of::<Params>() == 160);

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

/// A's binding and its accessor: a storage array, or a uniform block of
/// [`plan::X_UNIFORM_BYTES`] (4096 vec4s) with A's codes bound unused at binding 9, so
/// that binding validates them as it validates every other operand.
const A_STORAGE: &str = "@group(0) @binding(1) var<storage, read> a: array<u32>;\n\
    fn a_at(i: u32) -> u32 { return a[i]; }";
const A_UNIFORM: &str = "@group(0) @binding(1) var<uniform> a: array<vec4<u32>, 4096>;\n\
    @group(0) @binding(9) var<storage, read> a_source: array<u32>;\n\
    fn a_at(i: u32) -> u32 { return a[i >> 2u][i & 3u]; }";
const _: () = assert!(plan::X_UNIFORM_BYTES == 4096 * 16);

/// The W8A8 kernel; `reduce` is split-K's second pass (GEMM only, without zero points),
/// `w4` reads W four words at a time, `ua` reads A from a uniform block.
#[allow(clippy::too_many_arguments)]
fn variant(
    cfg: RowTile,
    dot4: bool,
    za: bool,
    zw: bool,
    out: u32,
    conv: bool,
    reduce: bool,
    (w4, ua): (bool, bool),
) -> ShaderVariant {
    ShaderVariant::new(
        if ua {
            ShaderFile::QGemmUniformA
        } else {
            ShaderFile::QGemm
        },
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
            ("W4", Def::Bool(w4)),
            // W's element type and accessors, as in wgemm.wgsl.
            if w4 {
                ("W_VEC4", Def::Code(super::wgemm::W_VEC4))
            } else {
                ("W_U32", Def::Code(super::wgemm::W_U32))
            },
            if ua {
                ("A_UNIFORM", Def::Code(A_UNIFORM))
            } else {
                ("A_STORAGE", Def::Code(A_STORAGE))
            },
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
                            for w4 in [false, true] {
                                v.push(variant(cfg, dot4, za, zw, out, conv, false, (w4, false)));
                            }
                        }
                        // A uniform block: GEMMs only.
                        for w4 in [false, true] {
                            v.push(variant(cfg, dot4, za, zw, out, false, false, (w4, true)));
                        }
                    }
                }
            }
        }
        for out in 0..4 {
            v.push(variant(
                cfg,
                false,
                false,
                false,
                out,
                false,
                true,
                (false, false),
            ));
        }
    }
    v
}

pub(crate) fn check_8bit(operand: &'static str, q: &QTensor) -> Result<()> {
    check_8bit_for(OP, operand, q)
}

/// [`check_8bit`] with errors naming `op`.
pub(crate) fn check_8bit_for(op: &'static str, operand: &'static str, q: &QTensor) -> Result<()> {
    if !matches!(q.qtype(), QType::I8 | QType::U8) {
        return Err(Error::invalid(
            op,
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
pub(crate) fn row_stride(operand: &str, what: &str, q: &QTensor) -> Result<u32> {
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
    super::check_devices(
        ctx,
        OP,
        &[
            ("A", Some(a.data())),
            ("W", Some(w.data())),
            ("bias", bias),
            ("output", Some(out.tensor())),
        ],
    )?;
    check_8bit("A", a)?;
    check_8bit("W", w)?;
    if w.shape().len() != 2 {
        return Err(Error::shape(
            OP,
            format!("W has shape {:?}; expected [N, K]", w.shape()),
        ));
    }
    let (n, k) = (w.shape()[0], w.shape()[1]);
    check_nk(OP, "W", w.shape())?;
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

/// Refuses an empty weight: `K = 0` would leave the output unwritten (an empty sum is
/// not computed, the same in every op), and `N = 0` has no output.
pub(crate) fn check_nk(op: &'static str, operand: &str, w_shape: &[usize]) -> Result<()> {
    if w_shape.contains(&0) {
        return Err(Error::shape(
            op,
            format!(
                "{operand} has shape {w_shape:?}: N and K must be at least 1 (K = 0 is an empty \
                 sum, refused as by every op)"
            ),
        ));
    }
    Ok(())
}

/// A requantized output's scale, zero point and code range.
type Requant = (f32, i32, (i32, i32));

/// What [`validate`] established about one W8A8 launch's operands.
struct Checked<'a> {
    /// Parameters per row of A (1) or per tensor (0).
    a_stride: u32,
    /// Parameters per output channel of W (1) or per tensor (0).
    w_stride: u32,
    a_u8: bool,
    w_u8: bool,
    /// The output form: 0 f32, 1 f16, 2 i32, 3 requantized 8-bit codes.
    out_code: u32,
    /// The tensor the output is written to (a requantized output's codes).
    out: &'a Tensor,
    /// A requantized output's scale, zero point and code range.
    requant: Requant,
}

/// The K bound of [`max_exact_k`], as an error naming the operands' ranges.
fn check_exact_k(a: &QTensor, w: &QTensor, k: usize) -> Result<()> {
    let limit = max_exact_k(a.qrange(), !a.is_symmetric(), w.qrange(), !w.is_symmetric());
    if k <= limit {
        return Ok(());
    }
    let zp = |q: &QTensor| {
        if q.is_symmetric() {
            ""
        } else {
            " with zero points"
        }
    };
    Err(Error::invalid(
        OP,
        format!(
            "K = {k} exceeds {limit}, the longest reduction whose int32 accumulator is \
             exact for A codes in {:?}{} and W codes in {:?}{}; split K into chunks of at \
             most {limit} and add the dequantized results",
            a.qrange(),
            zp(a),
            w.qrange(),
            zp(w),
        ),
    ))
}

/// ONNX's requantization: a requantized output, no activation, an i32 bias `[N]`.
fn check_onnx_requant(
    desc: &QGemmDesc,
    bias: Option<&Tensor>,
    out_code: u32,
    n: usize,
) -> Result<()> {
    if out_code != 3 {
        return Err(Error::invalid(
            OP,
            "onnx_requant rounds a requantized output: give QGemmOutput::Quantized",
        ));
    }
    if desc.activation != Activation::None {
        return Err(Error::invalid(
            OP,
            format!(
                "onnx_requant takes no activation (ONNX's QLinear ops have none), got {:?}",
                desc.activation
            ),
        ));
    }
    if let Some(b) = bias {
        if b.dtype() != DType::I32 {
            return Err(Error::DType {
                op: OP,
                operand: "bias",
                expected: DType::I32,
                got: b.dtype(),
            });
        }
        if b.shape() != [n] {
            return Err(Error::shape(
                OP,
                format!("bias has shape {:?}; expected [N] with N = {n}", b.shape()),
            ));
        }
    }
    Ok(())
}

/// The output's form and tensor, checked against the product's shape.
fn check_output<'a>(
    desc: &QGemmDesc,
    bias: Option<&Tensor>,
    out: QGemmOutput<'a>,
    a_shape: &[usize],
    w_shape: &[usize],
    out_shape: &[usize],
) -> Result<(u32, &'a Tensor, Requant)> {
    let float = |operand: &'static str, t: &Tensor, dtype: DType| -> Result<()> {
        if t.dtype() != dtype {
            return Err(Error::DType {
                op: OP,
                operand,
                expected: dtype,
                got: t.dtype(),
            });
        }
        if t.shape() != out_shape {
            return Err(Error::shape(
                OP,
                format!(
                    "{operand} has shape {:?}; A {a_shape:?} times W {w_shape:?} gives \
                     {out_shape:?}",
                    t.shape(),
                ),
            ));
        }
        Ok(())
    };
    let none = (1.0, 0, (0, 0));
    match out {
        QGemmOutput::F32(t) => float("output", t, DType::F32).map(|_| (0, t, none)),
        QGemmOutput::F16(t) => float("output", t, DType::F16).map(|_| (1, t, none)),
        QGemmOutput::I32(t) => {
            float("output", t, DType::I32)?;
            if bias.is_some() || desc.activation != Activation::None {
                return Err(Error::invalid(
                    OP,
                    "the i32 output is the raw accumulator: it takes no bias and no activation",
                ));
            }
            Ok((2, t, none))
        }
        QGemmOutput::Quantized(q) => {
            check_8bit("output", q)?;
            if q.shape() != out_shape {
                return Err(Error::shape(
                    OP,
                    format!(
                        "the quantized output has shape {:?}; A {a_shape:?} times W \
                         {w_shape:?} gives {out_shape:?}",
                        q.shape(),
                    ),
                ));
            }
            let params = q
                .static_params()
                .filter(|p| p.scales.len() == 1)
                .ok_or_else(|| {
                    Error::invalid(
                        OP,
                        "a requantized output needs static per-tensor parameters (QTensor::new \
                         with a per-tensor QuantParams): its scale and zero point are fixed at \
                         calibration",
                    )
                })?;
            Ok((
                3,
                q.data(),
                (params.scales[0], params.zero_points[0], q.qrange()),
            ))
        }
    }
}

/// Every check of one W8A8 launch that needs no device: parameter granularities, the
/// int32 bound, the output, the bias and aliasing.
fn validate<'a>(
    desc: &QGemmDesc,
    a: &QTensor,
    w: &QTensor,
    bias: Option<&Tensor>,
    out: QGemmOutput<'a>,
    problem: &Problem,
) -> Result<Checked<'a>> {
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
                "the convolution takes activations quantized per tensor; A (shape {:?}) is \
                 quantized {:?}",
                a.shape(),
                a.granularity()
            ),
        ));
    }
    check_exact_k(a, w, problem.k())?;
    let (out_code, out, requant) =
        check_output(desc, bias, out, a.shape(), w.shape(), &problem.out_shape)?;
    if desc.onnx_requant {
        check_onnx_requant(desc, bias, out_code, problem.n())?;
    } else {
        super::check_bias(OP, bias, problem.n())?;
    }
    let inputs = [
        ("A", a.data()),
        ("A scales", a.scales()),
        ("A zero points", a.zero_points()),
        ("W", w.data()),
        ("W scales", w.scales()),
        ("W zero points", w.zero_points()),
    ];
    for (name, t) in inputs.iter().copied().chain(bias.map(|b| ("bias", b))) {
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                OP,
                format!("the output shares its buffer with {name}"),
            ));
        }
    }
    if problem.k() == 0 && problem.m > 0 && problem.n() > 0 {
        return Err(Error::shape(OP, "K must be at least 1"));
    }
    Ok(Checked {
        a_stride,
        w_stride,
        a_u8: a.qtype() == QType::U8,
        w_u8: w.qtype() == QType::U8,
        out_code,
        out,
        requant,
    })
}

/// The launch plan of one W8A8 GEMM or convolution: the kernel's constants, its tile and
/// its passes. A plain value: [`plan_launch`] computes it from the capabilities alone
/// (with the tile given), so it can be printed and tested without a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QGemmLaunch {
    /// Rows x columns per invocation, workgroup and split-K request.
    pub tile: RowTile,
    /// `dot4I8Packed` (else the unpacked integer fallback).
    pub packed_dot: bool,
    /// A has zero points to correct for (asymmetric, or u8 shifted to i8).
    pub zero_a: bool,
    /// W has zero points to correct for.
    pub zero_w: bool,
    /// The output form: 0 f32, 1 f16, 2 i32, 3 requantized 8-bit codes.
    pub out: u32,
    /// An implicit-GEMM convolution (else a GEMM).
    pub conv: bool,
    /// A depthwise convolution (its own kernel).
    pub depthwise: bool,
    /// The parallel split-K run (GEMMs that fit one binding only), or `None`.
    pub split_k: Option<crate::plan::split::SplitK>,
    /// W is read four words at a time (words per row, and per split-K slice, multiples
    /// of 4).
    pub quad_w: bool,
    /// A GEMM reads A from a uniform copy ([`QGemmDesc::uniform_a`]).
    pub uniform_a: bool,
}

impl QGemmLaunch {
    /// The shader variant of the main pass (the partial sums under split-K).
    pub fn variant(&self) -> ShaderVariant {
        if self.depthwise {
            return dw_q8_variant(self.out);
        }
        let out = if self.split_k.is_some() { 2 } else { self.out };
        variant(
            self.tile,
            self.packed_dot,
            self.zero_a,
            self.zero_w,
            out,
            self.conv,
            false,
            (self.quad_w, self.uniform_a),
        )
    }

    /// The shader variant of split-K's reduce pass, if there is one.
    pub fn reduce_variant(&self) -> Option<ShaderVariant> {
        self.split_k.map(|_| {
            let plain = (false, false);
            variant(self.tile, false, false, false, self.out, false, true, plain)
        })
    }
}

/// Resolves the launch of a W8A8 problem with `tile` on a device with `caps`: the packed
/// dot product where requested and available, the zero-point corrections the operands
/// need, and split-K for a GEMM (which runs only when its operands fit one binding).
#[allow(clippy::too_many_arguments)]
pub fn plan_launch(
    caps: &crate::Capabilities,
    desc: &QGemmDesc,
    tile: RowTile,
    (zero_a, zero_w): (bool, bool),
    out: u32,
    (m, n, kc): (usize, usize, usize),
    conv: bool,
    depthwise: bool,
) -> Result<QGemmLaunch> {
    let packed_dot = match desc.packed_dot {
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
    tile.check(caps, OP)?;
    if conv && tile.split_k != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "tile {tile:?}: split-K applies to the GEMM only; a convolution's tile takes \
                 split_k = 1"
            ),
        ));
    }
    let split_k = if conv {
        None
    } else {
        crate::plan::split::qgemm_split_k(caps, tile, m, n, kc)
    };
    let quad_w = kc.div_ceil(4).is_multiple_of(4) && split_k.is_none_or(|sk| sk.per % 4 == 0);
    let uniform_a = match desc.uniform_a {
        Some(true) if conv => {
            return Err(Error::invalid(
                OP,
                "uniform_a: a convolution reads its input windows from storage; uniform_a \
                 applies to the GEMM",
            ))
        }
        Some(pin) => pin,
        None => !conv && crate::plan::qgemm_uniform_a(caps, m, kc),
    };
    Ok(QGemmLaunch {
        tile,
        packed_dot,
        zero_a,
        zero_w,
        out,
        conv,
        depthwise,
        split_k,
        quad_w,
        uniform_a,
    })
}

/// The uniform block shared by every piece and pass (the per-piece fields stay 0).
fn base_params(
    desc: &QGemmDesc,
    a: &QTensor,
    bias: Option<&Tensor>,
    problem: &Problem,
    c: &Checked,
) -> Result<Params> {
    let (m, n, k) = (problem.m, problem.n(), problem.k());
    let geom = problem.conv;
    let to_u32 = |what: &str, v: usize| to_u32(OP, what, v);
    to_u32("elements of the output", m * n)?;
    to_u32("bytes of A", a.data().numel() * 4)?;
    let groups = problem.groups();
    let tail = problem.kc % 4;
    let (out_scale, out_zero, (out_qmin, out_qmax)) = c.requant;
    Ok(Params {
        m: to_u32("M", m)?,
        n: to_u32("N", n)?,
        k: to_u32("K", k)?,
        kw: to_u32("words per row", problem.kc.div_ceil(4))?,
        // Per piece, with m, ncols, row_blocks and a_words.
        groups_x: 0,
        flags: u32::from(bias.is_some())
            | (desc.activation.code() << 1)
            | (u32::from(desc.onnx_requant) << 3),
        a_xor: if c.a_u8 { 0x8080_8080 } else { 0 },
        w_xor: if c.w_u8 { 0x8080_8080 } else { 0 },
        tail_mask: if tail == 0 {
            u32::MAX
        } else {
            (1u32 << (8 * tail)) - 1
        },
        a_row_stride: c.a_stride,
        w_col_stride: c.w_stride,
        a_shift: if c.a_u8 { 128 } else { 0 },
        w_shift: if c.w_u8 { 128 } else { 0 },
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
    })
}

/// The pieces the operands are bound in (module docs): GEMM rows and weight rows (output
/// columns), convolution images. Each operand lists its bytes per unit of the row axis
/// and of the column axis; one that grows along neither must fit whole.
fn windows<'a>(
    ctx: &'a Context,
    a: &'a QTensor,
    w: &'a QTensor,
    bias: Option<&'a Tensor>,
    problem: &Problem,
    c: &Checked<'a>,
    out_words_per_row: u32,
) -> Result<Vec<super::Split<'a>>> {
    let n = problem.n();
    let out_elem: u64 = match c.out_code {
        1 => 2,
        3 => 1,
        _ => 4,
    };
    let out_row = match c.out_code {
        3 => 4 * u64::from(out_words_per_row),
        _ => out_elem * n as u64,
    };
    let (plane, images) = match problem.conv {
        Some(g) => (
            g.out_h * g.out_w,
            g.in_h * g.in_w * g.channels.div_ceil(4) * 4,
        ),
        None => (1, 0),
    };
    let per_row = |stride: u32| 4 * u64::from(stride);
    let gemm = problem.conv.is_none();
    // Per-row A parameters and the column axis split only in the GEMM.
    let row = |b: u64| if gemm { b } else { 0 };
    let col = row;
    use super::Operand as O;
    let a_unit = if gemm {
        4 * problem.kc.div_ceil(4) as u64
    } else {
        images as u64
    };
    super::split(
        ctx,
        OP,
        [if gemm { "rows" } else { "images" }, "output columns"],
        (problem.m / plane, n),
        &[
            O::tensor("A", a.data(), a_unit, 0),
            O::tensor("A scales", a.scales(), row(per_row(c.a_stride)), 0),
            O::tensor(
                "A zero points",
                a.zero_points(),
                row(per_row(c.a_stride)),
                0,
            ),
            O::tensor("W", w.data(), 0, col(4 * problem.kc.div_ceil(4) as u64)),
            O::tensor("W scales", w.scales(), 0, col(per_row(c.w_stride))),
            O::tensor(
                "W zero points",
                w.zero_points(),
                0,
                col(per_row(c.w_stride)),
            ),
            O::optional(ctx, "bias", bias, 0, col(4)),
            O::tensor("output", c.out, out_row * plane as u64, col(out_elem)),
        ],
    )
}

/// Records a split-K run: each slice's exact partial result (i32, zero-point corrections
/// included) into a dense scratch, then a reduce pass that adds them and runs the
/// requested epilogue.
#[allow(clippy::too_many_arguments)]
fn record_split_k(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    launch: &QGemmLaunch,
    sk: &crate::plan::split::SplitK,
    params: &Params,
    piece: &super::Split,
    a: &QTensor,
    (m, n): (usize, usize),
) -> Result<()> {
    let scratch = super::split_scratch(ctx, sk, "qgemm split-k")?;
    let cfg = launch.tile;
    let groups_x = (n as u64).div_ceil(u64::from(cfg.columns()));
    let row_blocks = (m as u64).div_ceil(u64::from(cfg.tm));
    let base = Params {
        groups_x: to_u32(OP, "workgroups per row block", groups_x as usize)?,
        row_blocks: to_u32(OP, "row blocks", row_blocks as usize)?,
        a_words: to_u32(
            OP,
            "words of A",
            super::bound_words(&piece.res[0], a.data().buffer().size()) as usize,
        )?,
        splits: sk.splits,
        slice_words: sk.per,
        ..*params
    };
    let tiles = groups_x * row_blocks;
    let mut res = piece.res.clone();
    res[7] = super::Res::whole(&scratch);
    let partial = ctx.kernel(&launch.variant())?;
    let grid = super::grid_for(ctx, OP, tiles * u64::from(sk.splits))?;
    let bytes = bytemuck::bytes_of(&base);
    super::record_resources(ctx, encoder, OP, &partial, bytes, &res, grid)?;
    // The reduce pass binds the storage layout: no unused A source (uniform A).
    let mut res = piece.res[..8].to_vec();
    res[0] = super::Res::whole(&scratch);
    let reduce_variant = launch
        .reduce_variant()
        .ok_or_else(|| Error::invalid(OP, "a split-K launch without a reduce pass"))?;
    let reduce = ctx.kernel(&reduce_variant)?;
    let grid = super::grid_for(ctx, OP, tiles)?;
    super::record_resources(ctx, encoder, OP, &reduce, bytes, &res, grid)
}

/// Records one piece of a W8A8 GEMM or implicit-GEMM convolution: `rows` output rows of
/// `ncols` columns per group.
#[allow(clippy::too_many_arguments)]
fn record_piece(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &crate::context::Kernel,
    params: &Params,
    tile: RowTile,
    (rows, ncols, groups): (usize, usize, usize),
    res: &[super::Res],
    a: &QTensor,
) -> Result<()> {
    let groups_x = (ncols as u64).div_ceil(u64::from(tile.columns()));
    let row_blocks = (rows as u64).div_ceil(u64::from(tile.tm));
    let grid = super::grid_for(ctx, OP, groups_x * row_blocks * groups as u64)?;
    let part = Params {
        m: to_u32(OP, "M", rows)?,
        ncols: to_u32(OP, "N", ncols)?,
        groups_x: to_u32(OP, "workgroups per row block", groups_x as usize)?,
        row_blocks: to_u32(OP, "row blocks", row_blocks as usize)?,
        a_words: to_u32(
            OP,
            "words of A",
            super::bound_words(&res[0], a.data().buffer().size()) as usize,
        )?,
        ..*params
    };
    super::record_resources(
        ctx,
        encoder,
        OP,
        kernel,
        bytemuck::bytes_of(&part),
        res,
        grid,
    )
}

/// Validates and records one W8A8 GEMM or convolution whose operand shapes the caller
/// has checked against `problem`: validate, resolve the launch plan, record.
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
    let checked = validate(desc, a, w, bias, out, problem)?;
    let (m, n, k) = (problem.m, problem.n(), problem.k());
    if m == 0 || n == 0 {
        return Ok(());
    }
    let conv = problem.conv.is_some();
    let tile = desc
        .config
        .unwrap_or_else(|| plan::qgemm_config(ctx, m, problem.ncols, k, conv));
    // A u8 operand is shifted to i8, which gives it a zero point of -128 even when its
    // own zero point is 0.
    let zeros = (
        !a.is_symmetric() || checked.a_u8,
        !w.is_symmetric() || checked.w_u8,
    );
    let mut launch = plan_launch(
        ctx.capabilities(),
        desc,
        tile,
        zeros,
        checked.out_code,
        (m, n, problem.kc),
        conv,
        problem.depthwise,
    )?;
    let params = base_params(desc, a, bias, problem, &checked)?;
    let pieces = windows(ctx, a, w, bias, problem, &checked, params.out_words_per_row)?;
    if pieces.len() != 1 {
        // Split-K needs the whole problem in one binding each.
        launch.split_k = None;
    }
    if launch.uniform_a {
        let copyable = a
            .data()
            .buffer()
            .usage()
            .contains(wgpu::BufferUsages::COPY_SRC);
        let fits = plan::x_uniform_fits(ctx.capabilities(), m, problem.kc.div_ceil(4), 4);
        if pieces.len() != 1 || !copyable || !fits {
            if desc.uniform_a == Some(true) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "uniform_a: A [{m}, {k}] ({} bytes of codes) cannot be read from a \
                         uniform block: it needs one piece (here {}), at most {} bytes on a \
                         device with uniform bindings that large (here {}) and COPY_SRC on \
                         A's buffer (usage {:?})",
                        a.data().size_bytes(),
                        pieces.len(),
                        plan::X_UNIFORM_BYTES,
                        ctx.capabilities().limits.max_uniform_buffer_binding_size,
                        a.data().buffer().usage()
                    ),
                ));
            }
            launch.uniform_a = false;
        }
    }
    // The uniform copy of A, bound in its place.
    let a_copy;
    let mut pieces = pieces;
    if launch.uniform_a {
        let bytes = (m * problem.kc.div_ceil(4) * 4) as u64;
        a_copy = super::uniform_copy(ctx, encoder, a.data().buffer(), bytes)?;
        super::bind_uniform_copy(&mut pieces[0].res, &a_copy);
    }
    if let (Some(sk), [piece]) = (launch.split_k, &pieces[..]) {
        return record_split_k(ctx, encoder, &launch, &sk, &params, piece, a, (m, n));
    }
    let kernel = ctx.kernel(&launch.variant())?;
    let plane = problem.conv.map_or(1, |g| g.out_h * g.out_w);
    for piece in &pieces {
        let rows = piece.rows * plane;
        match problem.conv {
            Some(g) if problem.depthwise => {
                let epilogue = super::conv::DwQ8Epilogue {
                    flags: params.flags,
                    pix_words: params.pix_words,
                    a_signed: !checked.a_u8,
                    w_signed: !checked.w_u8,
                    w_col_stride: checked.w_stride,
                    requant: checked.requant,
                    out_words_per_row: params.out_words_per_row,
                };
                let shape = (&g, rows, n);
                super::conv::record_depthwise_q8(
                    ctx, encoder, &kernel, shape, &epilogue, &piece.res,
                )?
            }
            _ => {
                let ncols = if conv { problem.ncols } else { piece.cols };
                let shape = (rows, ncols, problem.groups());
                record_piece(ctx, encoder, &kernel, &params, tile, shape, &piece.res, a)?
            }
        }
    }
    Ok(())
}

/// The params block of the W8A8 kernel (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::QGemm, uniform_layout::<Params>()),
        (ShaderFile::QGemmUniformA, uniform_layout::<Params>()),
    ]
}
