//! Add, clip, softmax, layer normalization, the elementwise functions (sigmoid, hard sigmoid/swish, tanh,
//! leaky ReLU, affine) and the broadcasting binary ops (f32 and f16 in any combination) and the INT8 residual add
//! (bit-exact, i8/u8 mixes, odd row lengths, padding bytes kept 0) against the Rust
//! reference. Outputs are poisoned first.

mod common;

use common::float::{check, poisoned, rand_vec, read, upload, F16_OUT, F32_BUDGET};
use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::ops::eltwise::{
    add, binary, cast, channel_affine, clip, layer_norm, map, qadd, row_reduce, softmax, BinaryOp,
    Clip, Reduce, UnaryOp,
};
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Tensor};

#[test]
fn add_clip_softmax() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for shape in [vec![1usize], vec![3, 7], vec![2, 5, 5, 3], vec![1, 1001]] {
        let n: usize = shape.iter().product();
        for bits in 0..8u32 {
            let f = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
            let budget = F32_BUDGET + if f[2] { F16_OUT } else { 0.0 };
            let (a, a64) = upload(ctx, &shape, &rand_vec(n, &mut rng), f[0]);
            let (b, b64) = upload(ctx, &shape, &rand_vec(n, &mut rng), f[1]);
            for c in [
                Clip::NONE,
                Clip::RELU,
                Clip::RELU6,
                Clip { lo: -1.0, hi: 0.5 },
            ] {
                let out = poisoned(ctx, &shape, f[2]);
                let mut enc = ctx.encoder("add test");
                add(ctx, &mut enc, &a, &b, c, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want: Vec<f64> = a64
                    .iter()
                    .zip(&b64)
                    .map(|(x, y)| (x + y).max(f64::from(c.lo)).min(f64::from(c.hi)))
                    .collect();
                check(
                    &format!("add {shape:?} {f:?} {c:?}"),
                    &read(ctx, &out),
                    &want,
                    budget,
                );

                let out = poisoned(ctx, &shape, f[2]);
                let mut enc = ctx.encoder("clip test");
                clip(ctx, &mut enc, &a, c, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want: Vec<f64> = a64
                    .iter()
                    .map(|x| x.max(f64::from(c.lo)).min(f64::from(c.hi)))
                    .collect();
                check(
                    &format!("clip {shape:?} {f:?} {c:?}"),
                    &read(ctx, &out),
                    &want,
                    budget,
                );
            }
            let out = poisoned(ctx, &shape, f[2]);
            let mut enc = ctx.encoder("softmax test");
            softmax(ctx, &mut enc, &a, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = reference::softmax_f64(&a64, *shape.last().unwrap());
            // exp in f32 on the GPU: a few ulps per term.
            check(
                &format!("softmax {shape:?} {f:?}"),
                &read(ctx, &out),
                &want,
                1e-5 + if f[2] { F16_OUT } else { 0.0 },
            );
        }
    }
    // Errors name the problem.
    let a = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[3, 2], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let mut enc = ctx.encoder("errors");
    let e = add(ctx, &mut enc, &a, &b, Clip::NONE, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 2]") && e.contains("differ"), "{e}");
    let e = clip(ctx, &mut enc, &a, Clip::RELU, &a)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shares its buffer"), "{e}");
    let e = clip(ctx, &mut enc, &a, Clip { lo: 1.0, hi: 0.0 }, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    let i = Tensor::zeros(ctx, &[2, 3], DType::I32).unwrap();
    let e = softmax(ctx, &mut enc, &i, &out).unwrap_err().to_string();
    assert!(e.contains("i32"), "{e}");
}

/// `cast` between f32 and f16 both ways and to the same type: f16 to f32 bit for bit
/// (infinities and NaN too), f32 to f16 within half an f16 ulp, over odd lengths.
#[test]
fn cast_converts_between_f32_and_f16() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for n in [1usize, 2, 3, 17, 1001] {
        let mut v = rand_vec(n, &mut rng);
        v.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x *= (1 + i % 5) as f32 * 100.0);
        for (x_f16, out_f16) in [(false, true), (true, false), (false, false), (true, true)] {
            let (x, x64) = upload(ctx, &[n], &v, x_f16);
            let out = poisoned(ctx, &[n], out_f16);
            let mut enc = ctx.encoder("cast test");
            cast(ctx, &mut enc, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = read(ctx, &out);
            for (i, (&g, &w)) in got.iter().zip(&x64).enumerate() {
                let tol = if out_f16 && !x_f16 {
                    w.abs() * 2f64.powi(-11)
                } else {
                    0.0
                };
                assert!(
                    (f64::from(g) - w).abs() <= tol,
                    "cast n={n} x_f16={x_f16} out_f16={out_f16}: [{i}] {g} vs {w}"
                );
            }
        }
    }
    // f16 specials widen exactly.
    let specials = [
        f16::INFINITY,
        f16::NEG_INFINITY,
        f16::NAN,
        f16::MAX,
        f16::MIN_POSITIVE_SUBNORMAL,
        f16::NEG_ZERO,
    ];
    let x = Tensor::from_slice(ctx, &[specials.len()], &specials).unwrap();
    let out = Tensor::zeros(ctx, &[specials.len()], DType::F32).unwrap();
    let mut enc = ctx.encoder("cast specials");
    cast(ctx, &mut enc, &x, &out).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let got = out.read_blocking::<f32>(ctx).unwrap();
    for (g, h) in got.iter().zip(specials) {
        let w = h.to_f32();
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{h} widened to {g}"
        );
    }
    // Errors name the problem.
    let i = Tensor::zeros(ctx, &[2], DType::I32).unwrap();
    let mut enc = ctx.encoder("cast errors");
    let e = cast(ctx, &mut enc, &i, &out).unwrap_err().to_string();
    assert!(e.contains("i32"), "{e}");
    let e = cast(
        ctx,
        &mut enc,
        &x,
        &Tensor::zeros(ctx, &[2, 3], DType::F16).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("differ"), "{e}");
}

fn qtensor(
    ctx: &Context,
    shape: &[usize],
    qt: QType,
    s: f32,
    z: i32,
    rng: &mut rand::rngs::StdRng,
) -> (QTensor, Vec<i32>) {
    let n: usize = shape.iter().product();
    let codes: Vec<i32> = (0..n)
        .map(|i| match i % 9 {
            0 => qt.qmin(),
            1 => qt.qmax(),
            _ => rng.random_range(qt.qmin()..=qt.qmax()),
        })
        .collect();
    let p = QuantParams::new(qt, Granularity::PerTensor, shape, vec![s], vec![z]).unwrap();
    (QTensor::from_codes(ctx, &p, &codes).unwrap(), codes)
}

#[test]
fn int8_add_is_bit_exact() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let combos = [
        (QType::I8, QType::I8, QType::I8),
        (QType::U8, QType::U8, QType::U8),
        (QType::U8, QType::I8, QType::U8),
        (QType::I8, QType::U8, QType::I8),
    ];
    for shape in [
        vec![1usize],
        vec![3, 7],
        vec![2, 5, 5, 3],
        vec![1, 7, 7, 40],
    ] {
        for (ci, &(ta, tb, to)) in combos.iter().enumerate() {
            let z = |t: QType, r: &mut rand::rngs::StdRng| {
                if t == QType::U8 {
                    r.random_range(0..=255)
                } else {
                    r.random_range(-20..=20)
                }
            };
            let (sa, za) = (rng.random_range(0.01f32..0.1), z(ta, &mut rng));
            let (sb, zb) = (rng.random_range(0.01f32..0.1), z(tb, &mut rng));
            let (so, zo) = (rng.random_range(0.02f32..0.2), z(to, &mut rng));
            let (a, ac) = qtensor(ctx, &shape, ta, sa, za, &mut rng);
            let (b, bc) = qtensor(ctx, &shape, tb, sb, zb, &mut rng);
            let op =
                QuantParams::new(to, Granularity::PerTensor, &shape, vec![so], vec![zo]).unwrap();
            let out = QTensor::new(ctx, &op).unwrap();
            out.data()
                .write(ctx, &vec![0xa5a5_a5a5u32; out.data().numel()])
                .unwrap();
            let c = [Clip::NONE, Clip::RELU, Clip::RELU6, Clip::NONE][ci];
            let mut enc = ctx.encoder("qadd test");
            qadd(ctx, &mut enc, &a, &b, c, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = out.read_codes_blocking(ctx).unwrap();
            for i in 0..got.len() {
                let want = reference::qadd(
                    (ac[i], sa, za),
                    (bc[i], sb, zb),
                    c,
                    (so, zo),
                    (to.qmin(), to.qmax()),
                );
                assert_eq!(got[i], want, "{shape:?} {ta}+{tb}->{to} element {i}");
            }
            let cols = *shape.last().unwrap();
            if !cols.is_multiple_of(4) {
                let words = out.data().read_blocking::<u32>(ctx).unwrap();
                let wpr = cols.div_ceil(4);
                for (row, chunk) in words.chunks(wpr).enumerate() {
                    assert_eq!(chunk[wpr - 1] >> (8 * (cols % 4)), 0, "row {row} padding");
                }
            }
        }
    }
    // Per-channel operands are refused with the reason.
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerChannel { axis: 0 },
        &[2, 3],
        vec![0.1, 0.2],
        vec![0, 0],
    )
    .unwrap();
    let pc = QTensor::new(ctx, &p).unwrap();
    let (t, _) = qtensor(ctx, &[2, 3], QType::I8, 0.1, 0, &mut rng);
    let mut enc = ctx.encoder("errors");
    let e = qadd(ctx, &mut enc, &pc, &t, Clip::NONE, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("per tensor"), "{e}");
}

