//! LeNet on 1,000 real MNIST test digits (trained by `tools/lenet_mnist/train.py` on the
//! other 4,000 of the 5,000 digits bundled in `examples/data/mnist`) in FP32, FP16, static
//! INT8 with each observer, and dynamic INT8: test accuracy, the change against FP32,
//! the size of the weights and the GPU time per batch of 100 digits (the median of
//! `--runs` (5) runs after `--warmup` (1) untimed ones).
//!
//! ```text
//! cargo run --release --example mnist
//! cargo run --release --example mnist -- --warmup 20 --runs 50   # steadier times on a GPU
//! ```
//!
//! Static INT8 is calibrated on 500 training digits (5 batches of 100, every class in
//! each), never on the test digits; bias correction is on (`PtqOptions`).

#[path = "common/mnist.rs"]
mod mnist;
#[path = "common/net.rs"]
mod net;

use half::f16;
use net::{data_dir, read_f32, Net};
use wgpu_quant::bench::time_gpu;
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::model::{lenet, Model, QMode, QModel, WeightFile};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

const BATCH: usize = 100;
const CALIBRATION_BATCHES: usize = 5;

fn main() {
    if let Err(e) = run() {
        eprintln!("mnist: {e}");
        std::process::exit(1);
    }
}

/// Uploads `x` ([BATCH, 28, 28, 1], f32) in the dtype `net` takes.
fn input(ctx: &Context, net: &Net, x: &[f32]) -> wgpu_quant::Result<Tensor> {
    let shape = [BATCH, 28, 28, 1];
    if net.input_dtype() == DType::F16 {
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        Tensor::from_slice(ctx, &shape, &h)
    } else {
        Tensor::from_slice(ctx, &shape, x)
    }
}

/// The index of the largest of each row of 10.
fn predictions(ctx: &Context, y: &Tensor) -> wgpu_quant::Result<Vec<usize>> {
    Ok(read_f32(ctx, y)?
        .chunks_exact(10)
        .map(|r| (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap_or(0))
        .collect())
}

fn run() -> Result<(), String> {
    let e = |e: wgpu_quant::Error| e.to_string();
    let (mut runs, mut warmup) = (5, 1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let n = args.next().and_then(|v| v.parse::<usize>().ok());
        match (a.as_str(), n) {
            ("--runs", Some(n)) if n > 0 => runs = n,
            ("--warmup", Some(n)) => warmup = n,
            _ => {
                return Err(format!(
                    "unknown argument '{a}' (or a bad count): expected --runs N or --warmup N"
                ))
            }
        }
    }
    let dir = data_dir().join("mnist");
    let (train, test) = mnist::load(&dir.join("mnist_5k.csv.gz").to_string_lossy())?;
    let ctx = Context::request_blocking(&RequestOptions::default()).map_err(e)?;
    let a = &ctx.capabilities().adapter;
    println!("adapter: {} ({:?}, {})", a.name, a.backend, a.driver_info);
    let weights = WeightFile::load(dir.join("lenet.safetensors")).map_err(e)?;
    let graph = lenet();
    let shape = [BATCH, 28, 28, 1];

    // Calibration: batch b holds training digits b, b + 40, b + 80, ... (the training
    // rows are sorted by class, so every batch has 10 of each).
    let stride = train.len() / BATCH;
    let calibration: Vec<Tensor> = (0..CALIBRATION_BATCHES)
        .map(|b| {
            let x: Vec<f32> = (0..BATCH)
                .flat_map(|j| train.batch(b + j * stride, 1).to_vec())
                .collect();
            Tensor::from_slice(&ctx, &shape, &x)
        })
        .collect::<wgpu_quant::Result<_>>()
        .map_err(e)?;

    let mut nets: Vec<(String, Net)> = Vec::new();
    for (name, dtype) in [("FP32", DType::F32), ("FP16", DType::F16)] {
        let m = Model::new(&ctx, &graph, &weights, dtype, &shape).map_err(e)?;
        nets.push((name.into(), Net::Float(m)));
    }
    // Static INT8 with each observer, then dynamic INT8.
    let int8 = ObserverKind::standard()
        .into_iter()
        .map(|o| (format!("INT8 static, {}", o.name()), o, QMode::Static))
        .chain([("INT8 dynamic".into(), ObserverKind::MinMax, QMode::Dynamic)]);
    for (name, obs, mode) in int8 {
        let q = QModel::calibrate(&ctx, &graph, &weights, &shape, &calibration, obs, mode)
            .map_err(e)?;
        nets.push((name, Net::Int8(Box::new(q))));
    }

    println!(
        "LeNet on {} MNIST test digits ({} training digits; {} for calibration)",
        test.len(),
        train.len(),
        CALIBRATION_BATCHES * BATCH
    );
    println!();
    println!(
        "| precision | accuracy | vs FP32 | same prediction as FP32 | weights | ms per 100 digits |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let fp32_bytes = nets[0].1.weight_bytes();
    let mut fp32_acc = None;
    let mut fp32_pred: Option<Vec<usize>> = None;
    for (name, net) in &nets {
        let mut right = 0usize;
        let mut all = Vec::with_capacity(test.len());
        for start in (0..test.len()).step_by(BATCH) {
            let x = input(&ctx, net, test.batch(start, BATCH)).map_err(e)?;
            let mut enc = ctx.encoder("mnist");
            let y = net.forward(&ctx, &mut enc, &x).map_err(e)?;
            ctx.submit_and_wait(enc).map_err(e)?;
            let pred = predictions(&ctx, y).map_err(e)?;
            right += pred
                .iter()
                .zip(&test.labels[start..start + BATCH])
                .filter(|(p, l)| p == l)
                .count();
            all.extend(pred);
        }
        let same = fp32_pred
            .get_or_insert_with(|| all.clone())
            .iter()
            .zip(&all)
            .filter(|(a, b)| a == b)
            .count();
        let acc = 100.0 * right as f64 / test.len() as f64;
        let base = *fp32_acc.get_or_insert(acc);
        let x = input(&ctx, net, test.batch(0, BATCH)).map_err(e)?;
        let t = time_gpu(&ctx, warmup, runs, |enc| {
            net.forward(&ctx, enc, &x).map(|_| ())
        })
        .map_err(e)?;
        let bytes = net.weight_bytes();
        let size = if bytes == fp32_bytes {
            format!("{:.1} KB", bytes as f64 / 1e3)
        } else {
            format!(
                "{:.1} KB ({:.2}x smaller)",
                bytes as f64 / 1e3,
                fp32_bytes as f64 / bytes as f64
            )
        };
        println!(
            "| {name} | {acc:.1}% ({right}/{}) | {:+.1} | {same} | {size} | {:.3} |",
            test.len(),
            acc - base,
            t.median()
        );
    }
    Ok(())
}
