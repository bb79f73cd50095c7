//! Quantization-aware training of LeNet on the bundled MNIST digits, on the GPU: FP32
//! training, post-training quantization (PTQ) and quantization-aware training (QAT) side
//! by side, at 8 bits and at a low bit width where PTQ loses at least 2 points.
//!
//! ```text
//! cargo run --release --example qat                     # the table of docs/QAT.md
//! cargo run --release --example qat -- --epochs 2 --qat-epochs 1 --bits 2/4   # a quick look
//! cargo run --release --example qat -- --save-fp32 lenet_gpu.safetensors      # keep FP32
//! cargo run --release --example qat -- --fp32 lenet_gpu.safetensors           # reuse it
//! ```
//!
//! 1. **FP32 on the GPU**: LeNet from He-normal weights, the recipe of
//!    `tools/lenet_mnist/train.py` (SGD, momentum 0.9, batch 50, `--epochs` (20) epochs,
//!    learning rate 0.05 halved every 5 epochs, weight decay 5e-4, 4,000 training
//!    digits), against the numpy trainer's test accuracy recorded in the bundled
//!    `lenet.safetensors` (`--fp32 FILE` starts from saved weights instead).
//! 2. **PTQ** of those weights with every observer (static activations, bias correction
//!    on, 500 training digits for calibration) at 8 bits, and at the first of these
//!    weight/activation widths where the best observer loses 2 points or more: 4/4, 3/3,
//!    2/8, 2/4, 2/2 (`--bits W/A` picks one). The best observer is picked on the test
//!    digits, which favours PTQ.
//! 3. **QAT** from the FP32 weights for `--qat-epochs` (4) epochs (learning rate 0.01,
//!    halved every 2 epochs; activation ranges from the best PTQ observer, tracked with a
//!    moving average for the first half, frozen after), at 8 bits and at the low width,
//!    there also with learned step sizes (LSQ). Each is converted to a static INT8
//!    `QModel` on the integer kernels, and its accuracy is the converted model's; the
//!    table also says how many test predictions the converted model and the fake-quant
//!    model disagree on.
//!
//! Test accuracy on the 1,000 test digits; seconds per epoch are wall clock, reading
//! back included.

#[path = "common/mnist.rs"]
mod mnist;
#[allow(dead_code)]
#[path = "common/net.rs"]
mod net;

use net::data_dir;
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::model::{lenet, PtqOptions, QMode, QModel, WeightFile};
use wgpu_quant::ops::train::Sgd;
use wgpu_quant::train::{
    progress_bar, Dataset, EpochStats, Optimizer, QatConfig, TrainConfig, Trainer,
};
use wgpu_quant::{Context, RequestOptions, Tensor};

const BATCH: usize = 100;

fn main() {
    if let Err(e) = run() {
        eprintln!("qat: {e}");
        std::process::exit(1);
    }
}

struct Args {
    epochs: usize,
    qat_epochs: usize,
    bits: Option<(u32, u32)>,
    fp32: Option<String>,
    save_fp32: Option<String>,
}

/// `W/A` (or `B` for both): bits of the weights and of the activations, each 2 to 7.
fn parse_bits(v: &str) -> Option<(u32, u32)> {
    let (w, a) = v.split_once('/').unwrap_or((v, v));
    let (w, a) = (w.parse().ok()?, a.parse().ok()?);
    ((2..=8).contains(&w) && (2..=8).contains(&a) && (w, a) != (8, 8)).then_some((w, a))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        epochs: 20,
        qat_epochs: 4,
        bits: None,
        fp32: None,
        save_fp32: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next();
        let n = v.as_deref().and_then(|v| v.parse::<usize>().ok());
        match (k.as_str(), n, v) {
            ("--epochs", Some(n), _) if n > 0 => a.epochs = n,
            ("--qat-epochs", Some(n), _) if n > 0 => a.qat_epochs = n,
            ("--bits", _, Some(v)) if parse_bits(&v).is_some() => a.bits = parse_bits(&v),
            ("--fp32", _, Some(v)) => a.fp32 = Some(v),
            ("--save-fp32", _, Some(v)) => a.save_fp32 = Some(v),
            _ => {
                return Err(format!(
                    "unknown argument '{k}' (or a bad value): expected --epochs N, \
                     --qat-epochs N, --bits W/A (2 to 8 each, not 8/8), --fp32 FILE \
                     or --save-fp32 FILE"
                ))
            }
        }
    }
    Ok(a)
}

fn dataset(d: &mnist::Digits) -> Result<Dataset, String> {
    let labels = d.labels.iter().map(|&l| l as u32).collect();
    Dataset::new(d.pixels.clone(), labels, [28, 28, 1]).map_err(|e| e.to_string())
}

