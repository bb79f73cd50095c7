//! `wgpu-quant inspect` and `wgpu-quant run`: an ONNX model from the command line.

use std::path::{Path, PathBuf};

use wgpu_quant::bench::time_gpu;
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::import::OnnxImport;
use wgpu_quant::model::{Model, PtqOptions, QMode, QModel};
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::{Context, DType, Tensor};

type R<T> = Result<T, String>;

fn e(err: wgpu_quant::Error) -> String {
    err.to_string()
}

/// What `run` does with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// FP32 weights and activations.
    Fp32,
    /// FP16 weights and activations.
    Fp16,
    /// INT8, activations calibrated on --calibrate (static scales).
    Int8Static,
    /// INT8 weights, activations quantized on the fly.
    Int8Dynamic,
    /// INT8 with a quantized (QDQ) file's own codes, scales and zero points.
    Int8File,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The ONNX model.
    model: PathBuf,
    /// An image (PNG, JPEG) or a .npy float32 tensor in the model's input layout (NCHW).
    #[arg(long)]
    input: PathBuf,
    /// The input's ONNX shape, e.g. 1,3,224,224 (needed when the file's is symbolic).
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<usize>>,
    /// Precision.
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// Images (a folder) to calibrate int8-static on (and correct the INT8 biases).
    #[arg(long)]
    calibrate: Option<PathBuf>,
    /// Class names, one per line, for the top-k.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Images: the shorter side is resized to this before the center crop (default: just
    /// enough for the image to cover the model's input).
    #[arg(long)]
    resize: Option<usize>,
    /// Images: per-channel (R,G,B) mean subtracted from 0..255 pixels.
    #[arg(long, value_delimiter = ',', default_values_t = [127.0f32, 127.0, 127.0])]
    mean: Vec<f32>,
    /// Images: per-channel divisor after the mean.
    #[arg(long, value_delimiter = ',', default_values_t = [128.0f32, 128.0, 128.0])]
    std: Vec<f32>,
    /// Timed runs (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print the GPU time of every layer (needs timestamp queries inside encoders).
    #[arg(long)]
    layers: bool,
}

/// An input shape from the command line: every dimension at least 1, the product in
/// range.
pub fn check_shape(shape: &[usize]) -> R<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(format!(
            "--shape {shape:?}: every dimension must be at least 1"
        ));
    }
    let elems = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    super::check::memory(
        &format!("--shape {shape:?}"),
        elems.and_then(|e| e.checked_mul(16)),
    )
}

/// Checks `run`'s arguments before anything is loaded.
pub fn validate(a: &RunArgs) -> R<()> {
    use super::check;
    check::input_file("the model", &a.model)?;
    check::input_file("--input", &a.input)?;
    if let Some(s) = &a.shape {
        check_shape(s)?;
    }
    if let Some(dir) = &a.calibrate {
        check::input_dir("--calibrate", dir)?;
    }
    if let Some(l) = &a.labels {
        check::input_file("--labels", l)?;
    }
    if a.precision == Precision::Int8Static && a.calibrate.is_none() {
        return Err(
            "--precision int8-static needs --calibrate DIR (images to calibrate on)".into(),
        );
    }
    check::positive("--runs", a.runs)?;
    check::positive("--top", a.top)?;
    if let Some(r) = a.resize {
        check::positive("--resize", r)?;
    }
    for (flag, v) in [("--mean", &a.mean), ("--std", &a.std)] {
        if v.len() != 3 {
            return Err(format!("{flag} needs 3 values (R,G,B), got {}", v.len()));
        }
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(format!("{flag} {v:?}: {x} is not a finite number"));
        }
    }
    if let Some(x) = a.std.iter().find(|x| **x == 0.0) {
        return Err(format!("--std {:?}: a divisor of {x}", a.std));
    }
    Ok(())
}

