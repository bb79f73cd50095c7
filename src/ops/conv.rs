//! 2-D convolution in FP32, FP16 and INT8, as an implicit GEMM: no im2col buffer is ever
//! materialized; each kernel computes the input position of every tap of its output
//! pixels and reads the image directly.
//!
//! **Layout.** Activations are NHWC (`[batch, height, width, channels]`): the channels
//! of a pixel are contiguous, which is the reduction axis of the convolution, so INT8
//! activations pack four channels per `u32` exactly like the `K` axis of
//! [`crate::ops::qgemm`] (a [`QTensor`] of shape `[B, H, W, C]`), and `dot4I8Packed`
//! multiplies four channels at a time. Convert PyTorch/ONNX NCHW data at the edges with
//! [`nchw_to_nhwc`] / [`nhwc_to_nchw`]. Weights are given in the usual OIHW order
//! (`[OC, C / groups, KH, KW]`) and rearranged once at load time ([`ConvWeight`],
//! [`QConvWeight`]).
//!
//! **Kernels.** The plan picks, per layer:
//! - depthwise (`groups == C`, any channel multiplier): a dedicated kernel, one output
//!   pixel by four channels per invocation (`shaders/conv_dw.wgsl`,
//!   `shaders/conv_dw_q8.wgsl`);
//! - pointwise (1x1, stride 1, no padding, one group): the GEMM itself on the image seen as
//!   `[B*H*W, C]` (FP32: [`crate::ops::gemm`]; INT8: the W8A8 GEMM);
//! - everything else (any kernel, stride, dilation, padding, groups): the implicit GEMM,
//!   `shaders/conv_gemm.wgsl` for floats and the `CONV` mode of `shaders/qgemm.wgsl` for
//!   INT8, which reuses that kernel's loop, zero-point sums and epilogues unchanged.
//!
//! **INT8** ([`qconv2d`]): activations i8/u8 with one scale and zero point per tensor
//! (static, or from [`crate::ops::quant::dynamic_quantize`]), weights i8/u8 per tensor or
//! per output channel, exact int32 accumulation, then the epilogues of
//! [`QGemmOutput`]: dequantized f32/f16 with bias and ReLU/ReLU6, the raw int32 (ONNX
//! `ConvInteger`), or requantized 8-bit codes with the output's static scale and zero
//! point (ONNX `QLinearConv`), bit for bit as the reference computes them. A tap in the
//! padding reads the zero point's code, i.e. the real value 0.
//!
//! **Float** ([`conv2d`]): f32 or f16 activations and weights in any combination, f32 or
//! f16 output; f16 arithmetic as [`HalfMath`] chooses. Error budget against an f64
//! reference, `||out - ref|| / ||ref||`: `1e-5` with f32 arithmetic (f16 storage adds its
//! rounding of the inputs, which the reference sees too), `2e-3` for f16 products with
//! f32 sums, `2e-2` for f16 sums; an f16 output adds `4.9e-4`.
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::conv::{conv2d, ConvDesc, ConvDims, ConvWeight, Padding};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! // A 3x3 "SAME" convolution, 2 -> 1 channels, on a 1x4x4x2 NHWC image of ones.
//! let dims = ConvDims::new(1, 2, [3, 3], 1)?;
//! let w = ConvWeight::from_oihw(&ctx, dims, &[1.0f32; 18], DType::F32)?;
//! let x = Tensor::from_slice(&ctx, &[1, 4, 4, 2], &[1.0f32; 32])?;
//! let desc = ConvDesc::default().padding(Padding::Same);
//! let y = Tensor::zeros(&ctx, &desc.output_shape(&dims, x.shape())?, DType::F32)?;
//! let mut enc = ctx.encoder("conv");
//! conv2d(&ctx, &mut enc, &desc, &x, &w, None, &y)?;
//! ctx.submit_and_wait(enc)?;
//! let y = y.read_blocking::<f32>(&ctx)?;
//! assert_eq!((y[0], y[5]), (8.0, 18.0)); // a corner sees 4 pixels, the middle 9
//! # Ok(()) }
//! ```

