//! The training kernels against f64 references and their gradients against finite
//! differences, on odd shapes: the clip backward (exact), the softmax cross-entropy, a
//! linear layer's backward GEMMs and bias sums, SGD with momentum and AdamW over several
//! steps; bad operands are errors.

mod common;

use common::float::rand_vec;
use rand::SeedableRng;
use wgpu_quant::desc::gemm::GemmDesc;
use wgpu_quant::ops::eltwise::Clip;
use wgpu_quant::ops::gemm::gemm;
use wgpu_quant::ops::train::{
    adam_step, clip_backward, column_sums, linear_backward, sgd_step, softmax_cross_entropy, Adam,
    Sgd,
};
use wgpu_quant::reference::train as r;
use wgpu_quant::{Context, DType, Tensor};

fn up(ctx: &Context, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_slice(ctx, shape, v).unwrap()
}

fn read(ctx: &Context, t: &Tensor) -> Vec<f32> {
    t.read_blocking::<f32>(ctx).unwrap()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The largest error relative to the reference's largest magnitude.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-30f64, |m, w| m.max(w.abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// ReLU, ReLU6 and a general clip: the gradient passes exactly where the input lies
/// strictly inside, on odd sizes (boundary values included).
#[test]
fn clip_backward_passes_the_gradient_inside_the_range() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(71);
    for n in [1usize, 7, 63, 65, 1000] {
        let mut x: Vec<f32> = rand_vec(n, &mut rng).iter().map(|v| v * 8.0).collect();
        // Exactly on the bounds: no gradient (strict inequality, as PyTorch's hardtanh).
        x[0] = 0.0;
        if n > 1 {
            x[1] = 6.0;
        }
        let dy = rand_vec(n, &mut rng);
        for clip in [Clip::RELU, Clip::RELU6, Clip { lo: -1.5, hi: 2.25 }] {
            let (xt, dyt) = (up(ctx, &[n], &x), up(ctx, &[n], &dy));
            let dx = Tensor::zeros(ctx, &[n], DType::F32).unwrap();
            let mut enc = ctx.encoder("clip bwd");
            clip_backward(ctx, &mut enc, &xt, &dyt, clip, &dx).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want: Vec<f32> = x
                .iter()
                .zip(&dy)
                .map(|(&x, &g)| if x > clip.lo && x < clip.hi { g } else { 0.0 })
                .collect();
            assert_eq!(read(ctx, &dx), want, "n {n} {clip:?}");
        }
    }
}

/// The loss and gradient against the f64 reference (odd batches and class counts, large
/// logits), the gradient against central differences of the GPU's own mean loss, and a
/// label past the classes giving a NaN loss.
#[test]
fn softmax_cross_entropy_matches_the_reference_and_finite_differences() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(72);
    let run = |logits: &[f32], b: usize, k: usize, labels: &[u32]| -> (Vec<f32>, Vec<f32>) {
        let lt = up(ctx, &[b, k], logits);
        let lab = Tensor::from_slice(ctx, &[b], labels).unwrap();
        let grad = Tensor::zeros(ctx, &[b, k], DType::F32).unwrap();
        let loss = Tensor::zeros(ctx, &[b], DType::F32).unwrap();
        let mut enc = ctx.encoder("xent");
        softmax_cross_entropy(ctx, &mut enc, &lt, &lab, &grad, &loss).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        (read(ctx, &loss), read(ctx, &grad))
    };
    for (b, k, spread) in [
        (1usize, 2usize, 1.0f32),
        (3, 10, 4.0),
        (7, 13, 30.0),
        (65, 5, 100.0),
    ] {
        let logits: Vec<f32> = rand_vec(b * k, &mut rng)
            .iter()
            .map(|v| v * spread)
            .collect();
        let labels: Vec<u32> = (0..b).map(|i| ((i * 7 + 3) % k) as u32).collect();
        let (loss, grad) = run(&logits, b, k, &labels);
        let (wl, wg) = r::softmax_cross_entropy(&f64s(&logits), k, &labels);
        assert!(
            rel_err(&loss, &wl) < 1e-5,
            "loss {b}x{k}: {}",
            rel_err(&loss, &wl)
        );
        assert!(
            rel_err(&grad, &wg) < 1e-5,
            "grad {b}x{k}: {}",
            rel_err(&grad, &wg)
        );
        if spread > 5.0 {
            continue;
        }
        // Central differences of the mean loss, element by element.
        let h = 1e-2f32;
        for e in 0..b * k {
            let mut lp = logits.clone();
            lp[e] += h;
            let mut lm = logits.clone();
            lm[e] -= h;
            let mean = |v: Vec<f32>| v.iter().map(|&x| f64::from(x)).sum::<f64>() / b as f64;
            let fd = (mean(run(&lp, b, k, &labels).0) - mean(run(&lm, b, k, &labels).0))
                / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(grad[e])).abs() < 2e-3,
                "{b}x{k} element {e}: finite difference {fd}, gradient {}",
                grad[e]
            );
        }
    }
    let (loss, _) = run(&[0.5, 1.0, -1.0, 2.0], 2, 2, &[1, 2]);
    assert!(loss[0].is_finite() && loss[1].is_nan(), "{loss:?}");
}

