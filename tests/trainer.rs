//! The GPU trainer (`wgpu_quant::train`): whole-graph gradients against finite
//! differences (convolutions by im2col and GEMM and depthwise by direct sums, a residual
//! add whose operand is read twice, an affine map with a clip, average and max pooling,
//! linears, the softmax loss), determinism for a seed, learning on a separable problem,
//! quantization-aware training and its conversion to the integer kernels, and the
//! errors for bad input.

mod common;

use common::float::rand_vec;
use rand::SeedableRng;
use wgpu_quant::desc::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::desc::eltwise::{Clip, UnaryOp};
use wgpu_quant::desc::gemm::Activation;
use wgpu_quant::desc::pool::{PoolDesc, PoolKind};
use wgpu_quant::model::{Graph, Layer, WeightFile};
use wgpu_quant::ops::train::{Adam, Sgd};
use wgpu_quant::train::{Dataset, Optimizer, QatConfig, TrainConfig, Trainer};
use wgpu_quant::Context;

const SAMPLE: [usize; 3] = [9, 9, 2];

/// Every trainable layer kind in one graph, and a branch off the path to the loss; 3
/// classes.
fn graph() -> Graph {
    let mut g = Graph::default();
    let a = g.push(
        "conv",
        Layer::conv(
            "conv.weight",
            Some("conv.bias"),
            ConvDims::new(4, 2, [3, 3], 1).unwrap(),
            ConvDesc::default()
                .stride(2)
                .padding(Padding::uniform(1))
                .activation(Activation::Relu),
        ),
    );
    g.push(
        "dw",
        Layer::conv(
            "dw.weight",
            Some("dw.bias"),
            ConvDims::new(4, 4, [3, 3], 4).unwrap(),
            ConvDesc::default()
                .padding(Padding::uniform(1))
                .activation(Activation::Relu6),
        ),
    );
    g.push(
        "residual",
        Layer::Add {
            other: a,
            clip: Clip::NONE,
        },
    );
    g.push(
        "map",
        Layer::Map {
            f: UnaryOp::Affine {
                scale: 0.5,
                shift: 0.1,
            },
            clip: Clip { lo: -1.0, hi: 2.0 },
        },
    );
    g.push("avg", Layer::Pool(PoolDesc::new(PoolKind::Avg, 2, 1)));
    g.push("max", Layer::Pool(PoolDesc::new(PoolKind::Max, 2, 2)));
    g.push(
        "fc1",
        Layer::linear("fc1.weight", Some("fc1.bias"), 7, 16).activation(Activation::Relu),
    );
    let logits = g.push("fc2", Layer::linear("fc2.weight", Some("fc2.bias"), 3, 7));
    // A branch that does not lead to the loss, reading the residual's first operand: it
    // must neither take nor spoil a gradient.
    g.push_from(
        "side",
        Layer::Pool(PoolDesc::global_avg()),
        wgpu_quant::model::Src::Node(a),
    );
    g.push_from("prob", Layer::Softmax, wgpu_quant::model::Src::Node(logits));
    g
}

fn sgd(lr: f32) -> Optimizer {
    Optimizer::Sgd(Sgd {
        lr,
        momentum: 0.9,
        weight_decay: 1e-4,
    })
}

fn config(batch: usize) -> TrainConfig {
    TrainConfig {
        batch,
        epochs: 1,
        optimizer: sgd(0.05),
        lr_step: None,
        seed: 5,
        qat: None,
    }
}

/// The mean softmax cross-entropy of f32 logits, in f64.
fn mean_loss(logits: &[f32], labels: &[u32], k: usize) -> f64 {
    let mut total = 0.0;
    for (row, &l) in logits.chunks(k).zip(labels) {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
        let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
        total += s.ln() + m - f64::from(row[l as usize]);
    }
    total / labels.len() as f64
}