use half::f16;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::gemm::{gemm, GemmDesc};
use crate::ops::qgemm::{self, ConvGeom, Problem, QGemmDesc, QGemmOutput};
use crate::ops::quant::QTensor;
use crate::ops::wgemm::{self, HalfMath};
use crate::ops::{to_u32, RowTile};
use crate::quant::{Granularity, QType, QuantParams, QuantScheme};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

pub use crate::desc::conv::{ConvDesc, ConvDims, ConvShape, Padding, TILES};
use crate::desc::tuning::ConvKind;

const OP: &str = "conv2d";

/// Invocations per workgroup of the depthwise kernels.
const DW_WG: u32 = 64;

impl ConvShape {
    pub(crate) fn geom(&self) -> ConvGeom {
        ConvGeom {
            in_h: self.in_h,
            in_w: self.in_w,
            channels: self.dims.in_channels,
            out_h: self.out_h,
            out_w: self.out_w,
            kernel: self.dims.kernel,
            stride: self.stride,
            dilation: self.dilation,
            pad: [self.pad[0], self.pad[1]],
            groups: self.dims.groups,
        }
    }
}

/// `[n, c, h, w]` data in NHWC order.
pub fn nchw_to_nhwc<T: Copy>(x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    out.push(x[((b * c + ch) * h + y) * w + xx]);
                }
            }
        }
    }
    out
}

/// `[n, h, w, c]` data in NCHW order.
pub fn nhwc_to_nchw<T: Copy>(x: &[T], [n, h, w, c]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out.push(x[((b * h + y) * w + xx) * c + ch]);
                }
            }
        }
    }
    out
}