/// Lists the model: opset, edges, operators, layers, parameters; or every node that
/// cannot be imported.
pub fn inspect(model: &Path, shape: Option<&[usize]>) -> R<()> {
    let onnx = OnnxImport::load(model, shape).map_err(e)?;
    print!("{}", onnx.summary());
    if onnx.is_quantized() {
        println!("quantized (QDQ): runs with its own scales with --precision int8-file");
    }
    println!("\n| # | layer | kind | reads |");
    println!("|---:|---|---|---|");
    for (i, n) in onnx.graph().nodes.iter().enumerate() {
        let kind = match &n.layer {
            wgpu_quant::model::Layer::Conv { dims, desc, .. } => format!(
                "conv {}x{} {}->{} groups {} stride {:?} {:?}",
                dims.kernel[0],
                dims.kernel[1],
                dims.in_channels,
                dims.out_channels,
                dims.groups,
                desc.stride,
                desc.activation
            ),
            wgpu_quant::model::Layer::Linear {
                n, k, activation, ..
            } => format!("linear {k}->{n} {activation:?}"),
            wgpu_quant::model::Layer::Pool(p) => format!("{:?} pool {:?}", p.kind, p.kernel),
            wgpu_quant::model::Layer::Add { other, clip } => {
                format!("add node {other} clip [{}, {}]", clip.lo, clip.hi)
            }
            wgpu_quant::model::Layer::Softmax => "softmax".into(),
            wgpu_quant::model::Layer::RowReduce(k) => format!("{k:?} over the last axis"),
            wgpu_quant::model::Layer::BinaryConst { op, dims, .. } => {
                format!("{op:?} by a constant {dims:?}")
            }
            wgpu_quant::model::Layer::Map { f, clip } => {
                format!("{f:?} clip [{}, {}]", clip.lo, clip.hi)
            }
            wgpu_quant::model::Layer::ChannelAffine { scale, .. } => {
                format!("channel affine of {} channels", scale.len())
            }
            wgpu_quant::model::Layer::LayerNorm { eps, gamma, beta } => format!(
                "layer norm eps {eps}{}{}",
                if gamma.is_some() { " gamma" } else { "" },
                if beta.is_some() { " beta" } else { "" }
            ),
            wgpu_quant::model::Layer::Upsample { factors } => format!("upsample {factors:?}"),
            wgpu_quant::model::Layer::DepthToSpace { block } => format!("depth to space {block:?}"),
            wgpu_quant::model::Layer::ZeroInsert { factors } => {
                format!("zero insertion {factors:?}")
            }
            wgpu_quant::model::Layer::ResizeBilinear { size, coords, .. } => {
                format!("bilinear resize to {size:?} ({coords:?})")
            }
            wgpu_quant::model::Layer::Concat { others, axis } => {
                format!("concat with nodes {others:?} along axis {axis}")
            }
            wgpu_quant::model::Layer::Const { dims, .. } => format!("constant {dims:?}"),
            wgpu_quant::model::Layer::Gather { axis, indices } => {
                format!("gather {} along axis {axis}", indices.len())
            }
            wgpu_quant::model::Layer::Expand { view, to } => format!("expand {view:?} to {to:?}"),
            wgpu_quant::model::Layer::Pad {
                before,
                after,
                mode,
            } => format!("pad {before:?} {after:?} ({mode:?})"),
            wgpu_quant::model::Layer::Binary { op, other, clip } => {
                format!("{op:?} node {other} clip [{}, {}]", clip.lo, clip.hi)
            }
            wgpu_quant::model::Layer::MatMul { other } => format!("matmul by node {other}"),
            wgpu_quant::model::Layer::Crop {
                view,
                start,
                step,
                size,
            } => format!("slice {size:?} from {start:?} by {step:?} of {view:?}"),
            wgpu_quant::model::Layer::Permute { view, perm } => {
                format!("permute {view:?} by {perm:?}")
            }
        };
        let reads = match n.input {
            wgpu_quant::model::Src::Input => "input".to_string(),
            wgpu_quant::model::Src::Node(j) => format!("{j}"),
        };
        println!("| {i} | {} | {kind} | {reads} |", n.name);
    }
    Ok(())
}