/// A linear layer `y = x W^T + b`: dx, dW and db against the f64 formulas and against
/// central differences of `L = sum(dy * y)` computed by the forward GEMM, on odd sizes.
#[test]
fn linear_backward_matches_finite_differences() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(73);
    for (b, k, n) in [(1usize, 1usize, 1usize), (3, 5, 7), (9, 17, 4)] {
        let x = rand_vec(b * k, &mut rng);
        let w = rand_vec(n * k, &mut rng);
        let bias = rand_vec(n, &mut rng);
        let dy = rand_vec(b * n, &mut rng);
        let forward = |x: &[f32], w: &[f32], bias: &[f32]| -> f64 {
            let y = Tensor::zeros(ctx, &[b, n], DType::F32).unwrap();
            let desc = GemmDesc {
                trans_b: true,
                ..GemmDesc::new(b, n, k)
            };
            let mut enc = ctx.encoder("fwd");
            let bt = up(ctx, &[n], bias);
            gemm(
                ctx,
                &mut enc,
                &desc,
                &up(ctx, &[b, k], x),
                &up(ctx, &[n, k], w),
                Some(&bt),
                &y,
            )
            .unwrap();
            ctx.submit_and_wait(enc).unwrap();
            read(ctx, &y)
                .iter()
                .zip(&dy)
                .map(|(&a, &g)| f64::from(a) * f64::from(g))
                .sum()
        };
        let (dx, dw, db) = (
            Tensor::zeros(ctx, &[b, k], DType::F32).unwrap(),
            Tensor::zeros(ctx, &[n, k], DType::F32).unwrap(),
            Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
        );
        let (xt, wt, dyt) = (
            up(ctx, &[b, k], &x),
            up(ctx, &[n, k], &w),
            up(ctx, &[b, n], &dy),
        );
        let mut enc = ctx.encoder("bwd");
        linear_backward(ctx, &mut enc, (&xt, &wt, &dyt), Some(&dx), &dw, Some(&db)).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let (gx, gw, gb) = (read(ctx, &dx), read(ctx, &dw), read(ctx, &db));
        // The formulas in f64.
        let wx: Vec<f64> = (0..b * k)
            .map(|e| {
                (0..n)
                    .map(|j| f64::from(dy[e / k * n + j]) * f64::from(w[j * k + e % k]))
                    .sum()
            })
            .collect();
        let ww: Vec<f64> = (0..n * k)
            .map(|e| {
                (0..b)
                    .map(|i| f64::from(dy[i * n + e / k]) * f64::from(x[i * k + e % k]))
                    .sum()
            })
            .collect();
        let wb: Vec<f64> = (0..n)
            .map(|j| (0..b).map(|i| f64::from(dy[i * n + j])).sum())
            .collect();
        assert!(rel_err(&gx, &wx) < 1e-5, "dx {b}x{k}x{n}");
        assert!(rel_err(&gw, &ww) < 1e-5, "dW {b}x{k}x{n}");
        assert!(rel_err(&gb, &wb) < 1e-5, "db {b}x{k}x{n}");
        // Central differences of L (linear in each parameter: h = 0.5 is exact up to
        // rounding).
        let h = 0.5f32;
        let fd = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * f64::from(h));
        for e in [0, b * k / 2, b * k - 1] {
            let d = fd(&|s| {
                let mut xp = x.clone();
                xp[e] += s;
                forward(&xp, &w, &bias)
            });
            assert!(
                (d - f64::from(gx[e])).abs() < 1e-3,
                "dx[{e}]: {d} vs {}",
                gx[e]
            );
        }
        for e in [0, n * k / 2, n * k - 1] {
            let d = fd(&|s| {
                let mut wp = w.clone();
                wp[e] += s;
                forward(&x, &wp, &bias)
            });
            assert!(
                (d - f64::from(gw[e])).abs() < 1e-3,
                "dW[{e}]: {d} vs {}",
                gw[e]
            );
        }
        for e in [0, n - 1] {
            let d = fd(&|s| {
                let mut bp = bias.clone();
                bp[e] += s;
                forward(&x, &w, &bp)
            });
            assert!(
                (d - f64::from(gb[e])).abs() < 1e-3,
                "db[{e}]: {d} vs {}",
                gb[e]
            );
        }
    }
}

/// Five SGD steps (momentum and weight decay; and plain) and five AdamW steps against
/// the f64 references, on an odd length.
#[test]
fn optimizer_steps_match_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(74);
    let n = 37;
    let w0 = rand_vec(n, &mut rng);
    let grads: Vec<Vec<f32>> = (0..5).map(|_| rand_vec(n, &mut rng)).collect();
    for opt in [
        Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        },
        Sgd {
            lr: 0.05,
            momentum: 0.0,
            weight_decay: 0.0,
        },
    ] {
        let (w, v) = (
            up(ctx, &[n], &w0),
            Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
        );
        let (mut ww, mut wv) = (f64s(&w0), vec![0.0; n]);
        for g in &grads {
            let gt = up(ctx, &[n], g);
            let mut enc = ctx.encoder("sgd");
            sgd_step(ctx, &mut enc, &opt, &w, &gt, &v).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let h = (
                f64::from(opt.lr),
                f64::from(opt.momentum),
                f64::from(opt.weight_decay),
            );
            r::sgd_step(&mut ww, &f64s(g), &mut wv, h);
        }
        assert!(rel_err(&read(ctx, &w), &ww) < 1e-6, "{opt:?}");
    }
    let opt = Adam {
        weight_decay: 0.01,
        lr: 0.01,
        ..Adam::default()
    };
    let w = up(ctx, &[n], &w0);
    let (m, v) = (
        Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
    );
    let (mut ww, mut wm, mut wv) = (f64s(&w0), vec![0.0; n], vec![0.0; n]);
    for (t, g) in grads.iter().enumerate() {
        let gt = up(ctx, &[n], g);
        let mut enc = ctx.encoder("adam");
        adam_step(ctx, &mut enc, &opt, t as u32 + 1, &w, &gt, (&m, &v)).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let h = (0.01, 0.9, 0.999, 1e-8, 0.01);
        r::adam_step(&mut ww, &f64s(g), (&mut wm, &mut wv), t as i32 + 1, h);
    }
    assert!(rel_err(&read(ctx, &w), &ww) < 1e-5, "AdamW");
}