crate::shaders::uniform! {
    /// `conv_dw_q8.wgsl`'s params: the depthwise geometry and the W8A8 epilogue's fields.
    pub(crate) struct DwQ8Params {
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
}
const _: () = assert!(std::mem::size_of::<DwQ8Params>() == 128);

/// The W8A8 fields of the INT8 depthwise kernel, as the W8A8 GEMM's validation and
/// params resolve them.
pub(crate) struct DwQ8Epilogue {
    pub flags: u32,
    pub pix_words: u32,
    pub a_signed: bool,
    pub w_signed: bool,
    pub w_col_stride: u32,
    /// The requantized output's scale, zero point and code range.
    pub requant: (f32, i32, (i32, i32)),
    pub out_words_per_row: u32,
}

/// Records one piece of a depthwise INT8 convolution (`conv_dw_q8.wgsl`): `rows` output
/// pixels of `n` channels of the geometry `g`.
pub(crate) fn record_depthwise_q8(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &crate::context::Kernel,
    (g, rows, n): (&ConvGeom, usize, usize),
    e: &DwQ8Epilogue,
    res: &[super::Res],
) -> Result<()> {
    const QOP: &str = "qconv2d (depthwise)";
    let (out_scale, out_zero, (out_qmin, out_qmax)) = e.requant;
    let dw = DwQ8Params {
        base: DwParams::new(QOP, g, rows, n, e.flags)?,
        pix_words: e.pix_words,
        a_signed: u32::from(e.a_signed),
        w_signed: u32::from(e.w_signed),
        a_row_stride: 0,
        w_col_stride: e.w_col_stride,
        out_qmin,
        out_qmax,
        out_zero,
        out_scale,
        out_words_per_row: e.out_words_per_row,
        opaque_zero: 0,
        _pad: [0; 3],
    };
    let grid = dw.base.grid(ctx, QOP)?;
    super::record_resources(
        ctx,
        encoder,
        QOP,
        kernel,
        bytemuck::bytes_of(&dw),
        res,
        grid,
    )
}

/// OIHW weights in the kernels' order: depthwise `[KH, KW, OC]`; otherwise
/// `[G, KH, KW, C/G, OC/G]` (float: the implicit GEMM's `B`, `[K, N]` per group) when
/// `k_major`, or `[OC, KH, KW, C/G]` (INT8: packed along the channels like `K`).
fn rearrange<T: Copy>(dims: &ConvDims, w: &[T], k_major: bool) -> Vec<T> {
    let [oc_n, cg, kh, kw] = dims.oihw();
    let at = |oc: usize, c: usize, t: usize| w[((oc * cg + c) * kh + t / kw) * kw + t % kw];
    let taps = kh * kw;
    let mut out = Vec::with_capacity(w.len());
    if dims.is_depthwise() {
        for t in 0..taps {
            for oc in 0..oc_n {
                out.push(at(oc, 0, t));
            }
        }
    } else if k_major {
        let ocg = oc_n / dims.groups;
        for g in 0..dims.groups {
            for t in 0..taps {
                for c in 0..cg {
                    for j in 0..ocg {
                        out.push(at(g * ocg + j, c, t));
                    }
                }
            }
        }
    } else {
        for oc in 0..oc_n {
            for t in 0..taps {
                for c in 0..cg {
                    out.push(at(oc, c, t));
                }
            }
        }
    }
    out
}

fn check_len(op: &'static str, dims: &ConvDims, len: usize) -> Result<()> {
    if len != dims.numel() {
        return Err(Error::shape(
            op,
            format!(
                "the weights have {len} values; OIHW {:?} needs {}",
                dims.oihw(),
                dims.numel()
            ),
        ));
    }
    Ok(())
}

/// Float convolution weights on the GPU, in the kernels' layout.
#[derive(Debug, Clone)]
pub struct ConvWeight {
    data: Tensor,
    dims: ConvDims,
}

impl ConvWeight {
    /// Uploads OIHW f32 weights (`[OC, C / groups, KH, KW]`, PyTorch's and ONNX's order)
    /// stored as `dtype` (f32 or f16).
    pub fn from_oihw(
        ctx: &Context,
        dims: ConvDims,
        oihw: &[f32],
        dtype: DType,
    ) -> Result<ConvWeight> {
        const OPW: &str = "ConvWeight::from_oihw";
        check_len(OPW, &dims, oihw.len())?;
        let laid = rearrange(&dims, oihw, true);
        let data = match dtype {
            DType::F32 => Tensor::from_slice(ctx, &[laid.len()], &laid)?,
            DType::F16 => {
                let h: Vec<f16> = laid.iter().map(|&v| f16::from_f32(v)).collect();
                Tensor::from_slice(ctx, &[h.len()], &h)?
            }
            got => {
                return Err(Error::DType {
                    op: OPW,
                    operand: "weights",
                    expected: DType::F32,
                    got,
                })
            }
        };
        Ok(ConvWeight { data, dims })
    }

    /// The dimensions.
    pub fn dims(&self) -> ConvDims {
        self.dims
    }

    /// The storage type (f32 or f16).
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The weights in the kernels' layout (see the module docs).
    pub fn data(&self) -> &Tensor {
        &self.data
    }
}

/// INT8 convolution weights on the GPU: i8/u8 codes in the kernels' layout, one scale and
/// zero point per tensor or per output channel.
#[derive(Debug, Clone)]
pub struct QConvWeight {
    q: QTensor,
    dims: ConvDims,
}

impl QConvWeight {
    /// Quantizes OIHW f32 weights with `scheme` (i8 or u8; per tensor, or per channel
    /// along axis 0, the output channels) and uploads them.
    pub fn quantize(
        ctx: &Context,
        dims: ConvDims,
        oihw: &[f32],
        scheme: &QuantScheme,
    ) -> Result<QConvWeight> {
        check_len("QConvWeight::quantize", &dims, oihw.len())?;
        let params = QuantParams::from_data(scheme, &dims.oihw(), oihw)?;
        let codes = params.quantize(oihw)?;
        Self::from_codes(ctx, dims, &codes, &params)
    }

    /// Uploads OIHW codes with their parameters (`params.shape` is the OIHW shape; per
    /// tensor or per channel along axis 0), e.g. from an ONNX `QLinearConv`.
    pub fn from_codes(
        ctx: &Context,
        dims: ConvDims,
        oihw_codes: &[i32],
        params: &QuantParams,
    ) -> Result<QConvWeight> {
        const OPW: &str = "QConvWeight::from_codes";
        check_len(OPW, &dims, oihw_codes.len())?;
        if params.shape != dims.oihw() {
            return Err(Error::shape(
                OPW,
                format!(
                    "the parameters are for shape {:?}; the weights are OIHW {:?}",
                    params.shape,
                    dims.oihw()
                ),
            ));
        }
        if !matches!(params.qtype, QType::I8 | QType::U8) {
            return Err(Error::invalid(
                OPW,
                format!(
                    "the weights hold {} codes; the INT8 convolution takes i8 or u8",
                    params.qtype.name()
                ),
            ));
        }
        let [oc, cg, kh, kw] = dims.oihw();
        let (shape, granularity) = match (params.granularity, dims.is_depthwise()) {
            (Granularity::PerTensor, true) => (vec![kh, kw, oc], Granularity::PerTensor),
            (Granularity::PerTensor, false) => (vec![oc, kh, kw, cg], Granularity::PerTensor),
            (Granularity::PerChannel { axis: 0 }, true) => {
                (vec![kh, kw, oc], Granularity::PerChannel { axis: 2 })
            }
            (Granularity::PerChannel { axis: 0 }, false) => {
                (vec![oc, kh, kw, cg], Granularity::PerChannel { axis: 0 })
            }
            (g, _) => {
                return Err(Error::invalid(
                    OPW,
                    format!(
                        "the weights are quantized {g:?}; the INT8 convolution takes one scale \
                         per tensor or per output channel (axis 0 of OIHW)"
                    ),
                ))
            }
        };
        let gpu = QuantParams {
            granularity,
            shape,
            ..params.clone()
        };
        let q = QTensor::from_codes(ctx, &gpu, &rearrange(&dims, oihw_codes, false))?;
        Ok(QConvWeight { q, dims })
    }

    /// The dimensions.
    pub fn dims(&self) -> ConvDims {
        self.dims
    }

    /// The codes and parameters in the kernels' layout (`[KH, KW, OC]` for depthwise,
    /// else `[OC, KH, KW, C / groups]`).
    pub fn qtensor(&self) -> &QTensor {
        &self.q
    }
}

/// Records the INT8 convolution `out = epilogue(conv(x, w))` into `encoder`; see the
/// module docs. `x` is an NHWC [`QTensor`] `[B, H, W, C]` with per-tensor parameters,
/// `bias` is f32 with `OC` values, the output `[B, OH, OW, OC]`. Nothing is submitted.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &ConvDesc,
    x: &QTensor,
    w: &QConvWeight,
    bias: Option<&Tensor>,
    out: QGemmOutput<'_>,
) -> Result<()> {
    super::check_devices(
        ctx,
        "qconv2d",
        &[
            ("x", Some(x.data())),
            ("w", Some(w.qtensor().data())),
            ("bias", bias),
            ("output", Some(out.tensor())),
        ],
    )?;
    super::qgemm::check_8bit_for("qconv2d", "x", x)?;
    super::qgemm::check_8bit_for("qconv2d", "w", w.qtensor())?;
    let shape = crate::desc::conv::ConvShape::for_op("qconv2d", desc, &w.dims, x.shape())?;
    let want = shape.output_shape();
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            "qconv2d",
            format!(
                "the output has shape {:?}; input {:?} with weights {:?} gives {want:?}",
                out.shape(),
                x.shape(),
                w.dims.oihw()
            ),
        ));
    }
    let dims = w.dims;
    let pointwise = shape.is_pointwise() && !desc.no_pointwise;
    let qdesc = QGemmDesc {
        activation: desc.activation,
        // A 1x1 convolution runs as the GEMM, with the GEMM's tuned or default tile.
        config: desc.config.or_else(|| {
            (!pointwise)
                .then(|| crate::plan::tuned_qconv_config(ctx, &shape))
                .flatten()
        }),
        packed_dot: desc.packed_dot,
        onnx_requant: desc.onnx_requant,
        // A 1x1 convolution as the GEMM takes the GEMM's rule.
        uniform_a: None,
    };
    let problem = Problem {
        m: shape.rows(),
        ncols: dims.out_channels / dims.groups,
        kc: dims.in_channels / dims.groups,
        conv: if pointwise { None } else { Some(shape.geom()) },
        depthwise: dims.is_depthwise(),
        out_shape: shape.output_shape(),
    };
    qgemm::run(ctx, encoder, &qdesc, x, &w.q, bias, out, &problem).map_err(|e| e.with_op("qconv2d"))
}

