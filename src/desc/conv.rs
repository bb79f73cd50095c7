//! 2-D convolution: the weights' dimensions ([`ConvDims`]), the options ([`ConvDesc`]) and
//! the complete geometry they give an input ([`ConvShape`]). Plain data; the ops are
//! [`crate::ops::conv`].

use crate::desc::gemm::Activation;
use crate::desc::rows::RowTile;
use crate::desc::wgemm::HalfMath;
use crate::error::{Error, Result};

const OP: &str = "conv2d";

/// The tiles of the float implicit GEMM (tests run all of them).
pub const TILES: [RowTile; 4] = [
    RowTile::new(64, 1, 1),
    RowTile::new(64, 2, 2),
    RowTile::new(64, 4, 1),
    RowTile::new(64, 4, 2),
];

/// Zero padding around the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// `[top, left, bottom, right]` pixels.
    Explicit([usize; 4]),
    /// No padding (`VALID`).
    #[default]
    Valid,
    /// TensorFlow's `SAME` (ONNX `SAME_UPPER`): output size `ceil(in / stride)`, the odd
    /// pixel of padding at the bottom/right.
    Same,
    /// ONNX `SAME_LOWER`: as `Same` with the odd pixel at the top/left.
    SameLower,
}

impl Padding {
    /// The same padding on every side.
    pub fn uniform(p: usize) -> Padding {
        Padding::Explicit([p; 4])
    }
}

/// The shape of a convolution's weights: `[out_channels, in_channels / groups, KH, KW]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvDims {
    /// Output channels `OC`.
    pub out_channels: usize,
    /// Input channels `C` (all groups).
    pub in_channels: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// Channel groups: `C` and `OC` are both multiples of it.
    pub groups: usize,
}

impl ConvDims {
    /// Checked dimensions.
    pub fn new(
        out_channels: usize,
        in_channels: usize,
        kernel: [usize; 2],
        groups: usize,
    ) -> Result<ConvDims> {
        let d = ConvDims {
            out_channels,
            in_channels,
            kernel,
            groups,
        };
        if out_channels == 0 || in_channels == 0 || kernel.contains(&0) || groups == 0 {
            return Err(Error::shape(
                "ConvDims::new",
                format!("{d:?}: every dimension must be at least 1"),
            ));
        }
        if !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
            return Err(Error::shape(
                "ConvDims::new",
                format!(
                    "{groups} groups must divide both the input channels ({in_channels}) and \
                     the output channels ({out_channels})"
                ),
            ));
        }
        crate::error::checked_numel("ConvDims::new", &d.oihw())?;
        Ok(d)
    }

    /// The OIHW weight shape `[OC, C / groups, KH, KW]`.
    pub fn oihw(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Whether every input channel is its own group (a depthwise convolution, with
    /// `out_channels / in_channels` outputs per channel).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels
    }

    pub(crate) fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    pub(crate) fn numel(&self) -> usize {
        self.oihw().iter().product()
    }
}

/// Options of [`crate::ops::conv::conv2d`] and [`crate::ops::conv::qconv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDesc {
    /// `[vertical, horizontal]` stride (default 1).
    pub stride: [usize; 2],
    /// Zero padding (default none).
    pub padding: Padding,
    /// `[vertical, horizontal]` dilation (default 1).
    pub dilation: [usize; 2],
    /// Activation after the bias.
    pub activation: Activation,
    /// Arithmetic of the float kernels on f16 data (ignored by INT8).
    pub math: HalfMath,
    /// Pins an implicit-GEMM tile instead of the plan's choice (float: one of [`TILES`];
    /// INT8: one of [`crate::desc::qgemm::TILES`]).
    pub config: Option<RowTile>,
    /// INT8 only: `Some(false)` runs the unpacked integer fallback (same results).
    pub packed_dot: Option<bool>,
    /// Turns off the pointwise fast path, so a 1x1 layer runs the implicit GEMM (for
    /// tests and benchmarks; the results agree within the budget, bit for bit in INT8).
    pub no_pointwise: bool,
    /// INT8 only: requantize as ONNX's `QLinearConv` (an i32 bias; see
    /// [`crate::desc::qgemm::QGemmDesc::onnx_requant`]).
    pub onnx_requant: bool,
}

impl Default for ConvDesc {
    fn default() -> Self {
        ConvDesc {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            activation: Activation::None,
            math: HalfMath::Auto,
            config: None,
            packed_dot: None,
            no_pointwise: false,
            onnx_requant: false,
        }
    }
}

impl ConvDesc {
    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = [stride, stride];
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = [dilation, dilation];
        self
    }
    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Sets the f16 arithmetic.
    pub fn math(mut self, math: HalfMath) -> Self {
        self.math = math;
        self
    }
    /// Pins a tile.
    pub fn config(mut self, config: RowTile) -> Self {
        self.config = Some(config);
        self
    }
    /// Chooses the packed dot product (INT8).
    pub fn packed_dot(mut self, packed: bool) -> Self {
        self.packed_dot = Some(packed);
        self
    }
    /// INT8: requantizes as ONNX's `QLinearConv` (an i32 bias).
    pub fn onnx_requant(mut self, on: bool) -> Self {
        self.onnx_requant = on;
        self
    }

    /// The full geometry of this convolution on an NHWC input of shape `x_shape`.
    pub fn shape(&self, dims: &ConvDims, x_shape: &[usize]) -> Result<ConvShape> {
        ConvShape::new(self, dims, x_shape)
    }

    /// The NHWC output shape `[B, OH, OW, OC]` for an input of shape `x_shape`.
    pub fn output_shape(&self, dims: &ConvDims, x_shape: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shape(dims, x_shape)?.output_shape())
    }
}