/// Bad operands and hyperparameters are errors naming them.
#[test]
fn bad_training_operands_are_errors() {
    let ctx = common::ctx();
    let f = |s: &[usize]| Tensor::zeros(ctx, s, DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = clip_backward(ctx, &mut enc, &f(&[3]), &f(&[4]), Clip::RELU, &f(&[3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("clip_backward") && e.contains("[4]"), "{e}");
    let half = Tensor::zeros(ctx, &[3], DType::F16).unwrap();
    let e = clip_backward(ctx, &mut enc, &half, &f(&[3]), Clip::RELU, &f(&[3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32"), "{e}");
    let labels = Tensor::from_slice(ctx, &[3], &[0u32, 1, 2]).unwrap();
    let e = softmax_cross_entropy(ctx, &mut enc, &f(&[2, 4]), &labels, &f(&[2, 4]), &f(&[2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels [2]"), "{e}");
    let x = f(&[3]);
    let e = sgd_step(
        ctx,
        &mut enc,
        &Sgd {
            lr: f32::NAN,
            momentum: 0.0,
            weight_decay: 0.0,
        },
        &x,
        &f(&[3]),
        &f(&[3]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lr = NaN"), "{e}");
    let e = sgd_step(
        ctx,
        &mut enc,
        &Sgd {
            lr: 0.1,
            momentum: 1.0,
            weight_decay: 0.0,
        },
        &x,
        &f(&[3]),
        &f(&[3]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("momentum = 1"), "{e}");
    let e = sgd_step(
        ctx,
        &mut enc,
        &Sgd {
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 0.0,
        },
        &x,
        &f(&[3]),
        &x,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("share one buffer"), "{e}");
    let e = adam_step(
        ctx,
        &mut enc,
        &Adam::default(),
        0,
        &x,
        &f(&[3]),
        (&f(&[3]), &f(&[3])),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("step 0"), "{e}");
    let e = column_sums(ctx, &mut enc, &f(&[2, 3]), &f(&[2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column_sums") && e.contains("[3]"), "{e}");
    let e = linear_backward(
        ctx,
        &mut enc,
        (&f(&[2, 3]), &f(&[4, 5]), &f(&[2, 4])),
        None,
        &f(&[4, 3]),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("linear_backward") && e.contains("[4, 5]"), "{e}");
}

/// Fake quantization per tensor and per channel at 2, 3, 4 and 8 bits (symmetric and
/// asymmetric ranges) on an odd `[3, 5, 7]` tensor with values past the range and on
/// code boundaries: the forward bit for bit with the f32 reference (PyTorch's formula),
/// the straight-through backward exactly (the gradient where the code is inside), and
/// LSQ's scale gradient against the reference's sums.
#[test]
fn fake_quantization_matches_the_reference() {
    use wgpu_quant::ops::train::{
        fake_quant_params, fake_quantize, fake_quantize_backward, lsq_scale_grad, FakeQuant,
    };
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(75);
    let (outer, ch, inner) = (3usize, 5usize, 7usize);
    let n = outer * ch * inner;
    let mut x: Vec<f32> = rand_vec(n, &mut rng).iter().map(|v| v * 3.0).collect();
    // Exact halves of the first channel's step (ties round to even).
    x[0] = 0.125;
    x[1] = -0.375;
    // Far past every range.
    x[2] = 100.0;
    x[3] = -100.0;
    let dy = rand_vec(n, &mut rng);
    for (qmin, qmax) in [
        (-1, 1),
        (0, 3),
        (-4, 3),
        (-7, 7),
        (0, 15),
        (-128, 127),
        (0, 255),
    ] {
        for per_channel in [false, true] {
            let (channels, inn) = if per_channel { (ch, inner) } else { (1, n) };
            let scales: Vec<f32> = (0..channels).map(|k| 0.25 * (k as f32 + 1.0)).collect();
            let zps: Vec<i32> = (0..channels)
                .map(|k| if qmin < 0 { 0 } else { (k as i32) % 3 })
                .collect();
            let fq = FakeQuant {
                channels,
                inner: inn,
                qmin,
                qmax,
            };
            let qp = fake_quant_params(ctx, &scales, &zps).unwrap();
            let xt = up(ctx, &[n], &x);
            let dyt = up(ctx, &[n], &dy);
            let (y, dx, ds) = (
                Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
                Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
                Tensor::zeros(ctx, &[channels], DType::F32).unwrap(),
            );
            let g = 1.0 / ((n / channels) as f32 * qmax.max(1) as f32).sqrt();
            let mut enc = ctx.encoder("fake quant");
            fake_quantize(ctx, &mut enc, &fq, &xt, &qp, &y).unwrap();
            fake_quantize_backward(ctx, &mut enc, &fq, (&xt, &qp), &dyt, &dx).unwrap();
            lsq_scale_grad(ctx, &mut enc, &fq, (&xt, &qp), &dyt, g, &ds).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let (want, inside) = r::fake_quant(&x, (&scales, &zps), inn, (qmin, qmax));
            let what = format!("[{qmin}, {qmax}] per channel {per_channel}");
            assert_eq!(read(ctx, &y), want, "{what}");
            let want_dx: Vec<f32> = dy
                .iter()
                .zip(&inside)
                .map(|(&g, &i)| if i { g } else { 0.0 })
                .collect();
            assert_eq!(read(ctx, &dx), want_dx, "{what}");
            assert!(
                inside.iter().any(|&i| i) && inside.iter().any(|&i| !i),
                "{what}: both sides"
            );
            let want_ds =
                r::lsq_scale_grad(&x, &dy, (&scales, &zps), inn, (qmin, qmax), f64::from(g));
            assert!(
                rel_err(&read(ctx, &ds), &want_ds) < 1e-5,
                "{what}: {:?} vs {want_ds:?}",
                read(ctx, &ds)
            );
        }
    }
    // Bad ranges and parameters.
    let qp = fake_quant_params(ctx, &[0.1], &[0]).unwrap();
    let xt = up(ctx, &[n], &x);
    let y = Tensor::zeros(ctx, &[n], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let fq = FakeQuant {
        channels: 1,
        inner: n,
        qmin: 0,
        qmax: 0,
    };
    let e = fake_quantize(ctx, &mut enc, &fq, &xt, &qp, &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fake_quantize") && e.contains("[0, 0]"), "{e}");
    let fq = FakeQuant {
        channels: 2,
        inner: 4,
        qmin: 0,
        qmax: 15,
    };
    let e = fake_quantize(ctx, &mut enc, &fq, &xt, &qp, &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[outer, 2, 4]"), "{e}");
    let e = fake_quant_params(ctx, &[0.0], &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("channel 0: scale 0"), "{e}");
}

/// A convolution's input and weight gradients on odd shapes (stride 2 with padding,
/// dilation 2, groups, depthwise) against the f64 sums of their definitions and against
/// central differences of `L = sum(dy * conv(x, w))` computed by the library's forward
/// convolution (linear in x and w: h = 0.5 is exact up to rounding).
#[test]
fn conv_backward_matches_finite_differences() {
    use wgpu_quant::desc::conv::Padding;
    use wgpu_quant::ops::conv::{conv2d, ConvDesc, ConvDims, ConvWeight};
    use wgpu_quant::ops::train::{conv2d_backward_input, conv2d_backward_weight};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(76);
    // (batch, h, w, c, oc, kernel, stride, pad, dilation, groups)
    let cases = [
        (
            1usize,
            5usize,
            6usize,
            1usize,
            2usize,
            [3usize, 3usize],
            [1usize, 1usize],
            1usize,
            [1usize, 1usize],
            1usize,
        ),
        (2, 7, 5, 3, 4, [3, 2], [2, 1], 1, [1, 1], 1),
        (1, 9, 8, 4, 6, [3, 3], [2, 2], 2, [2, 2], 2),
        (2, 6, 7, 5, 5, [3, 3], [1, 2], 1, [1, 1], 5),
    ];
    for (nb, h, w, c, oc, k, stride, pad, dil, groups) in cases {
        let dims = ConvDims::new(oc, c, k, groups).unwrap();
        let desc = ConvDesc {
            stride,
            padding: Padding::uniform(pad),
            dilation: dil,
            ..ConvDesc::default()
        };
        let xs = [nb, h, w, c];
        let out = desc.output_shape(&dims, &xs).unwrap();
        let x = rand_vec(nb * h * w * c, &mut rng);
        let wt = rand_vec(dims.oihw().iter().product(), &mut rng);
        let dy = rand_vec(out.iter().product(), &mut rng);
        let what = format!("{xs:?} k{k:?} s{stride:?} p{pad} d{dil:?} g{groups}");
        let forward = |x: &[f32], wt: &[f32]| -> f64 {
            let cw = ConvWeight::from_oihw(ctx, dims, wt, DType::F32).unwrap();
            let y = Tensor::zeros(ctx, &out, DType::F32).unwrap();
            let mut enc = ctx.encoder("conv fwd");
            conv2d(ctx, &mut enc, &desc, &up(ctx, &xs, x), &cw, None, &y).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            read(ctx, &y)
                .iter()
                .zip(&dy)
                .map(|(&a, &g)| f64::from(a) * f64::from(g))
                .sum()
        };
        let (dx, dw) = (
            Tensor::zeros(ctx, &xs, DType::F32).unwrap(),
            Tensor::zeros(ctx, &dims.oihw(), DType::F32).unwrap(),
        );
        let (xt, wtt, dyt) = (
            up(ctx, &xs, &x),
            up(ctx, &dims.oihw(), &wt),
            up(ctx, &out, &dy),
        );
        let mut enc = ctx.encoder("conv bwd");
        conv2d_backward_input(ctx, &mut enc, (&dims, &desc), &dyt, &wtt, &dx).unwrap();
        conv2d_backward_weight(ctx, &mut enc, (&dims, &desc), &xt, &dyt, &dw).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let (gx, gw) = (read(ctx, &dx), read(ctx, &dw));
        // The definitions in f64: every (input, weight, output) triple the forward
        // convolution multiplies.
        let cs = desc.shape(&dims, &xs).unwrap();
        let (wx, ww) = r::conv2d_grads_f64(&x, &wt, &dy, &cs);
        assert!(rel_err(&gx, &wx) < 1e-5, "dx {what}: {}", rel_err(&gx, &wx));
        assert!(rel_err(&gw, &ww) < 1e-5, "dW {what}: {}", rel_err(&gw, &ww));
        let hh = 0.5f32;
        for e in [0, x.len() / 2, x.len() - 1] {
            let f = |s: f32| {
                let mut xp = x.clone();
                xp[e] += s;
                forward(&xp, &wt)
            };
            let d = (f(hh) - f(-hh)) / f64::from(2.0 * hh);
            assert!(
                (d - f64::from(gx[e])).abs() < 2e-3,
                "{what} dx[{e}]: {d} vs {}",
                gx[e]
            );
        }
        for e in [0, wt.len() / 2, wt.len() - 1] {
            let f = |s: f32| {
                let mut wp = wt.clone();
                wp[e] += s;
                forward(&x, &wp)
            };
            let d = (f(hh) - f(-hh)) / f64::from(2.0 * hh);
            assert!(
                (d - f64::from(gw[e])).abs() < 2e-3,
                "{what} dW[{e}]: {d} vs {}",
                gw[e]
            );
        }
    }
}

/// Max and average pooling's input gradients on odd shapes (2x2 stride 2, 3x3 stride 2
/// padded, dilated, with and without count_pad, global) against the host's scatter of
/// each window's gradient, and against central differences of `L = sum(dy * pool(x))`
/// by the library's forward pooling.
#[test]
fn pool_backward_matches_finite_differences() {
    use wgpu_quant::desc::conv::Padding;
    use wgpu_quant::desc::pool::{PoolDesc, PoolKind};
    use wgpu_quant::ops::pool::pool2d;
    use wgpu_quant::ops::train::pool2d_backward;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let mut descs = Vec::new();
    for kind in [PoolKind::Max, PoolKind::Avg] {
        descs.push(PoolDesc::new(kind, 2, 2));
        descs.push(PoolDesc::new(kind, 3, 2).padding(Padding::uniform(1)));
        let mut d = PoolDesc::new(kind, 2, 1);
        d.dilation = [2, 2];
        descs.push(d);
        let mut d = PoolDesc::new(kind, 3, 1).padding(Padding::uniform(1));
        d.count_pad = true;
        descs.push(d);
        let mut g = PoolDesc::new(kind, 1, 1);
        g.kernel = None;
        descs.push(g);
    }
    let xs = [2usize, 7, 6, 3];
    let n: usize = xs.iter().product();
    for desc in descs {
        let x = rand_vec(n, &mut rng);
        let out = desc.output_shape(&xs).unwrap();
        let dy = rand_vec(out.iter().product(), &mut rng);
        let forward = |x: &[f32]| -> f64 {
            let y = Tensor::zeros(ctx, &out, DType::F32).unwrap();
            let mut enc = ctx.encoder("pool fwd");
            pool2d(ctx, &mut enc, &desc, &up(ctx, &xs, x), &y).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            read(ctx, &y)
                .iter()
                .zip(&dy)
                .map(|(&a, &g)| f64::from(a) * f64::from(g))
                .sum()
        };
        let dx = Tensor::zeros(ctx, &xs, DType::F32).unwrap();
        let mut enc = ctx.encoder("pool bwd");
        pool2d_backward(
            ctx,
            &mut enc,
            &desc,
            &up(ctx, &xs, &x),
            &up(ctx, &out, &dy),
            &dx,
        )
        .unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = read(ctx, &dx);
        // The host: each window's gradient to its first maximum, or spread over it.
        let (h, w, c) = (xs[1], xs[2], xs[3]);
        let k = desc.kernel.unwrap_or([h, w]);
        let pad = match desc.padding {
            Padding::Explicit(p) => p[0],
            _ => 0,
        };
        let mut want = vec![0.0f64; n];
        for b in 0..xs[0] {
            for oy in 0..out[1] {
                for ox in 0..out[2] {
                    for ch in 0..c {
                        let g = f64::from(dy[((b * out[1] + oy) * out[2] + ox) * c + ch]);
                        let mut taps = Vec::new();
                        for ky in 0..k[0] {
                            for kx in 0..k[1] {
                                let iy = (oy * desc.stride[0] + ky * desc.dilation[0]) as i64
                                    - pad as i64;
                                let ix = (ox * desc.stride[1] + kx * desc.dilation[1]) as i64
                                    - pad as i64;
                                if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                    taps.push(((b * h + iy as usize) * w + ix as usize) * c + ch);
                                }
                            }
                        }
                        if desc.kind == PoolKind::Max {
                            let mut best = taps[0];
                            for &t in &taps {
                                if x[t] > x[best] {
                                    best = t;
                                }
                            }
                            want[best] += g;
                        } else {
                            let count = if desc.count_pad {
                                k[0] * k[1]
                            } else {
                                taps.len()
                            };
                            for &t in &taps {
                                want[t] += g / count as f64;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            rel_err(&got, &want) < 1e-5,
            "{desc:?}: {}",
            rel_err(&got, &want)
        );
        let hh = if desc.kind == PoolKind::Max {
            1e-3f32
        } else {
            0.5
        };
        for e in [0, n / 3, n / 2, n - 1] {
            let f = |s: f32| {
                let mut xp = x.clone();
                xp[e] += s;
                forward(&xp)
            };
            let d = (f(hh) - f(-hh)) / f64::from(2.0 * hh);
            assert!(
                (d - f64::from(got[e])).abs() < 5e-3,
                "{desc:?} dx[{e}]: {d} vs {}",
                got[e]
            );
        }
    }
}

/// The forward convolution on OIHW weights against the inference convolution (which
/// rearranges its weights once) on odd shapes (stride, padding, dilation, groups,
/// depthwise), with and without a bias, within 1e-5 relative.
#[test]
fn oihw_convolution_matches_the_inference_kernel() {
    use wgpu_quant::desc::conv::Padding;
    use wgpu_quant::ops::conv::{conv2d, ConvDesc, ConvDims, ConvWeight};
    use wgpu_quant::ops::train::conv2d_oihw;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(78);
    let cases = [
        (
            1usize,
            28usize,
            28usize,
            1usize,
            6usize,
            [5usize, 5usize],
            [1usize, 1usize],
            0usize,
            [1usize, 1usize],
            1usize,
        ),
        (2, 7, 5, 3, 4, [3, 2], [2, 1], 1, [1, 1], 1),
        (1, 9, 8, 4, 6, [3, 3], [2, 2], 2, [2, 2], 2),
        (2, 6, 7, 5, 5, [3, 3], [1, 2], 1, [1, 1], 5),
    ];
    for (nb, h, w, c, oc, k, stride, pad, dil, groups) in cases {
        let dims = ConvDims::new(oc, c, k, groups).unwrap();
        let desc = ConvDesc {
            stride,
            padding: Padding::uniform(pad),
            dilation: dil,
            ..ConvDesc::default()
        };
        let xs = [nb, h, w, c];
        let out = desc.output_shape(&dims, &xs).unwrap();
        let x = up(ctx, &xs, &rand_vec(xs.iter().product(), &mut rng));
        let wv = rand_vec(dims.oihw().iter().product(), &mut rng);
        let bias = up(ctx, &[oc], &rand_vec(oc, &mut rng));
        let cw = ConvWeight::from_oihw(ctx, dims, &wv, DType::F32).unwrap();
        let wt = up(ctx, &dims.oihw(), &wv);
        for b in [None, Some(&bias)] {
            let (want, got) = (
                Tensor::zeros(ctx, &out, DType::F32).unwrap(),
                Tensor::zeros(ctx, &out, DType::F32).unwrap(),
            );
            let mut enc = ctx.encoder("conv");
            conv2d(ctx, &mut enc, &desc, &x, &cw, b, &want).unwrap();
            conv2d_oihw(ctx, &mut enc, (&dims, &desc), &x, (&wt, b), &got).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want64 = f64s(&read(ctx, &want));
            let e = rel_err(&read(ctx, &got), &want64);
            assert!(
                e < 1e-5,
                "{xs:?} k{k:?} g{groups} bias {}: {e:.2e}",
                b.is_some()
            );
        }
    }
}

/// Range observation on the GPU: per channel and per tensor, symmetric and asymmetric,
/// at 2 to 8 bits, on odd shapes: the state holds each channel's exact minimum and
/// maximum after the first observation and their moving average after the second, and
/// the parameters are the reference's (the zero point exactly, the scale within the
/// WGSL division's few ulps); an all-zero channel gets the smallest scale, not 0. The
/// parameters written on the GPU fake-quantize as `fake_quant_params`' do, and LSQ's
/// learned scales become parameters with their zero points kept.
#[test]
fn observed_ranges_become_fake_quantization_parameters() {
    use wgpu_quant::ops::train::{
        fake_quant_params, observe_range, scales_to_params, FakeQuant, RangeObserver, MIN_SCALE,
    };
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let (outer, ch, inner) = (3usize, 5usize, 131usize);
    let n = outer * ch * inner;
    let x1: Vec<f32> = rand_vec(n, &mut rng)
        .iter()
        .map(|v| v * 3.0 + 0.5)
        .collect();
    let mut x2: Vec<f32> = rand_vec(n, &mut rng).iter().map(|v| v * 2.0).collect();
    // Channel 1 all zeros in the second batch.
    for o in 0..outer {
        x2[(o * ch + 1) * inner..(o * ch + 2) * inner].fill(0.0);
    }
    let decay = 0.75f32;
    for (qmin, qmax, symmetric) in [
        (-1, 1, true),
        (-7, 7, true),
        (-127, 127, true),
        (0, 3, false),
        (0, 15, false),
        (-128, 127, false),
    ] {
        for per_channel in [false, true] {
            let (channels, inn) = if per_channel { (ch, inner) } else { (1, n) };
            let fq = FakeQuant {
                channels,
                inner: inn,
                qmin,
                qmax,
            };
            let what = format!("[{qmin}, {qmax}] symmetric {symmetric} per channel {per_channel}");
            let state = Tensor::zeros(ctx, &[2 * channels], DType::F32).unwrap();
            let qp = Tensor::zeros(ctx, &[3 * channels], DType::U32).unwrap();
            let mut want: Vec<(f32, f32)> = Vec::new();
            for (step, x) in [&x1, &x2].into_iter().enumerate() {
                let xt = up(ctx, &[n], x);
                let obs = RangeObserver {
                    symmetric,
                    decay,
                    first: step == 0,
                };
                let mut enc = ctx.encoder("observe");
                observe_range(ctx, &mut enc, &fq, obs, &xt, (&state, &qp)).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let cur = r::channel_ranges(x, channels, inn);
                want = if step == 0 {
                    cur
                } else {
                    want.iter()
                        .zip(&cur)
                        .map(|(o, c)| {
                            (
                                decay * o.0 + (1.0 - decay) * c.0,
                                decay * o.1 + (1.0 - decay) * c.1,
                            )
                        })
                        .collect()
                };
                let got = read(ctx, &state);
                for (k, w) in want.iter().enumerate() {
                    for (g, w) in [(got[2 * k], w.0), (got[2 * k + 1], w.1)] {
                        assert!(
                            (g - w).abs() <= 1e-6 * w.abs().max(1e-6),
                            "{what} step {step} channel {k}: {g} vs {w}"
                        );
                    }
                }
                let words = qp.read_blocking::<u32>(ctx).unwrap();
                let mut scales = Vec::new();
                let mut zps = Vec::new();
                for (k, &range) in want.iter().enumerate() {
                    let (s, z) = r::range_params(range, symmetric, (qmin, qmax), MIN_SCALE);
                    let (gs, ginv, gz) = (
                        f32::from_bits(words[3 * k]),
                        f32::from_bits(words[3 * k + 1]),
                        f32::from_bits(words[3 * k + 2]),
                    );
                    assert!(
                        (gs - s).abs() <= 4.0 * f32::EPSILON * s,
                        "{what} step {step} channel {k}: scale {gs} vs {s}"
                    );
                    assert!(
                        (ginv * gs - 1.0).abs() < 1e-6,
                        "{what}: inverse {ginv} of {gs}"
                    );
                    assert_eq!(gz, z as f32, "{what} step {step} channel {k}: zero point");
                    assert!(gs >= MIN_SCALE, "{what}: scale {gs}");
                    scales.push(gs);
                    zps.push(gz as i32);
                }
                // What the host would build from these numbers fake-quantizes alike.
                let host = fake_quant_params(ctx, &scales, &zps).unwrap();
                let (a, b) = (
                    Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
                    Tensor::zeros(ctx, &[n], DType::F32).unwrap(),
                );
                let mut enc = ctx.encoder("fq both");
                wgpu_quant::ops::train::fake_quantize(ctx, &mut enc, &fq, &xt, &qp, &a).unwrap();
                wgpu_quant::ops::train::fake_quantize(ctx, &mut enc, &fq, &xt, &host, &b).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let (ra, rb) = (read(ctx, &a), read(ctx, &b));
                let differ = ra.iter().zip(&rb).filter(|(p, q)| p != q).count();
                // Only an inverse computed differently by a rounding can move a code.
                assert!(differ * 1000 <= n, "{what}: {differ} of {n} values differ");
            }
            // LSQ: learned scales replace the observed ones, the zero points stay.
            let learned: Vec<f32> = (0..channels)
                .map(|k| if k == 0 { -1.0 } else { 0.01 * k as f32 })
                .collect();
            let before = qp.read_blocking::<u32>(ctx).unwrap();
            let mut enc = ctx.encoder("lsq params");
            scales_to_params(ctx, &mut enc, &up(ctx, &[channels], &learned), &qp).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let after = qp.read_blocking::<u32>(ctx).unwrap();
            for (k, &s) in learned.iter().enumerate() {
                let s = s.max(MIN_SCALE);
                assert_eq!(f32::from_bits(after[3 * k]), s, "{what}: learned scale {k}");
                assert_eq!(
                    after[3 * k + 2],
                    before[3 * k + 2],
                    "{what}: zero point {k} kept"
                );
            }
        }
    }
    // An all-zero tensor gets the smallest scale, not 0 (its inverse stays finite).
    let fq = FakeQuant {
        channels: 1,
        inner: 6,
        qmin: 0,
        qmax: 15,
    };
    let (state, qp) = (
        Tensor::zeros(ctx, &[2], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[3], DType::U32).unwrap(),
    );
    let obs = RangeObserver {
        symmetric: false,
        decay: 0.0,
        first: true,
    };
    let mut enc = ctx.encoder("zeros");
    observe_range(
        ctx,
        &mut enc,
        &fq,
        obs,
        &up(ctx, &[6], &[0.0; 6]),
        (&state, &qp),
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let words = qp.read_blocking::<u32>(ctx).unwrap();
    assert_eq!(f32::from_bits(words[0]), MIN_SCALE);
    assert!(f32::from_bits(words[1]).is_finite());
    // Bad operands.
    let fq = FakeQuant {
        channels: 2,
        inner: 3,
        qmin: 0,
        qmax: 15,
    };
    let xt = up(ctx, &[6], &[0.0; 6]);
    let qp = Tensor::zeros(ctx, &[6], DType::U32).unwrap();
    let bad_state = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let obs = RangeObserver {
        symmetric: false,
        decay: 0.5,
        first: true,
    };
    let mut enc = ctx.encoder("bad");
    let e = observe_range(ctx, &mut enc, &fq, obs, &xt, (&bad_state, &qp))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("observe_range") && e.contains("state") && e.contains("[4]"),
        "{e}"
    );
    let state = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let obs = RangeObserver { decay: 1.0, ..obs };
    let e = observe_range(ctx, &mut enc, &fq, obs, &xt, (&state, &qp))
        .unwrap_err()
        .to_string();
    assert!(e.contains("decay = 1"), "{e}");
    let e = scales_to_params(ctx, &mut enc, &up(ctx, &[3], &[1.0; 3]), &qp)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scales_to_params") && e.contains("[9]"), "{e}");
}

/// The GEMM route of a one-group convolution's training (im2col, then `cols W^T` for the
/// forward pass, `dy^T cols` for the weight gradient, `dy W` and col2im for the input
/// gradient) on odd shapes with stride, padding and dilation: the forward against the
/// f64 convolution, both gradients against the f64 sums of their definitions, and the
/// columns bit for bit against a host im2col.
#[test]
fn im2col_gemm_route_matches_the_references() {
    use wgpu_quant::desc::conv::Padding;
    use wgpu_quant::ops::conv::{ConvDesc, ConvDims};
    use wgpu_quant::ops::train::{col2im, columns_shape, im2col};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(78);
    // (batch, h, w, c, oc, kernel, stride, pad, dilation)
    let cases = [
        (
            1usize,
            5usize,
            6usize,
            1usize,
            2usize,
            [3usize, 3usize],
            [1usize, 1usize],
            1usize,
            [1usize, 1usize],
        ),
        (2, 7, 5, 3, 4, [3, 2], [2, 1], 1, [1, 1]),
        (3, 9, 8, 4, 5, [3, 3], [2, 2], 2, [2, 2]),
        (2, 12, 12, 10, 20, [5, 5], [1, 1], 0, [1, 1]),
    ];
    for (nb, h, w, c, oc, k, stride, pad, dil) in cases {
        let dims = ConvDims::new(oc, c, k, 1).unwrap();
        let desc = ConvDesc {
            stride,
            padding: Padding::uniform(pad),
            dilation: dil,
            ..ConvDesc::default()
        };
        let what = format!("[{nb}, {h}, {w}, {c}] k{k:?} s{stride:?} p{pad} d{dil:?}");
        let xs = [nb, h, w, c];
        let cs = desc.shape(&dims, &xs).unwrap();
        let [m, ckk] = columns_shape(&dims, &desc, &xs).unwrap();
        assert_eq!(
            (m, ckk),
            (nb * cs.out_h * cs.out_w, c * k[0] * k[1]),
            "{what}"
        );
        let x = rand_vec(nb * h * w * c, &mut rng);
        let wt = rand_vec(oc * ckk, &mut rng);
        let dy = rand_vec(m * oc, &mut rng);
        let (xt, wtt, dyt) = (
            up(ctx, &xs, &x),
            up(ctx, &[oc, ckk], &wt),
            up(ctx, &[m, oc], &dy),
        );
        let z = |s: &[usize]| Tensor::zeros(ctx, s, DType::F32).unwrap();
        let (cols, y, dw, dcols, dx) = (
            z(&[m, ckk]),
            z(&[m, oc]),
            z(&[oc, ckk]),
            z(&[m, ckk]),
            z(&xs),
        );
        let mut enc = ctx.encoder("im2col route");
        im2col(ctx, &mut enc, (&dims, &desc), &xt, &cols).unwrap();
        let fwd = GemmDesc {
            trans_b: true,
            ..GemmDesc::new(m, oc, ckk)
        };
        gemm(ctx, &mut enc, &fwd, &cols, &wtt, None, &y).unwrap();
        let dwd = GemmDesc {
            trans_a: true,
            ..GemmDesc::new(oc, ckk, m)
        };
        gemm(ctx, &mut enc, &dwd, &dyt, &cols, None, &dw).unwrap();
        gemm(
            ctx,
            &mut enc,
            &GemmDesc::new(m, ckk, oc),
            &dyt,
            &wtt,
            None,
            &dcols,
        )
        .unwrap();
        col2im(ctx, &mut enc, (&dims, &desc), &dcols, &dx).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        // The columns: the input where the tap is inside, 0 in the padding.
        let mut want_cols = vec![0.0f32; m * ckk];
        for row in 0..m {
            let (n, oy, ox) = (
                row / (cs.out_h * cs.out_w),
                row / cs.out_w % cs.out_h,
                row % cs.out_w,
            );
            for ci in 0..c {
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * stride[0] + ky * dil[0]) as i64 - pad as i64;
                        let ix = (ox * stride[1] + kx * dil[1]) as i64 - pad as i64;
                        if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                            want_cols[row * ckk + (ci * k[0] + ky) * k[1] + kx] =
                                x[((n * h + iy as usize) * w + ix as usize) * c + ci];
                        }
                    }
                }
            }
        }
        assert_eq!(read(ctx, &cols), want_cols, "{what}: columns");
        let want_y =
            wgpu_quant::reference::conv2d_f64(&f64s(&x), &f64s(&wt), None, Default::default(), &cs);
        assert!(rel_err(&read(ctx, &y), &want_y) < 1e-5, "{what}: forward");
        let (want_dx, want_dw) = r::conv2d_grads_f64(&x, &wt, &dy, &cs);
        assert!(rel_err(&read(ctx, &dw), &want_dw) < 1e-5, "{what}: dW");
        assert!(rel_err(&read(ctx, &dx), &want_dx) < 1e-5, "{what}: dx");
    }
}