/// The loss of `weights` on `(x, y)` (a fresh trainer's forward pass) and, when asked,
/// its gradients. With gradients the backward pass runs twice: the second must give
/// the same numbers (a buffer left from the first would add in).
fn loss_and_grads(
    ctx: &Context,
    weights: &WeightFile,
    (x, y): (&[f32], &[u32]),
    grads: bool,
) -> (f64, Option<WeightFile>) {
    let t = Trainer::new(ctx, &graph(), weights, SAMPLE, config(y.len())).unwrap();
    t.input().write(ctx, x).unwrap();
    t.labels().write(ctx, y).unwrap();
    let pass = || {
        let mut enc = ctx.encoder("loss");
        t.record_forward(ctx, &mut enc, true).unwrap();
        if grads {
            t.record_backward(ctx, &mut enc).unwrap();
        }
        ctx.submit_and_wait(enc).unwrap();
        grads.then(|| t.gradients(ctx).unwrap())
    };
    let g = pass();
    if let Some(first) = &g {
        let again = pass().unwrap();
        for n in first.names() {
            let s = first.shape(n).unwrap();
            assert_eq!(
                first.tensor(n, s).unwrap(),
                again.tensor(n, s).unwrap(),
                "{n}: a second backward pass gave other gradients"
            );
        }
    }
    let logits = t.logits().unwrap().read_blocking::<f32>(ctx).unwrap();
    (mean_loss(&logits, y, 3), g)
}

/// Every parameter's gradient, at a handful of coordinates each, against central
/// differences of the loss (f32 forward passes, the loss summed in f64). A wiring fault
/// (a gradient lost at the residual, a transposed GEMM, a wrong reshape) is off by far
/// more than the tolerance; f32 rounding and a rare ReLU kink crossed by the step are
/// not.
#[test]
fn whole_graph_gradients_match_finite_differences() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(91);
    let b = 3;
    let x: Vec<f32> = rand_vec(b * 162, &mut rng);
    let y = [0u32, 2, 1];
    let mut w = Trainer::init_weights(&graph(), SAMPLE, 17).unwrap();
    // Non-zero biases, so that every path carries signal.
    let names: Vec<String> = w.names().map(str::to_string).collect();
    for n in names.iter().filter(|n| n.ends_with(".bias")) {
        let s = w.shape(n).unwrap().to_vec();
        let v = rand_vec(s[0], &mut rng).iter().map(|v| v * 0.1).collect();
        w.insert(n, &s, v).unwrap();
    }
    let (_, g) = loss_and_grads(ctx, &w, (&x, &y), true);
    let g = g.unwrap();
    let (mut checked, mut kinks) = (0, 0);
    for name in &names {
        let shape = w.shape(name).unwrap().to_vec();
        let base = w.tensor(name, &shape).unwrap().to_vec();
        let grad = g.tensor(name, &shape).unwrap().to_vec();
        let picks: Vec<usize> = (0..4).map(|k| (k * 7919 + 3) % base.len()).collect();
        for &i in &picks {
            let at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let mut wf = w.clone();
                wf.insert(name, &shape, v).unwrap();
                loss_and_grads(ctx, &wf, (&x, &y), false).0
            };
            let fd = |h: f32| (at(h) - at(-h)) / (2.0 * f64::from(h));
            let (coarse, fine) = (fd(8e-3), fd(4e-3));
            let tol = |a: f64, b: f64| 1e-2 * a.abs().max(b.abs()) + 2e-4;
            // The two steps disagree where one crosses a kink (a ReLU or clip
            // boundary, another maximum in a pooling window): no derivative there.
            if (coarse - fine).abs() > tol(coarse, fine) {
                kinks += 1;
                continue;
            }
            let got = f64::from(grad[i]);
            assert!(
                (fine - got).abs() <= tol(fine, got),
                "{name}[{i}]: gradient {got}, finite differences {fine} and {coarse}"
            );
            checked += 1;
        }
        assert!(
            grad.iter().any(|&v| v != 0.0),
            "{name}: an all-zero gradient"
        );
    }
    assert_eq!(checked + kinks, 4 * names.len());
    assert!(
        kinks * 10 <= checked,
        "{kinks} points at kinks, {checked} checked"
    );
}

