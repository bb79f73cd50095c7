//! Quantization kernels against the Rust reference in `wgpu_quant::quant`: GPU codes must
//! equal the reference bit for bit for every type, granularity, input dtype and odd shape,
//! with inputs that sit on and next to rounding ties (the cases where an inexact WGSL
//! division would round the other way), NaN, infinities, huge and subnormal values. Then
//! the properties every user relies on, the degenerate inputs, GPU statistics, dynamic
//! quantization and the observers.

mod common;

use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::calib::eval::{observer_sqnr, Distribution};
use wgpu_quant::calib::{Observer, ObserverKind};
use wgpu_quant::ops::quant::{
    dequantize, dynamic_quantize, hist_bin, hist_inv, histogram, min_max, quantize, ChannelView,
    DynamicQuant, QTensor, HIST_BINS,
};
use wgpu_quant::quant::{self, Granularity, QType, QuantParams, QuantScheme};
use wgpu_quant::{Context, DType, Tensor};

/// Shapes with odd last dims (packing pads) and odd leading dims.
const SHAPES: [&[usize]; 6] = [
    &[1],
    &[129],
    &[7, 33],
    &[3, 5, 13],
    &[2, 3, 4, 5],
    &[1, 257],
];

fn granularities(shape: &[usize]) -> Vec<Granularity> {
    let mut g = vec![Granularity::PerTensor, Granularity::PerRow];
    for axis in 0..shape.len() {
        g.push(Granularity::PerChannel { axis });
    }
    let last = shape.len() - 1;
    for group_size in [3, 32, 64, 128] {
        g.push(Granularity::PerGroup {
            axis: last,
            group_size,
        });
    }
    if shape.len() > 1 {
        g.push(Granularity::PerGroup {
            axis: 0,
            group_size: 2,
        });
    }
    g
}

/// Data whose quotients by the slot scales land on and around .5 ties, plus special
/// values, plus plain random values over and beyond the range.
fn tricky_data(params: &QuantParams, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let layout = params.layout();
    (0..params.numel())
        .map(|i| {
            let s = params.scales()[layout.slot(i)];
            match i % 11 {
                0 => {
                    let k = rng.random_range(-40i32..40) as f32 + 0.5;
                    k * s
                }
                1 => {
                    let k = rng.random_range(-40i32..40) as f32 + 0.5;
                    (k * s).next_up()
                }
                2 => {
                    let k = rng.random_range(-40i32..40) as f32 + 0.5;
                    (k * s).next_down()
                }
                3 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-40][i % 6],
                4 => [3e38f32, -3e38, 1e30, -1e-30][i % 4],
                _ => rng.random_range(-300.0f32..300.0) * s,
            }
        })
        .collect()
}

fn random_params(
    qtype: QType,
    granularity: Granularity,
    shape: &[usize],
    seed: u64,
) -> QuantParams {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let slots = granularity.layout("test", shape).unwrap().slots;
    let scales = (0..slots)
        .map(|_| rng.random_range(0.001f32..3.0) * [1.0, 0.1, 7.0][rng.random_range(0..3)])
        .collect();
    let zps = (0..slots)
        .map(|_| rng.random_range(qtype.qmin()..=qtype.qmax()))
        .collect();
    QuantParams::new(qtype, granularity, shape, scales, zps).unwrap()
}

