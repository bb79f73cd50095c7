//! Max, average and global average pooling over NHWC images (f32 or f16 in and out,
//! f32 sums). The window geometry (kernel, stride, padding, dilation) follows
//! [`crate::ops::conv`]: the same [`Padding`] and the same output size rule. Padding never
//! wins a max; an average divides by the taps inside the image unless
//! [`PoolDesc::count_pad`] asks for the whole window (ONNX `count_include_pad`).
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::pool::{pool2d, PoolDesc};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let x = Tensor::from_slice(&ctx, &[1, 2, 2, 1], &[1.0f32, 2.0, 3.0, 4.0])?;
//! let y = Tensor::zeros(&ctx, &[1, 1, 1, 1], DType::F32)?;
//! let mut enc = ctx.encoder("pool");
//! pool2d(&ctx, &mut enc, &PoolDesc::global_avg(), &x, &y)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(y.read_blocking::<f32>(&ctx)?, vec![2.5]);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::conv::{ConvDesc, ConvDims, Padding};
use crate::ops::to_u32;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

const OP: &str = "pool2d";
const WG: u32 = 64;

/// Which reduction a pooling window applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The largest value inside the image.
    Max,
    /// The mean.
    Avg,
}

/// A pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDesc {
    /// Max or average.
    pub kind: PoolKind,
    /// `[KH, KW]`; `None` pools the whole image (global pooling).
    pub kernel: Option<[usize; 2]>,
    /// `[vertical, horizontal]` stride.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: Padding,
    /// `[vertical, horizontal]` dilation.
    pub dilation: [usize; 2],
    /// Average only: divide by the whole window, padding included.
    pub count_pad: bool,
}

impl PoolDesc {
    /// A `k x k` window of `kind` with stride `stride`, no padding.
    pub fn new(kind: PoolKind, k: usize, stride: usize) -> PoolDesc {
        PoolDesc {
            kind,
            kernel: Some([k, k]),
            stride: [stride, stride],
            padding: Padding::Valid,
            dilation: [1, 1],
            count_pad: false,
        }
    }

    /// Global average pooling: `[B, H, W, C]` to `[B, 1, 1, C]`.
    pub fn global_avg() -> PoolDesc {
        PoolDesc {
            kernel: None,
            ..PoolDesc::new(PoolKind::Avg, 1, 1)
        }
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Geometry through the convolution's rules: `(out_h, out_w, [top, left], kernel)`.
    fn geometry(&self, x_shape: &[usize]) -> Result<(usize, usize, [usize; 2], [usize; 2])> {
        let &[_, h, w, c] = x_shape else {
            return Err(Error::shape(
                OP,
                format!("the input has shape {x_shape:?}; expected NHWC [B, H, W, C]"),
            ));
        };
        let kernel = self.kernel.unwrap_or([h, w]);
        let dims = ConvDims::new(1, c.max(1), kernel, 1)?;
        let desc = ConvDesc {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            ..ConvDesc::default()
        };
        let mut shape = x_shape.to_vec();
        shape[3] = c.max(1);
        let s = desc.shape(&dims, &shape)?;
        Ok((s.out_h, s.out_w, [s.pad[0], s.pad[1]], kernel))
    }

    /// The NHWC output shape for an input of shape `x_shape`.
    pub fn output_shape(&self, x_shape: &[usize]) -> Result<Vec<usize>> {
        let (oh, ow, _, _) = self.geometry(x_shape)?;
        Ok(vec![x_shape[0], oh, ow, x_shape[3]])
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    dil_h: u32,
    dil_w: u32,
    pad_t: u32,
    pad_l: u32,
    count_pad: u32,
    _pad0: u32,
}

fn variant(max: bool, x_f16: bool, out_f16: bool) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::Pool,
        vec![
            ("WG", Def::U32(WG)),
            ("MAX", Def::Bool(max)),
            ("X_F16", Def::Bool(x_f16)),
            ("OUT_F16", Def::Bool(out_f16)),
        ],
    )
}

/// Every pooling variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for bits in 0..8u32 {
        v.push(variant(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0));
    }
    v
}

/// Records the pooling `out = pool(x)` into `encoder`: `x` NHWC `[B, H, W, C]`, `out`
/// `[B, OH, OW, C]`, each f32 or f16.
pub fn pool2d(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &PoolDesc,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let x_f16 = super::check_float(OP, "x", x)?;
    let out_f16 = super::check_float(OP, "output", out)?;
    let (oh, ow, pad, kernel) = desc.geometry(x.shape())?;
    let want = desc.output_shape(x.shape())?;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "the output has shape {:?}; pooling {:?} gives {want:?}",
                out.shape(),
                x.shape()
            ),
        ));
    }
    if out.buffer() == x.buffer() {
        return Err(Error::invalid(OP, "the output shares its buffer with x"));
    }
    let total = out.numel();
    if total == 0 {
        return Ok(());
    }
    let u = |what: &str, v: usize| to_u32(OP, what, v);
    let shape = x.shape();
    // Operands over the binding limit run in pieces of whole images, bound as aligned
    // windows.
    let batch = shape[0];
    let image = |t: &Tensor| (t.numel() / batch * t.dtype().size()) as u64;
    let pieces = super::split(
        ctx,
        OP,
        ["images", "-"],
        (batch, 1),
        &[
            super::Operand::tensor("x", x, image(x), 0),
            super::Operand::tensor("output", out, image(out), 0),
        ],
    )?;
    let shader = ctx.kernel(&variant(desc.kind == PoolKind::Max, x_f16, out_f16))?;
    for piece in pieces {
        let count = total / batch * piece.rows;
        let params = Params {
            total: u("output elements", count)?,
            channels: u("channels", shape[3])?,
            in_h: u("H", shape[1])?,
            in_w: u("W", shape[2])?,
            out_h: u("output height", oh)?,
            out_w: u("output width", ow)?,
            k_h: u("kernel", kernel[0])?,
            k_w: u("kernel", kernel[1])?,
            stride_h: u("stride", desc.stride[0])?,
            stride_w: u("stride", desc.stride[1])?,
            dil_h: u("dilation", desc.dilation[0])?,
            dil_w: u("dilation", desc.dilation[1])?,
            pad_t: u("padding", pad[0])?,
            pad_l: u("padding", pad[1])?,
            count_pad: u32::from(desc.count_pad),
            _pad0: 0,
        };
        let grid = super::grid_for(ctx, OP, (count as u64).div_ceil(u64::from(WG)))?;
        super::record_resources(
            ctx,
            encoder,
            OP,
            &shader,
            bytemuck::bytes_of(&params),
            &piece.res,
            grid,
        )?;
    }
    Ok(())
}