/// The numpy trainer's recipe: batch 50, SGD with momentum 0.9 and weight decay 5e-4,
/// the learning rate `lr` halved every `halve` epochs.
fn recipe(epochs: usize, lr: f32, halve: usize, qat: Option<QatConfig>) -> TrainConfig {
    TrainConfig {
        batch: 50,
        epochs,
        optimizer: Optimizer::Sgd(Sgd {
            lr,
            momentum: 0.9,
            weight_decay: 5e-4,
        }),
        lr_step: Some((halve, 0.5)),
        seed: 0,
        qat,
    }
}

/// Trains with a progress bar showing the loss and the accuracy.
fn fit(
    ctx: &Context,
    t: &mut Trainer,
    data: &Dataset,
    what: &str,
) -> Result<Vec<EpochStats>, String> {
    t.fit(ctx, data, progress_bar(what))
        .map_err(|e| e.to_string())
}

/// Accuracy (%) and predictions of an INT8 model on the test digits.
fn evaluate(ctx: &Context, q: &QModel, test: &mnist::Digits) -> Result<(f64, Vec<usize>), String> {
    let e = |e: wgpu_quant::Error| e.to_string();
    let mut pred = Vec::with_capacity(test.len());
    for start in (0..test.len()).step_by(BATCH) {
        let x =
            Tensor::from_slice(ctx, &[BATCH, 28, 28, 1], test.batch(start, BATCH)).map_err(e)?;
        let mut enc = ctx.encoder("qat example");
        let y = q.forward(ctx, &mut enc, &x).map_err(e)?;
        ctx.submit_and_wait(enc).map_err(e)?;
        let p = y.read_blocking::<f32>(ctx).map_err(e)?;
        pred.extend(
            p.chunks_exact(10)
                .map(|r| (0..10).fold(0, |b, j| if r[j] > r[b] { j } else { b })),
        );
    }
    let right = pred
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok((100.0 * right as f64 / test.len() as f64, pred))
}

/// The best PTQ at `bits` over every observer: (accuracy, observer).
fn best_ptq(
    ctx: &Context,
    weights: &WeightFile,
    calibration: &[Tensor],
    test: &mnist::Digits,
    (wb, ab): (u32, u32),
) -> Result<(f64, ObserverKind), String> {
    let mut best: Option<(f64, ObserverKind)> = None;
    for obs in ObserverKind::standard() {
        let opts = PtqOptions::new(obs, QMode::Static).bits(wb, ab);
        let q = QModel::calibrate_with(
            ctx,
            &lenet(),
            weights,
            &[BATCH, 28, 28, 1],
            calibration,
            &opts,
        )
        .map_err(|e| e.to_string())?;
        let (acc, _) = evaluate(ctx, &q, test)?;
        eprintln!("  PTQ {wb}/{ab} bits, {}: {acc:.1}%", obs.name());
        if best.is_none_or(|(b, _)| acc > b) {
            best = Some((acc, obs));
        }
    }
    best.ok_or_else(|| "no observer".to_string())
}

struct Row {
    name: String,
    bits: String,
    acc: f64,
    epochs: String,
    seconds: Option<f64>,
    note: String,
}

