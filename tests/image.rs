//! Image input (an RGBA8 buffer or texture, bilinear resize, center crop, normalization)
//! against its CPU reference, f32 and f16 out. Outputs are poisoned first.

mod common;

use common::float::{check, poisoned, read, F16_OUT};
use rand::{RngExt, SeedableRng};
use wgpu_quant::{DType, Tensor};

#[test]
fn image_input_from_buffer_and_texture() {
    use wgpu_quant::ops::image::{
        image_to_tensor, image_to_tensor_reference, ImageDesc, ImageSource,
    };
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // (width, height, desc): downscale with a center crop, upscale, an exact resize.
    let cases = [
        (
            37usize,
            23usize,
            ImageDesc::center_crop(16, 13, 16).normalize([127.0; 3], [128.0; 3]),
        ),
        (5, 7, ImageDesc::center_crop(9, 9, 9)),
        (
            8,
            6,
            ImageDesc {
                resize: Some([6, 8]),
                ..ImageDesc::center_crop(6, 6, 8)
                    .normalize([123.7, 116.3, 103.5], [58.4, 57.1, 57.4])
            },
        ),
    ];
    for (w, h, desc) in cases {
        let rgba: Vec<[u8; 4]> = (0..w * h).map(|_| rng.random::<[u8; 4]>()).collect();
        let want = image_to_tensor_reference(&rgba, w, h, &desc);
        let want64: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        let words: Vec<u32> = rgba.iter().map(|p| u32::from_le_bytes(*p)).collect();
        let px = Tensor::from_slice(ctx, &[w * h], &words).unwrap();
        for f16_out in [false, true] {
            let out = poisoned(ctx, &desc.output_shape(), f16_out);
            let mut enc = ctx.encoder("image test");
            let src = ImageSource::Buffer {
                pixels: &px,
                width: w,
                height: h,
            };
            image_to_tensor(ctx, &mut enc, src, &desc, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let budget = 1e-6 + if f16_out { F16_OUT } else { 0.0 };
            check(
                &format!("buffer {w}x{h} {desc:?}"),
                &read(ctx, &out),
                &want64,
                budget,
            );
        }
        // The same pixels as a texture a renderer could have drawn.
        let tex = ctx.device().create_texture(&wgpu::TextureDescriptor {
            label: Some("frame"),
            size: wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let bytes: Vec<u8> = rgba.iter().flatten().copied().collect();
        ctx.queue().write_texture(
            tex.as_image_copy(),
            &bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * w as u32),
                rows_per_image: None,
            },
            tex.size(),
        );
        let out = poisoned(ctx, &desc.output_shape(), false);
        let mut enc = ctx.encoder("texture test");
        image_to_tensor(ctx, &mut enc, ImageSource::Texture(&tex), &desc, &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        // textureLoad returns unorm values; * 255 may differ from the byte by an ulp.
        check(&format!("texture {w}x{h}"), &read(ctx, &out), &want64, 1e-6);
    }
    // A crop larger than the resized image is refused.
    let px = Tensor::from_slice(ctx, &[4], &[0u32; 4]).unwrap();
    let out = Tensor::zeros(ctx, &[1, 3, 3, 3], DType::F32).unwrap();
    let mut enc = ctx.encoder("errors");
    let e = image_to_tensor(
        ctx,
        &mut enc,
        ImageSource::Buffer {
            pixels: &px,
            width: 2,
            height: 2,
        },
        &ImageDesc::center_crop(2, 3, 3),
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("larger than the resized"), "{e}");
}