fn gpu_quantize(ctx: &Context, x: &[f32], params: &QuantParams, f16_in: bool) -> Vec<i32> {
    let t = if f16_in {
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        Tensor::from_slice(ctx, params.shape(), &h).unwrap()
    } else {
        Tensor::from_slice(ctx, params.shape(), x).unwrap()
    };
    let q = QTensor::new(ctx, params).unwrap();
    // Poison the codes: a word the kernel forgets to write is caught.
    q.data()
        .write(ctx, &vec![0xdead_beefu32; q.layout().words()])
        .unwrap();
    let mut enc = ctx.encoder("test quantize");
    quantize(ctx, &mut enc, &t, &q).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    // Padding must be raw zero bits.
    let words = q.data().read_blocking::<u32>(ctx).unwrap();
    let l = q.layout();
    for r in 0..l.rows {
        for c in l.cols..l.words_per_row * l.qtype.per_word() {
            let (w, sh) = l.locate(r, c);
            let mask = (1u64 << l.qtype.bits()) as u32 - 1;
            assert_eq!(
                (words[w] >> sh) & mask,
                0,
                "padding at row {r} col {c} not zero"
            );
        }
    }
    q.read_codes_blocking(ctx).unwrap()
}

fn first_mismatch(got: &[i32], want: &[i32], x: &[f32], p: &QuantParams) -> Option<String> {
    let l = p.layout();
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g != w)
        .map(|(i, (g, w))| {
            let s = l.slot(i);
            format!(
                "element {i}: x = {:e} ({:#010x}), scale {:e}, zero {}: got {g}, want {w}",
                x[i],
                x[i].to_bits(),
                p.scales()[s],
                p.zero_points()[s]
            )
        })
}

