//! Classifies images with EfficientNet-Lite0 (ImageNet-1k, the real pretrained weights
//! converted by `tools/efficientnet_lite0/convert.py`) on the GPU, in FP32 and FP16:
//! top-5 labels with probabilities, and the GPU time per image in each precision.
//!
//! ```text
//! cargo run --release --example classify                 # the bundled photos
//! cargo run --release --example classify -- a.jpg b.png
//! ```
//!
//! Each image is decoded on the CPU, uploaded as RGBA8, and resized, center-cropped to
//! 224x224 and scaled as `(x - 127) / 128` on the GPU (`ops::image::image_to_tensor`);
//! the whole network then runs in one encoder.

use std::path::{Path, PathBuf};

use half::f16;
use wgpu_quant::bench::time_gpu;
use wgpu_quant::model::{efficientnet_lite0, Model, WeightFile};
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data");

fn main() {
    if let Err(e) = run() {
        eprintln!("classify: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut images: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if images.is_empty() {
        images = ["chelsea.png", "coffee.png", "rocket.jpg"]
            .iter()
            .map(|n| Path::new(DATA).join("photos").join(n))
            .collect();
    }
    let ctx = Context::request_blocking(&RequestOptions::default()).map_err(|e| e.to_string())?;
    let a = &ctx.capabilities().adapter;
    println!("adapter: {} ({:?}, {})", a.name, a.backend, a.driver_info);
    let weights_path = Path::new(DATA).join("efficientnet_lite0/efficientnet_lite0.safetensors");
    let weights = WeightFile::load(&weights_path).map_err(|e| e.to_string())?;
    let labels: Vec<String> =
        std::fs::read_to_string(Path::new(DATA).join("efficientnet_lite0/imagenet_labels.txt"))
            .map_err(|e| format!("imagenet_labels.txt: {e}"))?
            .lines()
            .map(String::from)
            .collect();
    let graph = efficientnet_lite0(&weights).map_err(|e| e.to_string())?;
    let shape = [1, 224, 224, 3];
    let mut models = Vec::new();
    for (name, dtype) in [("FP32", DType::F32), ("FP16", DType::F16)] {
        let m = Model::new(&ctx, &graph, &weights, dtype, &shape).map_err(|e| e.to_string())?;
        println!(
            "{name}: {} layers, weights {:.2} MB on the GPU",
            graph.nodes.len(),
            m.weight_bytes() as f64 / 1e6
        );
        models.push((name, m));
    }
    let desc = ImageDesc::center_crop(224, 224, 224).normalize([127.0; 3], [128.0; 3]);
    for path in &images {
        let img = image::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_rgba8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let pixels: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
        let px = Tensor::from_slice(&ctx, &[h * w], &pixels).map_err(|e| e.to_string())?;
        println!();
        println!("{} ({w}x{h})", path.display());
        for (name, model) in &models {
            let x = Tensor::zeros(&ctx, &shape, model.dtype()).map_err(|e| e.to_string())?;
            let src = ImageSource::Buffer {
                pixels: &px,
                width: w,
                height: h,
            };
            let mut out = None;
            let t = time_gpu(&ctx, 1, 5, |enc| {
                image_to_tensor(&ctx, enc, src, &desc, &x)?;
                out = Some(model.forward(&ctx, enc, &x)?);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            let y = out.expect("ran");
            let probs: Vec<f32> = if model.dtype() == DType::F16 {
                y.read_blocking::<f16>(&ctx)
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|v| v.to_f32())
                    .collect()
            } else {
                y.read_blocking::<f32>(&ctx).map_err(|e| e.to_string())?
            };
            let mut idx: Vec<usize> = (0..probs.len()).collect();
            idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let top: Vec<String> = idx[..5]
                .iter()
                .map(|&i| {
                    let label = labels
                        .get(i)
                        .map_or("?", |l| l.split(',').next().unwrap_or(l));
                    format!("{label} {:.1}%", 100.0 * probs[i])
                })
                .collect();
            println!(
                "  {name}: {:.2} ms/image ({:?})  {}",
                t.median(),
                t.clock,
                top.join(" | ")
            );
        }
    }
    Ok(())
}