fn run() -> Result<(), String> {
    let e = |e: wgpu_quant::Error| e.to_string();
    let args = args()?;
    let dir = data_dir().join("mnist");
    let (train_d, test_d) = mnist::load(&dir.join("mnist_5k.csv.gz").to_string_lossy())?;
    let (train, test) = (dataset(&train_d)?, dataset(&test_d)?);
    let ctx = Context::request_blocking(&RequestOptions::default()).map_err(e)?;
    let a = &ctx.capabilities().adapter;
    println!("adapter: {} ({:?}, {})", a.name, a.backend, a.driver_info);
    let numpy = WeightFile::load(dir.join("lenet.safetensors")).map_err(e)?;
    let numpy_acc: f64 = numpy
        .metadata("test_accuracy_numpy")
        .and_then(|v| v.parse().ok())
        .ok_or("lenet.safetensors lacks its test_accuracy_numpy")?;
    let graph = lenet();
    let mut rows = Vec::new();

    // 1. FP32 on the GPU, the numpy trainer's recipe (or weights from a file).
    rows.push(Row {
        name: "FP32, numpy trainer (tools/lenet_mnist/train.py)".into(),
        bits: "32/32".into(),
        acc: 100.0 * numpy_acc,
        epochs: "20".into(),
        seconds: None,
        note: String::new(),
    });
    let per_epoch = |s: &[EpochStats]| s.iter().map(|s| s.seconds).sum::<f64>() / s.len() as f64;
    let init = match &args.fp32 {
        Some(f) => WeightFile::load(f).map_err(e)?,
        None => Trainer::init_weights(&graph, [28, 28, 1], 0).map_err(e)?,
    };
    let cfg = recipe(args.epochs, 0.05, 5, None);
    let mut t = Trainer::new(&ctx, &graph, &init, [28, 28, 1], cfg).map_err(e)?;
    if args.fp32.is_none() {
        let stats = fit(&ctx, &mut t, &train, "FP32")?;
        rows.push(Row {
            name: "FP32, trained on the GPU".into(),
            bits: "32/32".into(),
            acc: 100.0 * t.accuracy(&ctx, &test).map_err(e)?,
            epochs: args.epochs.to_string(),
            seconds: Some(per_epoch(&stats)),
            note: format!(
                "{:.0} digits/s",
                stats.iter().map(|s| s.samples_per_second).sum::<f64>() / stats.len() as f64
            ),
        });
    } else {
        rows.push(Row {
            name: "FP32, weights from --fp32".into(),
            bits: "32/32".into(),
            acc: 100.0 * t.accuracy(&ctx, &test).map_err(e)?,
            epochs: "-".into(),
            seconds: None,
            note: String::new(),
        });
    }
    let fp32 = rows[1].acc;
    let fp32_w = t.weights(&ctx).map_err(e)?;
    if let Some(f) = &args.save_fp32 {
        fp32_w.save(f).map_err(e)?;
    }

    // 2. PTQ: 8 bits, then the first low width that loses 2 points.
    let calib_idx = train.first_of_each_class(50);
    let calibration: Vec<Tensor> = calib_idx
        .chunks(BATCH)
        .map(|c| Tensor::from_slice(&ctx, &[BATCH, 28, 28, 1], &train.gather(c).0))
        .collect::<wgpu_quant::Result<_>>()
        .map_err(e)?;
    let (ptq8, obs8) = best_ptq(&ctx, &fp32_w, &calibration, &test_d, (8, 8))?;
    // Weights and activations at 4, 3 and 2 bits, then 2-bit weights with wider
    // activations: the first pair where the best PTQ loses 2 points.
    let widths = match args.bits {
        Some(b) => vec![b],
        None => vec![(4, 4), (3, 3), (2, 8), (2, 4), (2, 2)],
    };
    let mut low = None;
    for &b in &widths {
        let (acc, obs) = best_ptq(&ctx, &fp32_w, &calibration, &test_d, b)?;
        low = Some((b, acc, obs));
        if fp32 - acc >= 2.0 {
            break;
        }
    }
    let (low_bits, ptq_low, obs_low) = low.ok_or("no low bit width")?;

    // 3. QAT from the FP32 weights, converted to the integer kernels.
    let runs = [
        ((8, 8), ptq8, obs8, false),
        (low_bits, ptq_low, obs_low, false),
        (low_bits, ptq_low, obs_low, true),
    ];
    for ((wb, ab), ptq, obs, lsq) in runs {
        if !lsq {
            rows.push(Row {
                name: format!("PTQ, best observer ({})", obs.name()),
                bits: format!("{wb}/{ab}"),
                acc: ptq,
                epochs: "-".into(),
                seconds: None,
                note: "bias correction on".into(),
            });
        }
        let mut q = QatConfig::new(wb, ab);
        q.lsq = lsq;
        q.observer = obs;
        q.freeze_after = args.qat_epochs.div_ceil(2);
        let cfg = TrainConfig {
            seed: 1,
            ..recipe(args.qat_epochs, 0.01, 2, Some(q))
        };
        let mut t = Trainer::new(&ctx, &graph, &fp32_w, [28, 28, 1], cfg).map_err(e)?;
        let what = format!("QAT {wb}/{ab} bits{}", if lsq { " LSQ" } else { "" });
        let stats = fit(&ctx, &mut t, &train, &what)?;
        let fq_pred = t.predict(&ctx, &test).map_err(e)?;
        let qm = t.to_qmodel(&ctx, &[BATCH, 28, 28, 1]).map_err(e)?;
        let (acc, pred) = evaluate(&ctx, &qm, &test_d)?;
        let differ = fq_pred.iter().zip(&pred).filter(|(a, b)| a != b).count();
        rows.push(Row {
            name: format!(
                "QAT{}, converted to INT8 codes",
                if lsq { " with LSQ" } else { "" }
            ),
            bits: format!("{wb}/{ab}"),
            acc,
            epochs: args.qat_epochs.to_string(),
            seconds: Some(per_epoch(&stats)),
            note: format!(
                "{differ} of {} predictions differ from the fake-quant model's",
                test.len()
            ),
        });
    }

    println!(
        "LeNet on {} MNIST test digits ({} training digits, 500 of them for calibration)\n",
        test.len(),
        train.len()
    );
    println!("| model | bits (W/A) | accuracy | vs FP32 (GPU) | epochs | s per epoch | note |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for r in &rows {
        let secs = r.seconds.map_or("-".to_string(), |s| format!("{s:.1}"));
        println!(
            "| {} | {} | {:.1}% | {:+.1} | {} | {secs} | {} |",
            r.name,
            r.bits,
            r.acc,
            r.acc - fp32,
            r.epochs,
            r.note
        );
    }
    Ok(())
}
