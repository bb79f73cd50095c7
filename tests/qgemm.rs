//! W8A8 GEMM against the Rust reference, bit for bit: the int32 accumulator, the f32
//! dequantizing epilogue (bias, ReLU/ReLU6) and the requantized 8-bit output, over odd
//! shapes (K not a multiple of 4), i8/u8 operands, per-tensor/per-row/per-channel
//! parameters with and without zero points, every tile, and both the packed
//! `dot4I8Packed` path and the unpacked fallback. f16 output is within one f16 rounding.
//! Then the exact-int32 bound at its edge, the dynamic Linear layer end to end, and the
//! errors. Outputs are poisoned before each run.

mod common;

use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::model::QLinear;
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::qgemm::{max_exact_k, qgemm, QGemmDesc, QGemmOutput, TILES};
use wgpu_quant::ops::quant::{DynamicQuant, QTensor};
use wgpu_quant::ops::RowTile;
use wgpu_quant::quant::{self, Granularity, QType, QuantParams};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Tensor};

/// (M, N, K): K never a multiple of 4 except where the even case is the point.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 7, 5),
    (1, 33, 130),
    (2, 9, 3),
    (3, 17, 33),
    (5, 3, 257),
    (7, 129, 31),
    (17, 5, 64),
    (33, 70, 99),
    (4, 40, 256),
];

#[derive(Debug, Clone, Copy)]
struct Spec {
    qtype: QType,
    zero_point: bool,
    per_row: bool,
    restricted: bool,
}

const fn spec(qtype: QType, zero_point: bool, per_row: bool, restricted: bool) -> Spec {
    Spec {
        qtype,
        zero_point,
        per_row,
        restricted,
    }
}

const A_SPECS: [Spec; 7] = [
    spec(QType::I8, false, false, false),
    spec(QType::I8, true, false, false),
    spec(QType::I8, false, true, false),
    spec(QType::I8, false, true, true),
    spec(QType::I8, true, true, false),
    spec(QType::U8, true, false, false),
    spec(QType::U8, true, true, false),
];
const W_SPECS: [Spec; 7] = [
    spec(QType::I8, false, true, false),
    spec(QType::I8, false, false, false),
    spec(QType::I8, true, true, false),
    spec(QType::I8, false, true, true),
    spec(QType::I8, true, false, false),
    spec(QType::U8, true, true, false),
    spec(QType::U8, false, false, false),
];