crate::shaders::uniform! {
    struct GemmParams {
        m: u32,
        n: u32,
        ncols: u32,
        kc: u32,
        taps: u32,
        groups: u32,
        groups_x: u32,
        row_blocks: u32,
        channels: u32,
        win: WindowParams,
        flags: u32,
        _pad: [u32; 3],
    }
}
const _: () = assert!(std::mem::size_of::<GemmParams>() == 96);

crate::shaders::uniform! {
    /// The sliding-window fields every convolution kernel's params share, in the order of
    /// `shaders/common/window.wgsl`'s names (the WGSL structs list them flat, in this order).
    #[derive(Default)]
    pub(crate) struct WindowParams {
        pub in_h: u32,
        pub in_w: u32,
        pub out_h: u32,
        pub out_w: u32,
        pub k_w: u32,
        pub stride_h: u32,
        pub stride_w: u32,
        pub dil_h: u32,
        pub dil_w: u32,
        pub pad_t: u32,
        pub pad_l: u32,
    }
}

impl WindowParams {
    pub(crate) fn new(op: &'static str, g: &ConvGeom) -> Result<Self> {
        let u = |what: &str, v: usize| to_u32(op, what, v);
        Ok(WindowParams {
            in_h: u("H", g.in_h)?,
            in_w: u("W", g.in_w)?,
            out_h: u("output height", g.out_h)?,
            out_w: u("output width", g.out_w)?,
            k_w: u("kernel width", g.kernel[1])?,
            stride_h: u("stride", g.stride[0])?,
            stride_w: u("stride", g.stride[1])?,
            dil_h: u("dilation", g.dilation[0])?,
            dil_w: u("dilation", g.dilation[1])?,
            pad_t: u("padding", g.pad[0])?,
            pad_l: u("padding", g.pad[1])?,
        })
    }
}