/// One f16 step at `w`'s magnitude (2^-24 among the subnormals).
fn f16_step(w: f64) -> f64 {
    if w == 0.0 {
        2f64.powi(-24)
    } else {
        2f64.powi(w.abs().log2().floor() as i32 - 10)
            .max(2f64.powi(-24))
    }
}

/// f16 outputs: every element within one f16 step of the f64 reference (the step at the
/// reference's magnitude, 2^-24 among the subnormals), plus the f32 arithmetic's error;
/// a relative norm would fail a lone subnormal output that is rounded correctly.
fn check_f16_steps(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // Beyond f16's largest value plus half its step, rounding gives infinity.
        if w.abs() >= 65520.0 {
            assert!(
                g.is_infinite() && (g > 0.0) == (w > 0.0),
                "{what}: element {i} = {g}, reference {w} (rounds to an infinite f16)"
            );
            continue;
        }
        let step = f16_step(w);
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= step + 1e-6 * w.abs(),
            "{what}: element {i} = {g}, reference {w} (error {err:e}, one f16 step {step:e})"
        );
    }
}

/// The float check for an f32 output, one f16 step per element for an f16 output.
fn check_out(what: &str, got: &[f32], want: &[f64], f16_out: bool) {
    if f16_out {
        check_f16_steps(what, got, want);
    } else {
        check(what, got, want, F32_BUDGET.max(1e-6));
    }
}

