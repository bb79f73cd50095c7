//! Requantization that matches ONNX bit for bit: 1,000 random `QLinearMatMul` and 1,000
//! random `QLinearConv` cases computed by `onnx.reference` (tools/requant/
//! requant_cases.py, vendored in tests/data/requant/) run through `qgemm` and `qconv2d`
//! with `onnx_requant`, every output code compared exactly. The cases span odd shapes,
//! int8 and uint8 for each operand, per-tensor and per-channel weights, zero points across
//! the range, scales from 1e-6 to 1e3 and constructed ties.

mod common;

use serde_json::Value;
use wgpu_quant::desc::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::desc::qgemm::QGemmDesc;
use wgpu_quant::desc::rows::RowTile;
use wgpu_quant::ops::conv::{qconv2d, QConvWeight};
use wgpu_quant::ops::qgemm::{qgemm, QGemmOutput};
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::reference::requant_onnx;
use wgpu_quant::{Context, DType, QTensor, Tensor};

fn cases(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/data/requant/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (python tools/requant/requant_cases.py)"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn qtype(v: &Value) -> QType {
    match v.as_str().unwrap() {
        "int8" => QType::I8,
        "uint8" => QType::U8,
        t => panic!("type {t}"),
    }
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn usize_of(c: &Value, k: &str) -> usize {
    c[k].as_u64().unwrap() as usize
}

/// Per-tensor parameters, or per-channel along `axis` when there are several.
fn params(
    qt: QType,
    shape: &[usize],
    axis: usize,
    scales: Vec<f32>,
    zeros: Vec<i32>,
) -> QuantParams {
    let g = if scales.len() > 1 {
        Granularity::PerChannel { axis }
    } else {
        Granularity::PerTensor
    };
    QuantParams::new(qt, g, shape, scales, zeros).unwrap()
}

fn output(ctx: &Context, c: &Value, shape: &[usize]) -> QTensor {
    let p = params(
        qtype(&c["y_type"]),
        shape,
        0,
        vec![c["y_scale"].as_f64().unwrap() as f32],
        vec![c["y_zero"].as_i64().unwrap() as i32],
    );
    QTensor::new(ctx, &p).unwrap()
}

/// The int32 accumulators of a QLinearMatMul case, `[m, n]`.
fn matmul_acc(c: &Value) -> Vec<i32> {
    let (m, k, n) = (usize_of(c, "m"), usize_of(c, "k"), usize_of(c, "n"));
    let (a, b) = (ints(&c["a"]), ints(&c["b"]));
    let za = c["a_zero"].as_i64().unwrap() as i32;
    let zb = ints(&c["b_zero"]);
    let mut acc = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let zbj = zb[if zb.len() > 1 { j } else { 0 }];
            acc[i * n + j] = (0..k)
                .map(|p| (a[i * k + p] - za) * (b[p * n + j] - zbj))
                .sum();
        }
    }
    acc
}

#[test]
fn reference_reproduces_onnx_on_the_matmul_cases() {
    // The Rust reference (f64, as numpy computes) against ONNX's own outputs.
    for (i, c) in cases("qlinear_matmul").iter().enumerate() {
        let n = usize_of(c, "n");
        let (lo, hi) = (qtype(&c["y_type"]).qmin(), qtype(&c["y_type"]).qmax());
        let sb = floats(&c["b_scale"]);
        let want = ints(&c["y"]);
        for (e, acc) in matmul_acc(c).into_iter().enumerate() {
            let got = requant_onnx(
                acc,
                c["a_scale"].as_f64().unwrap() as f32,
                sb[if sb.len() > 1 { e % n } else { 0 }],
                c["y_scale"].as_f64().unwrap() as f32,
                c["y_zero"].as_i64().unwrap() as i32,
                lo,
                hi,
            );
            assert_eq!(got, want[e], "case {i} element {e}");
        }
    }
}