#[test]
fn gpu_quantize_matches_reference_bit_for_bit() {
    let ctx = common::ctx();
    let mut cases = 0;
    for (si, shape) in SHAPES.iter().enumerate() {
        for (gi, g) in granularities(shape).into_iter().enumerate() {
            for (ti, qtype) in QType::ALL.into_iter().enumerate() {
                let seed = (si * 1000 + gi * 10 + ti) as u64;
                let params = random_params(qtype, g, shape, seed);
                let x = tricky_data(&params, seed);
                for f16_in in [false, true] {
                    let xr: Vec<f32> = if f16_in {
                        x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
                    } else {
                        x.clone()
                    };
                    let want = params.quantize(&xr).unwrap();
                    let got = gpu_quantize(ctx, &x, &params, f16_in);
                    if let Some(m) = first_mismatch(&got, &want, &xr, &params) {
                        panic!("{qtype} {g:?} shape {shape:?} f16 input {f16_in}: {m}");
                    }
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 500, "only {cases} cases ran");
}

#[test]
fn ties_round_half_to_even_and_saturate() {
    let ctx = common::ctx();
    let x = [
        0.5f32,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        1000.0,
        -1000.0,
        f32::NAN,
        0.0,
    ];
    let p = QuantParams::new(QType::I8, Granularity::PerTensor, &[10], vec![1.0], vec![0]).unwrap();
    let want = vec![0, 2, 2, 0, -2, -2, 127, -128, 0, 0];
    assert_eq!(p.quantize(&x).unwrap(), want);
    assert_eq!(gpu_quantize(ctx, &x, &p, false), want);
    // Exact quotients of awkward scales: 0.3 * 2.5 / 0.3 need not be 2.5 in f32; both
    // sides must still agree on the f32 quotient's rounding.
    let s = 0.3f32;
    let x: Vec<f32> = (-300..300).map(|k| (k as f32 + 0.5) * s).collect();
    let p = QuantParams::new(QType::I16, Granularity::PerTensor, &[600], vec![s], vec![3]).unwrap();
    assert_eq!(gpu_quantize(ctx, &x, &p, false), p.quantize(&x).unwrap());
}

#[test]
fn dequantize_matches_reference() {
    let ctx = common::ctx();
    for shape in SHAPES {
        for g in granularities(shape) {
            for qtype in QType::ALL {
                let params = random_params(qtype, g, shape, 7);
                let mut rng = rand::rngs::StdRng::seed_from_u64(9);
                let codes: Vec<i32> = (0..params.numel())
                    .map(|_| rng.random_range(qtype.qmin()..=qtype.qmax()))
                    .collect();
                let q = QTensor::from_codes(ctx, &params, &codes).unwrap();
                assert_eq!(q.read_codes_blocking(ctx).unwrap(), codes);
                let want = params.dequantize(&codes).unwrap();
                let out32 = Tensor::zeros(ctx, shape, DType::F32).unwrap();
                let out16 = Tensor::zeros(ctx, shape, DType::F16).unwrap();
                let mut enc = ctx.encoder("test dequantize");
                dequantize(ctx, &mut enc, &q, &out32).unwrap();
                dequantize(ctx, &mut enc, &q, &out16).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let got = out32.read_blocking::<f32>(ctx).unwrap();
                for (i, (g32, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g32.to_bits(), w.to_bits(), "{qtype} {g:?} {shape:?} [{i}]");
                }
                // f16 output: WGSL lets pack2x16float round either way, so the budget is
                // one f16 ulp (a relative 2^-10), or f16 overflow to infinity.
                let got16 = out16.read_blocking::<f16>(ctx).unwrap();
                for (i, (h, w)) in got16.iter().zip(&want).enumerate() {
                    let (h, w) = (h.to_f32(), *w);
                    let ok = if w.abs() > 65504.0 {
                        h.is_infinite() || h.abs() == 65504.0
                    } else {
                        (h - w).abs() <= w.abs() * 2f32.powi(-10) + 6e-8
                    };
                    assert!(ok, "{qtype} {g:?} f16 [{i}]: got {h}, want {w}");
                }
            }
        }
    }
}

#[test]
fn round_trip_properties() {
    let ctx = common::ctx();
    for qtype in QType::ALL {
        for symmetric in [false, true] {
            let scheme = QuantScheme::new(qtype, symmetric).per_channel(0);
            let shape = [5, 203];
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let x: Vec<f32> = (0..5 * 203)
                .map(|i| rng.random_range(-1.0f32..2.0) * (1 + i / 203) as f32)
                .collect();
            let p = QuantParams::from_data(&scheme, &shape, &x).unwrap();
            let codes = gpu_quantize(ctx, &x, &p, false);
            let back = p.dequantize(&codes).unwrap();
            let l = p.layout();
            for (i, (&v, &r)) in x.iter().zip(&back).enumerate() {
                let s = p.scales()[l.slot(i)];
                // Inside the range the error is at most half a step (plus f32 rounding of
                // the dequantized value).
                assert!(
                    (v - r).abs() <= s * 0.5 * (1.0 + 1e-5) + v.abs() * 1e-6,
                    "{qtype} sym {symmetric}: x {v} -> {r}, scale {s}"
                );
            }
            // Zero is exact in every slot, and values far outside saturate.
            for c in 0..p.scales().len() {
                let (s, z) = (p.scales()[c], p.zero_points()[c]);
                let (qmin, qmax) = (p.qmin(), p.qmax());
                assert_eq!(quant::quantize_value(0.0, s, z, qmin, qmax), z);
                assert_eq!(quant::dequantize_value(z, s, z), 0.0);
                assert_eq!(quant::quantize_value(1e9, s, z, qmin, qmax), qmax);
                assert_eq!(quant::quantize_value(-1e9, s, z, qmin, qmax), qmin);
            }
        }
    }
}

#[test]
fn degenerate_inputs_never_give_bad_scales() {
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("all zeros", vec![0.0; 17]),
        ("constant positive", vec![2.5; 17]),
        ("constant negative", vec![-7.0; 17]),
        (
            "NaN and infinities only",
            vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY],
        ),
        ("subnormal", vec![1e-42, -1e-41]),
        ("huge", vec![3.4e38, -3.4e38]),
        ("empty", vec![]),
    ];
    for (name, x) in cases {
        for qtype in QType::ALL {
            for symmetric in [false, true] {
                let scheme = QuantScheme::new(qtype, symmetric);
                let p = QuantParams::from_data(&scheme, &[x.len()], &x).unwrap();
                let (s, z) = (p.scales()[0], p.zero_points()[0]);
                assert!(
                    s.is_normal() && s > 0.0,
                    "{name} {qtype} sym {symmetric}: scale {s}"
                );
                assert!((p.qmin()..=p.qmax()).contains(&z), "{name}: zero point {z}");
                assert_eq!(quant::dequantize_value(z, s, z), 0.0);
                if name == "all zeros" {
                    assert_eq!(s, 1.0);
                }
                if name.starts_with("constant") {
                    // The constant itself comes back within half a step.
                    let q = p.quantize(&x).unwrap();
                    let back = p.dequantize(&q).unwrap();
                    assert!((back[0] - x[0]).abs() <= s * 0.5 * 1.0001, "{name} {qtype}");
                }
            }
        }
    }
}

#[test]
fn explicit_params_are_validated() {
    let g = Granularity::PerChannel { axis: 1 };
    let e = QuantParams::new(QType::I8, g, &[2, 3], vec![1.0; 2], vec![0; 2]).unwrap_err();
    assert!(e.to_string().contains("needs 3 scales"), "{e}");
    let e = QuantParams::new(QType::I8, g, &[2, 3], vec![1.0, 0.0, 1.0], vec![0; 3]).unwrap_err();
    assert!(e.to_string().contains("scale[1]"), "{e}");
    let e =
        QuantParams::new(QType::I8, g, &[2, 3], vec![1.0, f32::NAN, 1.0], vec![0; 3]).unwrap_err();
    assert!(e.to_string().contains("scale[1]"), "{e}");
    let e = QuantParams::new(QType::U4, g, &[2, 3], vec![1.0; 3], vec![0, 16, 0]).unwrap_err();
    assert!(e.to_string().contains("zero_point[1] = 16"), "{e}");
    let e = QuantParams::new(
        QType::I8,
        Granularity::PerChannel { axis: 2 },
        &[2, 3],
        vec![],
        vec![],
    )
    .unwrap_err();
    assert!(e.to_string().contains("axis 2"), "{e}");
    let e = Granularity::PerGroup {
        axis: 0,
        group_size: 0,
    }
    .layout("t", &[4])
    .unwrap_err();
    assert!(e.to_string().contains("group_size"), "{e}");
}

#[test]
fn op_errors_name_the_problem() {
    let ctx = common::ctx();
    let p = QuantParams::new(QType::I8, Granularity::PerTensor, &[4], vec![1.0], vec![0]).unwrap();
    let q = QTensor::new(ctx, &p).unwrap();
    let xi = Tensor::from_slice(ctx, &[4], &[1i32, 2, 3, 4]).unwrap();
    let x5 = Tensor::from_slice(ctx, &[5], &[1f32; 5]).unwrap();
    let mut enc = ctx.encoder("errors");
    let e = quantize(ctx, &mut enc, &xi, &q).unwrap_err();
    assert!(e.to_string().contains("x must be f32, got i32"), "{e}");
    let e = quantize(ctx, &mut enc, &x5, &q).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    let e = dequantize(ctx, &mut enc, &q, &x5).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    let spec = DynamicQuant {
        scheme: QuantScheme::symmetric(QType::I4).per_group(0, 32),
    };
    let e = QTensor::for_dynamic(ctx, &spec, &[4]).unwrap_err();
    assert!(e.to_string().contains("not per group"), "{e}");
    let qd = QTensor::for_dynamic(ctx, &DynamicQuant::onnx(), &[5]).unwrap();
    let e = dynamic_quantize(ctx, &mut enc, &x5, &DynamicQuant::per_row_i8(), &qd).unwrap_err();
    assert!(e.to_string().contains("was made for u8"), "{e}");
    let e = QTensor::from_codes(ctx, &p, &[0, 1, 200, 3]).unwrap_err();
    assert!(e.to_string().contains("code[2] = 200"), "{e}");
    let e = Observer::new(
        ObserverKind::Percentile { percentile: 20.0 },
        Granularity::PerTensor,
    )
    .unwrap_err();
    assert!(e.to_string().contains("percentile 20"), "{e}");
    let obs = Observer::new(ObserverKind::MinMax, Granularity::PerTensor).unwrap();
    let e = obs
        .compute_params(&QuantScheme::symmetric(QType::I8), &[4])
        .unwrap_err();
    assert!(e.to_string().contains("no batch observed"), "{e}");
}

#[test]
fn empty_tensors_are_no_ops() {
    let ctx = common::ctx();
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[0, 5],
        vec![1.0],
        vec![0],
    )
    .unwrap();
    let q = QTensor::new(ctx, &p).unwrap();
    let x = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    let mut enc = ctx.encoder("empty");
    quantize(ctx, &mut enc, &x, &q).unwrap();
    dequantize(ctx, &mut enc, &q, &x).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    assert!(q.read_codes_blocking(ctx).unwrap().is_empty());
}