crate::shaders::uniform! {
    pub(crate) struct DwParams {
        pub m: u32,
        pub n: u32,
        pub channels: u32,
        pub mult: u32,
        pub taps: u32,
        pub win: WindowParams,
        pub flags: u32,
        pub quads: u32,
    }
}

crate::shaders::uniform! {
    /// `conv_dw.wgsl`'s params: [`DwParams`] and two padding words (the INT8 kernel's
    /// params continue with their own fields there instead).
    struct DwFloatParams {
        base: DwParams,
        _pad: [u32; 2],
    }
}

impl DwParams {
    pub(crate) fn new(
        op: &'static str,
        g: &ConvGeom,
        m: usize,
        n: usize,
        flags: u32,
    ) -> Result<Self> {
        let u = |what: &str, v: usize| to_u32(op, what, v);
        Ok(DwParams {
            m: u("output pixels", m)?,
            n: u("output channels", n)?,
            channels: u("channels", g.channels)?,
            mult: u("channel multiplier", n / g.channels)?,
            taps: u("taps", g.kernel[0] * g.kernel[1])?,
            win: WindowParams::new(op, g)?,
            flags,
            quads: u("channel quads", n.div_ceil(4))?,
        })
    }

    /// The folded grid of the depthwise kernels: one invocation per output quad.
    pub(crate) fn grid(&self, ctx: &Context, op: &'static str) -> Result<[u32; 3]> {
        let invocations = u64::from(self.m) * u64::from(self.quads);
        super::grid_for(ctx, op, invocations.div_ceil(u64::from(DW_WG)))
    }
}

/// The depthwise INT8 kernel's variant.
pub(crate) fn dw_q8_variant(out: u32) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::ConvDwQ8,
        vec![("WG", Def::U32(DW_WG)), ("OUT", Def::U32(out))],
    )
}