/// The f32 budget of a function that WGSL computes through `exp`/`exp2` of a large
/// argument: WGSL allows `3 + 2 |arg|` ULP there (the argument's own rounding, scaled),
/// which passes the general budget once `|arg|` is above about 6. `None`: the general one.
fn exp_budget(f: UnaryOp, x: &[f64]) -> Option<f64> {
    let arg = |g: &dyn Fn(f64) -> f64| x.iter().map(|&v| g(v).abs()).fold(0.0, f64::max);
    let worst = match f {
        UnaryOp::Exp => arg(&|v| v),
        UnaryOp::Pow { exponent } if exponent.fract() != 0.0 => {
            arg(&|v| f64::from(exponent) * v.log2())
        }
        _ => return None,
    };
    Some(F32_BUDGET.max((3.0 + 2.0 * worst) * f64::from(f32::EPSILON)))
}

#[test]
fn functions_and_broadcast_binary_ops() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let funcs = [
        UnaryOp::Sigmoid,
        UnaryOp::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        UnaryOp::HardSwish,
        UnaryOp::Tanh,
        UnaryOp::LeakyRelu { alpha: 0.1 },
        UnaryOp::Affine {
            scale: -1.5,
            shift: 3.0,
        },
        UnaryOp::Exp,
        UnaryOp::Abs,
        UnaryOp::Erf,
        UnaryOp::Gelu { tanh: false },
        UnaryOp::Gelu { tanh: true },
        UnaryOp::Pow { exponent: 2.0 },
        UnaryOp::Pow { exponent: 3.0 },
        UnaryOp::Elu {
            alpha: 1.0,
            scale: 1.0,
        },
        // ONNX's Selu constants.
        UnaryOp::Elu {
            alpha: 1.673_263_2,
            scale: 1.050_701,
        },
        UnaryOp::Celu { alpha: 1.5 },
        UnaryOp::Softplus,
        UnaryOp::Softsign,
        UnaryOp::Mish,
    ];
    // Functions defined above zero only, on |x| + 1/8.
    let positive = [
        UnaryOp::Sqrt,
        UnaryOp::Log,
        UnaryOp::Pow { exponent: 0.5 },
        UnaryOp::Pow { exponent: -1.75 },
        UnaryOp::Pow { exponent: -2.0 },
        UnaryOp::Rdiv { numerator: -2.5 },
    ];
    for shape in [
        vec![1usize, 1, 1, 1],
        vec![1, 3, 7, 5],
        vec![2, 5, 3, 17],
        vec![3, 33],
    ] {
        let n: usize = shape.iter().product();
        // Values in [-8, 8] reach both flat parts of the hard functions.
        let xs: Vec<f32> = rand_vec(n, &mut rng).iter().map(|v| v * 8.0).collect();
        for bits in [0u32, 1, 2, 3] {
            let f = [bits & 1 != 0, bits & 2 != 0];
            let (x, x64) = upload(ctx, &shape, &xs, f[0]);
            let pos: Vec<f32> = xs.iter().map(|v| v.abs() + 0.125).collect();
            let (xp, xp64) = upload(ctx, &shape, &pos, f[0]);
            let cases = funcs
                .iter()
                .map(|&g| (g, &x, &x64))
                .chain(positive.iter().map(|&g| (g, &xp, &xp64)));
            for (func, x, x64) in cases {
                for c in [
                    Clip::NONE,
                    Clip {
                        lo: -0.25,
                        hi: 0.75,
                    },
                ] {
                    let out = poisoned(ctx, &shape, f[1]);
                    let mut enc = ctx.encoder("map test");
                    map(ctx, &mut enc, func, c, x, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    // Rounded to f32 (an output below f32's range is 0 there).
                    let want: Vec<f64> = reference::map_f64(x64, func, c)
                        .iter()
                        .map(|&w| f64::from(w as f32))
                        .collect();
                    let what = format!("{func:?} {shape:?} {f:?} {c:?}");
                    let got = read(ctx, &out);
                    match exp_budget(func, x64) {
                        Some(b) if !f[1] => check(&what, &got, &want, b),
                        _ => check_out(&what, &got, &want, f[1]),
                    }
                }
            }
            // b of a's shape, and b broadcast over the middle axes, over the last axis
            // (a row statistic), over the leading axes, and over one inner axis.
            let r = shape.len();
            let mut middle = vec![1; r];
            middle[0] = shape[0];
            middle[r - 1] = shape[r - 1];
            let mut last = shape.clone();
            last[r - 1] = 1;
            let mut leading = vec![1; r];
            leading[r - 1] = shape[r - 1];
            let mut inner = shape.clone();
            inner[r - 2] = 1;
            for bs in [shape.clone(), middle, last, leading, inner] {
                let bn: usize = bs.iter().product();
                // Divisors away from zero.
                let bv: Vec<f32> = rand_vec(bn, &mut rng)
                    .iter()
                    .map(|v| v.signum() * (0.5 + v.abs()))
                    .collect();
                let (b, b64) = upload(ctx, &bs, &bv, f[0]);
                for op in [
                    BinaryOp::Add,
                    BinaryOp::Sub,
                    BinaryOp::Mul,
                    BinaryOp::Div,
                    BinaryOp::RSub,
                    BinaryOp::RDiv,
                    BinaryOp::Max,
                    BinaryOp::Min,
                    BinaryOp::PRelu,
                    BinaryOp::RPRelu,
                ] {
                    let out = poisoned(ctx, &shape, f[1]);
                    let mut enc = ctx.encoder("binary test");
                    binary(ctx, &mut enc, op, &x, &b, Clip::RELU6, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    let want = reference::binary_f64(&x64, &shape, &b64, &bs, op, Clip::RELU6);
                    check_out(
                        &format!("{op:?} {shape:?} by {bs:?} {f:?}"),
                        &read(ctx, &out),
                        &want,
                        f[1],
                    );
                }
            }
        }
    }
    // Shapes that neither match nor broadcast, and bad parameters, are errors.
    let a = Tensor::zeros(ctx, &[2, 3, 3, 4], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[2, 3, 3, 4], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    // Two separate runs of broadcast axes, a length neither 1 nor a's, another rank.
    for bad in [
        vec![2, 1, 3, 1],
        vec![2, 3, 2, 4],
        vec![2, 1, 1, 3],
        vec![3, 4],
    ] {
        let b = Tensor::zeros(ctx, &bad, DType::F32).unwrap();
        let e = binary(ctx, &mut enc, BinaryOp::Mul, &a, &b, Clip::NONE, &out).unwrap_err();
        assert!(
            e.to_string().contains("binary") && e.to_string().contains(&format!("{bad:?}")),
            "{e}"
        );
    }
    let e = map(
        ctx,
        &mut enc,
        UnaryOp::LeakyRelu { alpha: f32::NAN },
        Clip::NONE,
        &a,
        &out,
    )
    .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
}

#[test]
fn layer_norm_matches_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // One-value rows (normalized to 0), odd row lengths, a transformer's 120 and 1000.
    for shape in [
        vec![1usize, 1],
        vec![3, 1],
        vec![5, 7],
        vec![2, 3, 120],
        vec![1, 40, 120],
        vec![4, 1000],
    ] {
        let cols = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        // Values off centre, so the mean matters.
        let xs: Vec<f32> = rand_vec(n, &mut rng)
            .iter()
            .map(|v| 3.0 * v + 0.5)
            .collect();
        let g: Vec<f32> = rand_vec(cols, &mut rng).iter().map(|v| 1.0 + v).collect();
        let b: Vec<f32> = rand_vec(cols, &mut rng);
        let gt = Tensor::from_slice(ctx, &[cols], &g).unwrap();
        let bt = Tensor::from_slice(ctx, &[cols], &b).unwrap();
        let g64: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
        let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        for bits in 0..4u32 {
            let f = [bits & 1 != 0, bits & 2 != 0];
            let (x, x64) = upload(ctx, &shape, &xs, f[0]);
            for (eps, with_g, with_b) in [
                (1e-5f32, true, true),
                (0.5, false, true),
                (1e-6, true, false),
                (1e-5, false, false),
            ] {
                let out = poisoned(ctx, &shape, f[1]);
                let mut enc = ctx.encoder("layer norm test");
                layer_norm(
                    ctx,
                    &mut enc,
                    &x,
                    with_g.then_some(&gt),
                    with_b.then_some(&bt),
                    eps,
                    &out,
                )
                .unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = reference::layer_norm_f64(
                    &x64,
                    cols,
                    with_g.then_some(&g64[..]),
                    with_b.then_some(&b64[..]),
                    f64::from(eps),
                );
                let what =
                    format!("layer norm {shape:?} {f:?} eps {eps} gamma {with_g} beta {with_b}");
                let got = read(ctx, &out);
                if f[1] {
                    check_rows_f16(&what, &got, &want, cols);
                } else {
                    check(&what, &got, &want, F32_BUDGET);
                }
            }
        }
    }
    // Bad parameters are errors naming what is wrong.
    let x = Tensor::zeros(ctx, &[2, 5], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[2, 5], DType::F32).unwrap();
    let g4 = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let g5h = Tensor::zeros(ctx, &[5], DType::F16).unwrap();
    let mut enc = ctx.encoder("bad");
    for (g, b, eps, what) in [
        (Some(&g4), None, 1e-5, "gamma"),
        (None, Some(&g4), 1e-5, "beta"),
        (Some(&g5h), None, 1e-5, "F32 [5]"),
        (None, None, -1.0, "epsilon"),
        (None, None, f32::NAN, "epsilon"),
    ] {
        let e = layer_norm(ctx, &mut enc, &x, g, b, eps, &out).unwrap_err();
        assert!(
            e.to_string().contains("layer_norm") && e.to_string().contains(what),
            "{e}"
        );
    }
    let e = layer_norm(ctx, &mut enc, &x, None, None, 1e-5, &x).unwrap_err();
    assert!(e.to_string().contains("buffer"), "{e}");
}

/// f16 outputs of a row-wise op: each element within one f16 step of the f64 reference
/// plus the f32 arithmetic's error, which is relative to the row's largest value (the
/// mean is subtracted in f32), not to the element (one near zero may lose its digits).
fn check_rows_f16(what: &str, got: &[f32], want: &[f64], cols: usize) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (r, (g, w)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (j, (&g, &w)) in g.iter().zip(w).enumerate() {
            let step = f16_step(w);
            let err = (f64::from(g) - w).abs();
            assert!(
                err <= step + 4e-6 * scale,
                "{what}: row {r} element {j} = {g}, reference {w} (error {err:e}, one f16 step {step:e}, row scale {scale})"
            );
        }
    }
}

