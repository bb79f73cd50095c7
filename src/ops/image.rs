//! Image input on the GPU: RGBA8 pixels, from a storage buffer or from a `wgpu::Texture` a
//! renderer drew, to the normalized NHWC tensor `[1, OH, OW, 3]` a network takes, with a
//! bilinear resize and a crop, so an engine can classify its frame without a round trip
//! through the CPU.
//!
//! The resize maps pixel centers (`src = (dst + 0.5) * in / out - 0.5`, clamped at the
//! edges, no antialiasing: PIL's and torchvision's bilinear without antialias). Values are
//! the 0..255 channel values, normalized as `(v - mean[c]) / std[c]`: EfficientNet-Lite
//! takes mean 127 and std 128; ImageNet-style torchvision models take mean
//! `255 * [0.485, 0.456, 0.406]` and std `255 * [0.229, 0.224, 0.225]`. Alpha is ignored.
//!
//! Textures must be `Rgba8Unorm` (or `Rgba8UnormSrgb`: `textureLoad` then returns linear
//! values, which this op scales back to 0..255 as they come) with `TEXTURE_BINDING` usage.
//!
//! ```no_run
//! use wgpu_quant::{Context, DType, Tensor};
//! use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! // A 2x2 RGBA8 image, one u32 per pixel (R in the low byte).
//! let px = Tensor::from_slice(&ctx, &[4], &[0xff0000ffu32, 0xff00ff00, 0xffff0000, 0xffffffff])?;
//! let desc = ImageDesc::center_crop(2, 2, 2).normalize([127.0; 3], [128.0; 3]);
//! let x = Tensor::zeros(&ctx, &desc.output_shape(), DType::F32)?;
//! let mut enc = ctx.encoder("image");
//! image_to_tensor(&ctx, &mut enc, ImageSource::Buffer { pixels: &px, width: 2, height: 2 }, &desc, &x)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(x.read_blocking::<f32>(&ctx)?[..3], [1.0, -127.0 / 128.0, -127.0 / 128.0]);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::to_u32;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

pub use crate::desc::image::ImageDesc;
pub use crate::reference::image_to_tensor_reference;

const OP: &str = "image_to_tensor";
const WG: u32 = 64;

const BUFFER_SOURCE: &str = "@group(0) @binding(1) var<storage, read> pixels: array<u32>;\n\
    fn px(x: u32, y: u32) -> vec4<f32> { return unpack4x8unorm(pixels[y * p.src_w + x]) * 255.0; }";
const TEXTURE_SOURCE: &str = "@group(0) @binding(1) var src: texture_2d<f32>;\n\
    fn px(x: u32, y: u32) -> vec4<f32> { return textureLoad(src, vec2<u32>(x, y), 0) * 255.0; }";

/// Where the pixels come from.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// A tensor of `width * height` `u32` pixels, row-major, RGBA with R in the low byte
    /// (the memory order of `Rgba8Unorm` texels and of `image::RgbaImage` bytes).
    Buffer {
        /// The pixels.
        pixels: &'a Tensor,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// A 2-D `Rgba8Unorm`/`Rgba8UnormSrgb` texture with `TEXTURE_BINDING` usage (mip 0).
    Texture(&'a wgpu::Texture),
}

crate::shaders::uniform! {
    struct Params {
        src_w: u32,
        src_h: u32,
        out_w: u32,
        out_h: u32,
        top: u32,
        left: u32,
        total: u32,
        _pad0: u32,
        scale_x: f32,
        scale_y: f32,
        _pad1: [u32; 2],
        mean: [f32; 4],
        inv_std: [f32; 4],
    }
}

fn variant(texture: bool, out_f16: bool) -> ShaderVariant {
    let (file, name, code) = if texture {
        (ShaderFile::ImageTexture, "TEXTURE_SOURCE", TEXTURE_SOURCE)
    } else {
        (ShaderFile::ImageBuffer, "BUFFER_SOURCE", BUFFER_SOURCE)
    };
    ShaderVariant::new(
        file,
        vec![
            ("WG", Def::U32(WG)),
            ("OUT_F16", Def::Bool(out_f16)),
            (name, Def::Code(code)),
        ],
    )
}

/// Every image-input variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for texture in [false, true] {
        for f16 in [false, true] {
            v.push(variant(texture, f16));
        }
    }
    v
}