fn dynamic_case(ctx: &Context, spec: &DynamicQuant, shape: &[usize], x: &[f32], f16_in: bool) {
    let xr: Vec<f32> = if f16_in {
        x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
    } else {
        x.to_vec()
    };
    let t = if f16_in {
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        Tensor::from_slice(ctx, shape, &h).unwrap()
    } else {
        Tensor::from_slice(ctx, shape, x).unwrap()
    };
    let q = QTensor::for_dynamic(ctx, spec, shape).unwrap();
    let mut enc = ctx.encoder("dynamic");
    dynamic_quantize(ctx, &mut enc, &t, spec, &q).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let (want, want_p) = quant::dynamic_quantize_reference(&spec.scheme, shape, &xr).unwrap();
    let got_p = q.read_params_blocking(ctx).unwrap();
    for (i, (g, w)) in got_p.scales().iter().zip(want_p.scales()).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{spec:?} {shape:?}: scale[{i}] {g:e} vs {w:e}"
        );
    }
    assert_eq!(
        got_p.zero_points(),
        want_p.zero_points(),
        "{spec:?} {shape:?} zero points"
    );
    let got = q.read_codes_blocking(ctx).unwrap();
    if let Some(m) = first_mismatch(&got, &want, &xr, &want_p) {
        panic!("{spec:?} {shape:?} f16 {f16_in}: {m}");
    }
}