#[test]
fn channel_affine_matches_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for shape in [
        vec![1usize],
        vec![3, 1],
        vec![5, 7],
        vec![2, 3, 120],
        vec![7, 33, 13],
    ] {
        let c = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let xs = rand_vec(n, &mut rng);
        let sc = rand_vec(c, &mut rng);
        let sh = rand_vec(c, &mut rng);
        let (st, tt) = (
            Tensor::from_slice(ctx, &[c], &sc).unwrap(),
            Tensor::from_slice(ctx, &[c], &sh).unwrap(),
        );
        let s64: Vec<f64> = sc.iter().map(|&v| f64::from(v)).collect();
        let t64: Vec<f64> = sh.iter().map(|&v| f64::from(v)).collect();
        for bits in 0..4u32 {
            let f = [bits & 1 != 0, bits & 2 != 0];
            let (x, x64) = upload(ctx, &shape, &xs, f[0]);
            let out = poisoned(ctx, &shape, f[1]);
            let mut enc = ctx.encoder("channel affine test");
            channel_affine(ctx, &mut enc, &x, &st, &tt, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = reference::channel_affine_f64(&x64, &s64, &t64);
            check_out(
                &format!("channel affine {shape:?} {f:?}"),
                &read(ctx, &out),
                &want,
                f[1],
            );
        }
    }
    let x = Tensor::zeros(ctx, &[2, 5], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[2, 5], DType::F32).unwrap();
    let (s4, s5) = (
        Tensor::zeros(ctx, &[4], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[5], DType::F32).unwrap(),
    );
    let mut enc = ctx.encoder("bad");
    let e = channel_affine(ctx, &mut enc, &x, &s4, &s5, &out).unwrap_err();
    assert!(
        e.to_string().contains("scale") && e.to_string().contains("[4]"),
        "{e}"
    );
    let e = channel_affine(ctx, &mut enc, &x, &s5, &s4, &out).unwrap_err();
    assert!(
        e.to_string().contains("shift") && e.to_string().contains("[4]"),
        "{e}"
    );
}