fn run_matmul(ctx: &Context, c: &Value, desc: &QGemmDesc) -> Vec<i32> {
    let (m, k, n) = (usize_of(c, "m"), usize_of(c, "k"), usize_of(c, "n"));
    let ap = params(
        qtype(&c["a_type"]),
        &[m, k],
        0,
        vec![c["a_scale"].as_f64().unwrap() as f32],
        vec![c["a_zero"].as_i64().unwrap() as i32],
    );
    let a = QTensor::from_codes(ctx, &ap, &ints(&c["a"])).unwrap();
    // ONNX's B is [K, N]; the W8A8 GEMM takes W as [N, K] (a linear layer's weight).
    let b = ints(&c["b"]);
    let wt: Vec<i32> = (0..n)
        .flat_map(|j| (0..k).map(move |p| (j, p)))
        .map(|(j, p)| b[p * n + j])
        .collect();
    let wp = params(
        qtype(&c["b_type"]),
        &[n, k],
        0,
        floats(&c["b_scale"]),
        ints(&c["b_zero"]),
    );
    let w = QTensor::from_codes(ctx, &wp, &wt).unwrap();
    let y = output(ctx, c, &[m, n]);
    let mut enc = ctx.encoder("requant");
    qgemm(
        ctx,
        &mut enc,
        desc,
        &a,
        &w,
        None,
        QGemmOutput::Quantized(&y),
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    y.read_codes_blocking(ctx).unwrap()
}

#[test]
fn qlinear_matmul_matches_onnx_bit_for_bit() {
    let ctx = common::ctx();
    let all = cases("qlinear_matmul");
    assert_eq!(all.len(), 1000);
    let base = QGemmDesc::default().onnx_requant(true);
    let (mut elements, mut bad) = (0usize, Vec::new());
    for (i, c) in all.iter().enumerate() {
        // The plan's tile, and in turn a pinned tile, split-K and the unpacked dot.
        let desc = match i % 4 {
            0 => base,
            1 => base.config(RowTile::new(64, 4, 2)),
            2 => base.config(RowTile::new(64, 1, 2).split_k(2)),
            _ => base.packed_dot(false),
        };
        let got = run_matmul(ctx, c, &desc);
        let want = ints(&c["y"]);
        elements += want.len();
        let diff = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        if diff > 0 {
            bad.push(format!(
                "case {i} ({}, {:?}): {diff} codes differ",
                c["mode"], desc.config
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of 1000 cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!("QLinearMatMul: 1000 cases, {elements} codes, all equal to onnx.reference");
}

#[test]
fn qlinear_conv_matches_onnx_bit_for_bit() {
    let ctx = common::ctx();
    let all = cases("qlinear_conv");
    assert_eq!(all.len(), 1000);
    let (mut elements, mut bad) = (0usize, Vec::new());
    for (i, c) in all.iter().enumerate() {
        let (ch, h, w, oc) = (
            usize_of(c, "c"),
            usize_of(c, "h"),
            usize_of(c, "w"),
            usize_of(c, "oc"),
        );
        let groups = usize_of(c, "groups");
        let kernel: Vec<usize> = ints(&c["kernel"]).iter().map(|&v| v as usize).collect();
        let dims = ConvDims::new(oc, ch, [kernel[0], kernel[1]], groups).unwrap();
        let pads: Vec<usize> = ints(&c["pads"]).iter().map(|&v| v as usize).collect();
        let strides = ints(&c["strides"]);
        let dil = ints(&c["dilations"]);
        let mut desc = ConvDesc::default()
            .padding(Padding::Explicit([pads[0], pads[1], pads[2], pads[3]]))
            .onnx_requant(true);
        desc.stride = [strides[0] as usize, strides[1] as usize];
        desc.dilation = [dil[0] as usize, dil[1] as usize];
        if i % 3 == 1 {
            desc = desc.packed_dot(false);
        }
        // x: ONNX's NCHW codes to NHWC.
        let x = ints(&c["x"]);
        let nhwc = wgpu_quant::ops::conv::nchw_to_nhwc(&x, [1, ch, h, w]);
        let xp = params(
            qtype(&c["x_type"]),
            &[1, h, w, ch],
            0,
            vec![c["x_scale"].as_f64().unwrap() as f32],
            vec![c["x_zero"].as_i64().unwrap() as i32],
        );
        let xq = QTensor::from_codes(ctx, &xp, &nhwc).unwrap();
        let wp = params(
            qtype(&c["w_type"]),
            &dims.oihw(),
            0,
            floats(&c["w_scale"]),
            ints(&c["w_zero"]),
        );
        let wq = QConvWeight::from_codes(ctx, dims, &ints(&c["weight"]), &wp).unwrap();
        let bias = c["bias"]
            .as_array()
            .map(|_| Tensor::from_slice(ctx, &[oc], &ints(&c["bias"])).unwrap());
        let ys: Vec<usize> = ints(&c["y_shape"]).iter().map(|&v| v as usize).collect();
        let (oh, ow) = (ys[2], ys[3]);
        let y = output(ctx, c, &[1, oh, ow, oc]);
        let mut enc = ctx.encoder("requant");
        qconv2d(
            ctx,
            &mut enc,
            &desc,
            &xq,
            &wq,
            bias.as_ref(),
            QGemmOutput::Quantized(&y),
        )
        .unwrap_or_else(|e| panic!("case {i}: {e}"));
        ctx.submit_and_wait(enc).unwrap();
        let got = wgpu_quant::ops::conv::nhwc_to_nchw(
            &y.read_codes_blocking(ctx).unwrap(),
            [1, oh, ow, oc],
        );
        let want = ints(&c["y"]);
        elements += want.len();
        let diff = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        if diff > 0 {
            bad.push(format!(
                "case {i} ({}, groups {groups}): {diff} of {} codes differ",
                c["mode"],
                want.len()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of 1000 cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!("QLinearConv: 1000 cases, {elements} codes, all equal to onnx.reference");
}

#[test]
fn onnx_requant_refuses_what_onnx_does_not_define() {
    let ctx = common::ctx();
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[2, 8],
        vec![0.1],
        vec![0],
    )
    .unwrap();
    let a = QTensor::new(ctx, &p).unwrap();
    let wp = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[3, 8],
        vec![0.1],
        vec![0],
    )
    .unwrap();
    let w = QTensor::new(ctx, &wp).unwrap();
    let yp = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[2, 3],
        vec![0.1],
        vec![0],
    )
    .unwrap();
    let y = QTensor::new(ctx, &yp).unwrap();
    let f32_bias = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let out_f32 = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let d = QGemmDesc::default().onnx_requant(true);
    let mut enc = ctx.encoder("requant");
    let e = qgemm(
        ctx,
        &mut enc,
        &d,
        &a,
        &w,
        Some(&f32_bias),
        QGemmOutput::Quantized(&y),
    )
    .unwrap_err();
    assert!(e.to_string().contains("bias must be i32"), "{e}");
    let e = qgemm(ctx, &mut enc, &d, &a, &w, None, QGemmOutput::F32(&out_f32)).unwrap_err();
    assert!(e.to_string().contains("QGemmOutput::Quantized"), "{e}");
    let e = qgemm(
        ctx,
        &mut enc,
        &d.activation(wgpu_quant::desc::gemm::Activation::Relu),
        &a,
        &w,
        None,
        QGemmOutput::Quantized(&y),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no activation"), "{e}");
}

/// The exact value's rounding (no f64 steps): `round_half_even(acc * M + zy)`, in i128.
fn exact_rint(acc: i32, m: f32, zy: i32) -> i128 {
    let bits = m.to_bits();
    let (ex, man) = ((bits >> 23) & 0xff, bits & 0x7f_ffff);
    let (mant, sh) = if ex == 0 {
        (man, 149)
    } else {
        (man | 0x80_0000, 150 - ex as i32)
    };
    assert!(sh > 0 && sh < 120);
    let w = i128::from(acc) * i128::from(mant) + (i128::from(zy) << sh);
    let q = w.div_euclid(1 << sh);
    let r = w.rem_euclid(1 << sh);
    let half = 1i128 << (sh - 1);
    if r > half || (r == half && q % 2 != 0) {
        q + 1
    } else {
        q
    }
}

/// Every branch of the kernels' integer emulation of ONNX's f64 arithmetic, against the
/// f64 reference, through `qgemm` with K = 1 and A's codes at its zero point, so that
/// each output column's accumulator is exactly its i32 bias and its multiplier exactly
/// its weight scale (`sa = sy = 1`): random accumulators over the whole i32 range with
/// multipliers from 2^-60 to 2^10, exact ties with odd and even zero points, and
/// constructed cases where f64's rounding of the product to 53 bits turns a value just
/// below a tie into the tie (ONNX then rounds to even, away from the exact result).
#[test]
fn integer_emulation_matches_f64_in_every_branch() {
    use rand::{RngExt, SeedableRng};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut triples: Vec<(i32, f32)> = Vec::new();
    for _ in 0..3000 {
        let mag = 2f64.powf(rng.random_range(0.0..31.0)) as i64;
        let acc = (mag.min(i64::from(i32::MAX)) as i32) * if rng.random_bool(0.5) { 1 } else { -1 };
        let m = 2f32.powf(rng.random_range(-60.0..10.0)) * rng.random_range(1.0f32..2.0);
        triples.push((acc, m));
    }
    for _ in 0..600 {
        let s = rng.random_range(1..=12);
        let j: i32 = rng.random_range(-300..300);
        triples.push(((2 * j + 1) << (s - 1), 2f32.powi(-s)));
    }
    // acc * m = 2^54 - r with r < 2^9 and m a 24-bit mantissa: M = m * 2^-55 puts the
    // value at 0.5 - r * 2^-55; f64 keeps 53 of its 54 bits, then adding zy in [128, 255]
    // rounds it to exactly zy + 0.5.
    let mut flips = 0;
    'search: for r in 1u64..400 {
        let p = (1u64 << 54) - r;
        let mut m = (1u64 << 23) | 1;
        while m < 1 << 24 {
            if p.is_multiple_of(m) && p / m < 1 << 31 {
                let acc = (p / m) as i32;
                let mf = m as f32 * 2f32.powi(-55);
                triples.push((acc, mf));
                triples.push((-acc, mf));
                flips += 1;
                if flips == 12 {
                    break 'search;
                }
                break;
            }
            m += 2;
        }
    }
    assert!(flips >= 4, "found only {flips} double-rounding cases");
    let (mut checked, mut ties, mut differs_from_exact) = (0usize, 0usize, 0usize);
    for (g, chunk) in triples.chunks(256).enumerate() {
        let qy = [QType::U8, QType::I8][g % 2];
        let zy = if g % 3 == 0 {
            qy.qmax() - 1 - (g as i32 % 2)
        } else {
            rng.random_range(qy.qmin()..=qy.qmax())
        };
        let n = chunk.len();
        let ap = QuantParams::new(
            QType::I8,
            Granularity::PerTensor,
            &[1, 1],
            vec![1.0],
            vec![0],
        )
        .unwrap();
        let scales: Vec<f32> = chunk.iter().map(|t| t.1).collect();
        let wp = QuantParams::new(
            QType::I8,
            Granularity::PerChannel { axis: 0 },
            &[n, 1],
            scales,
            vec![0; n],
        )
        .unwrap();
        let yp =
            QuantParams::new(qy, Granularity::PerTensor, &[1, n], vec![1.0], vec![zy]).unwrap();
        let a = QTensor::from_codes(ctx, &ap, &[0]).unwrap();
        let w = QTensor::from_codes(ctx, &wp, &vec![0; n]).unwrap();
        let y = QTensor::new(ctx, &yp).unwrap();
        let bias: Vec<i32> = chunk.iter().map(|t| t.0).collect();
        let b = Tensor::from_slice(ctx, &[n], &bias).unwrap();
        let mut enc = ctx.encoder("requant");
        let desc = QGemmDesc::default().onnx_requant(true);
        qgemm(
            ctx,
            &mut enc,
            &desc,
            &a,
            &w,
            Some(&b),
            QGemmOutput::Quantized(&y),
        )
        .unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = y.read_codes_blocking(ctx).unwrap();
        for (e, &(acc, m)) in chunk.iter().enumerate() {
            let want = requant_onnx(acc, 1.0, m, 1.0, zy, qy.qmin(), qy.qmax());
            assert_eq!(
                got[e],
                want,
                "acc {acc} M {m:e} ({:#x}) zy {zy}",
                m.to_bits()
            );
            let exact = exact_rint(acc, m, zy).clamp(i128::from(qy.qmin()), i128::from(qy.qmax()));
            if exact != i128::from(want) {
                differs_from_exact += 1;
            }
            let t = f64::from(acc) * f64::from(m) + f64::from(zy);
            if t.fract().abs() == 0.5 && want > qy.qmin() && want < qy.qmax() {
                ties += 1;
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} accumulators: all equal to the f64 reference; {ties} exact ties inside \
         the range; {differs_from_exact} where f64 (and ONNX) differs from exact rounding"
    );
    assert!(ties >= 100, "only {ties} ties reached");
    assert!(
        differs_from_exact >= 4,
        "only {differs_from_exact} double-rounding cases reached"
    );
}