/// The input: an image through the GPU preprocessing, or a .npy tensor.
fn input(ctx: &Context, onnx: &OnnxImport, a: &RunArgs, path: &Path) -> R<Tensor> {
    let shape = &onnx.input().model_shape;
    if path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("npy"))
    {
        let bytes = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let npy =
            npyz::NpyFile::new(&bytes[..]).map_err(|err| format!("{}: {err}", path.display()))?;
        let dims: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        if dims != onnx.input().shape {
            return Err(format!(
                "{}: shape {dims:?}; the model's input is {:?}",
                path.display(),
                onnx.input().shape
            ));
        }
        let v: Vec<f32> = npy
            .into_vec::<f32>()
            .map_err(|err| format!("{}: not a float32 array ({err})", path.display()))?;
        let x = onnx.to_model_input(&v).map_err(e)?;
        return Tensor::from_slice(ctx, shape, &x).map_err(e);
    }
    let [b, h, w, c] = shape[..] else {
        return Err(format!(
            "an image input needs a 4-D model input; this one is {:?}",
            onnx.input().shape
        ));
    };
    if b != 1 || c != 3 {
        return Err(format!(
            "an image fills a [1, 3, H, W] input; this one is {:?}",
            onnx.input().shape
        ));
    }
    let [m0, m1, m2] = a.mean[..] else {
        return Err(format!("--mean needs 3 values, got {}", a.mean.len()));
    };
    let [s0, s1, s2] = a.std[..] else {
        return Err(format!("--std needs 3 values, got {}", a.std.len()));
    };
    let img = image::open(path)
        .map_err(|err| format!("{}: {err}", path.display()))?
        .to_rgba8();
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let pixels: Vec<u32> = img
        .as_raw()
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
        .collect();
    let px = Tensor::from_slice(ctx, &[ih * iw], &pixels).map_err(e)?;
    // By default the image is scaled just enough to cover the input, then center-cropped.
    let cover = (h as f64 / ih as f64).max(w as f64 / iw as f64);
    let shorter = a
        .resize
        .unwrap_or((ih.min(iw) as f64 * cover).ceil() as usize);
    let desc = ImageDesc::center_crop(shorter, h, w).normalize([m0, m1, m2], [s0, s1, s2]);
    let x = Tensor::zeros(ctx, shape, DType::F32).map_err(e)?;
    let mut enc = ctx.encoder("input");
    image_to_tensor(
        ctx,
        &mut enc,
        ImageSource::Buffer {
            pixels: &px,
            width: iw,
            height: ih,
        },
        &desc,
        &x,
    )
    .map_err(e)?;
    ctx.submit_and_wait(enc).map_err(e)?;
    Ok(x)
}

enum Net {
    Float(Model),
    Int8(Box<QModel>),
}

