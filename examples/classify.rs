//! Classifies images with EfficientNet-Lite0 (ImageNet-1k, the real pretrained weights
//! converted by `tools/efficientnet_lite0/convert.py`) on the GPU in FP32, FP16, static
//! INT8 (calibrated on five other images, `examples/data/calibration`, each at four
//! scales) and dynamic INT8: the top-5 labels with probabilities, the GPU time per image
//! in each precision, and the size of the weights.
//!
//! ```text
//! cargo run --release --example classify                       # the bundled photos
//! cargo run --release --example classify -- a.jpg b.png
//! cargo run --release --example classify -- --observer entropy  # min-max, percentile, entropy, mse
//! cargo run --release --example classify -- --warmup 20 --runs 50 # steadier times on a GPU
//! cargo run --release --example classify -- --onnx examples/data/efficientnet_lite0/efficientnet_lite0.onnx
//! cargo run --release --example classify -- --save-int8 int8.safetensors  # save, then stop
//! ```
//!
//! `--json FILE` also writes every result (image, precision, milliseconds, top-5 class
//! indices and probabilities) as JSON; the web page's end-to-end test compares with it.
//!
//! `--save-int8 FILE` writes the static INT8 model (`QModel::save`) to FILE and stops
//! before classifying: the web page (examples/web) loads that file.
//!
//! `--onnx FILE` classifies with an ONNX model instead (`import::OnnxImport`): an
//! ImageNet classifier with one `[1, 3, 224, 224]` input (batch and spatial dimensions
//! may be symbolic) whose output is 1000 probabilities, fed the same preprocessing.
//!
//! Each image is decoded on the CPU, uploaded as RGBA8, then resized, center-cropped to
//! 224x224 and scaled as `(x - 127) / 128` on the GPU (`ops::image::image_to_tensor`);
//! the whole network runs in the same encoder. The time is the median GPU time of
//! `--runs` (5) runs of that encoder (preprocessing included), after `--warmup` (1)
//! untimed ones.

#[path = "common/net.rs"]
mod net;

use std::path::{Path, PathBuf};

use net::{data_dir, read_f32, Net};
use wgpu_quant::bench::time_gpu;
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::import::OnnxImport;
use wgpu_quant::model::{efficientnet_lite0, Model, QMode, QModel, WeightFile};
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

fn main() {
    if let Err(e) = run() {
        eprintln!("classify: {e}");
        std::process::exit(1);
    }
}

/// The observer named by `--observer` (min-max, percentile, entropy, mse).
fn parse_observer(name: &str) -> Result<ObserverKind, String> {
    match name {
        "min-max" | "minmax" => Ok(ObserverKind::MinMax),
        "percentile" => Ok(ObserverKind::Percentile { percentile: 99.99 }),
        "entropy" => Ok(ObserverKind::Entropy),
        "mse" => Ok(ObserverKind::Mse),
        _ => Err(format!(
            "unknown observer '{name}': expected min-max, percentile, entropy or mse"
        )),
    }
}

fn weights_path() -> PathBuf {
    data_dir().join("efficientnet_lite0/efficientnet_lite0.safetensors")
}

/// Decodes an image and uploads its RGBA8 pixels: (pixels, width, height).
fn load(ctx: &Context, path: &Path) -> Result<(Tensor, usize, usize), String> {
    let img = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
    let px = Tensor::from_slice(ctx, &[h * w], &pixels).map_err(|e| e.to_string())?;
    Ok((px, w, h))
}

