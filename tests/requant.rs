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

// ---- The same cases as ONNX files, through the importer ----------------------------

use prost::Message;
use wgpu_quant::import::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use wgpu_quant::import::OnnxImport;

fn onnx_type(v: &Value) -> DataType {
    match qtype(v) {
        QType::I8 => DataType::Int8,
        _ => DataType::Uint8,
    }
}

/// An initializer of `v` in ONNX type `t` (scalars have no dimensions).
fn init(name: &str, t: DataType, dims: &[usize], v: &Value) -> TensorProto {
    let raw: Vec<u8> = match t {
        DataType::Float => floats(v).iter().flat_map(|x| x.to_le_bytes()).collect(),
        DataType::Int32 => ints(v).iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => ints(v).iter().map(|&x| x as u8).collect(),
    };
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(t as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A scalar or per-channel initializer: ONNX's quantization parameters are scalars when
/// per tensor, 1-D when per channel.
fn param(name: &str, t: DataType, v: &Value) -> TensorProto {
    let v = match v {
        Value::Array(_) => v.clone(),
        _ => Value::Array(vec![v.clone()]),
    };
    let n = v.as_array().unwrap().len();
    let dims = [n];
    init(name, t, if n > 1 { &dims[..] } else { &[] }, &v)
}

fn float_io(name: &str, dims: &[usize]) -> ValueInfoProto {
    use wgpu_quant::import::proto::tensor_shape_proto::{dimension, Dimension};
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.iter().map(|&x| i64::from(x)).collect(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

/// `xf -> QuantizeLinear -> node -> DequantizeLinear -> y`: the case's QLinear node as a
/// file, its weights, scales, zero points and bias as initializers.
fn case_model(c: &Value, conv: bool, x_dims: &[usize]) -> ModelProto {
    let (xk, wk) = if conv { ("x", "w") } else { ("a", "b") };
    let mut inits = vec![
        param("xs", DataType::Float, &c[format!("{xk}_scale")]),
        param(
            "xz",
            onnx_type(&c[format!("{xk}_type")]),
            &c[format!("{xk}_zero")],
        ),
        param("ws", DataType::Float, &c[format!("{wk}_scale")]),
        param(
            "wz",
            onnx_type(&c[format!("{wk}_type")]),
            &c[format!("{wk}_zero")],
        ),
        param("ys", DataType::Float, &c["y_scale"]),
        param("yz", onnx_type(&c["y_type"]), &c["y_zero"]),
    ];
    let wt = onnx_type(&c[format!("{wk}_type")]);
    let mut inputs: Vec<String> = ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
        .map(String::from)
        .to_vec();
    let (op, attrs) = if conv {
        let (ch, oc, g) = (usize_of(c, "c"), usize_of(c, "oc"), usize_of(c, "groups"));
        let k = ints(&c["kernel"]);
        let dims = [oc, ch / g, k[0] as usize, k[1] as usize];
        inits.push(init("w", wt, &dims, &c["weight"]));
        if c["bias"].is_array() {
            inits.push(init("bias", DataType::Int32, &[oc], &c["bias"]));
            inputs.push("bias".into());
        }
        let attrs = vec![
            ints_attr("kernel_shape", &k),
            ints_attr("strides", &ints(&c["strides"])),
            ints_attr("dilations", &ints(&c["dilations"])),
            ints_attr("pads", &ints(&c["pads"])),
            AttributeProto {
                name: Some("group".into()),
                i: Some(g as i64),
                r#type: Some(AttributeType::Int as i32),
                ..Default::default()
            },
        ];
        ("QLinearConv", attrs)
    } else {
        let dims = [usize_of(c, "k"), usize_of(c, "n")];
        inits.push(init("w", wt, &dims, &c["b"]));
        ("QLinearMatMul", Vec::new())
    };
    let node = |op: &str, inputs: Vec<String>, out: &str, attribute| NodeProto {
        op_type: Some(op.into()),
        input: inputs,
        output: vec![out.into()],
        attribute,
        ..Default::default()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(21),
        }],
        graph: Some(GraphProto {
            node: vec![
                node("QuantizeLinear", s(&["xf", "xs", "xz"]), "xq", Vec::new()),
                node(op, inputs, "yq", attrs),
                node("DequantizeLinear", s(&["yq", "ys", "yz"]), "y", Vec::new()),
            ],
            initializer: inits,
            input: vec![float_io("xf", x_dims)],
            output: vec![float_io("y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs a case's file through `OnnxImport::qmodel` and returns the output codes (ONNX
/// layout), recovered from the dequantized output (exact: `(q - z) * s / s` rounds
/// back to `q - z`).
fn run_file(ctx: &Context, c: &Value, conv: bool) -> Result<Vec<i32>, String> {
    run_file_as(ctx, c, conv, None)
}

/// [`run_file`], the model saved to `saved` and loaded back first when given.
fn run_file_as(
    ctx: &Context,
    c: &Value,
    conv: bool,
    saved: Option<&std::path::Path>,
) -> Result<Vec<i32>, String> {
    let (xk, x_dims) = if conv {
        let d = [1, usize_of(c, "c"), usize_of(c, "h"), usize_of(c, "w")];
        ("x", d.to_vec())
    } else {
        ("a", vec![usize_of(c, "m"), usize_of(c, "k")])
    };
    let bytes = case_model(c, conv, &x_dims).encode_to_vec();
    let s = |e: wgpu_quant::Error| e.to_string();
    let onnx = OnnxImport::from_bytes(&bytes, "case.onnx", None, None).map_err(s)?;
    let mut model = onnx.qmodel(ctx).map_err(s)?;
    if let Some(path) = saved {
        model.save(path).map_err(s)?;
        model = wgpu_quant::model::QModel::load(ctx, onnx.graph(), path, &onnx.input().model_shape)
            .map_err(s)?;
    }
    let (xs, xz) = (
        c[format!("{xk}_scale")].as_f64().unwrap() as f32,
        c[format!("{xk}_zero")].as_i64().unwrap() as i32,
    );
    let xf: Vec<f32> = ints(&c[xk]).iter().map(|&q| (q - xz) as f32 * xs).collect();
    let x = Tensor::from_slice(
        ctx,
        &onnx.input().model_shape,
        &onnx.to_model_input(&xf).map_err(s)?,
    )
    .map_err(s)?;
    let mut enc = ctx.encoder("qlinear file");
    let y = model.forward(ctx, &mut enc, &x).map_err(s)?.clone();
    ctx.submit_and_wait(enc).map_err(s)?;
    let y = onnx
        .from_model_output(&y.read_blocking::<f32>(ctx).map_err(s)?)
        .map_err(s)?;
    let (ys, yz) = (
        c["y_scale"].as_f64().unwrap() as f32,
        c["y_zero"].as_i64().unwrap() as i32,
    );
    Ok(y.iter()
        .map(|&v| (v / ys).round_ties_even() as i32 + yz)
        .collect())
}

/// The 2,000 cases as ONNX files (QuantizeLinear, the QLinear node, DequantizeLinear)
/// imported and run by `OnnxImport::qmodel`: every output code is onnx.reference's.
#[test]
fn qlinear_files_through_the_importer_match_onnx_bit_for_bit() {
    let ctx = common::ctx();
    let mut total = 0usize;
    for (file, conv) in [("qlinear_matmul", false), ("qlinear_conv", true)] {
        let all = cases(file);
        assert_eq!(all.len(), 1000);
        let (mut elements, mut bad) = (0usize, Vec::new());
        for (i, c) in all.iter().enumerate() {
            let want = ints(&c["y"]);
            match run_file(ctx, c, conv) {
                Ok(got) => {
                    elements += want.len();
                    let diff = got.iter().zip(&want).filter(|(g, w)| g != w).count();
                    if diff > 0 || got.len() != want.len() {
                        bad.push(format!(
                            "case {i} ({}): {diff} of {} codes differ",
                            c["mode"],
                            want.len()
                        ));
                    }
                }
                Err(e) => bad.push(format!("case {i}: {e}")),
            }
        }
        assert!(
            bad.is_empty(),
            "{file}: {} of 1000 files fail:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
        eprintln!(
            "{file} as ONNX files: 1000 imported, {elements} codes, all equal to onnx.reference"
        );
        total += 1000;
    }
    assert_eq!(total, 2000);
}

/// A file's model saved and loaded keeps ONNX's rule and each tensor's 8-bit type (int8
/// or uint8 weights, activations and input): the cases give onnx.reference's codes
/// again, over every combination of types in the first cases of each op.
#[test]
fn a_files_model_saved_and_loaded_is_the_same_model() {
    let ctx = common::ctx();
    let path = std::env::temp_dir().join(format!("requant-{}.safetensors", std::process::id()));
    let mut combos = std::collections::BTreeSet::new();
    for (file, conv) in [("qlinear_matmul", false), ("qlinear_conv", true)] {
        let (xk, wk) = if conv { ("x", "w") } else { ("a", "b") };
        for (i, c) in cases(file).iter().enumerate().take(120) {
            let types = (
                file,
                c[format!("{xk}_type")].to_string(),
                c[format!("{wk}_type")].to_string(),
                c["y_type"].to_string(),
            );
            if !combos.insert(types) {
                continue;
            }
            let got = run_file_as(ctx, c, conv, Some(&path))
                .unwrap_or_else(|e| panic!("{file} {i}: {e}"));
            assert_eq!(got, ints(&c["y"]), "{file} case {i} saved and loaded");
        }
    }
    std::fs::remove_file(&path).ok();
    // 2 ops x 2^3 type combinations.
    assert_eq!(combos.len(), 16, "{combos:?}");
}