fn math_variant(
    file: ShaderFile,
    mut defs: Vec<(&'static str, Def)>,
    math: HalfMath,
) -> ShaderVariant {
    let (name, code) = wgemm::math_code(math);
    defs.push((name, Def::Code(code)));
    let mut v = ShaderVariant::new(file, defs);
    v.f16 = matches!(math, HalfMath::F16 | HalfMath::F16AccF32);
    v
}

fn gemm_variant(cfg: RowTile, f16s: [bool; 3], pointwise: bool, math: HalfMath) -> ShaderVariant {
    math_variant(
        ShaderFile::ConvGemm,
        vec![
            ("WG", Def::U32(cfg.wg)),
            ("TM", Def::U32(cfg.tm)),
            ("TN4", Def::U32(cfg.tn4)),
            ("X_F16", Def::Bool(f16s[0])),
            ("W_F16", Def::Bool(f16s[1])),
            ("OUT_F16", Def::Bool(f16s[2])),
            ("POINTWISE", Def::Bool(pointwise)),
        ],
        math,
    )
}

fn dw_variant(f16s: [bool; 3], math: HalfMath) -> ShaderVariant {
    math_variant(
        ShaderFile::ConvDw,
        vec![
            ("WG", Def::U32(DW_WG)),
            ("X_F16", Def::Bool(f16s[0])),
            ("W_F16", Def::Bool(f16s[1])),
            ("OUT_F16", Def::Bool(f16s[2])),
        ],
        math,
    )
}

/// Every convolution kernel variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for bits in 0..8u32 {
        let f16s = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
        let maths: &[HalfMath] = if f16s[0] {
            &[HalfMath::F32, HalfMath::F16AccF32, HalfMath::F16]
        } else {
            &[HalfMath::F32]
        };
        for &math in maths {
            let narrowed = TILES
                .into_iter()
                .flat_map(|t| RowTile::NARROW_WG.map(|wg| RowTile { wg, ..t }));
            for cfg in TILES.into_iter().chain(narrowed) {
                for pointwise in [false, true] {
                    v.push(gemm_variant(cfg, f16s, pointwise, math));
                }
            }
            v.push(dw_variant(f16s, math));
        }
    }
    for out in 0..4 {
        v.push(dw_q8_variant(out));
    }
    v
}

/// Records the float convolution `out = act(conv(x, w) + bias)` into `encoder`; see the
/// module docs. `x` is NHWC `[B, H, W, C]` (f32 or f16), `bias` f32 with `OC` values,
/// `out` `[B, OH, OW, OC]` (f32 or f16). Nothing is submitted.
pub fn conv2d(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &ConvDesc,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "conv2d",
        &[
            ("x", Some(x)),
            ("w", Some(w.data())),
            ("bias", bias),
            ("output", Some(out)),
        ],
    )?;
    let (shape, f16s) = validate_float(desc, x, w, bias, out)?;
    let m = shape.rows();
    if m == 0 {
        return Ok(());
    }
    let math = checked_half_math(ctx.capabilities(), desc.math, f16s[0])?;
    let flags = u32::from(bias.is_some()) | (desc.activation.code() << 1);
    let (oc, c) = (w.dims.out_channels, w.dims.in_channels);
    if shape.is_pointwise() && !desc.no_pointwise && f16s == [false; 3] && desc.config.is_none() {
        // FP32 1x1: the plan's GEMM (on CPU adapters the subgroup kernel) over the pixels.
        let gdesc = GemmDesc::new(m, oc, c).activation(desc.activation);
        let (x2, w2, out2) = (
            x.reshape(&[m, c])?,
            w.data.reshape(&[c, oc])?,
            out.reshape(&[m, oc])?,
        );
        return gemm(ctx, encoder, &gdesc, &x2, &w2, bias, &out2);
    }
    // Operands over the binding limit run in pieces of whole images (x and output bound
    // as aligned windows); the weights and bias must fit.
    let plane = shape.out_h * shape.out_w;
    let unit = |t: &Tensor, per_image: usize| (per_image * t.dtype().size()) as u64;
    use super::Operand as O;
    let pieces = super::split(
        ctx,
        OP,
        ["images", "-"],
        (shape.batch, 1),
        &[
            O::tensor("x", x, unit(x, shape.in_h * shape.in_w * c), 0),
            O::tensor("weights", &w.data, 0, 0),
            O::optional(ctx, "bias", bias, 0, 0),
            O::tensor("output", out, unit(out, plane * oc), 0),
        ],
    )?;
    if w.dims.is_depthwise() {
        let kernel = ctx.kernel(&dw_variant(f16s, math))?;
        for piece in pieces {
            let params = DwFloatParams {
                base: DwParams::new(OP, &shape.geom(), piece.rows * plane, oc, flags)?,
                _pad: [0; 2],
            };
            let grid = params.base.grid(ctx, OP)?;
            let bytes = bytemuck::bytes_of(&params);
            super::record_resources(ctx, encoder, OP, &kernel, bytes, &piece.res, grid)?;
        }
        return Ok(());
    }
    let cfg = desc.config.unwrap_or_else(|| {
        let kind = if f16s[0] {
            ConvKind::F16
        } else {
            ConvKind::F32
        };
        crate::plan::conv_config(ctx, &shape, kind)
    });
    cfg.check(ctx.capabilities(), OP)?;
    if cfg.split_k != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "tile {cfg:?}: split-K applies to the GEMMs only; a convolution's tile takes \
                 split_k = 1"
            ),
        ));
    }
    to_u32(OP, "elements of the output", m * oc)?;
    to_u32(OP, "elements of the input", x.numel())?;
    let pointwise = shape.is_pointwise() && !desc.no_pointwise;
    let kernel = ctx.kernel(&gemm_variant(cfg, f16s, pointwise, math))?;
    for piece in pieces {
        let rows = piece.rows * plane;
        let (params, grid) = implicit_gemm_params(ctx, &shape, cfg, rows, flags)?;
        let bytes = bytemuck::bytes_of(&params);
        super::record_resources(ctx, encoder, OP, &kernel, bytes, &piece.res, grid)?;
    }
    Ok(())
}