/// A quantized operand `[rows, k]` with random codes (both ends of the range included),
/// scales and zero points; returns it with its codes and per-row scales and zero points.
struct Operand {
    q: QTensor,
    codes: Vec<i32>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

fn operand(ctx: &Context, shape: &[usize], s: Spec, rng: &mut rand::rngs::StdRng) -> Operand {
    let k = *shape.last().unwrap();
    let rows = shape.iter().product::<usize>() / k;
    let (qmin, qmax) = (s.qtype.qmin() + i32::from(s.restricted), s.qtype.qmax());
    let slots = if s.per_row { rows } else { 1 };
    let granularity = if s.per_row {
        if shape.len() == 2 {
            Granularity::PerChannel { axis: 0 }
        } else {
            Granularity::PerRow
        }
    } else {
        Granularity::PerTensor
    };
    let scales: Vec<f32> = (0..slots)
        .map(|_| rng.random_range(1e-3f32..0.05))
        .collect();
    let zeros: Vec<i32> = (0..slots)
        .map(|_| {
            if s.zero_point {
                rng.random_range(qmin..=qmax)
            } else {
                0
            }
        })
        .collect();
    let codes: Vec<i32> = (0..rows * k)
        .map(|i| match i % 11 {
            0 => qmin,
            1 => qmax,
            _ => rng.random_range(qmin..=qmax),
        })
        .collect();
    let params = QuantParams::new(s.qtype, granularity, shape, scales.clone(), zeros.clone())
        .unwrap()
        .with_code_range(qmin, s.qtype.qmax())
        .unwrap();
    let q = QTensor::from_codes(ctx, &params, &codes).unwrap();
    let per_row = |v: &Vec<f32>| -> Vec<f32> {
        (0..rows)
            .map(|r| v[if s.per_row { r } else { 0 }])
            .collect()
    };
    let zrow: Vec<i32> = (0..rows)
        .map(|r| zeros[if s.per_row { r } else { 0 }])
        .collect();
    Operand {
        q,
        codes,
        scales: per_row(&scales),
        zeros: zrow,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    I32,
    F32,
    F16,
    Q(QType),
}

struct Case {
    m_shape: Vec<usize>,
    n: usize,
    a: Spec,
    w: Spec,
    out: Out,
    activation: Activation,
    bias: bool,
    config: RowTile,
    packed: bool,
    /// Pins how A is read (`None`: the plan's choice).
    uniform_a: Option<bool>,
}

fn run(ctx: &Context, c: &Case, seed: u64) -> Result<usize, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let k = *c.m_shape.last().unwrap();
    let m = c.m_shape.iter().product::<usize>() / k;
    let n = c.n;
    let a = operand(ctx, &c.m_shape, c.a, &mut rng);
    let w = operand(ctx, &[n, k], c.w, &mut rng);
    let bias_host: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let bias = c
        .bias
        .then(|| Tensor::from_slice(ctx, &[n], &bias_host).unwrap());
    let r = reference::qgemm_i32(&a.codes, &a.zeros, &w.codes, &w.zeros, (m, n, k));
    let r: Vec<i32> = r
        .into_iter()
        .map(|v| v.expect("test shapes fit i32"))
        .collect();
    let deq = |i: usize, j: usize| {
        reference::qgemm_dequant(
            r[i * n + j],
            a.scales[i],
            w.scales[j],
            c.bias.then(|| bias_host[j]),
            c.activation,
        )
    };
    let mut out_shape = c.m_shape.clone();
    *out_shape.last_mut().unwrap() = n;
    let mut desc = QGemmDesc::default()
        .activation(c.activation)
        .config(c.config)
        .packed_dot(c.packed);
    desc.uniform_a = c.uniform_a;
    let e = |e: wgpu_quant::Error| e.to_string();
    let mut enc = ctx.encoder("qgemm test");
    let mut mismatches = Vec::new();
    match c.out {
        Out::I32 | Out::F32 | Out::F16 => {
            let (dtype, poison) = match c.out {
                Out::I32 => (DType::I32, 0x7fc0_0001u32),
                Out::F32 => (DType::F32, f32::NAN.to_bits()),
                _ => (DType::F16, 0x7e01_7e01),
            };
            let words = (m * n * dtype.size()).div_ceil(4);
            let raw = Tensor::from_slice(ctx, &[words], &vec![poison; words]).map_err(e)?;
            let t = Tensor::from_buffer(raw.buffer().clone(), &out_shape, dtype).map_err(e)?;
            let out = match c.out {
                Out::I32 => QGemmOutput::I32(&t),
                Out::F32 => QGemmOutput::F32(&t),
                _ => QGemmOutput::F16(&t),
            };
            qgemm(ctx, &mut enc, &desc, &a.q, &w.q, bias.as_ref(), out).map_err(e)?;
            ctx.submit_and_wait(enc).map_err(e)?;
            let words = raw.read_blocking::<u32>(ctx).map_err(e)?;
            let halves: Vec<f16> = bytemuck::cast_slice::<u32, f16>(&words).to_vec();
            for i in 0..m {
                for j in 0..n {
                    let idx = i * n + j;
                    match c.out {
                        Out::I32 => {
                            let got = words[idx] as i32;
                            if got != r[idx] {
                                mismatches.push(format!("[{i},{j}] got {got}, want {}", r[idx]));
                            }
                        }
                        Out::F32 => {
                            let got = f32::from_bits(words[idx]);
                            let want = deq(i, j);
                            if got != want {
                                mismatches.push(format!(
                                    "[{i},{j}] got {got:e}, want {want:e} (r = {})",
                                    r[idx]
                                ));
                            }
                        }
                        _ => {
                            let got = halves[idx].to_f32();
                            let want = deq(i, j);
                            // pack2x16float's rounding mode is not specified: either
                            // neighbour of the f32 value is accepted.
                            let lo = f16::from_f32(want);
                            let ok = [
                                lo,
                                f16::from_bits(lo.to_bits().wrapping_add(1)),
                                f16::from_bits(lo.to_bits().wrapping_sub(1)),
                            ]
                            .iter()
                            .any(|h| {
                                h.to_f32() == got
                                    && (h.to_f32() - want).abs()
                                        <= want.abs() * 2f32.powi(-10) + 6.1e-5
                            });
                            if !ok {
                                mismatches
                                    .push(format!("[{i},{j}] got {got:e}, want {want:e} (f16)"));
                            }
                        }
                    }
                }
                if !mismatches.is_empty() {
                    break;
                }
            }
        }
        Out::Q(qt) => {
            // Output parameters that spread the results over the whole code range.
            let vals: Vec<f32> = (0..m * n).map(|idx| deq(idx / n, idx % n)).collect();
            let span = vals.iter().fold(0f32, |s, v| s.max(v.abs())).max(1e-3);
            let so = span / rng.random_range(60.0f32..130.0);
            let zo = rng.random_range(qt.qmin() / 2..=qt.qmax() / 2 + 1);
            let params =
                QuantParams::new(qt, Granularity::PerTensor, &out_shape, vec![so], vec![zo])
                    .unwrap();
            let oq = QTensor::new(ctx, &params).map_err(e)?;
            let words = oq.layout().words();
            oq.data()
                .write(ctx, &vec![0xdead_beefu32; words])
                .map_err(e)?;
            qgemm(
                ctx,
                &mut enc,
                &desc,
                &a.q,
                &w.q,
                bias.as_ref(),
                QGemmOutput::Quantized(&oq),
            )
            .map_err(e)?;
            ctx.submit_and_wait(enc).map_err(e)?;
            let got = oq.read_codes_blocking(ctx).map_err(e)?;
            let words_got = oq.data().read_blocking::<u32>(ctx).map_err(e)?;
            // Raw-0 padding after each row's last code (also proves the word was written).
            let wpr = n.div_ceil(4);
            if !n.is_multiple_of(4) {
                let pad_mask = !((1u32 << (8 * (n % 4))) - 1);
                if (0..m).any(|i| words_got[i * wpr + wpr - 1] & pad_mask != 0) {
                    mismatches.push("padding bytes of an output row are not zero".into());
                }
            }
            for (idx, (&g, &v)) in got.iter().zip(&vals).enumerate() {
                let want = quant::quantize_value(v, so, zo, qt.qmin(), qt.qmax());
                if g != want {
                    mismatches.push(format!(
                        "[{}] got {g}, want {want} (v = {v:e}, so = {so:e}, zo = {zo})",
                        idx
                    ));
                    break;
                }
            }
        }
    }
    if mismatches.is_empty() {
        Ok(m * n)
    } else {
        Err(mismatches
            .into_iter()
            .take(3)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

fn outs() -> [Out; 5] {
    [
        Out::I32,
        Out::F32,
        Out::F16,
        Out::Q(QType::I8),
        Out::Q(QType::U8),
    ]
}

/// Every (A, W) parameter combination on every shape; outputs, activations, tiles and
/// the packed/unpacked paths rotate so that each appears with every shape.
#[test]
fn w8a8_bit_exact_sweep() {
    let ctx = common::ctx();
    let acts = [Activation::None, Activation::Relu, Activation::Relu6];
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut idx = 0usize;
    for (si, &(m, n, k)) in SHAPES.iter().enumerate() {
        for a in A_SPECS {
            for w in W_SPECS {
                idx += 1;
                let out = outs()[idx % 5];
                let m_shape = if si % 3 == 2 && m > 1 {
                    vec![1, m, k]
                } else {
                    vec![m, k]
                };
                let case = Case {
                    m_shape,
                    n,
                    a,
                    w,
                    out,
                    activation: if out == Out::I32 {
                        Activation::None
                    } else {
                        acts[idx % 3]
                    },
                    bias: out != Out::I32 && idx.is_multiple_of(2),
                    config: TILES[(idx / 5) % TILES.len()],
                    packed: (idx / 2).is_multiple_of(2),
                    uniform_a: Some((idx / 4) % 2 == 1),
                };
                cases += 1;
                if let Err(msg) = run(ctx, &case, idx as u64) {
                    failures.push(format!(
                        "{m}x{n}x{k} A {a:?} W {w:?} out {out:?} act {:?} bias {} {:?} packed {}: {msg}",
                        case.activation, case.bias, case.config, case.packed
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One odd shape with zero points on both sides: every output, tile and path.
#[test]
fn w8a8_every_output_tile_and_path() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    let mut idx = 0;
    for out in outs() {
        for config in TILES {
            for packed in [true, false] {
                idx += 1;
                let case = Case {
                    m_shape: vec![6, 75],
                    n: 21,
                    a: spec(QType::U8, true, true, false),
                    w: spec(QType::U8, true, true, false),
                    out,
                    activation: if out == Out::I32 {
                        Activation::None
                    } else {
                        Activation::Relu6
                    },
                    bias: out != Out::I32,
                    config,
                    packed,
                    uniform_a: Some(idx % 2 == 0),
                };
                if let Err(msg) = run(ctx, &case, 1000 + idx) {
                    failures.push(format!("out {out:?} {config:?} packed {packed}: {msg}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Parallel split-K, bit for bit: every (A, W) parameter combination over odd K (uneven
/// slices, a short last slice, K shorter than the slices asked for), every output, both
/// dot product paths; the zero-point corrections are summed per slice.
#[test]
fn w8a8_split_k_bit_exact() {
    use wgpu_quant::plan::split::{qgemm_split_k, slices};
    let effective_split_k = |ctx: &wgpu_quant::Context, t, m, n, k| {
        slices(qgemm_split_k(ctx.capabilities(), t, m, n, k))
    };
    let ctx = common::ctx();
    let acts = [Activation::None, Activation::Relu, Activation::Relu6];
    let splits = [2, 3, 7, 16];
    let mut failures = Vec::new();
    let (mut cases, mut split) = (0, 0);
    let mut idx = 0usize;
    for &(m, n, k) in &[
        (1, 21, 1031),
        (3, 37, 517),
        (5, 9, 13),
        (2, 70, 301),
        (8, 5, 6),
    ] {
        for a in A_SPECS {
            for w in W_SPECS {
                idx += 1;
                let out = outs()[idx % 5];
                let config = TILES[idx % TILES.len()].split_k(splits[(idx / 3) % 4]);
                if effective_split_k(ctx, config, m, n, k) > 1 {
                    split += 1;
                }
                let case = Case {
                    m_shape: vec![m, k],
                    n,
                    a,
                    w,
                    out,
                    activation: if out == Out::I32 {
                        Activation::None
                    } else {
                        acts[idx % 3]
                    },
                    bias: out != Out::I32 && idx.is_multiple_of(2),
                    config,
                    packed: (idx / 2).is_multiple_of(2),
                    uniform_a: Some((idx / 4) % 2 == 1),
                };
                cases += 1;
                if let Err(msg) = run(ctx, &case, 5000 + idx as u64) {
                    failures.push(format!(
                        "{m}x{n}x{k} A {a:?} W {w:?} out {out:?} {config:?}: {msg}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every case runs split, even K = 6 (two words, so two slices).
    assert_eq!(split, cases, "{split} of {cases} cases ran split");
}

/// The exact-int32 bound: at K = max_exact_k the worst-case codes give the extreme sum
/// exactly (the partial sums wrap inside the kernel); one more K is refused.
#[test]
fn int32_bound_is_exact_at_the_edge_and_refused_beyond() {
    let ctx = common::ctx();
    let limit = max_exact_k((0, 255), true, (0, 255), true);
    assert_eq!(limit, 33025);
    assert_eq!(max_exact_k((-128, 127), false, (-128, 127), false), 131071);
    assert_eq!(max_exact_k((0, 255), true, (-128, 127), false), 65793);
    assert_eq!(max_exact_k((-127, 127), false, (-128, 127), false), 132104);
    let mk = |k: usize, code: i32, zero: i32| {
        let params = QuantParams::new(
            QType::U8,
            Granularity::PerTensor,
            &[1, k],
            vec![1.0],
            vec![zero],
        )
        .unwrap();
        QTensor::from_codes(ctx, &params, &vec![code; k]).unwrap()
    };
    for packed in [true, false] {
        // a = 255 with za = 1 and w = 0 with zw = 255: every term is 254 * -255, and the
        // kernel's partial sums (after the u8 -> i8 shift) wrap on the way.
        let a = mk(limit, 255, 1);
        let w = mk(limit, 0, 255);
        let out = Tensor::zeros(ctx, &[1, 1], DType::I32).unwrap();
        let mut enc = ctx.encoder("bound");
        qgemm(
            ctx,
            &mut enc,
            &QGemmDesc::default().packed_dot(packed),
            &a,
            &w,
            None,
            QGemmOutput::I32(&out),
        )
        .unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let want = limit as i64 * 254 * -255;
        assert_eq!(
            i64::from(out.read_blocking::<i32>(ctx).unwrap()[0]),
            want,
            "packed {packed}"
        );

        let a = mk(limit + 1, 255, 1);
        let w = mk(limit + 1, 0, 255);
        let mut enc = ctx.encoder("bound");
        let err = qgemm(
            ctx,
            &mut enc,
            &QGemmDesc::default(),
            &a,
            &w,
            None,
            QGemmOutput::I32(&out),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("K = 33026") && msg.contains("33025"), "{msg}");
    }
    // The largest i8 x i8 sum: a = w = -128 over K = 131071 gives 16384 * K = 2147467264.
    let k = 131071;
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[1, k],
        vec![1.0],
        vec![0],
    )
    .unwrap();
    let a = QTensor::from_codes(ctx, &p, &vec![-128; k]).unwrap();
    let w = QTensor::from_codes(ctx, &p, &vec![-128; k]).unwrap();
    let out = Tensor::zeros(ctx, &[1, 1], DType::I32).unwrap();
    let mut enc = ctx.encoder("bound");
    qgemm(
        ctx,
        &mut enc,
        &QGemmDesc::default(),
        &a,
        &w,
        None,
        QGemmOutput::I32(&out),
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    assert_eq!(out.read_blocking::<i32>(ctx).unwrap()[0], 2_147_467_264);
}

/// PyTorch `quantize_dynamic`-style Linear: f32 in, per-row i8 activations computed on
/// the GPU, i8 per-channel weights, f32 out. Bit-exact against the reference pipeline,
/// and close to the float layer.
#[test]
fn dynamic_linear_end_to_end() {
    let ctx = common::ctx();
    for &(m, n, k) in &[(1, 33, 130), (5, 17, 77), (16, 64, 256)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64((m * n * k) as u64);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.5f32..0.5)).collect();
        let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for act in [Activation::None, Activation::Relu] {
            let layer = QLinear::from_f32(ctx, &wf, n, k, Some(&bias))
                .unwrap()
                .with_activation(act);
            let x = Tensor::from_slice(ctx, &[m, k], &xf).unwrap();
            let y = Tensor::from_slice(ctx, &[m, n], &vec![f32::NAN; m * n]).unwrap();
            let mut enc = ctx.encoder("linear");
            layer.forward(ctx, &mut enc, &x, &y).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = y.read_blocking::<f32>(ctx).unwrap();

            // The reference pipeline: dynamic per-row quantization, exact integer GEMM,
            // the same f32 epilogue.
            let (xq, xp) =
                quant::dynamic_quantize_reference(&DynamicQuant::per_row_i8().scheme, &[m, k], &xf)
                    .unwrap();
            let wp = layer.weight().static_params().unwrap();
            let wq = wp.quantize(&wf).unwrap();
            let r = reference::qgemm_i32(&xq, xp.zero_points(), &wq, wp.zero_points(), (m, n, k));
            let mut err2 = 0f64;
            let mut ref2 = 0f64;
            let fref = reference::linear_f64(
                &xf.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                &wf.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                Some(&bias),
                act,
                (m, n, k),
            );
            for i in 0..m {
                for j in 0..n {
                    let want = reference::qgemm_dequant(
                        r[i * n + j].unwrap(),
                        xp.scales()[i],
                        wp.scales()[j],
                        Some(bias[j]),
                        act,
                    );
                    assert_eq!(got[i * n + j], want, "{m}x{n}x{k} [{i},{j}]");
                    err2 += (f64::from(want) - fref[i * n + j]).powi(2);
                    ref2 += fref[i * n + j].powi(2);
                }
            }
            // W8A8 with per-row/per-channel scales on uniform data: ~1% of the signal.
            let rel = (err2 / ref2).sqrt();
            assert!(
                rel < 0.02,
                "{m}x{n}x{k}: quantized layer is {rel:.4} away from f32"
            );
        }
    }
}

#[test]
fn w8a8_errors_name_the_problem() {
    let ctx = common::ctx();
    let p8 = |shape: &[usize], g: Granularity, slots: usize| {
        QuantParams::new(QType::I8, g, shape, vec![0.1; slots], vec![0; slots]).unwrap()
    };
    let a = QTensor::new(ctx, &p8(&[4, 10], Granularity::PerTensor, 1)).unwrap();
    let w = QTensor::new(ctx, &p8(&[6, 10], Granularity::PerChannel { axis: 0 }, 6)).unwrap();
    let w_bad_k = QTensor::new(ctx, &p8(&[6, 9], Granularity::PerTensor, 1)).unwrap();
    let w_group = QTensor::new(
        ctx,
        &p8(
            &[6, 10],
            Granularity::PerGroup {
                axis: 1,
                group_size: 4,
            },
            18,
        ),
    )
    .unwrap();
    let w4 = QTensor::new(
        ctx,
        &QuantParams::new(
            QType::I4,
            Granularity::PerTensor,
            &[6, 10],
            vec![0.1],
            vec![0],
        )
        .unwrap(),
    )
    .unwrap();
    let out = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();
    let bad_out = Tensor::zeros(ctx, &[4, 5], DType::F32).unwrap();
    let i32_out = Tensor::zeros(ctx, &[4, 6], DType::I32).unwrap();
    let bias5 = Tensor::zeros(ctx, &[5], DType::F32).unwrap();
    let d = QGemmDesc::default();
    let mut enc = ctx.encoder("errors");
    let check = |r: wgpu_quant::Result<()>, needle: &str| {
        let msg = r.expect_err(needle).to_string();
        assert!(msg.contains(needle), "'{msg}' should mention '{needle}'");
    };
    check(
        qgemm(
            ctx,
            &mut enc,
            &d,
            &a,
            &w_bad_k,
            None,
            QGemmOutput::F32(&out),
        ),
        "last dimension must be K = 9",
    );
    check(
        qgemm(ctx, &mut enc, &d, &a, &w, None, QGemmOutput::F32(&bad_out)),
        "gives [4, 6]",
    );
    check(
        qgemm(ctx, &mut enc, &d, &a, &w, None, QGemmOutput::F16(&out)),
        "must be f16",
    );
    check(
        qgemm(
            ctx,
            &mut enc,
            &d,
            &a,
            &w_group,
            None,
            QGemmOutput::F32(&out),
        ),
        "per tensor or per output channel",
    );
    check(
        qgemm(ctx, &mut enc, &d, &a, &w4, None, QGemmOutput::F32(&out)),
        "i4 codes",
    );
    check(
        qgemm(
            ctx,
            &mut enc,
            &d,
            &a,
            &w,
            Some(&bias5),
            QGemmOutput::F32(&out),
        ),
        "N = 6",
    );
    check(
        qgemm(
            ctx,
            &mut enc,
            &d.activation(Activation::Relu),
            &a,
            &w,
            None,
            QGemmOutput::I32(&i32_out),
        ),
        "raw accumulator",
    );
    let dyn_out = QTensor::for_dynamic(ctx, &DynamicQuant::per_row_i8(), &[4, 6]).unwrap();
    check(
        qgemm(
            ctx,
            &mut enc,
            &d,
            &a,
            &w,
            None,
            QGemmOutput::Quantized(&dyn_out),
        ),
        "static per-tensor",
    );
    check(
        qgemm(ctx, &mut enc, &d, &a, &w, None, QGemmOutput::F32(a.data())),
        "must be f32",
    );
    check(
        QLinear::from_f32(ctx, &[0.0; 5], 2, 3, None).map(|_| ()),
        "needs 6",
    );
}

/// Operands over `max_storage_buffer_binding_size` (256 KiB here): A, W and the output
/// run in pieces of rows and output columns, each bound as an aligned window, and every
/// output still matches the reference bit for bit.
#[test]
fn w8a8_splits_operands_over_the_binding_limit() {
    let ctx = common::small_bindings(256 << 10);
    // A 900x299 (270 KB), W 1000x299 (300 KB), output up to 3.6 MB.
    let mut failures = Vec::new();
    for (idx, out) in outs().into_iter().enumerate() {
        for (config, packed) in [(TILES[0], true), (TILES[3], false)] {
            let case = Case {
                m_shape: vec![900, 299],
                n: 1000,
                a: spec(QType::U8, true, true, false),
                w: spec(QType::I8, idx % 2 == 0, true, false),
                out,
                activation: if out == Out::I32 {
                    Activation::None
                } else {
                    Activation::Relu
                },
                bias: out != Out::I32,
                config,
                packed: packed && ctx.capabilities().packed_int8_dot,
                uniform_a: None,
            };
            let before = ctx.stats().split_dispatches;
            if let Err(msg) = run(&ctx, &case, 77 + idx as u64) {
                failures.push(format!("out {out:?} {config:?} packed {packed}: {msg}"));
            }
            // Output rows of 4000 (f32, i32), 2000 (f16) or 1000 bytes (8-bit) in pieces
            // of 64, 128 or 256 rows, times two pieces of columns: 30, 16 or 8 dispatches.
            let pieces = ctx.stats().split_dispatches - before;
            let want = match out {
                Out::I32 | Out::F32 => 30,
                Out::F16 => 16,
                Out::Q(_) => 8,
            };
            if pieces != want {
                failures.push(format!("out {out:?}: {pieces} pieces, expected {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A GEMM reads A from a uniform copy on CPU adapters where its codes fit the block (the
/// sweeps above pin both ways against the reference); pinned where it cannot (codes over
/// the block, more than one piece) it is refused with the numbers, and the default then
/// reads A's storage binding.
#[test]
fn uniform_a_is_refused_where_it_cannot_apply() {
    let ctx = common::ctx();
    let caps = ctx.capabilities();
    let block = wgpu_quant::plan::X_UNIFORM_BYTES as usize;
    assert_eq!(
        wgpu_quant::plan::qgemm_uniform_a(caps, 1, 4096),
        caps.is_cpu()
    );
    // One row of codes one word past the block.
    let k = block + 4;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let s = spec(QType::I8, false, false, false);
    let a = operand(ctx, &[1, k], s, &mut rng);
    let w = operand(ctx, &[3, k], s, &mut rng);
    let out = Tensor::zeros(ctx, &[1, 3], DType::I32).unwrap();
    let mut enc = ctx.encoder("uniform a refused");
    let pinned = QGemmDesc::default().uniform_a(true);
    let e = qgemm(
        ctx,
        &mut enc,
        &pinned,
        &a.q,
        &w.q,
        None,
        QGemmOutput::I32(&out),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("uniform_a") && e.contains(&format!("{k}")),
        "{e}"
    );
    // Unpinned, the same product runs from storage and is exact.
    let mut enc = ctx.encoder("uniform a default");
    let desc = QGemmDesc::default();
    qgemm(
        ctx,
        &mut enc,
        &desc,
        &a.q,
        &w.q,
        None,
        QGemmOutput::I32(&out),
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let got = out.read_blocking::<i32>(ctx).unwrap();
    for (j, &g) in got.iter().enumerate() {
        let want: i64 = (0..k)
            .map(|i| i64::from(a.codes[i]) * i64::from(w.codes[j * k + i]))
            .sum();
        assert_eq!(i64::from(g), want, "column {j}");
    }
}