/// Two points per class in separate corners of the 9x9 image, with noise.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * 162);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 3) as u32;
        let noise = rand_vec(162, &mut rng);
        for (p, v) in noise.iter().enumerate() {
            let (yy, xx) = (p / 18, p / 2 % 9);
            let hot = match c {
                0 => yy < 3 && xx < 3,
                1 => yy > 5 && xx > 5,
                _ => (3..6).contains(&yy) && (3..6).contains(&xx),
            };
            x.push(v * 0.3 + if hot { 2.0 } else { 0.0 });
        }
        labels.push(c);
    }
    Dataset::new(x, labels, SAMPLE).unwrap()
}

/// The same seed trains the same weights (bit for bit), another seed other weights;
/// the loss falls and the classes separate; AdamW trains too.
#[test]
fn training_is_deterministic_and_learns() {
    let ctx = common::ctx();
    let data = blobs(60, 3);
    let test = blobs(30, 4);
    let init = Trainer::init_weights(&graph(), SAMPLE, 1).unwrap();
    let train = |seed: u64, optimizer: Optimizer| {
        let cfg = TrainConfig {
            epochs: 6,
            seed,
            optimizer,
            ..config(10)
        };
        let mut t = Trainer::new(ctx, &graph(), &init, SAMPLE, cfg).unwrap();
        let mut calls = 0;
        let stats = t.fit(ctx, &data, |p| {
            calls += 1;
            assert!(p.loss.is_finite() && (0.0..=1.0).contains(&p.accuracy));
        });
        let stats = stats.unwrap();
        assert_eq!(calls, 6 * 6, "progress after every step");
        let w = t.weights(ctx).unwrap();
        let acc = t.accuracy(ctx, &test).unwrap();
        (stats, w, acc)
    };
    let (s1, w1, acc) = train(7, sgd(0.05));
    let (_, w2, _) = train(7, sgd(0.05));
    let (_, w3, _) = train(8, sgd(0.05));
    let flat = |w: &WeightFile| -> Vec<f32> {
        w.names()
            .flat_map(|n| w.tensor(n, w.shape(n).unwrap()).unwrap().to_vec())
            .collect()
    };
    assert_eq!(flat(&w1), flat(&w2), "same seed, same weights");
    // Trained weights saved and loaded are the same numbers.
    let path = std::env::temp_dir().join("wgpu-quant-trained.safetensors");
    w1.save(&path).unwrap();
    let back = WeightFile::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(flat(&back), flat(&w1), "saved and loaded");
    assert_ne!(flat(&w1), flat(&w3), "another seed, another order");
    assert!(
        s1.last().unwrap().loss < 0.5 * s1[0].loss,
        "the loss falls: {s1:?}"
    );
    assert!(acc >= 0.9, "test accuracy {acc}");
    let (sa, _, acc_a) = train(
        7,
        Optimizer::Adam(Adam {
            lr: 0.01,
            ..Adam::default()
        }),
    );
    assert!(
        sa.last().unwrap().loss < 0.5 * sa[0].loss && acc_a >= 0.9,
        "AdamW: {sa:?} {acc_a}"
    );
}