#[test]
fn row_reductions_match_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for shape in [
        vec![1usize],
        vec![3, 7],
        vec![2, 5, 33],
        vec![4, 1],
        vec![2, 3, 2, 300],
    ] {
        let n: usize = shape.iter().product();
        // An offset makes the mean far from zero, as a row of activations' often is.
        let xs: Vec<f32> = rand_vec(n, &mut rng)
            .iter()
            .map(|v| v * 4.0 + 1.5)
            .collect();
        let cols = *shape.last().unwrap();
        let mut oshape = shape.clone();
        *oshape.last_mut().unwrap() = 1;
        let kinds = [Reduce::Mean, Reduce::Sum, Reduce::Max];
        for (bits, kind) in (0u32..4).flat_map(|b| kinds.map(|k| (b, k))) {
            let f = [bits & 1 != 0, bits & 2 != 0];
            let (x, x64) = upload(ctx, &shape, &xs, f[0]);
            let out = poisoned(ctx, &oshape, f[1]);
            let mut enc = ctx.encoder("row reduce test");
            row_reduce(ctx, &mut enc, kind, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = reference::row_reduce_f64(&x64, cols, kind);
            check_out(
                &format!("row {kind:?} {shape:?} {f:?}"),
                &read(ctx, &out),
                &want,
                f[1],
            );
        }
    }
    // The output must be x's shape with the last axis 1, in another buffer.
    let x = Tensor::zeros(ctx, &[2, 3, 4], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    for bad in [vec![2, 3, 4], vec![2, 1, 4], vec![6, 1]] {
        let out = Tensor::zeros(ctx, &bad, DType::F32).unwrap();
        let e = row_reduce(ctx, &mut enc, Reduce::Mean, &x, &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row_reduce") && e.contains(&format!("{bad:?}")),
            "{e}"
        );
    }
    let e = row_reduce(ctx, &mut enc, Reduce::Sum, &x, &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row_reduce"), "{e}");
    // A NaN anywhere in a row is the row's maximum.
    let x = Tensor::from_slice(ctx, &[2, 3], &[1.0f32, f32::NAN, 3.0, f32::NAN, 5.0, 4.0]).unwrap();
    let out = poisoned(ctx, &[2, 1], false);
    let mut enc = ctx.encoder("max of NaN");
    row_reduce(ctx, &mut enc, Reduce::Max, &x, &out).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    assert!(read(ctx, &out).iter().all(|v| v.is_nan()));
}

/// Max and Min give NaN where either operand is NaN (as ONNX's reference, numpy's
/// maximum, does), whichever operand it is; every function maps NaN to NaN, under a clip
/// too; the functions near zero keep their digits
/// (Elu, Celu and Softplus go through exp(x) - 1 and ln(1 + y) without cancellation).
#[test]
fn max_min_propagate_nan_and_functions_keep_small_values() {
    let ctx = common::ctx();
    let nan = f32::NAN;
    let a = Tensor::from_slice(ctx, &[4], &[nan, 1.0, -2.0, nan]).unwrap();
    let b = Tensor::from_slice(ctx, &[4], &[3.0f32, nan, 5.0, nan]).unwrap();
    for (op, want) in [(BinaryOp::Max, 5.0f32), (BinaryOp::Min, -2.0)] {
        let out = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
        let mut enc = ctx.encoder("nan");
        binary(ctx, &mut enc, op, &a, &b, Clip::NONE, &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = out.read_blocking::<f32>(ctx).unwrap();
        assert!(
            got[0].is_nan() && got[1].is_nan() && got[3].is_nan(),
            "{op:?}: {got:?}"
        );
        assert_eq!(got[2], want, "{op:?}");
    }
    // Every function gives NaN for NaN, on its own and under a clip.
    let x = Tensor::from_slice(ctx, &[1], &[nan]).unwrap();
    for f in [
        UnaryOp::Celu { alpha: 1.0 },
        UnaryOp::Softplus,
        UnaryOp::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        UnaryOp::LeakyRelu { alpha: 0.1 },
        UnaryOp::Mish,
        UnaryOp::Tanh,
    ] {
        for c in [Clip::NONE, Clip::RELU6] {
            let out = Tensor::zeros(ctx, &[1], DType::F32).unwrap();
            let mut enc = ctx.encoder("nan map");
            map(ctx, &mut enc, f, c, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = out.read_blocking::<f32>(ctx).unwrap();
            assert!(got[0].is_nan(), "{f:?} {c:?} of NaN: {got:?}");
        }
    }
    let xs = [-1e-6f32, -3e-7, 2e-7, -30.0, -80.0];
    let x = Tensor::from_slice(ctx, &[xs.len()], &xs).unwrap();
    let x64: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
    for f in [
        UnaryOp::Elu {
            alpha: 1.0,
            scale: 1.0,
        },
        UnaryOp::Celu { alpha: 2.0 },
        UnaryOp::Softplus,
        UnaryOp::Mish,
    ] {
        let out = Tensor::zeros(ctx, &[xs.len()], DType::F32).unwrap();
        let mut enc = ctx.encoder("small");
        map(ctx, &mut enc, f, Clip::NONE, &x, &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = out.read_blocking::<f32>(ctx).unwrap();
        for (i, (&g, &v)) in got.iter().zip(&x64).enumerate() {
            let w = f.apply(v);
            // Relative to the value itself: 1e-5 (not an absolute budget, which the
            // tiny values would pass whatever the kernel returned).
            assert!(
                (f64::from(g) - w).abs() <= 1e-5 * w.abs(),
                "{f:?} at x = {}: got {g:e}, want {w:e} (element {i})",
                xs[i]
            );
        }
    }
}

/// Comparisons give exactly 1 or 0 and the masks pick their operand exactly, over ties
/// and zeros (values in {-1, 0, 1, 2}), for b of a's shape and broadcast, f32 and f16 in
/// every combination; a mask never lets an infinity or NaN of the dropped operand through
/// (`Mask(x, c) + MaskNot(y, c)` is ONNX's `Where`), and NaN compares false.
#[test]
fn comparisons_and_masks_are_exact() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let ops = [
        BinaryOp::Less,
        BinaryOp::Greater,
        BinaryOp::LessOrEqual,
        BinaryOp::GreaterOrEqual,
        BinaryOp::Equal,
        BinaryOp::Mask,
        BinaryOp::RMask,
        BinaryOp::MaskNot,
        BinaryOp::RMaskNot,
        // Integer exponents (negative bases, 0^-1 = inf, 0^0 = 1) by exact products.
        BinaryOp::Pow,
        BinaryOp::RPow,
    ];
    let shape = vec![2usize, 3, 5, 7];
    let n: usize = shape.iter().product();
    let small = |k: usize, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
        (0..k).map(|_| rng.random_range(-1i32..3) as f32).collect()
    };
    let av = small(n, &mut rng);
    for bs in [shape.clone(), vec![2, 1, 1, 7], vec![1, 1, 5, 7]] {
        let bv = small(bs.iter().product(), &mut rng);
        for bits in 0..8u32 {
            let f = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
            let (a, a64) = upload(ctx, &shape, &av, f[0]);
            let (b, b64) = upload(ctx, &bs, &bv, f[1]);
            for op in ops {
                let out = poisoned(ctx, &shape, f[2]);
                let mut enc = ctx.encoder("compare");
                binary(ctx, &mut enc, op, &a, &b, Clip::NONE, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = reference::binary_f64(&a64, &shape, &b64, &bs, op, Clip::NONE);
                let got = read(ctx, &out);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(f64::from(g), w, "{op:?} by {bs:?} {f:?}, element {i}");
                }
            }
        }
    }
    // Infinite and NaN values of the dropped operand stay out; NaN compares false.
    let inf = f32::INFINITY;
    let x = Tensor::from_slice(ctx, &[6], &[-inf, inf, f32::NAN, 2.0, f32::NAN, -3.0]).unwrap();
    let c = Tensor::from_slice(ctx, &[6], &[0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
    let cases = [
        (BinaryOp::Mask, [0.0f32, 0.0, 0.0, 2.0, f32::NAN, -3.0]),
        (BinaryOp::MaskNot, [-inf, inf, f32::NAN, 0.0, 0.0, 0.0]),
        (BinaryOp::Less, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        (BinaryOp::Equal, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        (BinaryOp::GreaterOrEqual, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]),
    ];
    for (op, want) in cases {
        let out = Tensor::zeros(ctx, &[6], DType::F32).unwrap();
        let mut enc = ctx.encoder("special");
        binary(ctx, &mut enc, op, &x, &c, Clip::NONE, &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = out.read_blocking::<f32>(ctx).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w || (g.is_nan() && w.is_nan()),
                "{op:?} element {i}: {g} (expected {w})"
            );
        }
    }
}

/// ArgMax/ArgMin rows: the first or last index of the largest or smallest value (NaN
/// counting as both), over ties, against the reference, into f32 and f16 outputs; an
/// f16 output is refused for rows too long for exact indices.
#[test]
fn arg_reductions_pick_exact_indices() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(61);
    let (rows, cols) = (37usize, 23usize);
    let mut v: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-2i32..3) as f32)
        .collect();
    // Two rows with NaN (one with two of them).
    v[3 * cols + 5] = f32::NAN;
    v[7 * cols + 2] = f32::NAN;
    v[7 * cols + 20] = f32::NAN;
    let kinds = [
        Reduce::ArgMax { last: false },
        Reduce::ArgMax { last: true },
        Reduce::ArgMin { last: false },
        Reduce::ArgMin { last: true },
    ];
    for f16_io in [false, true] {
        let (x, x64) = upload(ctx, &[rows, cols], &v, f16_io);
        for kind in kinds {
            let out = poisoned(ctx, &[rows, 1], f16_io);
            let mut enc = ctx.encoder("arg");
            row_reduce(ctx, &mut enc, kind, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = read(ctx, &out);
            for r in 0..rows {
                let want = kind.apply(&x64[r * cols..(r + 1) * cols]);
                assert_eq!(f64::from(got[r]), want, "{kind:?} f16 {f16_io} row {r}");
            }
        }
    }
    // NaN rows: the first NaN, or the last one with select_last_index.
    assert_eq!(
        Reduce::ArgMax { last: false }.apply(&[1.0, f64::NAN, 3.0, f64::NAN]),
        1.0
    );
    assert_eq!(
        Reduce::ArgMin { last: true }.apply(&[1.0, f64::NAN, 3.0, f64::NAN]),
        3.0
    );
    let long = Tensor::zeros(ctx, &[1, 4096], DType::F16).unwrap();
    let out = Tensor::zeros(ctx, &[1, 1], DType::F16).unwrap();
    let mut enc = ctx.encoder("long");
    let e = row_reduce(ctx, &mut enc, Reduce::ArgMax { last: false }, &long, &out).unwrap_err();
    assert!(
        e.to_string().contains("4096 values into an f16 output"),
        "{e}"
    );
}