/// A convolution's complete geometry: input, weights, output and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// The weights.
    pub dims: ConvDims,
    /// `[vertical, horizontal]` stride.
    pub stride: [usize; 2],
    /// `[vertical, horizontal]` dilation.
    pub dilation: [usize; 2],
    /// Resolved padding `[top, left, bottom, right]`.
    pub pad: [usize; 4],
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl ConvShape {
    pub(crate) fn new(desc: &ConvDesc, dims: &ConvDims, x_shape: &[usize]) -> Result<ConvShape> {
        Self::for_op(OP, desc, dims, x_shape)
    }

    /// [`ConvShape::new`] with errors naming `op` (pooling shares the geometry).
    pub(crate) fn for_op(
        op: &'static str,
        desc: &ConvDesc,
        dims: &ConvDims,
        x_shape: &[usize],
    ) -> Result<ConvShape> {
        let [batch, in_h, in_w, c] = match x_shape {
            &[b, h, w, c] => [b, h, w, c],
            _ => {
                return Err(Error::shape(
                    op,
                    format!("the input has shape {x_shape:?}; expected NHWC [B, H, W, C]"),
                ))
            }
        };
        if c != dims.in_channels {
            return Err(Error::shape(
                op,
                format!(
                    "the input has {c} channels (shape {x_shape:?}); the weights {:?} expect \
                     {}",
                    dims.oihw(),
                    dims.in_channels
                ),
            ));
        }
        if desc.stride.contains(&0) || desc.dilation.contains(&0) {
            return Err(Error::invalid(
                op,
                format!(
                    "stride {:?} and dilation {:?} must be at least 1",
                    desc.stride, desc.dilation
                ),
            ));
        }
        let mut pad = [0usize; 4];
        let mut out = [0usize; 2];
        let size = [in_h, in_w];
        for d in 0..2 {
            let overflow = || {
                Error::shape(
                    op,
                    format!(
                        "the {} geometry (input {}, kernel {}, stride {}, dilation {}, padding \
                         {:?}) overflows usize",
                        ["vertical", "horizontal"][d],
                        size[d],
                        dims.kernel[d],
                        desc.stride[d],
                        desc.dilation[d],
                        desc.padding
                    ),
                )
            };
            let extent = desc.dilation[d]
                .checked_mul(dims.kernel[d] - 1)
                .and_then(|e| e.checked_add(1))
                .ok_or_else(overflow)?;
            let (lo, hi) = match desc.padding {
                Padding::Explicit(p) => (p[d], p[d + 2]),
                Padding::Valid => (0, 0),
                Padding::Same | Padding::SameLower => {
                    let o = size[d].div_ceil(desc.stride[d]);
                    let total = ((o.max(1) - 1) * desc.stride[d])
                        .checked_add(extent)
                        .ok_or_else(overflow)?
                        .saturating_sub(size[d]);
                    let small = total / 2;
                    if desc.padding == Padding::Same {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                }
            };
            let padded = size[d]
                .checked_add(lo)
                .and_then(|p| p.checked_add(hi))
                .ok_or_else(overflow)?;
            if padded < extent {
                return Err(Error::shape(
                    op,
                    format!(
                        "the {} input extent {} with padding {lo}+{hi} is smaller than the \
                         dilated kernel extent {extent}",
                        ["vertical", "horizontal"][d],
                        size[d]
                    ),
                ));
            }
            out[d] = (padded - extent) / desc.stride[d] + 1;
            pad[d] = lo;
            pad[d + 2] = hi;
        }
        Ok(ConvShape {
            batch,
            in_h,
            in_w,
            dims: *dims,
            stride: desc.stride,
            dilation: desc.dilation,
            pad,
            out_h: out[0],
            out_w: out[1],
        })
    }

    /// `[B, OH, OW, OC]`.
    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.batch, self.out_h, self.out_w, self.dims.out_channels]
    }

    /// Output pixels `B * OH * OW` (the rows of the implicit GEMM).
    pub fn rows(&self) -> usize {
        self.batch * self.out_h * self.out_w
    }

    /// Multiply-adds of the whole convolution.
    pub fn macs(&self) -> u64 {
        (self.rows() * self.dims.out_channels) as u64
            * (self.dims.taps() * self.dims.in_channels / self.dims.groups) as u64
    }

    /// 1x1, stride 1, no padding, one group: the convolution is a GEMM over the pixels.
    pub fn is_pointwise(&self) -> bool {
        self.dims.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.pad == [0; 4]
            && self.dims.groups == 1
    }
}