/// The checks of [`conv2d`] that need no device: the geometry, the float dtypes (returned
/// as whether x, the weights and the output are f16), the output shape, the bias and
/// aliasing.
fn validate_float(
    desc: &ConvDesc,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<(ConvShape, [bool; 3])> {
    let shape = desc.shape(&w.dims, x.shape())?;
    let x_f16 = super::check_float(OP, "x", x)?;
    let out_f16 = super::check_float(OP, "output", out)?;
    let out_shape = shape.output_shape();
    if out.shape() != out_shape.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "the output has shape {:?}; input {:?} with weights {:?} gives {out_shape:?}",
                out.shape(),
                x.shape(),
                w.dims.oihw()
            ),
        ));
    }
    super::check_bias(OP, bias, w.dims.out_channels)?;
    for (name, t) in [("x", x), ("weights", &w.data)]
        .into_iter()
        .chain(bias.map(|b| ("bias", b)))
    {
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                OP,
                format!("the output shares its buffer with {name}"),
            ));
        }
    }
    Ok((shape, [x_f16, w.dtype() == DType::F16, out_f16]))
}

/// The arithmetic the plan resolves `requested` to, checked against the device and the
/// activations' type.
fn checked_half_math(
    caps: &crate::Capabilities,
    requested: HalfMath,
    x_f16: bool,
) -> Result<HalfMath> {
    let math = crate::plan::resolve_half_math(caps, requested, x_f16);
    if math != HalfMath::F32 {
        if !caps.shader_f16 {
            return Err(Error::MissingFeature {
                op: OP,
                feature: "SHADER_F16 (f16 arithmetic; HalfMath::F32 works everywhere)",
                adapter: caps.adapter.name.clone(),
            });
        }
        if !x_f16 {
            return Err(Error::invalid(
                OP,
                format!("{math:?} arithmetic needs f16 activations; x is f32"),
            ));
        }
    }
    Ok(math)
}