#[test]
fn dynamic_quantization_matches_reference() {
    let ctx = common::ctx();
    let mut specs = vec![DynamicQuant::onnx(), DynamicQuant::per_row_i8()];
    for qtype in QType::ALL {
        for symmetric in [false, true] {
            for g in [
                Granularity::PerTensor,
                Granularity::PerRow,
                Granularity::PerChannel { axis: 0 },
            ] {
                specs.push(DynamicQuant {
                    scheme: QuantScheme {
                        qtype,
                        symmetric,
                        restricted_range: qtype == QType::I8 && symmetric,
                        granularity: g,
                        code_bits: None,
                    },
                });
            }
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for spec in &specs {
        for shape in [&[1usize, 1][..], &[3, 7], &[5, 129], &[2, 3, 67], &[9000]] {
            let n: usize = shape.iter().product();
            let mut x: Vec<f32> = (0..n)
                .map(|i| rng.random_range(-3.0f32..5.0) * if i % 97 == 0 { 40.0 } else { 1.0 })
                .collect();
            if n > 10 {
                x[3] = f32::NAN;
                x[5] = f32::INFINITY;
            }
            dynamic_case(ctx, spec, shape, &x, false);
            dynamic_case(ctx, spec, shape, &x, true);
        }
        // Degenerate: all zeros, one sign only, a constant, non-finite only, values near
        // the smallest normal f32 (subnormals among them) and a range that overflows f32.
        let tiny: Vec<f32> = (0..12)
            .map(|i| [1.5e-38f32, -1.2e-38, 1e-39, 0.0][i % 4])
            .collect();
        let huge: Vec<f32> = (0..12).map(|i| [3.4e38f32, -3.4e38, 1.0][i % 3]).collect();
        for x in [
            vec![0.0f32; 12],
            vec![-1.5; 12],
            vec![0.25; 12],
            vec![f32::NAN; 12],
            tiny,
            huge,
        ] {
            dynamic_case(ctx, spec, &[3, 4], &x, false);
        }
    }
}

#[test]
fn gpu_statistics_match_the_cpu() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (shape, g) in [
        (vec![10001usize], Granularity::PerTensor),
        (vec![4, 7, 33], Granularity::PerChannel { axis: 1 }),
        (vec![3, 4500], Granularity::PerChannel { axis: 0 }),
        (vec![300, 5], Granularity::PerChannel { axis: 1 }),
    ] {
        let n: usize = shape.iter().product();
        let mut x: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..3.0)).collect();
        x[n / 2] = f32::NAN;
        x[n / 3] = f32::NEG_INFINITY;
        let t = Tensor::from_slice(ctx, &shape, &x).unwrap();
        let view = ChannelView::new("test", g, &shape).unwrap();
        let mm = min_max(ctx, &t, &view).unwrap();
        let layout = g.layout("test", &shape).unwrap();
        let (mins, maxs) = quant::slot_min_max(&layout, &x);
        assert_eq!(mm.min, mins, "{shape:?}");
        assert_eq!(mm.max, maxs, "{shape:?}");
        assert_eq!(mm.nonfinite, 2);
        let ranges: Vec<f32> = mins
            .iter()
            .zip(&maxs)
            .map(|(a, b)| a.abs().max(b.abs()))
            .collect();
        let (counts, bad) = histogram(ctx, &t, &view, &ranges).unwrap();
        assert_eq!(bad, 2);
        let mut want = vec![0u32; view.channels * HIST_BINS];
        for (i, &v) in x.iter().enumerate() {
            if v.is_finite() {
                let c = view.channel(i);
                want[c * HIST_BINS + hist_bin(v, ranges[c], hist_inv(ranges[c]))] += 1;
            }
        }
        assert_eq!(counts, want, "{shape:?}");
    }
}

