//! How a renderer embeds wgpu-quant: the engine owns the device, the queue and the
//! per-frame command encoder; wgpu-quant records a small network into that encoder after
//! the engine's own render pass, reading the rendered texture directly, and leaves the
//! class probabilities on the GPU. Nothing is submitted or waited on behind the engine's
//! back, and after the first frame nothing is allocated: bind groups, parameter buffers
//! and intermediates come from the context's pool (`Context::stats` proves it).
//!
//! ```text
//! cargo run --release --example engine
//! ```

use wgpu_quant::model::QLinear;
use wgpu_quant::ops::conv::{conv2d, ConvDesc, ConvDims, ConvWeight, Padding};
use wgpu_quant::ops::eltwise::softmax;
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::ops::pool::{pool2d, PoolDesc};
use wgpu_quant::{Context, DType, Tensor};

const SIZE: u32 = 64;
const CLASSES: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --- The engine's side: its own instance, adapter, device and render target. ---
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .map_err(|e| format!("no adapter ({e}); install mesa-vulkan-drivers for lavapipe"))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("engine"),
        // The engine opts into what wgpu-quant can use, within what the adapter has.
        required_features: adapter.features() & wgpu_quant::context::wanted_features(),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("engine render target"),
        size: wgpu::Extent3d {
            width: SIZE,
            height: SIZE,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    let target_view = target.create_view(&Default::default());

    // --- wgpu-quant shares that device: no second device, no copies. ---
    let ctx = Context::new(device.clone(), queue.clone());
    println!(
        "engine device: {} ({:?})",
        ctx.capabilities().adapter.name,
        ctx.capabilities().adapter.backend
    );
    // A tiny network (random weights; the point is the plumbing): image -> 3x3 conv
    // (3 -> 8 channels, ReLU) -> global average pool -> INT8 linear (8 -> 10) -> softmax.
    let dims = ConvDims::new(8, 3, [3, 3], 1)?;
    let conv_w = ConvWeight::from_oihw(&ctx, dims, &weights(8 * 3 * 9, 1), DType::F32)?;
    let conv = ConvDesc::default()
        .padding(Padding::Same)
        .stride(2)
        .activation(Activation::Relu);
    let fc = QLinear::from_f32(&ctx, &weights(CLASSES * 8, 2), CLASSES, 8, None)?;
    let image = ImageDesc::center_crop(32, 32, 32).normalize([127.5; 3], [127.5; 3]);
    // The activations are allocated once, by the engine, like any other GPU resource.
    let x = Tensor::zeros(&ctx, &image.output_shape(), DType::F32)?;
    let h = Tensor::zeros(&ctx, &conv.output_shape(&dims, x.shape())?, DType::F32)?;
    let pooled = Tensor::zeros(&ctx, &[1, 1, 1, 8], DType::F32)?;
    let logits = Tensor::zeros(&ctx, &[1, CLASSES], DType::F32)?;
    let probs = Tensor::zeros(&ctx, &[1, CLASSES], DType::F32)?;
    let flat = pooled.reshape(&[1, 8])?;

    let mut after_first = None;
    for frame in 0..5u32 {
        let mut encoder = ctx.encoder("engine frame");
        // The engine's own work: here, clearing its render target to a frame color.
        {
            let t = f64::from(frame) / 4.0;
            let _pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("engine scene"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &target_view,
                    resolve_target: None,
                    depth_slice: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: t,
                            g: 1.0 - t,
                            b: 0.5,
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
        }
        // wgpu-quant records into the same encoder, reading the rendered texture.
        image_to_tensor(
            &ctx,
            &mut encoder,
            ImageSource::Texture(&target),
            &image,
            &x,
        )?;
        conv2d(&ctx, &mut encoder, &conv, &x, &conv_w, None, &h)?;
        pool2d(&ctx, &mut encoder, &PoolDesc::global_avg(), &h, &pooled)?;
        fc.forward(&ctx, &mut encoder, &flat, &logits)?;
        softmax(&ctx, &mut encoder, &logits, &probs)?;
        // The engine submits once per frame, when it wants to.
        queue.submit([encoder.finish()]);
        if frame == 0 {
            after_first = Some(ctx.stats());
        }
    }
    let first = after_first.expect("frame 0 ran");
    let last = ctx.stats();
    // Reading back is for this demo only; an engine would keep using `probs` on the GPU.
    let p = probs.read_blocking::<f32>(&ctx)?;
    println!("class probabilities of the last frame: {p:.3?}");
    println!(
        "after frame 1: {} bind groups, {} tensors, {} scratch buffers, {} kernels",
        first.bind_groups_created,
        first.tensors_allocated,
        first.scratch_buffers_created,
        first.kernels
    );
    println!(
        "frames 2-5 allocated {} bind groups, {} tensors, {} scratch buffers, {} kernels; \
         reused {} pooled bind groups",
        last.bind_groups_created - first.bind_groups_created,
        last.tensors_allocated - first.tensors_allocated,
        last.scratch_buffers_created - first.scratch_buffers_created,
        last.kernels - first.kernels,
        last.bind_group_reuses - first.bind_group_reuses
    );
    let sum: f32 = p.iter().sum();
    if (sum - 1.0).abs() > 1e-4 {
        return Err(format!("probabilities sum to {sum}").into());
    }
    if last.bind_groups_created != first.bind_groups_created
        || last.tensors_allocated != first.tensors_allocated
    {
        return Err("a frame after warm-up allocated".into());
    }
    Ok(())
}

/// Deterministic small weights.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    wgpu_quant::bench::random_f32(n, seed)
        .into_iter()
        .map(|v| v * 0.3)
        .collect()
}