/// The uniform block and grid of `rows` output pixels of the float implicit GEMM.
fn implicit_gemm_params(
    ctx: &Context,
    shape: &ConvShape,
    cfg: RowTile,
    rows: usize,
    flags: u32,
) -> Result<(GemmParams, [u32; 3])> {
    let dims = shape.dims;
    let (oc, c) = (dims.out_channels, dims.in_channels);
    let ncols = oc / dims.groups;
    let groups_x = (ncols as u64).div_ceil(u64::from(cfg.columns()));
    let row_blocks = (rows as u64).div_ceil(u64::from(cfg.tm));
    let grid = super::grid_for(ctx, OP, groups_x * row_blocks * dims.groups as u64)?;
    let u = |what: &str, v: usize| to_u32(OP, what, v);
    let params = GemmParams {
        m: u("output pixels", rows)?,
        n: u("output channels", oc)?,
        ncols: u("output channels per group", ncols)?,
        kc: u("channels per group", c / dims.groups)?,
        taps: u("taps", dims.taps())?,
        groups: u("groups", dims.groups)?,
        groups_x: u("workgroups per row block", groups_x as usize)?,
        row_blocks: u("row blocks", row_blocks as usize)?,
        channels: u("channels", c)?,
        win: WindowParams::new(OP, &shape.geom())?,
        flags,
        _pad: [0; 3],
    };
    Ok((params, grid))
}

/// Folds an inference BatchNorm that follows a convolution into its weights and bias:
/// `y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta` becomes a convolution with
/// weights `w * k` per output channel and bias `(b - mean) * k + beta`, where
/// `k = gamma / sqrt(var + eps)` (computed in f64, rounded once). `oihw` holds
/// `[OC, ...]` weights; every per-channel slice has `OC` values.
#[allow(clippy::too_many_arguments)]
pub fn fold_batch_norm(
    oihw: &mut [f32],
    bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<Vec<f32>> {
    const OPB: &str = "fold_batch_norm";
    let oc = gamma.len();
    let lens = [
        beta.len(),
        mean.len(),
        var.len(),
        bias.map_or(oc, <[f32]>::len),
    ];
    if oc == 0 || lens.iter().any(|&l| l != oc) || !oihw.len().is_multiple_of(oc) {
        return Err(Error::shape(
            OPB,
            format!(
                "gamma has {oc} values, beta/mean/var/bias {lens:?}, weights {}: every \
                 per-channel vector needs OC values and the weights a multiple of OC",
                oihw.len()
            ),
        ));
    }
    if let Some(i) = var.iter().position(|&v| {
        (f64::from(v) + f64::from(eps)).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    }) {
        return Err(Error::invalid(
            OPB,
            format!("var[{i}] + eps = {} is not positive", var[i] + eps),
        ));
    }
    let per = oihw.len() / oc;
    let mut folded = Vec::with_capacity(oc);
    for o in 0..oc {
        let k = f64::from(gamma[o]) / (f64::from(var[o]) + f64::from(eps)).sqrt();
        for w in &mut oihw[o * per..(o + 1) * per] {
            *w = (f64::from(*w) * k) as f32;
        }
        let b = bias.map_or(0.0, |b| f64::from(b[o]));
        folded.push(((b - f64::from(mean[o])) * k + f64::from(beta[o])) as f32);
    }
    Ok(folded)
}

/// Reorders the input columns of a Linear weight `[out, c * h * w]` that follows a
/// flatten of NCHW `[c, h, w]` features (PyTorch's order) to the order of a flattened
/// NHWC tensor `[h, w, c]`, so the layer can read this crate's NHWC activations directly.
pub fn linear_weight_nchw_to_nhwc(
    w: &[f32],
    out_features: usize,
    [c, h, wd]: [usize; 3],
) -> Result<Vec<f32>> {
    let k = c * h * wd;
    if w.len() != out_features * k {
        return Err(Error::shape(
            "linear_weight_nchw_to_nhwc",
            format!(
                "the weight has {} values; [{out_features}, {c}*{h}*{wd}] needs {}",
                w.len(),
                out_features * k
            ),
        ));
    }
    let mut out = Vec::with_capacity(w.len());
    for row in w.chunks(k) {
        for y in 0..h {
            for x in 0..wd {
                for ch in 0..c {
                    out.push(row[(ch * h + y) * wd + x]);
                }
            }
        }
    }
    Ok(out)
}

/// The params blocks of the convolution kernels of their own: float implicit GEMM, float
/// and INT8 depthwise (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::ConvGemm, uniform_layout::<GemmParams>()),
        (ShaderFile::ConvDw, uniform_layout::<DwFloatParams>()),
        (ShaderFile::ConvDwQ8, uniform_layout::<DwQ8Params>()),
    ]
}