#[test]
fn observers_calibrate_and_clipping_beats_min_max_on_heavy_tails() {
    let ctx = common::ctx();
    // Heavy tails (Laplace): every clipping observer beats min-max, at 8 and 4 bits.
    // Rare large outliers: the MSE search beats min-max (entropy clips them away and
    // loses; docs/QUANTIZATION.md shows it). Everything here is seeded and the GPU
    // codes are exact, so the figures are the same on every adapter.
    let cases = [
        (
            Distribution::Laplace,
            QType::I8,
            &["percentile", "entropy", "mse"][..],
        ),
        (
            Distribution::Laplace,
            QType::I4,
            &["percentile", "entropy", "mse"][..],
        ),
        (Distribution::Outliers, QType::I8, &["mse"][..]),
    ];
    for (dist, qtype, winners) in cases {
        let scheme = QuantScheme::symmetric(qtype);
        let mut db = Vec::new();
        for kind in ObserverKind::standard() {
            let (v, p) = observer_sqnr(ctx, dist, &scheme, kind, 4, 1 << 15, 1 << 16).unwrap();
            assert!(p.scales()[0].is_normal() && p.scales()[0] > 0.0);
            db.push((kind.name(), v));
        }
        eprintln!("{} {qtype}: {db:?}", dist.name());
        let minmax = db[0].1;
        for (name, v) in &db {
            if winners.iter().any(|w| name.starts_with(w)) {
                assert!(
                    *v > minmax + 0.05,
                    "{} {qtype}: {name} gives {v:.2} dB, min-max {minmax:.2} dB",
                    dist.name()
                );
            }
        }
    }
    // Batches of zeros, subnormals and values near f32::MAX calibrate without errors
    // and give valid scales.
    for kind in ObserverKind::standard() {
        let mut obs = Observer::new(kind, Granularity::PerTensor).unwrap();
        for x in [
            vec![0.0f32; 64],
            vec![1e-40; 64],
            vec![3e38, -1.0, 2.0, 0.0],
        ] {
            let t = Tensor::from_slice(ctx, &[x.len()], &x).unwrap();
            obs.observe(ctx, &t).unwrap();
            let p = obs
                .compute_params(&QuantScheme::symmetric(QType::I8), &[4])
                .unwrap();
            assert!(
                p.scales()[0].is_normal() && p.scales()[0] > 0.0,
                "{}",
                kind.name()
            );
        }
    }
    // Per-channel min-max equals the data's own per-channel range.
    let x = Distribution::Gaussian.sample(6 * 500, 1);
    let shape = [6, 500];
    let mut obs = Observer::new(ObserverKind::MinMax, Granularity::PerChannel { axis: 0 }).unwrap();
    obs.observe(ctx, &Tensor::from_slice(ctx, &shape, &x).unwrap())
        .unwrap();
    let s = QuantScheme::symmetric(QType::I8).per_channel(0);
    assert_eq!(
        obs.compute_params(&s, &shape).unwrap(),
        QuantParams::from_data(&s, &shape, &x).unwrap()
    );
}