/// The source image's width and height, with its format and binding checked.
fn source_size(ctx: &Context, src: ImageSource<'_>, out: &Tensor) -> Result<(usize, usize)> {
    Ok(match src {
        ImageSource::Buffer {
            pixels,
            width,
            height,
        } => {
            if !matches!(pixels.dtype(), DType::U32 | DType::I32)
                || pixels.numel() != width * height
            {
                return Err(Error::shape(
                    OP,
                    format!(
                        "the pixel buffer is {} {:?}; a {width}x{height} RGBA8 image needs \
                         {} u32 pixels",
                        pixels.dtype(),
                        pixels.shape(),
                        width * height
                    ),
                ));
            }
            if pixels.buffer() == out.buffer() {
                return Err(Error::invalid(
                    OP,
                    "the output shares its buffer with the pixels",
                ));
            }
            super::check_binding(ctx, OP, "pixels", pixels)?;
            (width, height)
        }
        ImageSource::Texture(t) => {
            if !matches!(
                t.format(),
                wgpu::TextureFormat::Rgba8Unorm | wgpu::TextureFormat::Rgba8UnormSrgb
            ) || t.dimension() != wgpu::TextureDimension::D2
                || !t.usage().contains(wgpu::TextureUsages::TEXTURE_BINDING)
            {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "the texture is {:?} {:?} with usage {:?}; expected a 2-D Rgba8Unorm \
                         texture with TEXTURE_BINDING",
                        t.dimension(),
                        t.format(),
                        t.usage()
                    ),
                ));
            }
            (t.width() as usize, t.height() as usize)
        }
    })
}

/// Records the conversion of an RGBA8 image to the normalized NHWC tensor `out`
/// (`desc.output_shape()`, f32 or f16); see the module docs.
pub fn image_to_tensor(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    src: ImageSource<'_>,
    desc: &ImageDesc,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(ctx, "image_to_tensor", &[("output", Some(out))])?;
    let out_f16 = super::check_float(OP, "output", out)?;
    let want = desc.output_shape();
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!("the output has shape {:?}; expected {want:?}", out.shape()),
        ));
    }
    let (w, h) = source_size(ctx, src, out)?;
    if w == 0 || h == 0 || desc.crop.contains(&0) {
        return Err(Error::shape(
            OP,
            format!(
                "image {w}x{h}, crop {:?}: sizes must be at least 1",
                desc.crop
            ),
        ));
    }
    let [rh, rw] = desc.resized(h, w);
    if desc.crop[0] > rh || desc.crop[1] > rw {
        return Err(Error::shape(
            OP,
            format!(
                "the crop {:?} is larger than the resized image [{rh}, {rw}]",
                desc.crop
            ),
        ));
    }
    if let Some(c) = desc.std.iter().position(|&s| s == 0.0 || !s.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("std[{c}] = {} must be finite and non-zero", desc.std[c]),
        ));
    }
    let u = |what: &str, v: usize| to_u32(OP, what, v);
    let total = desc.crop[0] * desc.crop[1];
    let inv = desc.std.map(|s| 1.0 / s);
    let params = Params {
        src_w: u("width", w)?,
        src_h: u("height", h)?,
        out_w: u("crop width", desc.crop[1])?,
        out_h: u("crop height", desc.crop[0])?,
        top: u("crop offset", (rh - desc.crop[0]) / 2)?,
        left: u("crop offset", (rw - desc.crop[1]) / 2)?,
        total: u("output pixels", total)?,
        _pad0: 0,
        scale_x: w as f32 / rw as f32,
        scale_y: h as f32 / rh as f32,
        _pad1: [0; 2],
        mean: [desc.mean[0], desc.mean[1], desc.mean[2], 0.0],
        inv_std: [inv[0], inv[1], inv[2], 0.0],
    };
    let texture = matches!(src, ImageSource::Texture(_));
    let kernel = ctx.kernel(&variant(texture, out_f16))?;
    let (pixels, view) = match src {
        ImageSource::Buffer { pixels, .. } => (Some(pixels), None),
        ImageSource::Texture(t) => (None, Some(ctx.texture_view(t))),
    };
    // An output over the binding limit runs in pieces of whole output rows (each moving
    // the crop down); the pixel buffer must fit.
    let row = (desc.crop[1] * 3 * out.dtype().size()) as u64;
    let pieces = super::split(
        ctx,
        OP,
        ["output rows", "-"],
        (desc.crop[0], 1),
        &[
            // The texture's view replaces the dummy buffer below.
            super::Operand::optional(ctx, "pixels", pixels, 0, 0),
            super::Operand::tensor("output", out, row, 0),
        ],
    )?;
    for piece in pieces {
        let total = piece.rows * desc.crop[1];
        let params = Params {
            out_h: u("crop height", piece.rows)?,
            top: u("crop offset", (rh - desc.crop[0]) / 2 + piece.r0)?,
            total: u("output pixels", total)?,
            ..params
        };
        let grid = super::grid_for(ctx, OP, (total as u64).div_ceil(u64::from(WG)))?;
        let mut res = piece.res;
        if let Some(v) = &view {
            res[0] = super::Res::View(v);
        }
        super::record_resources(
            ctx,
            encoder,
            OP,
            &kernel,
            bytemuck::bytes_of(&params),
            &res,
            grid,
        )?;
    }
    Ok(())
}

/// The params block of this op's kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::ImageBuffer, uniform_layout::<Params>()),
        (ShaderFile::ImageTexture, uniform_layout::<Params>()),
    ]
}