/// Runs the model on one input and prints the top-k and the time.
pub fn run(ctx: &Context, a: &RunArgs) -> R<()> {
    let onnx = OnnxImport::load(&a.model, a.shape.as_deref()).map_err(|err| {
        let s = err.to_string();
        if s.contains("give the input shape") {
            format!("{s} (--shape)")
        } else {
            s
        }
    })?;
    let ad = &ctx.capabilities().adapter;
    println!(
        "adapter: {} ({:?}, {})",
        ad.name, ad.backend, ad.driver_info
    );
    print!("{}", onnx.summary());
    let x = input(ctx, &onnx, a, &a.input)?;
    let net = match a.precision {
        Precision::Fp32 => Net::Float(onnx.model(ctx, DType::F32).map_err(e)?),
        Precision::Fp16 => Net::Float(onnx.model(ctx, DType::F16).map_err(e)?),
        Precision::Int8File => Net::Int8(Box::new(onnx.qmodel(ctx).map_err(e)?)),
        Precision::Int8Static | Precision::Int8Dynamic => {
            let mut batches = Vec::new();
            if let Some(dir) = &a.calibrate {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|err| format!("{}: {err}", dir.display()))?
                    .filter_map(|d| d.ok().map(|d| d.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                for f in &files {
                    batches.push(input(ctx, &onnx, a, f)?);
                }
                println!(
                    "calibrated on {} inputs from {}",
                    batches.len(),
                    dir.display()
                );
            } else if a.precision == Precision::Int8Static {
                return Err(
                    "int8-static needs --calibrate DIR (images to calibrate the activations on)"
                        .into(),
                );
            }
            let mode = if a.precision == Precision::Int8Static {
                QMode::Static
            } else {
                QMode::Dynamic
            };
            Net::Int8(Box::new(
                onnx.quantize(ctx, &batches, &PtqOptions::new(ObserverKind::MinMax, mode))
                    .map_err(e)?,
            ))
        }
    };
    let x = match &net {
        // The FP16 model reads f16: converted on the GPU.
        Net::Float(m) if m.dtype() == DType::F16 => {
            let h = Tensor::zeros(ctx, x.shape(), DType::F16).map_err(e)?;
            let mut enc = ctx.encoder("to f16");
            wgpu_quant::ops::eltwise::cast(ctx, &mut enc, &x, &h).map_err(e)?;
            ctx.submit_and_wait(enc).map_err(e)?;
            h
        }
        _ => x,
    };
    let mut out = None;
    let t = time_gpu(ctx, 1, a.runs.max(1), |enc| {
        out = Some(match &net {
            Net::Float(m) => m.forward(ctx, enc, &x)?.clone(),
            Net::Int8(q) => q.forward(ctx, enc, &x)?.clone(),
        });
        Ok(())
    })
    .map_err(e)?;
    let y = read_f32(ctx, &out.ok_or("no run")?)?;
    let y = onnx.from_model_output(&y).map_err(e)?;
    println!(
        "{:?}: {:.2} ms per run (median of {}, {:?})",
        a.precision,
        t.median(),
        t.ms.len(),
        t.clock
    );
    if a.layers {
        let times = match &net {
            Net::Float(m) => m.profile(ctx, &x, a.runs.max(1)),
            Net::Int8(q) => q.profile(ctx, &x, a.runs.max(1)),
        }
        .map_err(e)?;
        let total: f64 = times.iter().map(|(_, t)| t).sum();
        println!("\n| # | layer | ms | share |\n|---:|---|---:|---:|");
        for (i, (name, t)) in times.iter().enumerate() {
            println!(
                "| {i} | {name} | {t:.3} | {:.1}% |",
                100.0 * t / total.max(f64::MIN_POSITIVE)
            );
        }
        println!("| | total of the layers | {total:.3} | |\n");
    }
    let labels: Vec<String> = match &a.labels {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|err| format!("{}: {err}", p.display()))?
            .lines()
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&i, &j| y[j].total_cmp(&y[i]));
    for &i in idx.iter().take(a.top) {
        let name = labels.get(i).map_or("", String::as_str);
        println!("  {i:>5} {:>9.5} {name}", y[i]);
    }
    print_other_outputs(ctx, &onnx, &net)
}

/// A model output (f32 or f16) as f32 values.
fn read_f32(ctx: &Context, t: &Tensor) -> R<Vec<f32>> {
    let e = |x: wgpu_quant::Error| x.to_string();
    if t.dtype() == DType::F16 {
        Ok(t.read_blocking::<half::f16>(ctx)
            .map_err(e)?
            .iter()
            .map(|v| v.to_f32())
            .collect())
    } else {
        t.read_blocking::<f32>(ctx).map_err(e)
    }
}

/// The other graph outputs (besides the one the last layer computes): their shape and
/// range, read by their layer's name.
fn print_other_outputs(ctx: &Context, onnx: &OnnxImport, net: &Net) -> R<()> {
    for (k, edge) in onnx.outputs().iter().enumerate() {
        if edge.name == onnx.output().name {
            continue;
        }
        let t = match net {
            Net::Float(m) => m.output(&edge.node),
            Net::Int8(q) => q.output(&edge.node),
        };
        let Some(t) = t else {
            println!(
                "output '{}' {:?}: held as 8-bit codes in this model",
                edge.name, edge.shape
            );
            continue;
        };
        let v = onnx
            .from_output(k, &read_f32(ctx, t)?)
            .map_err(|x| x.to_string())?;
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
        println!(
            "output '{}' {:?}: min {lo:.5} max {hi:.5} mean {mean:.5}",
            edge.name, edge.shape
        );
    }
    Ok(())
}