#[test]
fn per_channel_histogram_observers_and_f16_batches() {
    let ctx = common::ctx();
    // Four channels whose ranges differ by up to 1000x (the depthwise-conv case), in
    // NCHW-like [batch, channel, pixels] batches, some uploaded as f16.
    let shape = [3, 4, 250];
    let gains = [0.01f32, 1.0, 10.0, 3.0];
    let scheme = QuantScheme::symmetric(QType::I8).per_channel(1);
    for kind in ObserverKind::standard() {
        let mut obs = Observer::new(kind, scheme.granularity).unwrap();
        let mut absmax = [0f32; 4];
        for b in 0..3u64 {
            let base = Distribution::Laplace.sample(3000, b);
            let x: Vec<f32> = base
                .iter()
                .enumerate()
                .map(|(i, v)| v * gains[(i / 250) % 4])
                .collect();
            let t = if b == 1 {
                let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                for (i, v) in h.iter().enumerate() {
                    absmax[(i / 250) % 4] = absmax[(i / 250) % 4].max(v.to_f32().abs());
                }
                Tensor::from_slice(ctx, &shape, &h).unwrap()
            } else {
                for (i, v) in x.iter().enumerate() {
                    absmax[(i / 250) % 4] = absmax[(i / 250) % 4].max(v.abs());
                }
                Tensor::from_slice(ctx, &shape, &x).unwrap()
            };
            obs.observe(ctx, &t).unwrap();
        }
        let p = obs.compute_params(&scheme, &shape).unwrap();
        assert_eq!(p.scales().len(), 4);
        for (c, (&s, &amax)) in p.scales().iter().zip(&absmax).enumerate() {
            // Never wider than the data, never absurdly narrow.
            assert!(
                s <= amax / 127.5 * 1.0001 && s >= amax / 127.5 * 0.02,
                "{} channel {c}: scale {s}, absmax {amax}",
                kind.name()
            );
        }
        if kind == ObserverKind::MinMax {
            let want: Vec<f32> = absmax.iter().map(|a| a / 127.5).collect();
            assert_eq!(p.scales(), want, "min-max per-channel scales");
        }
        // A batch with another channel count is refused.
        let wrong = Tensor::from_slice(ctx, &[2, 5], &[0f32; 10]).unwrap();
        let e = obs.observe(ctx, &wrong).unwrap_err();
        assert!(e.to_string().contains("5 channels"), "{e}");
    }
}