/// Quantization-aware training at 8, 4 (also with LSQ) and 3 bits, from FP32 weights
/// trained first, as one would: it trains (the loss falls), keeps the FP32 model's
/// accuracy on the separable problem, and the trained fake-quant graph converted to a
/// static INT8 model on the integer kernels gives the fake-quant forward pass's
/// probabilities to within 1e-3 and the same class wherever the top two are apart;
/// saved and loaded, the converted model gives the same outputs.
#[test]
fn qat_trains_and_converts_to_the_integer_kernels() {
    use wgpu_quant::Tensor;
    let ctx = common::ctx();
    let data = blobs(60, 3);
    let test = blobs(30, 4);
    let init = Trainer::init_weights(&graph(), SAMPLE, 1).unwrap();
    let fp32_cfg = TrainConfig {
        epochs: 6,
        ..config(10)
    };
    let mut fp32 = Trainer::new(ctx, &graph(), &init, SAMPLE, fp32_cfg).unwrap();
    fp32.fit(ctx, &data, |_| {}).unwrap();
    let fp32_acc = fp32.accuracy(ctx, &test).unwrap();
    assert!(fp32_acc >= 0.9, "FP32 accuracy {fp32_acc}");
    let trained = fp32.weights(ctx).unwrap();
    for (bits, lsq) in [(8, false), (4, false), (4, true), (3, false)] {
        let mut q = QatConfig::new(bits, bits);
        q.lsq = lsq;
        q.calibration_per_class = 5;
        q.freeze_after = 2;
        let cfg = TrainConfig {
            epochs: 4,
            optimizer: sgd(0.01),
            qat: Some(q),
            ..config(10)
        };
        let what = format!("{bits} bits, LSQ {lsq}");
        let mut t = Trainer::new(ctx, &graph(), &trained, SAMPLE, cfg).unwrap();
        let stats = t.fit(ctx, &data, |_| {}).unwrap();
        assert!(
            stats.last().unwrap().loss < stats[0].loss,
            "{what}: {stats:?}"
        );
        let qm = t.to_qmodel(ctx, &[test.len(), 9, 9, 2]).unwrap();
        let (x, _) = test.gather(&(0..test.len()).collect::<Vec<_>>());
        let xt = Tensor::from_slice(ctx, &[test.len(), 9, 9, 2], &x).unwrap();
        let mut enc = ctx.encoder("int8");
        let y = qm.forward(ctx, &mut enc, &xt).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let int_probs = y.read_blocking::<f32>(ctx).unwrap();
        // The fake-quant forward pass, batch by batch, as probabilities.
        let mut fq_probs = Vec::new();
        for chunk in x.chunks(10 * 162) {
            t.input().write(ctx, chunk).unwrap();
            let mut enc = ctx.encoder("fake quant");
            t.record_forward(ctx, &mut enc, false).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            for r in t
                .logits()
                .unwrap()
                .read_blocking::<f32>(ctx)
                .unwrap()
                .chunks(3)
            {
                let m = r.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
                let z: f32 = e.iter().sum();
                fq_probs.extend(e.iter().map(|v| v / z));
            }
        }
        let worst = fq_probs
            .iter()
            .zip(&int_probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if std::env::var("QDEBUG").is_ok() {
            for (s, (a, b)) in fq_probs.chunks(3).zip(int_probs.chunks(3)).enumerate() {
                eprintln!("{what} {s}: {a:?} {b:?}");
            }
        }
        assert!(worst <= 1e-3, "{what}: probabilities differ by {worst}");
        let argmax = |r: &[f32]| (0..3).fold(0, |b, j| if r[j] > r[b] { j } else { b });
        for (s, (a, b)) in fq_probs.chunks(3).zip(int_probs.chunks(3)).enumerate() {
            let mut sorted = a.to_vec();
            sorted.sort_by(|p, q| q.total_cmp(p));
            if sorted[0] - sorted[1] > 2e-3 {
                assert_eq!(argmax(a), argmax(b), "{what}: sample {s}: {a:?} vs {b:?}");
            }
        }
        // Saved and loaded, the low-bit model keeps its code ranges: the same outputs.
        let path = std::env::temp_dir().join(format!("wgpu-quant-qat-{bits}-{lsq}.safetensors"));
        qm.save(&path).unwrap();
        let back =
            wgpu_quant::model::QModel::load(ctx, &graph(), &path, &[test.len(), 9, 9, 2]).unwrap();
        std::fs::remove_file(&path).ok();
        let mut enc = ctx.encoder("int8 loaded");
        let y2 = back.forward(ctx, &mut enc, &xt).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        assert_eq!(
            y2.read_blocking::<f32>(ctx).unwrap(),
            int_probs,
            "{what}: after loading"
        );
        let acc = t.accuracy(ctx, &test).unwrap();
        assert!(
            acc >= fp32_acc - 0.1,
            "{what}: accuracy {acc}, FP32 {fp32_acc}"
        );
    }
}