fn run() -> Result<(), String> {
    let e = |e: wgpu_quant::Error| e.to_string();
    let mut images: Vec<PathBuf> = Vec::new();
    let mut observer = ObserverKind::MinMax;
    let mut onnx_file: Option<PathBuf> = None;
    let mut save_int8: Option<PathBuf> = None;
    let mut json: Option<PathBuf> = None;
    let (mut runs, mut warmup) = (5, 1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--onnx" {
            onnx_file = Some(PathBuf::from(args.next().ok_or("--onnx needs a file")?));
        } else if a == "--save-int8" {
            save_int8 = Some(PathBuf::from(
                args.next().ok_or("--save-int8 needs a file")?,
            ));
        } else if a == "--json" {
            json = Some(PathBuf::from(args.next().ok_or("--json needs a file")?));
        } else if a == "--observer" {
            observer = parse_observer(&args.next().ok_or("--observer needs a name")?)?;
        } else if a == "--runs" || a == "--warmup" {
            let n = args
                .next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0 || a == "--warmup")
                .ok_or(format!("{a} needs a count"))?;
            if a == "--runs" {
                runs = n;
            } else {
                warmup = n;
            }
        } else {
            images.push(PathBuf::from(a));
        }
    }
    if images.is_empty() {
        images = ["chelsea.png", "coffee.png", "rocket.jpg"]
            .iter()
            .map(|n| data_dir().join("photos").join(n))
            .collect();
    }
    let ctx = Context::request_blocking(&RequestOptions::default()).map_err(e)?;
    let a = &ctx.capabilities().adapter;
    println!("adapter: {} ({:?}, {})", a.name, a.backend, a.driver_info);
    let (graph, weights, model_name) = match &onnx_file {
        Some(f) => {
            let onnx = OnnxImport::load(f, Some(&[1, 3, 224, 224])).map_err(e)?;
            let name = f.display().to_string();
            (onnx.graph().clone(), onnx.weights().clone(), name)
        }
        None => {
            let weights = WeightFile::load(weights_path()).map_err(e)?;
            let graph = efficientnet_lite0(&weights).map_err(e)?;
            (graph, weights, "EfficientNet-Lite0".to_string())
        }
    };
    let labels: Vec<String> =
        std::fs::read_to_string(data_dir().join("efficientnet_lite0/imagenet_labels.txt"))
            .map_err(|e| format!("imagenet_labels.txt: {e}"))?
            .lines()
            .map(String::from)
            .collect();
    let shape = [1, 224, 224, 3];
    let desc =
        |shorter| ImageDesc::center_crop(shorter, 224, 224).normalize([127.0; 3], [128.0; 3]);

    // Calibration batches: other images than the ones classified, each at four scales.
    let mut cal: Vec<PathBuf> = std::fs::read_dir(data_dir().join("calibration"))
        .map_err(|e| format!("examples/data/calibration: {e}"))?
        .map(|d| d.map(|d| d.path()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    cal.sort();
    let mut batches = Vec::new();
    for path in &cal {
        let (px, w, h) = load(&ctx, path)?;
        for shorter in [224, 256, 320, 400] {
            let x = Tensor::zeros(&ctx, &shape, DType::F32).map_err(e)?;
            let mut enc = ctx.encoder("calibration input");
            let src = ImageSource::Buffer {
                pixels: &px,
                width: w,
                height: h,
            };
            image_to_tensor(&ctx, &mut enc, src, &desc(shorter), &x).map_err(e)?;
            ctx.submit_and_wait(enc).map_err(e)?;
            batches.push(x);
        }
    }

    let mut nets: Vec<(&str, Net)> = Vec::new();
    for (name, dtype) in [("FP32", DType::F32), ("FP16", DType::F16)] {
        let m = Model::new(&ctx, &graph, &weights, dtype, &shape).map_err(e)?;
        nets.push((name, Net::Float(m)));
    }
    for (name, mode) in [
        ("INT8 static", QMode::Static),
        ("INT8 dynamic", QMode::Dynamic),
    ] {
        let q = QModel::calibrate(&ctx, &graph, &weights, &shape, &batches, observer, mode)
            .map_err(e)?;
        nets.push((name, Net::Int8(Box::new(q))));
    }
    println!(
        "{model_name}: {} layers; static INT8 calibrated with {} on {} batches",
        graph.nodes.len(),
        observer.name(),
        batches.len()
    );
    // The static INT8 model as a file, next to the FP32 weights file.
    if let Net::Int8(q) = &nets[2].1 {
        let path = save_int8
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("efficientnet_lite0_int8.safetensors"));
        let saved = q.save(&path).map_err(e)?;
        let fp32_file = std::fs::metadata(weights_path())
            .map_err(|e| e.to_string())?
            .len();
        println!(
            "static INT8 saved to {}: {:.2} MB ({:.2}x smaller than the FP32 file, {:.2} MB)",
            path.display(),
            saved as f64 / 1e6,
            fp32_file as f64 / saved as f64,
            fp32_file as f64 / 1e6
        );
    }
    if save_int8.is_some() {
        return Ok(());
    }
    let fp32_bytes = nets[0].1.weight_bytes();
    for (name, net) in &nets {
        let bytes = net.weight_bytes();
        let vs = if bytes == fp32_bytes {
            String::new()
        } else {
            format!(
                " ({:.2}x smaller than FP32)",
                fp32_bytes as f64 / bytes as f64
            )
        };
        println!("  {name:<12} weights {:>6.2} MB{vs}", bytes as f64 / 1e6);
    }

    let mut records = Vec::new();
    for path in &images {
        let (px, w, h) = load(&ctx, path)?;
        println!();
        let shown = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(path);
        println!("{} ({w}x{h})", shown.display());
        for (name, net) in &nets {
            let x = Tensor::zeros(&ctx, &shape, net.input_dtype()).map_err(e)?;
            let src = ImageSource::Buffer {
                pixels: &px,
                width: w,
                height: h,
            };
            let mut out = None;
            let t = time_gpu(&ctx, warmup, runs, |enc| {
                image_to_tensor(&ctx, enc, src, &desc(224), &x)?;
                out = Some(net.forward(&ctx, enc, &x)?);
                Ok(())
            })
            .map_err(e)?;
            let y = out.expect("time_gpu ran the closure");
            let probs = read_f32(&ctx, y).map_err(e)?;
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
                "  {name:<12} {:>8.2} ms/image  {}",
                t.median(),
                top.join(" | ")
            );
            records.push(serde_json::json!({
                "image": path.file_name().map(|n| n.to_string_lossy().to_string()),
                "precision": name,
                "ms": t.median(),
                "top5": idx[..5].iter().map(|&i| serde_json::json!({"index": i, "p": probs[i]})).collect::<Vec<_>>(),
            }));
        }
    }
    if let Some(file) = json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}
