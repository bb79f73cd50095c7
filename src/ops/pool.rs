//! Max, average and global average pooling over NHWC images (f32 or f16 in and out,
//! f32 sums). The window geometry (kernel, stride, padding, dilation) follows
//! [`crate::ops::conv`]: the same [`crate::desc::conv::Padding`] and the same output size rule. Padding never
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
use crate::ops::to_u32;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

pub use crate::desc::pool::{PoolDesc, PoolKind};

const OP: &str = "pool2d";
const WG: u32 = 64;

crate::shaders::uniform! {
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
    super::check_devices(ctx, OP, &[("x", Some(x)), ("output", Some(out))])?;
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

/// The params block of this op's kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![(ShaderFile::Pool, uniform_layout::<Params>())]
}
