//! The ONNX importer on small models built here with the generated message types:
//! BatchNorm folding, activation fusion, a Gemm after a flatten of NCHW features (the
//! weights' columns reordered for NHWC), shape arithmetic folded at load, per-channel
//! arithmetic, and the errors for bad files (each names the file and the node).

mod common;

use prost::Message;
use rand::{RngExt, SeedableRng};
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::import::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use wgpu_quant::import::{OnnxImport, OPERATORS};
use wgpu_quant::model::{Layer, PtqOptions, QMode};
use wgpu_quant::ops::layout::PadMode;
use wgpu_quant::reference::requant_onnx;
use wgpu_quant::{Context, DType, Error, Tensor};

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(f),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn tensor_f32(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    input: &[usize],
    opset: i64,
) -> ModelProto {
    let out = nodes
        .last()
        .map(|n| n.output[0].clone())
        .unwrap_or_default();
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![value_info(
                "x",
                &input.iter().map(|&d| Some(d)).collect::<Vec<_>>(),
            )],
            output: vec![value_info(&out, &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto, shape: Option<&[usize]>) -> wgpu_quant::Result<OnnxImport> {
    OnnxImport::from_bytes(&m.encode_to_vec(), "test.onnx", None, shape)
}

fn run(ctx: &Context, onnx: &OnnxImport, x_nchw: &[f32]) -> Vec<f32> {
    let model = onnx.model(ctx, DType::F32).unwrap();
    let x = Tensor::from_slice(
        ctx,
        &onnx.input().model_shape,
        &onnx.to_model_input(x_nchw).unwrap(),
    )
    .unwrap();
    let mut enc = ctx.encoder("onnx");
    let y = model.forward(ctx, &mut enc, &x).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    onnx.from_model_output(&y.read_blocking::<f32>(ctx).unwrap())
        .unwrap()
}

fn rand_vec(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// NCHW convolution in f64 (stride 1, symmetric padding `p`, groups 1).
fn conv_ref(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    oc: usize,
    k: usize,
    p: usize,
    b: &[f32],
) -> Vec<f64> {
    let (oh, ow) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
    let mut y = vec![0.0f64; n * oc * oh * ow];
    for b_ in 0..n {
        for o in 0..oc {
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = f64::from(b[o]);
                    for ci in 0..c {
                        for ki in 0..k {
                            for kj in 0..k {
                                let (yy, xx) = (
                                    (i + ki) as isize - p as isize,
                                    (j + kj) as isize - p as isize,
                                );
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                let xv = x[((b_ * c + ci) * h + yy as usize) * w + xx as usize];
                                let wv = wt[((o * c + ci) * k + ki) * k + kj];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[((b_ * oc + o) * oh + i) * ow + j] = s;
                }
            }
        }
    }
    y
}

fn check(got: &[f32], want: &[f64], budget: f64) {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    let err = (num / den).sqrt();
    assert!(err <= budget, "relative L2 error {err:.2e} > {budget:.0e}");
}

const BN_GAMMA: [f32; 4] = [1.5, 0.5, -0.7, 2.0];
const BN_BETA: [f32; 4] = [0.1, -0.2, 0.3, 0.0];
const BN_MEAN: [f32; 4] = [0.05, -0.1, 0.2, 0.0];
const BN_VAR: [f32; 4] = [0.5, 1.2, 0.8, 2.0];
const GEMM_C: [f32; 3] = [0.25, -0.5, 1.0];

/// Conv 3->4 k3 pad 1, BatchNormalization, Relu, Flatten, Gemm to 3 (alpha 0.5, beta 2)
/// on `[n, 3, h, w]`: the model and its conv weight, conv bias and Gemm B.
fn conv_bn_gemm(
    rng: &mut rand::rngs::StdRng,
    (n, h, w): (usize, usize, usize),
) -> (ModelProto, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (c, oc, k) = (3, 4, 3);
    let wt = rand_vec(oc * c * k * k, rng);
    let b = rand_vec(oc, rng);
    let feats = oc * h * w;
    let gemm_b = rand_vec(feats * 3, rng); // [K, N], transB = 0
    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("kernel_shape", &[3, 3]),
                ],
            ),
            node(
                "BatchNormalization",
                "bn",
                &["c", "g", "be", "mu", "var"],
                &["bn"],
                vec![attr_f("epsilon", 1e-3)],
            ),
            node("Relu", "relu", &["bn"], &["r"], vec![]),
            node("Flatten", "flat", &["r"], &["f"], vec![]),
            node(
                "Gemm",
                "fc",
                &["f", "gb", "gc"],
                &["y"],
                vec![attr_f("alpha", 0.5), attr_f("beta", 2.0)],
            ),
        ],
        vec![
            tensor_f32("w", &[oc, c, k, k], &wt),
            tensor_f32("b", &[oc], &b),
            tensor_f32("g", &[oc], &BN_GAMMA),
            tensor_f32("be", &[oc], &BN_BETA),
            tensor_f32("mu", &[oc], &BN_MEAN),
            tensor_f32("var", &[oc], &BN_VAR),
            tensor_f32("gb", &[feats, 3], &gemm_b),
            tensor_f32("gc", &[3], &GEMM_C),
        ],
        &[n, c, h, w],
        13,
    );
    (m, wt, b, gemm_b)
}

#[test]
fn conv_batchnorm_relu_flatten_gemm_matches_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (n, c, h, w, oc, k) = (2, 3, 5, 5, 4, 3);
    let x = rand_vec(n * c * h * w, &mut rng);
    let (m, wt, b, gemm_b) = conv_bn_gemm(&mut rng, (n, h, w));
    let (gamma, beta, mean, var, gemm_c) = (BN_GAMMA, BN_BETA, BN_MEAN, BN_VAR, GEMM_C);
    let feats = oc * h * w;
    let onnx = import(&m, None).unwrap();
    // BatchNorm and ReLU fold into the convolution; Flatten is a view.
    assert_eq!(onnx.graph().nodes.len(), 2, "{:?}", onnx.graph());
    let got = run(ctx, &onnx, &x);
    let conv = conv_ref(&x, [n, c, h, w], &wt, oc, k, 1, &b);
    let mut want = vec![0.0f64; n * 3];
    for bi in 0..n {
        let f: Vec<f64> = (0..feats)
            .map(|i| {
                let o = i / (h * w);
                let kk = f64::from(gamma[o]) / (f64::from(var[o]) + 1e-3).sqrt();
                ((conv[bi * feats + i] - f64::from(mean[o])) * kk + f64::from(beta[o])).max(0.0)
            })
            .collect();
        for j in 0..3 {
            let s: f64 = (0..feats)
                .map(|i| f[i] * f64::from(gemm_b[i * 3 + j]))
                .sum();
            want[bi * 3 + j] = 0.5 * s + 2.0 * f64::from(gemm_c[j]);
        }
    }
    check(&got, &want, 1e-5);
}

#[test]
fn shape_arithmetic_folds_and_per_channel_ops_run() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (n, c, h, w) = (2, 4, 3, 3);
    let x = rand_vec(n * c * h * w, &mut rng);
    let scale = [0.5f32, -1.0, 2.0, 1.5];
    let shift = [0.1f32, 0.2, -0.3, 0.4];
    let mm = rand_vec(c * 5, &mut rng);
    let bias = rand_vec(5, &mut rng);
    let m = model(
        vec![
            // Per-channel Mul and Sub on the input: a 1x1 depthwise convolution.
            node("Mul", "scale", &["x", "s"], &["xs"], vec![]),
            node("Sub", "shift", &["xs", "t"], &["xt"], vec![]),
            node(
                "MaxPool",
                "pool",
                &["xt"],
                &["p"],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("pads", &[1, 1, 0, 0]),
                    attr_ints("strides", &[2, 2]),
                ],
            ),
            node("GlobalAveragePool", "gap", &["p"], &["g"], vec![]),
            // The batch size from Shape/Gather, a reshape target [N, -1].
            node("Shape", "shape", &["g"], &["sh"], vec![]),
            node(
                "Gather",
                "batch",
                &["sh", "zero"],
                &["bs"],
                vec![attr_i("axis", 0)],
            ),
            node("Unsqueeze", "batch1", &["bs", "axes"], &["bs1"], vec![]),
            node(
                "Concat",
                "target",
                &["bs1", "minus1"],
                &["tgt"],
                vec![attr_i("axis", 0)],
            ),
            node("Reshape", "flat", &["g", "tgt"], &["f"], vec![]),
            node("MatMul", "mm", &["f", "mmw"], &["mmo"], vec![]),
            node("Add", "bias", &["mmo", "mmb"], &["logits"], vec![]),
            node(
                "Softmax",
                "prob",
                &["logits"],
                &["y"],
                vec![attr_i("axis", 1)],
            ),
        ],
        vec![
            tensor_f32("s", &[1, c, 1, 1], &scale),
            tensor_f32("t", &[c, 1, 1], &shift),
            tensor_i64("zero", &[], &[0]),
            tensor_i64("axes", &[1], &[0]),
            tensor_i64("minus1", &[1], &[-1]),
            tensor_f32("mmw", &[c, 5], &mm),
            tensor_f32("mmb", &[5], &bias),
        ],
        &[n, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    // depthwise (Mul and Sub folded together), max pool, global pool, linear (bias
    // folded), softmax.
    assert_eq!(onnx.graph().nodes.len(), 5, "{:?}", onnx.graph());
    let got = run(ctx, &onnx, &x);
    let mut want = Vec::new();
    for bi in 0..n {
        let mut feat = [0.0f64; 4];
        for ci in 0..c {
            let v = |i: isize, j: isize| -> f64 {
                if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                    return f64::NEG_INFINITY;
                }
                let xv = f64::from(x[((bi * c + ci) * h + i as usize) * w + j as usize]);
                xv * f64::from(scale[ci]) - f64::from(shift[ci])
            };
            // Output 2x2: windows start at -1 and 1 (pad 1 at the top/left).
            let mut s = 0.0;
            for oi in 0..2 {
                for oj in 0..2 {
                    let (i0, j0) = (oi as isize * 2 - 1, oj as isize * 2 - 1);
                    s += v(i0, j0)
                        .max(v(i0 + 1, j0))
                        .max(v(i0, j0 + 1))
                        .max(v(i0 + 1, j0 + 1));
                }
            }
            feat[ci] = s / 4.0;
        }
        let logits: Vec<f64> = (0..5)
            .map(|j| {
                (0..c)
                    .map(|ci| feat[ci] * f64::from(mm[ci * 5 + j]))
                    .sum::<f64>()
                    + f64::from(bias[j])
            })
            .collect();
        let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
        want.extend(logits.iter().map(|l| (l - mx).exp() / z));
    }
    check(&got, &want, 1e-5);
}

fn import_err(m: &ModelProto) -> String {
    let e = import(m, None).unwrap_err();
    assert!(
        matches!(e, Error::Import { ref file, .. } if file == "test.onnx"),
        "{e:?}"
    );
    e.to_string()
}

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let m = model(
        vec![
            node("Sin", "sine", &["x"], &["a"], vec![]),
            node("Hardmax", "hardmax", &["a"], &["b"], vec![]),
            node("Conv", "conv3d", &["x", "w3"], &["c"], vec![]),
            node("Add", "add", &["b", "c"], &["y"], vec![]),
        ],
        vec![tensor_f32("w3", &[1, 3, 1, 1, 1], &[1.0; 3])],
        &[1, 3, 4, 4],
        13,
    );
    let e = import_err(&m);
    for part in [
        "3 node(s)",
        "'sine' (Sin)",
        "'hardmax' (Hardmax)",
        "'conv3d' (Conv)",
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    // Add is supported: its inputs failed, so it is not listed.
    assert!(!e.contains("'add'"), "{e}");
}

#[test]
fn bad_files_are_errors_naming_the_file_and_node() {
    let good = model(
        vec![node("Relu", "relu", &["x"], &["y"], vec![])],
        vec![],
        &[1, 3, 4, 4],
        13,
    );
    assert!(import(&good, None).is_ok());
    let bytes = good.encode_to_vec();
    // Truncated and corrupt bytes.
    let e = OnnxImport::from_bytes(&bytes[..bytes.len() - 5], "cut.onnx", None, None).unwrap_err();
    assert!(
        e.to_string().starts_with("cut.onnx: not an ONNX model"),
        "{e}"
    );
    let e =
        OnnxImport::from_bytes(b"\xff\xff\xff\xff garbage", "junk.onnx", None, None).unwrap_err();
    assert!(e.to_string().contains("not an ONNX model"), "{e}");
    // An opset out of range.
    let mut m = good.clone();
    m.opset_import[0].version = Some(99);
    assert!(import_err(&m).contains("opset 99 is not supported"));
    // A cycle.
    let m = model(
        vec![
            node("Relu", "a", &["x", "d"], &["c"], vec![]),
            node("Relu", "b", &["c"], &["d"], vec![]),
            node("Relu", "out", &["d"], &["y"], vec![]),
        ],
        vec![],
        &[1, 3, 4, 4],
        13,
    );
    let e = import_err(&m);
    assert!(e.contains("cycle") && e.contains("'a' (Relu)"), "{e}");
    // A value nobody makes.
    let m = model(
        vec![node("Add", "add", &["x", "ghost"], &["y"], vec![])],
        vec![],
        &[1, 3, 4, 4],
        13,
    );
    let e = import_err(&m);
    assert!(e.contains("'add'") && e.contains("'ghost'"), "{e}");
    // An initializer whose shape disagrees with its use.
    let m = model(
        vec![node("Conv", "conv", &["x", "w"], &["y"], vec![])],
        vec![tensor_f32("w", &[2, 2, 1, 1], &[1.0; 4])],
        &[1, 3, 4, 4],
        13,
    );
    let e = import_err(&m);
    assert!(
        e.contains("'conv' (Conv)") && e.contains("[2, 2, 1, 1]") && e.contains("3 channels"),
        "{e}"
    );
    // Raw data of the wrong size.
    let mut t = tensor_f32("w", &[2, 3, 1, 1], &[1.0; 6]);
    t.raw_data.as_mut().unwrap().truncate(20);
    let m = model(
        vec![node("Conv", "conv", &["x", "w"], &["y"], vec![])],
        vec![t],
        &[1, 3, 4, 4],
        13,
    );
    let e = import_err(&m);
    assert!(e.contains("tensor 'w'") && e.contains("20 bytes"), "{e}");
    // A dimension product that overflows.
    let mut t = tensor_f32("w", &[1], &[1.0]);
    t.dims = vec![i64::MAX, 4];
    let m = model(
        vec![node("Conv", "conv", &["x", "w"], &["y"], vec![])],
        vec![t],
        &[1, 3, 4, 4],
        13,
    );
    assert!(import_err(&m).contains("overflows"));
    // External data: missing without a folder, escaping the folder, a missing file.
    let ext = |loc: &str| {
        let mut t = tensor_f32("w", &[2, 3, 1, 1], &[]);
        t.raw_data = None;
        t.data_location = Some(1);
        t.external_data = vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(loc.into()),
        }];
        model(
            vec![node("Conv", "conv", &["x", "w"], &["y"], vec![])],
            vec![t],
            &[1, 3, 4, 4],
            13,
        )
    };
    assert!(import_err(&ext("w.bin")).contains("without a folder"));
    let dir = std::env::temp_dir();
    let e = OnnxImport::from_bytes(&ext("../w.bin").encode_to_vec(), "x.onnx", Some(&dir), None)
        .unwrap_err();
    assert!(e.to_string().contains("inside the model's folder"), "{e}");
    let e = OnnxImport::from_bytes(
        &ext("no-such-w.bin").encode_to_vec(),
        "x.onnx",
        Some(&dir),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no-such-w.bin"), "{e}");
    // Input shapes: a given shape must fit the declared rank and fixed dimensions.
    let e = import(&good, Some(&[1, 3, 4])).unwrap_err();
    assert!(e.to_string().contains("rank 4"), "{e}");
    let e = import(&good, Some(&[1, 3, 4, 5])).unwrap_err();
    assert!(e.to_string().contains("dimension 3"), "{e}");
    let e = import(&good, Some(&[0, 3, 4, 4])).unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
}

#[test]
fn operator_table_in_the_docs_matches_the_importer() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ONNX.md")).unwrap();
    let rows: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(op, _)| op.to_string()))
        .collect();
    let ours: Vec<String> = OPERATORS.iter().map(|(op, _)| op.to_string()).collect();
    assert_eq!(
        rows, ours,
        "docs/ONNX.md's operator table and import::OPERATORS differ"
    );
}

fn tensor_i8(name: &str, dims: &[usize], v: &[i8], uint: bool) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(if uint {
            DataType::Uint8
        } else {
            DataType::Int8
        } as i32),
        raw_data: Some(v.iter().map(|&x| x as u8).collect()),
        ..Default::default()
    }
}

/// x -> Q -> DQ -> Conv(DQ(int8 weights per channel), DQ(int32 bias)) -> Q -> DQ.
fn qdq_conv(weight_zp: i8, act_scales: usize) -> ModelProto {
    let (c, oc) = (3usize, 4usize);
    let codes: Vec<i8> = (0..oc * c * 9).map(|i| ((i * 37) % 255) as i8).collect();
    let bias: Vec<i32> = vec![100, -50, 0, 7];
    let mut inits = vec![
        tensor_f32(
            "xs",
            &[act_scales][..(act_scales > 1) as usize],
            &vec![0.02; act_scales],
        ),
        tensor_i8(
            "xz",
            &[act_scales][..(act_scales > 1) as usize],
            &vec![-128i8; act_scales],
            true,
        ),
        tensor_i8("wq", &[oc, c, 3, 3], &codes, false),
        tensor_f32("ws", &[oc], &[0.01, 0.02, 0.005, 0.03]),
        tensor_i8("wz", &[oc], &[weight_zp; 4], false),
        tensor_f32("ys", &[], &[0.05]),
        tensor_i8("yz", &[], &[10], true),
    ];
    // The bias as int32 with scale xs * ws per channel.
    inits.push(TensorProto {
        name: Some("bq".into()),
        dims: vec![oc as i64],
        data_type: Some(DataType::Int32 as i32),
        int32_data: bias,
        ..Default::default()
    });
    inits.push(tensor_f32("bs", &[oc], &[0.0002, 0.0004, 0.0001, 0.0006]));
    model(
        vec![
            node("QuantizeLinear", "qx", &["x", "xs", "xz"], &["xq"], vec![]),
            node(
                "DequantizeLinear",
                "dqx",
                &["xq", "xs", "xz"],
                &["xd"],
                vec![],
            ),
            node(
                "DequantizeLinear",
                "dqw",
                &["wq", "ws", "wz"],
                &["wd"],
                vec![attr_i("axis", 0)],
            ),
            node(
                "DequantizeLinear",
                "dqb",
                &["bq", "bs"],
                &["bd"],
                vec![attr_i("axis", 0)],
            ),
            node(
                "Conv",
                "conv",
                &["xd", "wd", "bd"],
                &["c"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node("QuantizeLinear", "qy", &["c", "ys", "yz"], &["cq"], vec![]),
            node(
                "DequantizeLinear",
                "dqy",
                &["cq", "ys", "yz"],
                &["y"],
                vec![],
            ),
        ],
        inits,
        &[1, c, 5, 5],
        13,
    )
}

#[test]
fn a_qdq_convolution_runs_on_the_integer_kernels_with_the_files_scales() {
    let ctx = common::ctx();
    // Symmetric weights, and weights with a zero point of 3 in every channel.
    for wz in [0i8, 3] {
        let onnx = import(&qdq_conv(wz, 1), None).unwrap();
        assert!(onnx.is_quantized());
        assert_eq!(onnx.graph().nodes.len(), 1);
        let q = onnx.qmodel(ctx).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x = rand_vec(3 * 25, &mut rng);
        let xt = input_tensor(ctx, &onnx, &x);
        let mut enc = ctx.encoder("qdq");
        let y = q.forward(ctx, &mut enc, &xt).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let got = onnx
            .from_model_output(&y.read_blocking::<f32>(ctx).unwrap())
            .unwrap();
        // The file's integer meaning: x rounded to its codes (zero point 128), the
        // integer convolution of the codes with the int32 bias added, rounded to the
        // output's codes (scale 0.05, zero point 10) as ONNX's QLinearConv does
        // (`reference::requant_onnx`). The float meaning (dequantized operands, a float
        // convolution, QuantizeLinear) agrees except at rounding ties: these round
        // scales make exact ties in real arithmetic (e.g. 875 * 0.02 * 0.03 / 0.05 =
        // 10.5), where f32 scales tip either rule one way or the other.
        let xi: Vec<f32> = x
            .iter()
            .map(|&v| ((v / 0.02).round_ties_even() + 128.0).clamp(0.0, 255.0) - 128.0)
            .collect();
        let xq: Vec<f32> = xi.iter().map(|&v| v * 0.02).collect();
        let codes: Vec<f32> = (0..4 * 27)
            .map(|i| f32::from(((i * 37) % 255) as u8 as i8))
            .collect();
        let ws = [0.01f32, 0.02, 0.005, 0.03];
        let wd: Vec<f32> = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| (c - f32::from(wz)) * ws[i / 27])
            .collect();
        let bd = [100.0 * 0.0002f32, -50.0 * 0.0004, 0.0, 7.0 * 0.0006];
        let wi: Vec<f32> = codes.iter().map(|&c| c - f32::from(wz)).collect();
        let acc = conv_ref(&xi, [1, 3, 5, 5], &wi, 4, 3, 1, &[100.0, -50.0, 0.0, 7.0]);
        let float = conv_ref(&xq, [1, 3, 5, 5], &wd, 4, 3, 1, &bd);
        assert_eq!(got.len(), acc.len());
        let mut ties = 0;
        for (i, (&g, &a)) in got.iter().zip(&acc).enumerate() {
            let code = (g / 0.05).round_ties_even() as i32 + 10;
            let want = requant_onnx(a as i32, 0.02, ws[i / 25], 0.05, 10, 0, 255);
            assert_eq!(code, want, "y[{i}] = {g}, accumulator {a}");
            // The float meaning: the same code, or one off at a tie.
            let v = float[i] / 0.05;
            let float_code = (v.round_ties_even() + 10.0).clamp(0.0, 255.0) as i32;
            if float_code != code {
                assert!((v - v.floor() - 0.5).abs() < 1e-5, "y[{i}]: {v} is no tie");
                ties += 1;
            }
        }
        assert!(ties <= 5, "{ties} ties");
        // Run again: the same bits (the integer kernels are exact).
        let mut enc = ctx.encoder("qdq again");
        let y2 = q.forward(ctx, &mut enc, &xt).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let again = onnx
            .from_model_output(&y2.read_blocking::<f32>(ctx).unwrap())
            .unwrap();
        assert_eq!(again, got);
    }
    // What the integer kernels cannot take is named.
    let e = import(&qdq_conv(0, 3), None).unwrap_err();
    assert!(e.to_string().contains("per tensor only"), "{e}");
    // A float model has no scales of its own; a DequantizeLinear of an activation needs
    // its QuantizeLinear.
    let m = model(
        vec![node("DequantizeLinear", "dq", &["x", "s"], &["y"], vec![])],
        vec![tensor_f32("s", &[], &[0.1])],
        &[1, 3, 4, 4],
        13,
    );
    assert!(import_err(&m).contains("no QuantizeLinear quantized"));
}

/// ConvTranspose (kernel = stride, 2x3, with a bias) twice, their concatenation along
/// channels and a nearest 2x upsampling, against an NCHW reference written from the
/// operators' definitions.
#[test]
fn transposed_convolution_concat_and_resize_match_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let (c, h, w) = (3usize, 4usize, 5usize);
    let x = rand_vec(c * h * w, &mut rng);
    let w1 = rand_vec(c * 2 * 2 * 3, &mut rng);
    let b1 = [0.5f32, -0.25];
    let w2 = rand_vec(c * 2 * 3, &mut rng);
    let m = model(
        vec![
            node(
                "ConvTranspose",
                "up1",
                &["x", "w1", "b1"],
                &["a"],
                vec![
                    attr_ints("strides", &[2, 3]),
                    attr_ints("kernel_shape", &[2, 3]),
                ],
            ),
            node(
                "ConvTranspose",
                "up2",
                &["x", "w2"],
                &["b"],
                vec![attr_ints("strides", &[2, 3])],
            ),
            node(
                "Concat",
                "cat",
                &["a", "b"],
                &["ab"],
                vec![attr_i("axis", 1)],
            ),
            node("Resize", "resize", &["ab", "", "scales"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("w1", &[c, 2, 2, 3], &w1),
            tensor_f32("b1", &[2], &b1),
            tensor_f32("w2", &[c, 1, 2, 3], &w2),
            tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]),
        ],
        &[1, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, [1, 3, 16, 30]);
    let got = run(ctx, &onnx, &x);
    // ConvTranspose with kernel = stride: y[m, i*2+dy, j*3+dx] = b[m] + sum_c x[c,i,j] W[c,m,dy,dx].
    let ct = |wt: &[f32], mo: usize, b: &[f32]| -> Vec<f64> {
        let mut y = vec![0.0f64; mo * 2 * h * 3 * w];
        for mm in 0..mo {
            for i in 0..2 * h {
                for j in 0..3 * w {
                    let (si, sj, dy, dx) = (i / 2, j / 3, i % 2, j % 3);
                    let mut s = f64::from(*b.get(mm).unwrap_or(&0.0));
                    for ci in 0..c {
                        s += f64::from(x[(ci * h + si) * w + sj])
                            * f64::from(wt[((ci * mo + mm) * 2 + dy) * 3 + dx]);
                    }
                    y[(mm * 2 * h + i) * 3 * w + j] = s;
                }
            }
        }
        y
    };
    let mut ab = ct(&w1, 2, &b1);
    ab.extend(ct(&w2, 1, &[]));
    let (oh, ow) = (2 * h, 3 * w);
    let mut want = Vec::new();
    for ch in 0..3 {
        for i in 0..2 * oh {
            for j in 0..2 * ow {
                want.push(ab[(ch * oh + i / 2) * ow + j / 2]);
            }
        }
    }
    check(&got, &want, 1e-6);
    // Shapes the layers cannot take are named.
    let bad = model(
        vec![node(
            "ConvTranspose",
            "up",
            &["x", "w1"],
            &["y"],
            vec![
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[3, 3, 3, 3]),
            ],
        )],
        vec![tensor_f32("w1", &[c, 2, 2, 3], &w1)],
        &[1, c, h, w],
        13,
    );
    // Pads beyond the kernel's reach crop the output: against ONNX's definition,
    // y[m, oy, ox] = sum x[c, i, j] W[c, m, ky, kx] over i * 2 + ky - 3 = oy and
    // j * 2 + kx - 3 = ox.
    let cropped = import(&bad, None).unwrap();
    let (oh, ow) = ((h - 1) * 2 + 2 - 6, (w - 1) * 2 + 3 - 6);
    assert_eq!(cropped.output().shape, [1, 2, oh, ow]);
    let mut want = vec![0.0f64; 2 * oh * ow];
    for mm in 0..2 {
        for ci in 0..c {
            for i in 0..h {
                for j in 0..w {
                    for ky in 0..2 {
                        for kx in 0..3 {
                            let (oy, ox) = ((i * 2 + ky) as i64 - 3, (j * 2 + kx) as i64 - 3);
                            if (0..oh as i64).contains(&oy) && (0..ow as i64).contains(&ox) {
                                want[(mm * oh + oy as usize) * ow + ox as usize] +=
                                    f64::from(x[(ci * h + i) * w + j])
                                        * f64::from(w1[((ci * 2 + mm) * 2 + ky) * 3 + kx]);
                            }
                        }
                    }
                }
            }
        }
    }
    check(&run(ctx, &cropped, &x), &want, 1e-6);
    let mut gone = bad.clone();
    gone.graph.as_mut().unwrap().node[0].attribute[1] = attr_ints("pads", &[4, 3, 4, 3]);
    let e = import_err(&gone);
    assert!(e.contains("'up'") && e.contains("leave no output"), "{e}");
    let bad = model(
        vec![node("Resize", "r", &["x", "", "s"], &["y"], vec![])],
        vec![tensor_f32("s", &[4], &[1.0, 1.0, 1.5, 2.0])],
        &[1, c, h, w],
        13,
    );
    // A nearest resize by 1.5 (not a repetition): a gather per resized axis, each output
    // pixel the input pixel ONNX's half_pixel/round_prefer_floor formula picks.
    let frac = import(&bad, None).unwrap();
    assert!(frac
        .graph()
        .nodes
        .iter()
        .any(|n| matches!(n.layer, Layer::Gather { axis: 1, .. })));
    let pick = |o: usize, s: f64, n: usize| -> usize {
        let v = (o as f64 + 0.5) / s - 0.5;
        let r = if v - v.floor() == 0.5 {
            v.floor()
        } else {
            v.round()
        };
        r.clamp(0.0, n as f64 - 1.0) as usize
    };
    let (oh, ow) = (h * 3 / 2, w * 2);
    let want: Vec<f64> = (0..c * oh * ow)
        .map(|e| {
            let (ch, y, z) = (e / (oh * ow), e / ow % oh, e % ow);
            f64::from(x[(ch * h + pick(y, 1.5, h)) * w + pick(z, 2.0, w)])
        })
        .collect();
    check(&run(ctx, &frac, &x), &want, 0.0);
}

/// Hard swish spelled as `x * clip(x + 3, 0, 6) / 6` and as `x * HardSigmoid(x)`
/// becomes one layer, with the operator's values.
#[test]
fn spelled_out_hard_swish_becomes_one_layer() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let x: Vec<f32> = rand_vec(2 * 3 * 4 * 5, &mut rng)
        .iter()
        .map(|v| v * 5.0)
        .collect();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| f64::from(v) * (f64::from(v) + 3.0).clamp(0.0, 6.0) / 6.0)
        .collect();
    let four = model(
        vec![
            node("Add", "plus3", &["x", "three"], &["a"], vec![]),
            node("Clip", "relu6", &["a", "zero", "six"], &["b"], vec![]),
            node("Mul", "times", &["x", "b"], &["c"], vec![]),
            node("Div", "div6", &["c", "six"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("three", &[], &[3.0]),
            tensor_f32("zero", &[], &[0.0]),
            tensor_f32("six", &[], &[6.0]),
        ],
        &[2, 3, 4, 5],
        13,
    );
    let two = model(
        vec![
            node(
                "HardSigmoid",
                "hs",
                &["x"],
                &["a"],
                vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)],
            ),
            node("Mul", "times", &["x", "a"], &["y"], vec![]),
        ],
        vec![],
        &[2, 3, 4, 5],
        13,
    );
    for m in [four, two] {
        let onnx = import(&m, None).unwrap();
        assert_eq!(onnx.graph().nodes.len(), 1, "{:?}", onnx.graph());
        check(&run(ctx, &onnx, &x), &want, 1e-6);
    }
}

/// A zero `Pad` before a convolution folds into its padding: the same output, bit for
/// bit, as the convolution padding by itself; any other pad is a pad layer (checked against the host).
#[test]
fn a_zero_pad_folds_into_the_next_convolution() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let (c, h, w, oc) = (3usize, 6usize, 7usize, 4usize);
    let x = rand_vec(c * h * w, &mut rng);
    let wt = rand_vec(oc * c * 9, &mut rng);
    let inits = || {
        vec![
            tensor_f32("w", &[oc, c, 3, 3], &wt),
            tensor_i64("pads", &[8], &[0, 0, 1, 2, 0, 0, 2, 1]),
        ]
    };
    let padded = model(
        vec![
            node("Pad", "pad", &["x", "pads"], &["p"], vec![]),
            node(
                "Conv",
                "conv",
                &["p", "w"],
                &["y"],
                vec![attr_ints("pads", &[1, 0, 0, 1])],
            ),
        ],
        inits(),
        &[1, c, h, w],
        13,
    );
    let direct = model(
        vec![node(
            "Conv",
            "conv",
            &["x", "w"],
            &["y"],
            vec![attr_ints("pads", &[2, 2, 2, 2])],
        )],
        inits(),
        &[1, c, h, w],
        13,
    );
    let (a, b) = (
        import(&padded, None).unwrap(),
        import(&direct, None).unwrap(),
    );
    assert_eq!(a.graph().nodes.len(), 1);
    assert_eq!(a.output().shape, b.output().shape);
    assert_eq!(run(ctx, &a, &x), run(ctx, &b, &x));
    let want = conv_ref(&x, [1, c, h, w], &wt, oc, 3, 2, &[0.0; 4]);
    check(&run(ctx, &a, &x), &want, 1e-6);
    // A Pad read by anything but a convolution, reflect padding, and padded channels:
    // pad layers (the convolution folds no pad then), against the host.
    let m = model(
        vec![
            node("Pad", "pad", &["x", "pads"], &["p"], vec![]),
            node("Relu", "relu", &["p"], &["y"], vec![]),
        ],
        inits(),
        &[1, c, h, w],
        13,
    );
    let relu = import(&m, None).unwrap();
    assert!(matches!(relu.graph().nodes[0].layer, Layer::Pad { .. }));
    let (ph, pw) = (h + 3, w + 3);
    let want: Vec<f64> = (0..c * ph * pw)
        .map(|e| {
            let (ch, y, z) = (e / (ph * pw), e / pw % ph, e % pw);
            let inside = (1..h + 1).contains(&y) && (2..w + 2).contains(&z);
            if inside {
                f64::from(x[(ch * h + y - 1) * w + z - 2].max(0.0))
            } else {
                0.0
            }
        })
        .collect();
    check(&run(ctx, &relu, &x), &want, 1e-7);
    let mut reflect = padded.clone();
    reflect.graph.as_mut().unwrap().node[0]
        .attribute
        .push(AttributeProto {
            name: Some("mode".into()),
            s: Some(b"reflect".to_vec()),
            r#type: Some(AttributeType::String as i32),
            ..Default::default()
        });
    let r = import(&reflect, None).unwrap();
    assert!(r.graph().nodes.iter().any(|n| matches!(
        n.layer,
        Layer::Pad {
            mode: PadMode::Reflect,
            ..
        }
    )));
    let mut chans = padded.clone();
    chans.graph.as_mut().unwrap().initializer[1] =
        tensor_i64("pads", &[8], &[0, 1, 0, 0, 0, 0, 0, 0]);
    let err = import_err(&chans);
    assert!(err.contains("channels") || err.contains("W has"), "{err}");
    // Negative pads crop: one row off the top, one column off the right, a row padded
    // at the bottom with the edge, a column at the left.
    let mut crop = m.clone();
    let g = crop.graph.as_mut().unwrap();
    g.initializer[1] = tensor_i64("pads", &[8], &[0, 0, -1, 1, 0, 0, 1, -1]);
    g.node[0].attribute.push(AttributeProto {
        name: Some("mode".into()),
        s: Some(b"edge".to_vec()),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    });
    let cropped = import(&crop, None).unwrap();
    assert_eq!(cropped.output().shape, [1, c, h, w]);
    let want: Vec<f64> = (0..c * h * w)
        .map(|e| {
            let (ch, y, z) = (e / (h * w), e / w % h, e % w);
            // Output row y is input row y + 1 (the last one repeated); column z is input
            // column z - 1 (the first one repeated).
            let (sy, sz) = ((y + 1).min(h - 1), z.saturating_sub(1));
            f64::from(x[(ch * h + sy) * w + sz].max(0.0))
        })
        .collect();
    check(&run(ctx, &cropped, &x), &want, 0.0);
}

/// The edges on the GPU (`record_input`, `record_output`: NCHW <-> NHWC transposes, a
/// flatten of NCHW features, f32 or f16) give the CPU rearrangement's values exactly.
#[test]
fn edges_on_the_gpu_match_the_host_rearrangement() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let (c, h, w, oc) = (3usize, 5usize, 4usize, 6usize);
    let wt = rand_vec(oc * c * 9, &mut rng);
    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w"],
                &["c"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node("Flatten", "flat", &["c"], &["y"], vec![]),
        ],
        vec![tensor_f32("w", &[oc, c, 3, 3], &wt)],
        &[2, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(2 * c * h * w, &mut rng);
    for dtype in [DType::F32, DType::F16] {
        let model = onnx.model(ctx, dtype).unwrap();
        // The host path.
        let host = run_as(ctx, &onnx, &model, &x, dtype);
        // The GPU path: the NCHW tensor in, the ONNX-layout tensor out.
        let xg = Tensor::from_slice(ctx, &onnx.input().shape, &x).unwrap();
        let xin = Tensor::zeros(ctx, &onnx.input().model_shape, dtype).unwrap();
        let yout = Tensor::zeros(ctx, &onnx.output().shape, DType::F32).unwrap();
        let mut enc = ctx.encoder("edges");
        onnx.record_input(ctx, &mut enc, &xg, &xin).unwrap();
        let y = model.forward(ctx, &mut enc, &xin).unwrap();
        onnx.record_output(ctx, &mut enc, y, &yout).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        assert_eq!(yout.read_blocking::<f32>(ctx).unwrap(), host, "{dtype:?}");
    }
    // Tensors of other shapes are refused with both shapes named.
    let bad = Tensor::zeros(ctx, &[2, c, h, w + 1], DType::F32).unwrap();
    let xin = Tensor::zeros(ctx, &onnx.input().model_shape, DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = onnx.record_input(ctx, &mut enc, &bad, &xin).unwrap_err();
    assert!(e.to_string().contains("[2, 3, 5, 5]"), "{e}");
}

/// The host path of a model in `dtype`: rearranged on the CPU, the output read as f32.
fn run_as(
    ctx: &Context,
    onnx: &OnnxImport,
    model: &wgpu_quant::model::Model,
    x: &[f32],
    dtype: DType,
) -> Vec<f32> {
    let xin = onnx.to_model_input(x).unwrap();
    let t = if dtype == DType::F16 {
        let h: Vec<half::f16> = xin.iter().map(|&v| half::f16::from_f32(v)).collect();
        Tensor::from_slice(ctx, &onnx.input().model_shape, &h).unwrap()
    } else {
        Tensor::from_slice(ctx, &onnx.input().model_shape, &xin).unwrap()
    };
    let mut enc = ctx.encoder("host");
    let y = model.forward(ctx, &mut enc, &t).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    let v: Vec<f32> = if dtype == DType::F16 {
        y.read_blocking::<half::f16>(ctx)
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect()
    } else {
        y.read_blocking::<f32>(ctx).unwrap()
    };
    onnx.from_model_output(&v).unwrap()
}

/// ONNX Runtime's dynamic format on a small graph: x -> DynamicQuantizeLinear ->
/// MatMulInteger (u8 weights per column, with zero points) -> Cast -> Mul by
/// Mul(x_scale, w_scale) -> Add bias. It imports as a linear layer of the dequantized
/// weights, and `qmodel` runs it as a dynamic INT8 model that equals ONNX's arithmetic
/// (quantize x per tensor, exact int accumulation, f32 scale product and bias) to f32
/// rounding. The same nodes outside the pattern are refused, naming it.
#[test]
fn ort_dynamic_matmul_runs_as_dynamic_int8() {
    let ctx = common::ctx();
    let (k, n) = (6usize, 5usize);
    let codes: Vec<i8> = (0..k * n)
        .map(|i| ((i * 53 + 11) % 256) as u8 as i8)
        .collect();
    let wz: Vec<i8> = (0..n).map(|j| (120 + j * 3) as u8 as i8).collect();
    let ws: Vec<f32> = (0..n).map(|j| 0.01 + 0.003 * j as f32).collect();
    let bias: Vec<f32> = (0..n).map(|j| 0.1 * j as f32 - 0.2).collect();
    let m = model(
        vec![
            node(
                "DynamicQuantizeLinear",
                "dql",
                &["x"],
                &["xq", "xs", "xz"],
                vec![],
            ),
            node("Mul", "scales", &["xs", "ws"], &["s"], vec![]),
            node(
                "MatMulInteger",
                "mmi",
                &["xq", "wq", "xz", "wz"],
                &["acc"],
                vec![],
            ),
            node("Cast", "cast", &["acc"], &["accf"], vec![attr_i("to", 1)]),
            node("Mul", "scale", &["accf", "s"], &["y0"], vec![]),
            node("Add", "bias", &["y0", "b"], &["y"], vec![]),
        ],
        vec![
            tensor_i8("wq", &[k, n], &codes, true),
            tensor_i8("wz", &[n], &wz, true),
            tensor_f32("ws", &[n], &ws),
            tensor_f32("b", &[n], &bias),
        ],
        &[2, k],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.dynamic_quantized(), 1);
    let q = onnx.qmodel(ctx).unwrap();
    let x: Vec<f32> = (0..2 * k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let t = Tensor::from_slice(ctx, &[2, k], &x).unwrap();
    let mut enc = ctx.encoder("dyn");
    let y = q.forward(ctx, &mut enc, &t).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    let got = y.read_blocking::<f32>(ctx).unwrap();
    // ONNX's arithmetic: DynamicQuantizeLinear over the whole tensor, then per element
    // f32(acc) * f32(xs * ws[j]) + b[j].
    let (lo, hi) = x
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let xs = (hi - lo) / 255.0;
    let xz = (0.0 - lo / xs).round_ties_even().clamp(0.0, 255.0) as i32;
    let xq: Vec<i32> = x
        .iter()
        .map(|&v| ((v / xs).round_ties_even() as i32 + xz).clamp(0, 255))
        .collect();
    for r in 0..2 {
        for j in 0..n {
            let acc: i32 = (0..k)
                .map(|p| {
                    (xq[r * k + p] - xz)
                        * (i32::from(codes[p * n + j] as u8) - i32::from(wz[j] as u8))
                })
                .sum();
            let want = acc as f32 * (xs * ws[j]) + bias[j];
            let g = got[r * n + j];
            assert!(
                (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                "[{r}, {j}]: {g} vs {want}"
            );
        }
    }
    // A MatMulInteger whose output is not scaled back (an int32 graph output) is outside
    // the pattern: the import fails at its DynamicQuantizeLinear, naming the pattern.
    let lone = model(
        vec![
            node(
                "DynamicQuantizeLinear",
                "dql",
                &["x"],
                &["xq", "xs", "xz"],
                vec![],
            ),
            node(
                "MatMulInteger",
                "mmi",
                &["xq", "wq", "xz", "wz"],
                &["acc"],
                vec![],
            ),
        ],
        vec![
            tensor_i8("wq", &[k, n], &codes, true),
            tensor_i8("wz", &[n], &wz, true),
        ],
        &[2, k],
        13,
    );
    let e = import_err(&lone);
    assert!(
        e.contains("'dql' (DynamicQuantizeLinear)") && e.contains("ONNX Runtime's dynamic format"),
        "{e}"
    );
}

/// `ReduceMean`/`ReduceMax` over the spatial axes (PyTorch's `x.mean((2, 3))`), with and
/// without keepdims, axes as an attribute (opset 13) or an input (opset 18): global
/// pools, equal to the mean and max on the host; other axes are refused by name.
#[test]
fn spatial_reductions_become_global_pools() {
    let ctx = common::ctx();
    let (c, h, w) = (5usize, 3usize, 4usize);
    let x: Vec<f32> = (0..c * h * w)
        .map(|i| ((i * 29) % 17) as f32 * 0.25 - 2.0)
        .collect();
    let mean: Vec<f64> = (0..c)
        .map(|ch| {
            x[ch * h * w..(ch + 1) * h * w]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / (h * w) as f64
        })
        .collect();
    let max: Vec<f64> = (0..c)
        .map(|ch| {
            x[ch * h * w..(ch + 1) * h * w]
                .iter()
                .fold(f64::MIN, |m, &v| m.max(f64::from(v)))
        })
        .collect();
    for (op, opset, keep, want) in [
        ("ReduceMean", 13, 1, &mean),
        ("ReduceMean", 18, 0, &mean),
        ("ReduceMax", 13, 0, &max),
        ("ReduceMax", 18, 1, &max),
    ] {
        let (inputs, inits, mut attrs) = if opset >= 18 {
            (
                vec!["x", "axes"],
                vec![tensor_i64("axes", &[2], &[-1, 2])],
                vec![],
            )
        } else {
            (vec!["x"], vec![], vec![attr_ints("axes", &[2, 3])])
        };
        attrs.push(attr_i("keepdims", keep));
        let m = model(
            vec![node(op, "reduce", &inputs, &["y"], attrs)],
            inits,
            &[1, c, h, w],
            opset,
        );
        let onnx = import(&m, None).unwrap();
        let want_shape: Vec<usize> = if keep == 1 {
            vec![1, c, 1, 1]
        } else {
            vec![1, c]
        };
        assert_eq!(
            onnx.output().shape,
            want_shape,
            "{op} opset {opset} keepdims {keep}"
        );
        let got = run(ctx, &onnx, &x);
        check(&got, want, 1e-6);
    }
    let m = model(
        vec![node(
            "ReduceMean",
            "channels",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[1])],
        )],
        vec![],
        &[1, c, h, w],
        13,
    );
    // The mean over the channels of an NCHW activation: a row mean of its NHWC storage.
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, 1, h, w]);
    let want: Vec<f64> = (0..h * w)
        .map(|p| (0..c).map(|ch| f64::from(x[ch * h * w + p])).sum::<f64>() / c as f64)
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-6);
    // Over the width (the last ONNX axis, not the stored one): copied into ONNX order.
    let m = model(
        vec![node(
            "ReduceMean",
            "rows",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[-1]), attr_i("keepdims", 0)],
        )],
        vec![],
        &[1, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, c, h]);
    let want: Vec<f64> = x
        .chunks(w)
        .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() / w as f64)
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-6);
}

/// A TensorFlow-style graph: an NHWC input transposed to NCHW for a Conv, transposed back
/// to NHWC at the end. Both transposes move no data (the graph stores NHWC), the input and
/// output are read and written in their own NHWC order, and the result equals the
/// reference. A transpose that would reorder data is refused by name.
#[test]
fn nchw_nhwc_transposes_move_no_data() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let (h, w, c, oc) = (5usize, 6usize, 3usize, 4usize);
    let x_nhwc = rand_vec(h * w * c, &mut rng);
    let wt = rand_vec(oc * c * 9, &mut rng);
    let b = rand_vec(oc, &mut rng);
    let m = model(
        vec![
            node(
                "Transpose",
                "to_nchw",
                &["x"],
                &["xc"],
                vec![attr_ints("perm", &[0, 3, 1, 2])],
            ),
            node(
                "Conv",
                "conv",
                &["xc", "w", "b"],
                &["yc"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "Transpose",
                "to_nhwc",
                &["yc"],
                &["y"],
                vec![attr_ints("perm", &[0, 2, 3, 1])],
            ),
        ],
        vec![
            tensor_f32("w", &[oc, c, 3, 3], &wt),
            tensor_f32("b", &[oc], &b),
        ],
        &[1, h, w, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(
        onnx.input().model_shape,
        vec![1, h, w, c],
        "the NHWC input is stored as it is"
    );
    assert_eq!(onnx.output().shape, vec![1, h, w, oc]);
    assert_eq!(onnx.graph().nodes.len(), 1, "only the convolution runs");
    let got = run(ctx, &onnx, &x_nhwc);
    let x_nchw = wgpu_quant::ops::conv::nhwc_to_nchw(&x_nhwc, [1, h, w, c]);
    let y_nchw = conv_ref(&x_nchw, [1, c, h, w], &wt, oc, 3, 1, &b);
    let want = wgpu_quant::ops::conv::nchw_to_nhwc(&y_nchw, [1, oc, h, w]);
    check(&got, &want, 1e-5);

    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["yc"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "Transpose",
                "swap_hw",
                &["yc"],
                &["y"],
                vec![attr_ints("perm", &[0, 1, 3, 2])],
            ),
        ],
        vec![
            tensor_f32("w", &[oc, c, 3, 3], &wt),
            tensor_f32("b", &[oc], &b),
        ],
        &[1, c, h, w],
        13,
    );
    // A transpose that reorders data (H and W swapped) runs as a permute layer.
    let onnx = import(&m, None).unwrap();
    assert_eq!(
        onnx.graph().nodes.len(),
        2,
        "the convolution and the permute"
    );
    assert_eq!(onnx.output().shape, vec![1, oc, w, h]);
    let x_nchw = rand_vec(c * h * w, &mut rng);
    let got = run(ctx, &onnx, &x_nchw);
    let y = conv_ref(&x_nchw, [1, c, h, w], &wt, oc, 3, 1, &b);
    let want = wgpu_quant::reference::layout::permute(&y, &[1, oc, h, w], &[0, 1, 3, 2]);
    check(&got, &want, 1e-5);
}

/// Transposes that move data: 3-D activations permuted twice and a softmax over the last
/// axis, and a 4-D image whose channels and width swap before a convolution, in FP32,
/// FP16 and static INT8, against a reference from the operators' definitions.
#[test]
fn data_moving_transposes_run_as_permute_layers() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(34);
    // [2, 6, 5] -> [5, 2, 6] -> [2, 5, 6] -> softmax over the last axis.
    let x = rand_vec(60, &mut rng);
    let m = model(
        vec![
            node(
                "Transpose",
                "t1",
                &["x"],
                &["a"],
                vec![attr_ints("perm", &[2, 0, 1])],
            ),
            node(
                "Transpose",
                "t2",
                &["a"],
                &["b"],
                vec![attr_ints("perm", &[1, 0, 2])],
            ),
            node("Softmax", "sm", &["b"], &["y"], vec![attr_i("axis", -1)]),
        ],
        vec![],
        &[2, 6, 5],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![2, 5, 6]);
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let a = wgpu_quant::reference::layout::permute(&x64, &[2, 6, 5], &[2, 0, 1]);
    let t = wgpu_quant::reference::layout::permute(&a, &[5, 2, 6], &[1, 0, 2]);
    let want = softmax_rows(&t, 6);
    check(&run(ctx, &onnx, &x), &want, 1e-6);
    let half = onnx.model(ctx, DType::F16).unwrap();
    check(&run_as(ctx, &onnx, &half, &x, DType::F16), &want, 2e-3);

    // A 4-D activation that is not an image (attention's [B, heads, T, d]) stays in
    // ONNX order: [2, 3, 4] viewed as [2, 3, 2, 2], heads and T swapped, flattened rows.
    let m = model(
        vec![
            node("Reshape", "split", &["x", "s4"], &["h"], vec![]),
            node(
                "Transpose",
                "swap",
                &["h"],
                &["t"],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            ),
            node("Reshape", "rows", &["t", "s2"], &["r"], vec![]),
            node("Softmax", "sm", &["r"], &["y"], vec![attr_i("axis", -1)]),
        ],
        vec![
            tensor_i64("s4", &[4], &[2, 3, 2, 2]),
            tensor_i64("s2", &[2], &[2, 12]),
        ],
        &[2, 3, 4],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(24, &mut rng);
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let t = wgpu_quant::reference::layout::permute(&x64, &[2, 3, 2, 2], &[0, 2, 1, 3]);
    let want = softmax_rows(&t, 12);
    check(&run(ctx, &onnx, &x), &want, 1e-6);

    // [1, 3, 4, 5] NCHW -> perm [0, 3, 2, 1] -> [1, 5, 4, 3] -> 1x1 convolution (5 -> 2).
    let (wt, bias) = (rand_vec(10, &mut rng), rand_vec(2, &mut rng));
    let m = model(
        vec![
            node(
                "Transpose",
                "swap",
                &["x"],
                &["xt"],
                vec![attr_ints("perm", &[0, 3, 2, 1])],
            ),
            node("Conv", "conv", &["xt", "w", "b"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("w", &[2, 5, 1, 1], &wt),
            tensor_f32("b", &[2], &bias),
        ],
        &[1, 3, 4, 5],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, 2, 4, 3]);
    let x = rand_vec(60, &mut rng);
    let xt = wgpu_quant::reference::layout::permute(&x, &[1, 3, 4, 5], &[0, 3, 2, 1]);
    let want = conv_ref(&xt, [1, 5, 4, 3], &wt, 2, 1, 0, &bias);
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    let half = onnx.model(ctx, DType::F16).unwrap();
    check(&run_as(ctx, &onnx, &half, &x, DType::F16), &want, 5e-3);
    // Static INT8, calibrated on the input itself: within a few 8-bit steps.
    let xm = onnx.to_model_input(&x).unwrap();
    let batch = Tensor::from_slice(ctx, &onnx.input().model_shape, &xm).unwrap();
    check(&int8_output(ctx, &onnx, &batch, QMode::Static), &want, 0.05);
}

/// The INT8 model of `onnx` calibrated (MinMax) on `batch` itself, run on it: the output
/// in ONNX layout.
fn int8_output(ctx: &Context, onnx: &OnnxImport, batch: &Tensor, mode: QMode) -> Vec<f32> {
    let opts = PtqOptions::new(ObserverKind::MinMax, mode);
    let q = onnx
        .quantize(ctx, std::slice::from_ref(batch), &opts)
        .unwrap();
    let mut enc = ctx.encoder("int8");
    let y = q.forward(ctx, &mut enc, batch).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    onnx.from_model_output(&y.read_blocking::<f32>(ctx).unwrap())
        .unwrap()
}

/// A graph with two outputs, listed in the file's order: two convolution heads on the
/// input. `output()` is the one the last layer computes (what `forward` returns); the
/// other is read by its layer's name, from the float model and from the INT8 model
/// (which keeps an output no layer reads in f32), each against the reference.
#[test]
fn several_outputs_are_read_by_layer_name() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    let (c, h, w) = (3usize, 6usize, 5usize);
    let x = rand_vec(c * h * w, &mut rng);
    let (w1, b1) = (rand_vec(4 * c * 9, &mut rng), rand_vec(4, &mut rng));
    let (w2, b2) = (rand_vec(2 * c, &mut rng), rand_vec(2, &mut rng));
    let mut m = model(
        vec![
            node(
                "Conv",
                "head_a",
                &["x", "w1", "b1"],
                &["a"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node("Conv", "head_b", &["x", "w2", "b2"], &["b"], vec![]),
        ],
        vec![
            tensor_f32("w1", &[4, c, 3, 3], &w1),
            tensor_f32("b1", &[4], &b1),
            tensor_f32("w2", &[2, c, 1, 1], &w2),
            tensor_f32("b2", &[2], &b2),
        ],
        &[1, c, h, w],
        13,
    );
    m.graph.as_mut().unwrap().output = vec![value_info("a", &[]), value_info("b", &[])];
    let onnx = import(&m, None).unwrap();
    let names: Vec<&str> = onnx.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        onnx.output().name,
        "b",
        "the last layer's output is what forward returns"
    );
    assert_eq!(onnx.outputs()[0].node, "head_a");
    let want_a = conv_ref(&x, [1, c, h, w], &w1, 4, 3, 1, &b1);
    let want_b = conv_ref(&x, [1, c, h, w], &w2, 2, 1, 0, &b2);
    let xt = input_tensor(ctx, &onnx, &x);

    let fp32 = onnx.model(ctx, DType::F32).unwrap();
    let mut enc = ctx.encoder("two");
    let yb = fp32.forward(ctx, &mut enc, &xt).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    let ya = fp32.output("head_a").unwrap();
    check(
        &onnx
            .from_output(0, &ya.read_blocking::<f32>(ctx).unwrap())
            .unwrap(),
        &want_a,
        1e-5,
    );
    check(
        &onnx
            .from_model_output(&yb.read_blocking::<f32>(ctx).unwrap())
            .unwrap(),
        &want_b,
        1e-5,
    );

    let opts = PtqOptions::new(ObserverKind::MinMax, QMode::Static);
    let int8 = onnx
        .quantize(ctx, std::slice::from_ref(&xt), &opts)
        .unwrap();
    let mut enc = ctx.encoder("two-int8");
    let yb = int8.forward(ctx, &mut enc, &xt).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    let ya = int8
        .output("head_a")
        .expect("an output no layer reads stays f32");
    check(
        &onnx
            .from_output(0, &ya.read_blocking::<f32>(ctx).unwrap())
            .unwrap(),
        &want_a,
        0.05,
    );
    check(
        &onnx
            .from_model_output(&yb.read_blocking::<f32>(ctx).unwrap())
            .unwrap(),
        &want_b,
        0.05,
    );
    assert!(onnx.from_output(2, &[]).is_err());
}

/// Row-major f64 matrix products `a[b, m, k] x b[b, k, n]` (`b` broadcast when one).
fn bmm(
    a: &[f64],
    b: &[f64],
    batch: usize,
    (m, k, n): (usize, usize, usize),
    bb: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for t in 0..batch {
        let (ao, bo) = (t * m * k, if bb == 1 { 0 } else { t * k * n });
        for i in 0..m {
            for j in 0..n {
                out[(t * m + i) * n + j] =
                    (0..k).map(|p| a[ao + i * k + p] * b[bo + p * n + j]).sum();
            }
        }
    }
    out
}

fn softmax_rows(x: &[f64], n: usize) -> Vec<f64> {
    x.chunks(n)
        .flat_map(|r| {
            let mx = r.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = r.iter().map(|v| (v - mx).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

/// Multi-head self-attention as exporters write it: linear projections of a sequence
/// (`MatMul` of a 3-D activation by a constant), heads split by `Reshape`/`Transpose`,
/// `Q K^T` and `P V` as batched `MatMul`s of two activations, a softmax over the last
/// axis, heads merged back and an output projection. FP32, FP16 and static INT8 against
/// an f64 reference from the operators' definitions.
#[test]
fn multi_head_attention_runs_with_batched_matmuls() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(35);
    let (t, d, heads, out) = (5usize, 6usize, 2usize, 3usize);
    let hd = d / heads;
    let x = rand_vec(t * d, &mut rng);
    let (wq, wk, wv) = (
        rand_vec(d * d, &mut rng),
        rand_vec(d * d, &mut rng),
        rand_vec(d * d, &mut rng),
    );
    let wo = rand_vec(d * out, &mut rng);
    let split = |v: &str, o: &str| {
        vec![
            node(
                "Reshape",
                &format!("{o}_r"),
                &[v, "heads"],
                &[&format!("{o}4")],
                vec![],
            ),
            node(
                "Transpose",
                &format!("{o}_t"),
                &[&format!("{o}4")],
                &[o],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            ),
        ]
    };
    let mut nodes = vec![
        node("MatMul", "q_proj", &["x", "wq"], &["q"], vec![]),
        node("MatMul", "k_proj", &["x", "wk"], &["k"], vec![]),
        node("MatMul", "v_proj", &["x", "wv"], &["v"], vec![]),
    ];
    nodes.extend(split("q", "qh"));
    nodes.extend(split("k", "kh"));
    nodes.extend(split("v", "vh"));
    nodes.extend([
        node(
            "Transpose",
            "k_t",
            &["kh"],
            &["kt"],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        ),
        node("MatMul", "scores", &["qh", "kt"], &["s"], vec![]),
        node("Softmax", "attn", &["s"], &["p"], vec![attr_i("axis", 3)]),
        node("MatMul", "mix", &["p", "vh"], &["o"], vec![]),
        node(
            "Transpose",
            "merge_t",
            &["o"],
            &["ot"],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        ),
        node("Reshape", "merge", &["ot", "seq"], &["m"], vec![]),
        node("MatMul", "o_proj", &["m", "wo"], &["y"], vec![]),
    ]);
    let m = model(
        nodes,
        vec![
            tensor_f32("wq", &[d, d], &wq),
            tensor_f32("wk", &[d, d], &wk),
            tensor_f32("wv", &[d, d], &wv),
            tensor_f32("wo", &[d, out], &wo),
            tensor_i64("heads", &[4], &[1, t as i64, heads as i64, hd as i64]),
            tensor_i64("seq", &[3], &[1, t as i64, d as i64]),
        ],
        &[1, t, d],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, t, out]);
    let count = |f: fn(&Layer) -> bool| onnx.graph().nodes.iter().filter(|n| f(&n.layer)).count();
    assert_eq!(
        count(|l| matches!(l, Layer::MatMul { .. })),
        2,
        "Q K^T and P V"
    );
    assert_eq!(
        count(|l| matches!(l, Layer::Linear { .. })),
        4,
        "the projections"
    );
    // Three head splits, K^T, the merge, and a copy of the merged heads' view into rows
    // of d for the output projection.
    assert_eq!(count(|l| matches!(l, Layer::Permute { .. })), 6);
    let f = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let x64 = f(&x);
    let proj = |w: &[f32]| bmm(&x64, &f(w), 1, (t, d, d), 1);
    let heads_of =
        |v: &[f64]| wgpu_quant::reference::layout::permute(v, &[1, t, heads, hd], &[0, 2, 1, 3]);
    let (qh, kh, vh) = (
        heads_of(&proj(&wq)),
        heads_of(&proj(&wk)),
        heads_of(&proj(&wv)),
    );
    let kt = wgpu_quant::reference::layout::permute(&kh, &[1, heads, t, hd], &[0, 1, 3, 2]);
    let s = bmm(&qh, &kt, heads, (t, hd, t), heads);
    let p = softmax_rows(&s, t);
    let o = bmm(&p, &vh, heads, (t, t, hd), heads);
    let merged = wgpu_quant::reference::layout::permute(&o, &[1, heads, t, hd], &[0, 2, 1, 3]);
    let want = bmm(&merged, &f(&wo), 1, (t, d, out), 1);

    check(&run(ctx, &onnx, &x), &want, 1e-5);
    let half = onnx.model(ctx, DType::F16).unwrap();
    check(&run_as(ctx, &onnx, &half, &x, DType::F16), &want, 5e-3);
    let batch = Tensor::from_slice(ctx, &onnx.input().model_shape, &x).unwrap();
    for mode in [QMode::Static, QMode::Dynamic] {
        check(&int8_output(ctx, &onnx, &batch, mode), &want, 0.05);
    }
}

/// `Slice` of activations: attention's Q, K and V taken from one projection as
/// PaddleOCR's recognizer does it (`Reshape` to `[B, T, 3, heads, d]`, `Transpose`
/// `[2, 0, 3, 1, 4]`, `Slice` on axis 0, `Squeeze`), and a channel block of an NCHW image
/// (stored NHWC) before a convolution, against the reference in FP32.
#[test]
fn slices_of_activations_run_as_crop_layers() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(36);
    let (t, heads, hd) = (4usize, 2usize, 3usize);
    let d = heads * hd;
    let x = rand_vec(t * 3 * d, &mut rng);
    let mut nodes = vec![
        node("Reshape", "split", &["x", "s5"], &["r"], vec![]),
        node(
            "Transpose",
            "heads",
            &["r"],
            &["h"],
            vec![attr_ints("perm", &[2, 0, 3, 1, 4])],
        ),
    ];
    for name in ["q", "k", "v"] {
        let (s, e) = (format!("{name}_s"), format!("{name}_e"));
        nodes.push(node(
            "Slice",
            &format!("{name}_slice"),
            &["h", &s, &e, "ax0"],
            &[&format!("{name}5")],
            vec![],
        ));
        nodes.push(node(
            "Squeeze",
            &format!("{name}_sq"),
            &[&format!("{name}5"), "ax0"],
            &[name],
            vec![],
        ));
    }
    nodes.extend([
        node(
            "Transpose",
            "k_t",
            &["k"],
            &["kt"],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        ),
        node("MatMul", "scores", &["q", "kt"], &["s"], vec![]),
        node("Softmax", "attn", &["s"], &["p"], vec![attr_i("axis", -1)]),
        node("MatMul", "mix", &["p", "v"], &["y"], vec![]),
    ]);
    let mut inits = vec![
        tensor_i64("s5", &[5], &[1, t as i64, 3, heads as i64, hd as i64]),
        tensor_i64("ax0", &[1], &[0]),
    ];
    for (k, name) in ["q", "k", "v"].iter().enumerate() {
        inits.push(tensor_i64(&format!("{name}_s"), &[1], &[k as i64]));
        inits.push(tensor_i64(&format!("{name}_e"), &[1], &[k as i64 + 1]));
    }
    let m = model(nodes, inits, &[1, t, 3 * d], 13);
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, heads, t, hd]);
    let crops = onnx
        .graph()
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::Crop { .. }))
        .count();
    assert_eq!(crops, 3, "Q, K and V");
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let h = wgpu_quant::reference::layout::permute(&x64, &[1, t, 3, heads, hd], &[2, 0, 3, 1, 4]);
    let part = |k: usize| h[k * heads * t * hd..(k + 1) * heads * t * hd].to_vec();
    let (q, k, v) = (part(0), part(1), part(2));
    let kt = wgpu_quant::reference::layout::permute(&k, &[1, heads, t, hd], &[0, 1, 3, 2]);
    let p = softmax_rows(&bmm(&q, &kt, heads, (t, hd, t), heads), t);
    let want = bmm(&p, &v, heads, (t, t, hd), heads);
    check(&run(ctx, &onnx, &x), &want, 1e-5);

    // Channels 2..5 of an NCHW image, then a 1x1 convolution.
    let (c, hh, ww) = (6usize, 3usize, 4usize);
    let (wt, b) = (rand_vec(2 * 3, &mut rng), rand_vec(2, &mut rng));
    let m = model(
        vec![
            node("Slice", "ch", &["x", "cs", "ce", "ax1"], &["xs"], vec![]),
            node("Conv", "conv", &["xs", "w", "b"], &["y"], vec![]),
        ],
        vec![
            tensor_i64("cs", &[1], &[2]),
            tensor_i64("ce", &[1], &[5]),
            tensor_i64("ax1", &[1], &[1]),
            tensor_f32("w", &[2, 3, 1, 1], &wt),
            tensor_f32("b", &[2], &b),
        ],
        &[1, c, hh, ww],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(c * hh * ww, &mut rng);
    let xs =
        wgpu_quant::reference::layout::crop(&x, &[1, c, hh, ww], &[0, 2, 0, 0], &[1, 3, hh, ww]);
    let want = conv_ref(&xs, [1, 3, hh, ww], &wt, 2, 1, 0, &b);
    check(&run(ctx, &onnx, &x), &want, 1e-5);
}

/// A layer normalization over the last axis spelled out as older exporters write it
/// (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, then Mul gamma and Add beta)
/// becomes one layer-norm layer carrying gamma and beta; ONNX `LayerNormalization`
/// (opset 17) too, also over the last axis of an NCHW activation (stored NHWC, so moved
/// into ONNX order first). FP32, FP16 and static INT8 against the f64 reference. A step
/// of the pattern read by anything else is refused, naming the pattern.
#[test]
fn layer_norms_become_one_layer() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let (c, eps) = (7usize, 1e-5f32);
    let gamma: Vec<f32> = rand_vec(c, &mut rng).iter().map(|v| 1.0 + v).collect();
    let beta = rand_vec(c, &mut rng);
    let g64: Vec<f64> = gamma.iter().map(|&v| f64::from(v)).collect();
    let b64: Vec<f64> = beta.iter().map(|&v| f64::from(v)).collect();
    let axes = || vec![attr_ints("axes", &[-1])];
    let spelled = |tail: Vec<NodeProto>| {
        let mut nodes = vec![
            node("ReduceMean", "mean", &["x"], &["m"], axes()),
            node("Sub", "center", &["x", "m"], &["d"], vec![]),
            node("Pow", "square", &["d", "two"], &["p"], vec![]),
            node("ReduceMean", "var", &["p"], &["v"], axes()),
            node("Add", "plus_eps", &["v", "eps"], &["ve"], vec![]),
            node("Sqrt", "std", &["ve"], &["s"], vec![]),
            node("Div", "norm", &["d", "s"], &["n"], vec![]),
        ];
        nodes.extend(tail);
        model(
            nodes,
            vec![
                tensor_f32("two", &[], &[2.0]),
                tensor_f32("eps", &[], &[eps]),
                tensor_f32("gamma", &[c], &gamma),
                tensor_f32("beta", &[c], &beta),
            ],
            &[2, 5, c],
            12,
        )
    };
    let m = spelled(vec![
        node("Mul", "scale", &["n", "gamma"], &["g"], vec![]),
        node("Add", "shift", &["g", "beta"], &["y"], vec![]),
    ]);
    let onnx = import(&m, None).unwrap();
    let layers: Vec<&Layer> = onnx.graph().nodes.iter().map(|n| &n.layer).collect();
    assert_eq!(
        layers,
        [&Layer::LayerNorm {
            eps,
            gamma: Some(gamma.clone()),
            beta: Some(beta.clone()),
        }]
    );
    let x: Vec<f32> = rand_vec(2 * 5 * c, &mut rng)
        .iter()
        .map(|v| 2.0 * v + 0.3)
        .collect();
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let want =
        wgpu_quant::reference::layer_norm_f64(&x64, c, Some(&g64), Some(&b64), f64::from(eps));
    check(&run(ctx, &onnx, &x), &want, 1e-6);
    let half = onnx.model(ctx, DType::F16).unwrap();
    check(&run_as(ctx, &onnx, &half, &x, DType::F16), &want, 2e-3);
    let batch = Tensor::from_slice(ctx, &onnx.input().model_shape, &x).unwrap();
    check(&int8_output(ctx, &onnx, &batch, QMode::Static), &want, 0.02);

    // LayerNormalization over W of an NCHW input [1, 3, 2, 7] (stored NHWC inside).
    let m = model(
        vec![node(
            "LayerNormalization",
            "ln",
            &["x", "gamma", "beta"],
            &["y"],
            vec![attr_f("epsilon", 0.01)],
        )],
        vec![
            tensor_f32("gamma", &[c], &gamma),
            tensor_f32("beta", &[c], &beta),
        ],
        &[1, 3, 2, c],
        17,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, 3, 2, c]);
    let x = rand_vec(6 * c, &mut rng);
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let want = wgpu_quant::reference::layer_norm_f64(&x64, c, Some(&g64), Some(&b64), 0.01);
    check(&run(ctx, &onnx, &x), &want, 1e-6);

    // A step of the pattern read by another operator: the steps up to it become layers
    // (row means, a broadcast Sub, a product), and the variance per row comes out.
    let m = spelled(vec![node("Relu", "relu", &["v"], &["y"], vec![])]);
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![2, 5, 1]);
    assert!(onnx
        .graph()
        .nodes
        .iter()
        .any(|n| n.layer == Layer::RowReduce(wgpu_quant::ops::eltwise::Reduce::Mean)));
    let x = rand_vec(2 * 5 * c, &mut rng);
    let var: Vec<f64> = x
        .chunks(c)
        .map(|r| {
            let m = r.iter().map(|&v| f64::from(v)).sum::<f64>() / c as f64;
            r.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / c as f64
        })
        .collect();
    check(&run(ctx, &onnx, &x), &var, 1e-6);
    // Scale of the wrong length, and the training outputs, are refused.
    let m = model(
        vec![node(
            "LayerNormalization",
            "ln",
            &["x", "gamma"],
            &["y"],
            vec![],
        )],
        vec![tensor_f32("gamma", &[c - 1], &gamma[1..])],
        &[2, 5, c],
        17,
    );
    let e = import_err(&m);
    assert!(e.contains("'ln'") && e.contains("Scale [6]"), "{e}");
}

/// A reshape that mixes an NCHW activation's channels with its pixels ([1, 3, 1, 4] to
/// [1, 3, 4], as a recognizer's head writes it) copies it into ONNX order first.
#[test]
fn reshapes_across_the_stored_order_copy_into_onnx_order() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let m = model(
        vec![
            node("Reshape", "squash", &["x", "s"], &["r"], vec![]),
            node("Softmax", "sm", &["r"], &["y"], vec![attr_i("axis", -1)]),
        ],
        vec![tensor_i64("s", &[3], &[1, 3, 4])],
        &[1, 3, 1, 4],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert!(matches!(onnx.graph().nodes[0].layer, Layer::Permute { .. }));
    let x = rand_vec(12, &mut rng);
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    check(&run(ctx, &onnx, &x), &softmax_rows(&x64, 4), 1e-6);
    // Squeeze likewise.
    let m = model(
        vec![
            node(
                "Squeeze",
                "sq",
                &["x"],
                &["r"],
                vec![attr_ints("axes", &[2])],
            ),
            node("Softmax", "sm", &["r"], &["y"], vec![attr_i("axis", -1)]),
        ],
        vec![],
        &[1, 3, 1, 4],
        12,
    );
    let onnx = import(&m, None).unwrap();
    check(&run(ctx, &onnx, &x), &softmax_rows(&x64, 4), 1e-6);
}

/// A QDQ file that quantizes a convolution's output and then multiplies it by a
/// constant (Conv -> Q -> DQ -> Mul -> Q -> DQ, as ONNX Runtime writes a scale after a
/// convolution) rounds twice; the product stays a layer of its own between the codes
/// (folding it into the convolution would drop the first rounding and give one value
/// two quantizations). Checked against the file's meaning computed from the
/// convolution's own (exact) codes.
#[test]
fn a_constant_product_after_quantized_codes_keeps_both_roundings() {
    let ctx = common::ctx();
    let base = qdq_conv(0, 1);
    let m = qdq_tail(
        &base,
        vec![node("Mul", "scale", &["y", "k"], &["m"], vec![])],
        "m",
        vec![tensor_f32("k", &[], &[-1.3])],
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.graph().nodes.len(), 2, "the product is its own layer");
    let mut rng = rand::rngs::StdRng::seed_from_u64(47);
    let x = rand_vec(3 * 25, &mut rng);
    let conv = run_qmodel(ctx, &import(&base, None).unwrap(), &x);
    let got = run_qmodel(ctx, &onnx, &x);
    // The file: the convolution's values (codes * 0.05), times -1.3, quantized to u8
    // with scale 0.07 and zero point 128.
    for (i, (&c, &g)) in conv.iter().zip(&got).enumerate() {
        let v = c * -1.3 / 0.07;
        let want = (v.round_ties_even() + 128.0).clamp(0.0, 255.0);
        let code = (g / 0.07).round_ties_even() + 128.0;
        let tie = (v - v.floor() - 0.5).abs() < 1e-4;
        assert!(
            code == want || (tie && (code - want).abs() == 1.0),
            "out[{i}]: code {code}, the file's {want} (conv value {c})"
        );
    }
}

/// `base` (a QDQ file ending in value `y`) with `nodes` appended, their result `last`
/// quantized to u8 with scale 0.07 and zero point 128 and dequantized into the output.
fn qdq_tail(
    base: &ModelProto,
    nodes: Vec<NodeProto>,
    last: &str,
    inits: Vec<TensorProto>,
) -> ModelProto {
    let mut m = base.clone();
    let g = m.graph.as_mut().unwrap();
    g.node.extend(nodes);
    g.node.push(node(
        "QuantizeLinear",
        "qm",
        &[last, "ms", "mz"],
        &["mq"],
        vec![],
    ));
    g.node.push(node(
        "DequantizeLinear",
        "dqm",
        &["mq", "ms", "mz"],
        &["out"],
        vec![],
    ));
    g.initializer.extend(inits);
    g.initializer.push(tensor_f32("ms", &[], &[0.07]));
    g.initializer.push(tensor_i8("mz", &[], &[-128], true));
    g.output[0].name = Some("out".into());
    m
}

/// The file's own INT8 model (`qmodel`) run on NCHW `x`; the output in ONNX layout.
fn run_qmodel(ctx: &Context, o: &OnnxImport, x: &[f32]) -> Vec<f32> {
    let q = o.qmodel(ctx).unwrap();
    let xt =
        Tensor::from_slice(ctx, &o.input().model_shape, &o.to_model_input(x).unwrap()).unwrap();
    let mut enc = ctx.encoder("qdq");
    let y = q.forward(ctx, &mut enc, &xt).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    o.from_model_output(&y.read_blocking::<f32>(ctx).unwrap())
        .unwrap()
}

/// A QDQ file may leave a value in float between quantized ones (ONNX Runtime does,
/// after a spelled-out hard swish before a max pool): the layer writes f32 and the next
/// one quantizes its result as the file says.
#[test]
fn a_value_the_file_leaves_in_float_is_written_in_f32() {
    let ctx = common::ctx();
    let base = qdq_conv(0, 1);
    let m = qdq_tail(
        &base,
        vec![
            node("Mul", "scale", &["y", "k"], &["f"], vec![]),
            node(
                "MaxPool",
                "pool",
                &["f"],
                &["p"],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[1, 1]),
                ],
            ),
        ],
        "p",
        vec![tensor_f32("k", &[], &[0.37])],
    );
    let onnx = import(&m, None).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(53);
    let x = rand_vec(3 * 25, &mut rng);
    let conv = run_qmodel(ctx, &import(&base, None).unwrap(), &x);
    let got = run_qmodel(ctx, &onnx, &x);
    // conv values [1, 4, 5, 5] * 0.37 (in f32), 2x2 max pool, quantized (0.07, 128).
    assert_eq!(got.len(), 4 * 4 * 4);
    for c in 0..4 {
        for i in 0..4 {
            for j in 0..4 {
                let at = |di: usize, dj: usize| conv[c * 25 + (i + di) * 5 + j + dj] * 0.37;
                let v = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)) / 0.07;
                let want = (v.round_ties_even() + 128.0).clamp(0.0, 255.0);
                let g = got[c * 16 + i * 4 + j];
                let code = (g / 0.07).round_ties_even() + 128.0;
                let tie = (v - v.floor() - 0.5).abs() < 1e-4;
                assert!(
                    code == want || (tie && (code - want).abs() == 1.0),
                    "out[{c}, {i}, {j}]: code {code}, the file's {want}"
                );
            }
        }
    }
}

/// A per-channel scale and shift of a row-major activation (a transformer's layer scale,
/// a bias Add after a matrix product left unfused) is one channel-affine layer; a Mul
/// then an Add fold into it. FP32, FP16 and static INT8 against the reference.
#[test]
fn per_channel_maps_of_sequences_are_one_layer() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(59);
    let c = 6usize;
    let (g, b) = (rand_vec(c, &mut rng), rand_vec(c, &mut rng));
    let m = model(
        vec![
            node("Mul", "scale", &["x", "g"], &["s"], vec![]),
            node("Add", "shift", &["s", "b"], &["y"], vec![]),
        ],
        vec![tensor_f32("g", &[c], &g), tensor_f32("b", &[1, 1, c], &b)],
        &[2, 3, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.graph().nodes.len(), 1);
    assert!(matches!(
        onnx.graph().nodes[0].layer,
        Layer::ChannelAffine { .. }
    ));
    let x = rand_vec(2 * 3 * c, &mut rng);
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(e, &v)| f64::from(v * g[e % c]) + f64::from(b[e % c]))
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-6);
    let half = onnx.model(ctx, DType::F16).unwrap();
    check(&run_as(ctx, &onnx, &half, &x, DType::F16), &want, 2e-3);
    let batch = Tensor::from_slice(ctx, &onnx.input().model_shape, &x).unwrap();
    check(&int8_output(ctx, &onnx, &batch, QMode::Static), &want, 0.02);
}

/// A matrix product whose weights a QDQ file leaves in float (a node excluded from
/// quantization) runs in f32 between the file's codes: x rounded to its codes, times the
/// float weights, the result rounded to the output's codes.
#[test]
fn a_float_matmul_in_a_quantized_file_runs_between_the_codes() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(61);
    let (k, n) = (7usize, 5usize);
    let w = rand_vec(k * n, &mut rng);
    let m = model(
        vec![
            node("QuantizeLinear", "qx", &["x", "xs", "xz"], &["xq"], vec![]),
            node(
                "DequantizeLinear",
                "dqx",
                &["xq", "xs", "xz"],
                &["xd"],
                vec![],
            ),
            node("MatMul", "mm", &["xd", "w"], &["y"], vec![]),
            node("QuantizeLinear", "qy", &["y", "ys", "yz"], &["yq"], vec![]),
            node(
                "DequantizeLinear",
                "dqy",
                &["yq", "ys", "yz"],
                &["out"],
                vec![],
            ),
        ],
        vec![
            tensor_f32("xs", &[], &[0.01]),
            tensor_i8("xz", &[], &[-128], true),
            tensor_f32("w", &[k, n], &w),
            tensor_f32("ys", &[], &[0.03]),
            tensor_i8("yz", &[], &[0], true),
        ],
        &[3, k],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert!(onnx.is_quantized());
    let x = rand_vec(3 * k, &mut rng);
    let got = run_qmodel(ctx, &onnx, &x);
    for r in 0..3 {
        for j in 0..n {
            let v: f32 = (0..k)
                .map(|i| {
                    let c = ((x[r * k + i] / 0.01).round_ties_even() + 128.0).clamp(0.0, 255.0);
                    (c - 128.0) * 0.01 * w[i * n + j]
                })
                .sum::<f32>()
                / 0.03;
            // u8 codes with zero point 0: negative products clamp to 0.
            let want = v.round_ties_even().clamp(0.0, 255.0);
            let code = (got[r * n + j] / 0.03).round_ties_even();
            let tie = (v - v.floor() - 0.5).abs() < 1e-3;
            assert!(
                code == want || (tie && (code - want).abs() == 1.0),
                "y[{r}, {j}]: code {code}, the file's {want} ({v})"
            );
        }
    }
}

/// Elementwise math of activations (Sqrt, Pow, Exp, Log, Abs, Neg, Reciprocal, Erf,
/// Gelu, a constant divided by an activation) and broadcasting between activations as
/// normalizations spelled out by exporters use them: an RMS norm, a channels-first layer
/// norm of an NCHW activation, GELU through Erf, a row statistic minus the row and the
/// model input times itself. FP32 against f64 references.
#[test]
fn elementwise_math_and_broadcasts_of_activations() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(47);
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (t, c, eps) = (5usize, 6usize, 1e-6f32);
    let axes = || vec![attr_ints("axes", &[-1])];

    // RMS norm: x / sqrt(mean(x^2) + eps) * gamma.
    let gamma: Vec<f32> = rand_vec(c, &mut rng).iter().map(|v| 1.0 + v).collect();
    let m = model(
        vec![
            node("Pow", "sq", &["x", "two"], &["p"], vec![]),
            node("ReduceMean", "ms", &["p"], &["m"], axes()),
            node("Add", "eps", &["m", "eps"], &["me"], vec![]),
            node("Sqrt", "rms", &["me"], &["r"], vec![]),
            node("Div", "norm", &["x", "r"], &["n"], vec![]),
            node("Mul", "scale", &["n", "gamma"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("two", &[], &[2.0]),
            tensor_f32("eps", &[1], &[eps]),
            tensor_f32("gamma", &[c], &gamma),
        ],
        &[2, t, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(2 * t * c, &mut rng);
    let want: Vec<f64> = x
        .chunks(c)
        .flat_map(|r| {
            let ms = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c as f64;
            let rms = (ms + f64::from(eps)).sqrt();
            r.iter()
                .zip(&gamma)
                .map(move |(&v, &g)| f64::from(v) / rms * f64::from(g))
                .collect::<Vec<_>>()
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-6);

    // A channels-first layer norm of NCHW [1, C, H, W] (ConvNeXt's): the statistics over
    // axis 1, which is the stored (NHWC) last axis.
    let (h, w) = (3usize, 4usize);
    let ax1 = || vec![attr_ints("axes", &[1])];
    let m = model(
        vec![
            node("ReduceMean", "mean", &["x"], &["m"], ax1()),
            node("Sub", "center", &["x", "m"], &["d"], vec![]),
            node("Mul", "square", &["d", "d"], &["p"], vec![]),
            node("ReduceMean", "var", &["p"], &["v"], ax1()),
            node("Add", "plus_eps", &["v", "eps"], &["ve"], vec![]),
            node("Sqrt", "std", &["ve"], &["s"], vec![]),
            node("Div", "y", &["d", "s"], &["y"], vec![]),
        ],
        vec![tensor_f32("eps", &[], &[eps])],
        &[1, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(c * h * w, &mut rng);
    let mut want = vec![0f64; c * h * w];
    for p in 0..h * w {
        let col: Vec<f64> = (0..c).map(|ch| f64::from(x[ch * h * w + p])).collect();
        let mean = col.iter().sum::<f64>() / c as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
        for ch in 0..c {
            want[ch * h * w + p] = (col[ch] - mean) / (var + f64::from(eps)).sqrt();
        }
    }
    check(&run(ctx, &onnx, &x), &want, 1e-5);

    // GELU spelled with Erf, and the Gelu operator (opset 20) in both forms.
    let x: Vec<f32> = rand_vec(2 * t * c, &mut rng)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let gelu = |v: f64| v * (1.0 + libm::erf(v / 2f64.sqrt())) / 2.0;
    let gelu_tanh = |v: f64| {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        v * (1.0 + (k * (v + 0.044715 * v.powi(3))).tanh()) / 2.0
    };
    let m = model(
        vec![
            node("Div", "scaled", &["x", "sqrt2"], &["a"], vec![]),
            node("Erf", "erf", &["a"], &["e"], vec![]),
            node("Add", "one_plus", &["e", "one"], &["o"], vec![]),
            node("Mul", "times_x", &["x", "o"], &["g"], vec![]),
            node("Mul", "half", &["g", "half"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("sqrt2", &[], &[std::f32::consts::SQRT_2]),
            tensor_f32("one", &[], &[1.0]),
            tensor_f32("half", &[], &[0.5]),
        ],
        &[2, t, c],
        13,
    );
    let want: Vec<f64> = f64s(&x).into_iter().map(gelu).collect();
    check(&run(ctx, &import(&m, None).unwrap(), &x), &want, 1e-6);
    for (approx, f) in [("none", &gelu as &dyn Fn(f64) -> f64), ("tanh", &gelu_tanh)] {
        let mut g = node("Gelu", "gelu", &["x"], &["y"], vec![]);
        g.attribute.push(AttributeProto {
            name: Some("approximate".into()),
            s: Some(approx.as_bytes().to_vec()),
            r#type: Some(AttributeType::String as i32),
            ..Default::default()
        });
        let m = model(vec![g], vec![], &[2, t, c], 20);
        let want: Vec<f64> = f64s(&x).into_iter().map(f).collect();
        check(&run(ctx, &import(&m, None).unwrap(), &x), &want, 1e-6);
    }
}

/// Maps of activations, whole constant tensors as operands (either first; an NCHW
/// activation's constant moved to NHWC), and operands that do not broadcast. FP32
/// against f64 references.
#[test]
fn maps_and_constant_tensors_of_activations() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(53);
    let (t, c) = (5usize, 6usize);
    let axes = || vec![attr_ints("axes", &[-1])];
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    // Maps of activations, a constant over an activation, the row mean minus the row
    // (the broadcast operand first: b - a), and the input times itself.
    let m = model(
        vec![
            node("Abs", "abs", &["x"], &["a"], vec![]),
            node("Add", "plus1", &["a", "one"], &["a1"], vec![]),
            node("Log", "log", &["a1"], &["l"], vec![]),
            node("Sqrt", "sqrt", &["a1"], &["q"], vec![]),
            node("Reciprocal", "recip", &["q"], &["rq"], vec![]),
            node("Div", "two_over", &["two", "a1"], &["t2"], vec![]),
            node("Pow", "cube", &["x", "three"], &["x3"], vec![]),
            node("Exp", "exp", &["l"], &["ex"], vec![]),
            node("Neg", "neg", &["x3"], &["nx3"], vec![]),
            node("Mul", "xx", &["x", "x"], &["sq"], vec![]),
            node("ReduceMean", "mean", &["sq"], &["ms"], axes()),
            node("Sub", "mean_minus", &["ms", "sq"], &["dm"], vec![]),
            node("Add", "s1", &["dm", "rq"], &["s1"], vec![]),
            node("Add", "s2", &["s1", "t2"], &["s2"], vec![]),
            node("Add", "s3", &["s2", "nx3"], &["s3"], vec![]),
            node("Div", "s4", &["s3", "ex"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("one", &[], &[1.0]),
            tensor_f32("two", &[], &[2.0]),
            tensor_f32("three", &[], &[3.0]),
        ],
        &[2, t, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(2 * t * c, &mut rng);
    let want: Vec<f64> = x
        .chunks(c)
        .flat_map(|r| {
            let r = f64s(r);
            let ms = r.iter().map(|v| v * v).sum::<f64>() / c as f64;
            r.into_iter()
                .map(move |v| {
                    let a1 = v.abs() + 1.0;
                    let s = (ms - v * v) + 1.0 / a1.sqrt() + 2.0 / a1 - v.powi(3);
                    s / a1.ln().exp()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);

    // Whole constant tensors: a position embedding added to a sequence, a constant
    // minus and over it (the constant first), and an NCHW activation times a constant
    // that varies over its channels and rows (moved to the stored NHWC order).
    let pos = rand_vec(t * c, &mut rng);
    let num: Vec<f32> = rand_vec(c, &mut rng).iter().map(|v| v + 2.0).collect();
    let m = model(
        vec![
            node("Add", "pos", &["x", "pos"], &["a"], vec![]),
            node("Sub", "from", &["pos", "a"], &["b"], vec![]),
            node("Div", "over", &["num", "b"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("pos", &[1, t, c], &pos),
            tensor_f32("num", &[c], &num),
        ],
        &[2, t, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert!(onnx
        .graph()
        .nodes
        .iter()
        .all(|n| matches!(n.layer, Layer::BinaryConst { .. })));
    let x = rand_vec(2 * t * c, &mut rng);
    // pos - (x + pos) = -x, then num / -x.
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let p = f64::from(pos[i % (t * c)]);
            f64::from(num[i % c]) / (p - (f64::from(v) + p))
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    let (h, w) = (3usize, 4usize);
    let k = rand_vec(c * h, &mut rng);
    let m = model(
        vec![node("Mul", "scale", &["x", "k"], &["y"], vec![])],
        vec![tensor_f32("k", &[1, c, h, 1], &k)],
        &[1, c, h, w],
        13,
    );
    let x = rand_vec(c * h * w, &mut rng);
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) * f64::from(k[i / w]))
        .collect();
    check(&run(ctx, &import(&m, None).unwrap(), &x), &want, 1e-6);

    // Sum of activations and constants (two constants folded together), and Max/Min
    // with scalars as a clip.
    let m = model(
        vec![
            node("Sum", "sum", &["one", "two", "x", "x"], &["s"], vec![]),
            node("Max", "floor", &["s", "zero"], &["f"], vec![]),
            node("Min", "ceil", &["f", "three"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("one", &[], &[1.0]),
            tensor_f32("two", &[c], &[2.0; 6]),
            tensor_f32("zero", &[], &[0.0]),
            tensor_f32("three", &[], &[3.0]),
        ],
        &[2, t, c],
        13,
    );
    let x: Vec<f32> = rand_vec(2 * t * c, &mut rng)
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| (2.0 * f64::from(v) + 3.0).clamp(0.0, 3.0))
        .collect();
    check(&run(ctx, &import(&m, None).unwrap(), &x), &want, 1e-6);

    // Operands that do not broadcast over one run of axes, and a non-scalar exponent
    // (refused).
    let m = model(
        vec![
            node("ReduceMean", "mean", &["x"], &["m"], axes()),
            node("Slice", "first", &["x", "s0", "s1", "s2"], &["f"], vec![]),
            node("Mul", "outer", &["m", "f"], &["y"], vec![]),
        ],
        vec![
            tensor_i64("s0", &[1], &[0]),
            tensor_i64("s1", &[1], &[1]),
            tensor_i64("s2", &[1], &[1]),
        ],
        &[2, t, c],
        13,
    );
    // Each operand broadcasts over a different axis: both expanded, an outer product.
    let outer = import(&m, None).unwrap();
    let want: Vec<f64> = (0..2 * t * c)
        .map(|e| {
            let (b, i, j) = (e / (t * c), e / c % t, e % c);
            let row = &x[(b * t + i) * c..(b * t + i + 1) * c];
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / c as f64;
            mean * f64::from(x[b * t * c + j])
        })
        .collect();
    check(&run(ctx, &outer, &x), &want, 1e-6);
    let m = model(
        vec![node("Pow", "pow", &["x", "e"], &["y"], vec![])],
        vec![tensor_f32("e", &[2], &[2.0, 3.0])],
        &[2, t, c],
        13,
    );
    // A tensor exponent runs (`pow_with_tensor_and_activation_exponents`); this one does
    // not broadcast to the activation.
    let e = import_err(&m);
    assert!(
        e.contains("'pow' (Pow)") && e.contains("[2] do not broadcast"),
        "{e}"
    );
}

/// A class token concatenated in front of a sequence (a constant piece), a reflect pad
/// along the tokens, a slice walking back by 2, a broadcast to two batches, a softmax
/// over the token axis (not the last), a product and a mean over two axes: against the
/// same steps on the host, in FP32, and through the static INT8 model (float layers
/// between codes) within INT8's error.
#[test]
fn sequences_concatenate_pad_slice_expand_and_reduce_on_any_axis() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(61);
    let (t, c) = (4usize, 6usize);
    let cls = rand_vec(c, &mut rng);
    let m = model(
        vec![
            node(
                "Concat",
                "cat",
                &["cls", "x"],
                &["c"],
                vec![attr_i("axis", 1)],
            ),
            node(
                "Pad",
                "pad",
                &["c", "pads"],
                &["p"],
                vec![AttributeProto {
                    name: Some("mode".into()),
                    r#type: Some(AttributeType::String as i32),
                    s: Some(b"reflect".to_vec()),
                    ..Default::default()
                }],
            ),
            node(
                "Slice",
                "back2",
                &["p", "starts", "ends", "axes", "steps"],
                &["s"],
                vec![],
            ),
            node("Expand", "twice", &["s", "shape"], &["e"], vec![]),
            node(
                "Softmax",
                "over_tokens",
                &["e"],
                &["sm"],
                vec![attr_i("axis", 1)],
            ),
            node("Mul", "weigh", &["sm", "e"], &["w"], vec![]),
            node(
                "ReduceMean",
                "mean",
                &["w"],
                &["y"],
                vec![attr_ints("axes", &[0, 2])],
            ),
        ],
        vec![
            tensor_f32("cls", &[1, 1, c], &cls),
            tensor_i64("pads", &[6], &[0, 1, 0, 0, 1, 0]),
            tensor_i64("starts", &[1], &[6]),
            tensor_i64("ends", &[1], &[-100]),
            tensor_i64("axes", &[1], &[1]),
            tensor_i64("steps", &[1], &[-2]),
            tensor_i64("shape", &[3], &[2, 1, 1]),
        ],
        &[1, t, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(t * c, &mut rng);
    // The host: rows of the concatenation, reflected, every second from the end.
    let rows: Vec<&[f32]> = std::iter::once(cls.as_slice()).chain(x.chunks(c)).collect();
    let padded: Vec<&[f32]> = [1usize, 0, 1, 2, 3, 4, 3]
        .iter()
        .map(|&i| rows[i])
        .collect();
    let picked: Vec<&[f32]> = [6usize, 4, 2, 0].iter().map(|&i| padded[i]).collect();
    let mut want = vec![0.0f64; t];
    for j in 0..c {
        let col: Vec<f64> = picked.iter().map(|r| f64::from(r[j])).collect();
        let mx = col.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = col.iter().map(|v| (v - mx).exp()).sum();
        for (i, v) in col.iter().enumerate() {
            // Two identical batches: their mean is one batch's.
            want[i] += (v - mx).exp() / z * v / c as f64;
        }
    }
    assert_eq!(onnx.output().shape, vec![1, t, 1]);
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    // Static INT8 (the model input quantized, every layer here a float layer between
    // codes): within a few percent.
    let batch = Tensor::from_slice(
        ctx,
        &onnx.input().model_shape,
        &onnx.to_model_input(&x).unwrap(),
    )
    .unwrap();
    let q = int8_output(ctx, &onnx, &batch, QMode::Static);
    check(&q, &want, 0.05);
    // A vision transformer's head reads the class token as Gather(x, 0, axis 1), a
    // scalar index dropping the axis; -1 picks the last token.
    for (k, row) in [(0i64, cls.clone()), (-1, x[(t - 1) * c..].to_vec())] {
        let m = model(
            vec![
                node(
                    "Concat",
                    "cat",
                    &["cls", "x"],
                    &["c"],
                    vec![attr_i("axis", 1)],
                ),
                node(
                    "Gather",
                    "token",
                    &["c", "k"],
                    &["y"],
                    vec![attr_i("axis", 1)],
                ),
            ],
            vec![
                tensor_f32("cls", &[1, 1, c], &cls),
                tensor_i64("k", &[], &[k]),
            ],
            &[1, t, c],
            13,
        );
        let onnx = import(&m, None).unwrap();
        assert_eq!(onnx.output().shape, vec![1, c]);
        let want: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        check(&run(ctx, &onnx, &x), &want, 0.0);
    }
}

/// numpy broadcasting beyond one run of axes: an activation minus its mean over axes 0
/// and 2 (`[1, 3, 1]`, two separate runs), times a constant over the same two runs, plus
/// a row mean widened by a constant of another shape (`[2, 1, 4] + [2, 3, 1]`): the
/// operands are expanded (constants on the host), against the host in f64.
#[test]
fn general_broadcasts_expand_their_operands() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(62);
    let x = rand_vec(2 * 3 * 4, &mut rng);
    let c = rand_vec(3, &mut rng);
    let c2 = rand_vec(2 * 3, &mut rng);
    let m = model(
        vec![
            node(
                "ReduceMean",
                "m02",
                &["x"],
                &["m"],
                vec![attr_ints("axes", &[0, 2])],
            ),
            node("Sub", "centre", &["x", "m"], &["z"], vec![]),
            node("Mul", "scale", &["z", "c"], &["zc"], vec![]),
            node(
                "ReduceMean",
                "m1",
                &["x"],
                &["r"],
                vec![attr_ints("axes", &[1])],
            ),
            node("Add", "widen", &["r", "c2"], &["rw"], vec![]),
            node("Add", "sum", &["zc", "rw"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("c", &[1, 3, 1], &c),
            tensor_f32("c2", &[2, 3, 1], &c2),
        ],
        &[2, 3, 4],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert!(onnx
        .graph()
        .nodes
        .iter()
        .any(|n| matches!(n.layer, Layer::Expand { .. })));
    let at = |b: usize, i: usize, j: usize| f64::from(x[(b * 3 + i) * 4 + j]);
    let mut want = Vec::new();
    for b in 0..2 {
        for i in 0..3 {
            for j in 0..4 {
                let m02: f64 = (0..2)
                    .flat_map(|bb| (0..4).map(move |jj| (bb, jj)))
                    .map(|(bb, jj)| at(bb, i, jj))
                    .sum::<f64>()
                    / 8.0;
                let m1: f64 = (0..3).map(|ii| at(b, ii, j)).sum::<f64>() / 3.0;
                let zc = (at(b, i, j) - m02) * f64::from(c[i]);
                want.push(zc + m1 + f64::from(c2[b * 3 + i]));
            }
        }
    }
    check(&run(ctx, &onnx, &x), &want, 1e-6);
}

/// The model input as the second operand of a channel concatenation of images: copied
/// in its NHWC storage (a copy shaped as its NCHW view did not fit the concatenation).
#[test]
fn the_model_input_concatenates_as_a_later_operand() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(63);
    let m = model(
        vec![
            node("Relu", "relu", &["x"], &["r"], vec![]),
            node(
                "Concat",
                "cat",
                &["r", "x"],
                &["y"],
                vec![attr_i("axis", 1)],
            ),
        ],
        vec![],
        &[1, 2, 3, 4],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let x = rand_vec(24, &mut rng);
    let want: Vec<f64> = x
        .iter()
        .map(|&v| f64::from(v.max(0.0)))
        .chain(x.iter().map(|&v| f64::from(v)))
        .collect();
    assert_eq!(onnx.output().shape, vec![1, 4, 3, 4]);
    check(&run(ctx, &onnx, &x), &want, 0.0);
}

/// A model with BatchNormalization trains with quantization-aware training: the importer
/// folds the batch norm into the convolution, so the fake quantization sees the folded
/// weights (as the integer model will), and the trained graph converts to the integer
/// kernels.
#[test]
fn a_batchnorm_model_trains_with_qat_on_its_folded_convolution() {
    use wgpu_quant::ops::train::Sgd;
    use wgpu_quant::train::{Dataset, Optimizer, QatConfig, TrainConfig, Trainer};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (m, ..) = conv_bn_gemm(&mut rng, (8, 5, 5));
    let onnx = import(&m, None).unwrap();
    assert!(onnx.graph().nodes.iter().all(|n| matches!(
        n.layer,
        wgpu_quant::model::Layer::Conv { .. } | wgpu_quant::model::Layer::Linear { .. }
    )));
    // Three classes by which third of the image is bright.
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..48 {
        let class = (i % 3) as u32;
        for p in 0..75 {
            let row = p / 15;
            let bright = row * 3 / 5 == class as usize;
            x.push(if bright { 1.0 } else { 0.0 } + 0.05 * ((i * 7 + p) % 5) as f32);
        }
        y.push(class);
    }
    let data = Dataset::new(x, y, [5, 5, 3]).unwrap();
    let mut q = QatConfig::new(4, 4);
    q.calibration_per_class = 4;
    let cfg = TrainConfig {
        batch: 8,
        epochs: 8,
        optimizer: Optimizer::Sgd(Sgd {
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 0.0,
        }),
        qat: Some(q),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(ctx, onnx.graph(), onnx.weights(), [5, 5, 3], cfg).unwrap();
    let stats = t.fit(ctx, &data, |_| {}).unwrap();
    assert!(
        stats.last().unwrap().loss < 0.5 * stats[0].loss,
        "{stats:?}"
    );
    assert!(t.accuracy(ctx, &data).unwrap() >= 0.9);
    t.to_qmodel(ctx, &[8, 5, 5, 3]).unwrap();
}

/// The model input `x` (NCHW) as the imported model's input tensor.
fn input_tensor(ctx: &Context, onnx: &OnnxImport, x: &[f32]) -> Tensor {
    Tensor::from_slice(
        ctx,
        &onnx.input().model_shape,
        &onnx.to_model_input(x).unwrap(),
    )
    .unwrap()
}

/// The FP16 model of `onnx` on `x` (NCHW): the output in ONNX layout.
fn fp16_output(ctx: &Context, onnx: &OnnxImport, x: &[f32]) -> Vec<f32> {
    let half = onnx.model(ctx, DType::F16).unwrap();
    run_as(ctx, onnx, &half, x, DType::F16)
}

/// PRelu (a per-channel slope), Elu, Max of two activations, Softplus and Mean after a
/// convolution: FP32 against an f64 reference, FP16 within its storage budget, and the
/// INT8 graphs (static and dynamic post-training quantization) run and stay close to it.
#[test]
fn prelu_elu_max_softplus_mean_run_in_every_precision() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let (n, c, h, w, oc, k) = (2, 3, 6, 5, 4, 3);
    let x = rand_vec(n * c * h * w, &mut rng);
    let wt = rand_vec(oc * c * k * k, &mut rng);
    let b = rand_vec(oc, &mut rng);
    let slope = [0.25f32, -0.5, 1.5, 0.0];
    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("kernel_shape", &[3, 3]),
                ],
            ),
            node("PRelu", "prelu", &["c", "slope"], &["p"], vec![]),
            node("Elu", "elu", &["p"], &["e"], vec![attr_f("alpha", 0.7)]),
            node("Max", "max", &["e", "p"], &["mx"], vec![]),
            node("Softplus", "softplus", &["mx"], &["sp"], vec![]),
            node("Mean", "mean", &["sp", "p"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("w", &[oc, c, k, k], &wt),
            tensor_f32("b", &[oc], &b),
            tensor_f32("slope", &[oc, 1, 1], &slope),
        ],
        &[n, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let conv = conv_ref(&x, [n, c, h, w], &wt, oc, k, 1, &b);
    let want: Vec<f64> = conv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = f64::from(slope[(i / (h * w)) % oc]);
            let p = if v >= 0.0 { v } else { v * s };
            let e = if p >= 0.0 { p } else { 0.7 * p.exp_m1() };
            let mx = e.max(p);
            let sp = mx.max(0.0) + (-mx.abs()).exp().ln_1p();
            (sp + p) / 2.0
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);

    let xt = input_tensor(ctx, &onnx, &x);
    // FP16: f16 storage between the layers.
    check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    // INT8: the convolution in integers, the new layers in f32 between.
    for mode in [QMode::Static, QMode::Dynamic] {
        check(&int8_output(ctx, &onnx, &xt, mode), &want, 0.03);
    }
}

/// `Split` along the channels of an NCHW input (sizes from the `split` input, opset 13)
/// and along its width (`num_outputs`, opset 18: parts of 3 and 2), every part read by a
/// `Concat` in another order: the output is the input's parts moved, exactly.
#[test]
fn split_parts_are_the_input_slices() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let (n, c, h, w) = (2, 6, 4, 5);
    let x = rand_vec(n * c * h * w, &mut rng);
    let at = |b: usize, ch: usize, i: usize, j: usize| x[((b * c + ch) * h + i) * w + j];
    let axis = |a: i64| vec![attr_i("axis", a)];
    // Channels [0], [1, 2], [3, 4, 5] as c0, c1, c2; out = concat(c2, c0, c1).
    let m = model(
        vec![
            node(
                "Split",
                "split",
                &["x", "parts"],
                &["c0", "c1", "c2"],
                axis(1),
            ),
            node("Concat", "cat", &["c2", "c0", "c1"], &["y"], axis(1)),
        ],
        vec![tensor_i64("parts", &[3], &[1, 2, 3])],
        &[n, c, h, w],
        13,
    );
    let got = run(ctx, &import(&m, None).unwrap(), &x);
    let order = [3, 4, 5, 0, 1, 2];
    let mut want = Vec::new();
    for b in 0..n {
        for &ch in &order {
            for i in 0..h {
                for j in 0..w {
                    want.push(at(b, ch, i, j));
                }
            }
        }
    }
    assert_eq!(got, want, "channels split and concatenated");
    // Width 5 in num_outputs = 2 parts: [0, 3) and [3, 5); out = concat(p1, p0).
    let mut m = model(
        vec![
            node(
                "Split",
                "split",
                &["x"],
                &["p0", "p1"],
                vec![attr_i("axis", -1), attr_i("num_outputs", 2)],
            ),
            node("Concat", "cat", &["p1", "p0"], &["y"], axis(3)),
        ],
        vec![],
        &[n, c, h, w],
        18,
    );
    let got = run(ctx, &import(&m, None).unwrap(), &x);
    let cols = [3, 4, 0, 1, 2];
    let mut want = Vec::new();
    for b in 0..n {
        for ch in 0..c {
            for i in 0..h {
                for &j in &cols {
                    want.push(at(b, ch, i, j));
                }
            }
        }
    }
    assert_eq!(got, want, "width split by num_outputs");
    // Sizes that do not add up, and num_outputs that disagrees with the outputs: errors
    // naming the node.
    m.graph.as_mut().unwrap().node[0].attribute = vec![attr_i("axis", 3), attr_i("num_outputs", 3)];
    let e = import(&m, None).unwrap_err().to_string();
    assert!(
        e.contains("split") && e.contains("num_outputs 3 for 2 outputs"),
        "{e}"
    );
    let m = model(
        vec![
            node("Split", "split", &["x", "parts"], &["c0", "c1"], axis(1)),
            node("Concat", "cat", &["c1", "c0"], &["y"], axis(1)),
        ],
        vec![tensor_i64("parts", &[2], &[2, 3])],
        &[n, c, h, w],
        13,
    );
    let e = import(&m, None).unwrap_err().to_string();
    assert!(
        e.contains("split") && e.contains("do not add up to the length 6"),
        "{e}"
    );
}

/// LRN across 5 channels (size 4: one channel below, two above) with a large alpha, so
/// that the window sum matters: FP32 against f64, and the static INT8 graph (the window
/// sum a quantized 1x1 convolution) close to it.
#[test]
fn lrn_matches_the_reference_in_fp32_and_int8() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let (n, c, h, w) = (2, 5, 4, 3);
    let x = rand_vec(n * c * h * w, &mut rng);
    let (size, alpha, beta, bias) = (4usize, 0.9f32, 0.75f32, 1.5f32);
    let m = model(
        vec![node(
            "LRN",
            "lrn",
            &["x"],
            &["y"],
            vec![
                attr_i("size", size as i64),
                attr_f("alpha", alpha),
                attr_f("beta", beta),
                attr_f("bias", bias),
            ],
        )],
        vec![],
        &[n, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let at = |b: usize, ch: usize, p: usize| f64::from(x[(b * c + ch) * h * w + p]);
    let mut want = Vec::new();
    for b in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                let lo = ch.saturating_sub(1);
                let hi = (ch + 2).min(c - 1);
                let s: f64 = (lo..=hi).map(|j| at(b, j, p).powi(2)).sum();
                let den = f64::from(bias) + f64::from(alpha) / size as f64 * s;
                want.push(at(b, ch, p) / den.powf(f64::from(beta)));
            }
        }
    }
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    let xt = input_tensor(ctx, &onnx, &x);
    let got = int8_output(ctx, &onnx, &xt, QMode::Static);
    check(&got, &want, 0.01);
    // So many channels that the window weight (channels^2 values) would be huge: an
    // error, not an allocation.
    let wide = model(
        vec![node("LRN", "lrn", &["x"], &["y"], vec![attr_i("size", 3)])],
        vec![],
        &[1, 10_000, 1, 1],
        13,
    );
    let e = import(&wide, None).unwrap_err().to_string();
    assert!(e.contains("'lrn'") && e.contains("10000 channels"), "{e}");
    // A window of 0 and a non-positive bias are errors naming the node.
    for (attr, v) in [("size", 0.0), ("bias", 0.0)] {
        let mut bad = m.clone();
        let node = &mut bad.graph.as_mut().unwrap().node[0];
        node.attribute.retain(|a| a.name() != attr);
        node.attribute.push(if attr == "size" {
            attr_i("size", 0)
        } else {
            attr_f(attr, v)
        });
        let e = import(&bad, None).unwrap_err().to_string();
        assert!(e.contains("'lrn'") && e.contains(attr), "{e}");
    }
}

/// InstanceNormalization after a convolution (an NHWC activation inside the graph):
/// FP32 against f64, FP16 and static INT8 close to it.
#[test]
fn instance_norm_after_a_convolution_in_every_precision() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(37);
    let (n, c, h, w, oc, k) = (2, 3, 5, 6, 4, 3);
    let x = rand_vec(n * c * h * w, &mut rng);
    let wt = rand_vec(oc * c * k * k, &mut rng);
    let b = rand_vec(oc, &mut rng);
    let (scale, shift) = ([1.5f32, -0.5, 0.25, 2.0], [0.1f32, 0.0, -1.0, 0.5]);
    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "InstanceNormalization",
                "inorm",
                &["c", "s", "t"],
                &["y"],
                vec![attr_f("epsilon", 1e-3)],
            ),
        ],
        vec![
            tensor_f32("w", &[oc, c, k, k], &wt),
            tensor_f32("b", &[oc], &b),
            tensor_f32("s", &[oc], &scale),
            tensor_f32("t", &[oc], &shift),
        ],
        &[n, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let conv = conv_ref(&x, [n, c, h, w], &wt, oc, k, 1, &b);
    let hw = h * w;
    let mut want = vec![0.0f64; conv.len()];
    for img in 0..n * oc {
        let v = &conv[img * hw..(img + 1) * hw];
        let mean = v.iter().sum::<f64>() / hw as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / hw as f64;
        let ch = img % oc;
        for (j, a) in v.iter().enumerate() {
            want[img * hw + j] =
                (a - mean) / (var + 1e-3).sqrt() * f64::from(scale[ch]) + f64::from(shift[ch]);
        }
    }
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    let xt = input_tensor(ctx, &onnx, &x);
    check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    let got = int8_output(ctx, &onnx, &xt, QMode::Static);
    check(&got, &want, 0.03);
}

/// GroupNormalization after a convolution (an NHWC activation inside the graph): 2
/// groups of 2 channels, scale and bias per channel (opset 21) and per group (opset 18),
/// FP32 against f64; static INT8 close to it; a group count that does not divide the
/// channels is an error naming the node.
#[test]
fn group_norm_after_a_convolution_per_channel_and_per_group() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let (n, c, h, w, oc, k, g) = (2, 3, 5, 4, 4, 3, 2);
    let x = rand_vec(n * c * h * w, &mut rng);
    let wt = rand_vec(oc * c * k * k, &mut rng);
    let b = rand_vec(oc, &mut rng);
    let conv = conv_ref(&x, [n, c, h, w], &wt, oc, k, 1, &b);
    let hw = h * w;
    let span = oc / g * hw;
    for (opset, scale, shift) in [
        (
            21,
            vec![1.5f32, -0.5, 0.25, 2.0],
            vec![0.1f32, 0.0, -1.0, 0.5],
        ),
        (18, vec![0.75f32, -1.25], vec![0.5f32, -0.25]),
    ] {
        let m = model(
            vec![
                node(
                    "Conv",
                    "conv",
                    &["x", "w", "b"],
                    &["c"],
                    vec![attr_ints("pads", &[1, 1, 1, 1])],
                ),
                node(
                    "GroupNormalization",
                    "gnorm",
                    &["c", "s", "t"],
                    &["y"],
                    vec![attr_i("num_groups", g as i64), attr_f("epsilon", 1e-3)],
                ),
            ],
            vec![
                tensor_f32("w", &[oc, c, k, k], &wt),
                tensor_f32("b", &[oc], &b),
                tensor_f32("s", &[scale.len()], &scale),
                tensor_f32("t", &[shift.len()], &shift),
            ],
            &[n, c, h, w],
            opset,
        );
        let onnx = import(&m, None).unwrap();
        let mut want = vec![0.0f64; conv.len()];
        for grp in 0..n * g {
            let v = &conv[grp * span..(grp + 1) * span];
            let mean = v.iter().sum::<f64>() / span as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / span as f64;
            for (j, a) in v.iter().enumerate() {
                let ch = (grp % g) * (oc / g) + j / hw;
                let p = if scale.len() == oc { ch } else { ch / (oc / g) };
                want[grp * span + j] =
                    (a - mean) / (var + 1e-3).sqrt() * f64::from(scale[p]) + f64::from(shift[p]);
            }
        }
        check(&run(ctx, &onnx, &x), &want, 1e-5);
        let xt = input_tensor(ctx, &onnx, &x);
        let got = int8_output(ctx, &onnx, &xt, QMode::Static);
        check(&got, &want, 0.03);
        // A declared channel count of 2^27 (one group, opset 18: the group's value
        // would be spread over every channel) is an error, not an allocation.
        let huge = model(
            vec![node(
                "GroupNormalization",
                "gnorm",
                &["x", "s", "t"],
                &["y"],
                vec![attr_i("num_groups", 1)],
            )],
            vec![tensor_f32("s", &[1], &[1.0]), tensor_f32("t", &[1], &[0.0])],
            &[1, 1 << 27, 1],
            18,
        );
        let e = import(&huge, None).unwrap_err().to_string();
        assert!(
            e.contains("'gnorm'") && e.contains("134217728 channels"),
            "{e}"
        );
        let mut bad = m.clone();
        bad.graph.as_mut().unwrap().node[1].attribute[0] = attr_i("num_groups", 3);
        let e = import(&bad, None).unwrap_err().to_string();
        assert!(e.contains("'gnorm'") && e.contains("num_groups 3"), "{e}");
    }
}

/// A QOperator file pads the uint8 codes directly (ONNX Runtime's QPad): the pad value
/// is a code, the `constant_value` input or 0 by ONNX's default, so with zero point 100
/// and scale 0.05 the border is (code - 100) * 0.05 in both the FP32 and the file's
/// INT8 model; a `MaxPool` of codes keeps their parameters, so the `DequantizeLinear`
/// after it reads them.
#[test]
fn a_pad_of_qoperator_codes_pads_with_a_code() {
    let ctx = common::ctx();
    let (s, z) = (0.05f32, 100i64);
    let build = |cv: Option<u8>, pool: bool| {
        let mut pad_in = vec!["q", "pads"];
        let mut inits = vec![
            tensor_f32("s", &[], &[s]),
            tensor_i8("z", &[], &[z as i8], true),
            tensor_i64("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1]),
        ];
        if let Some(c) = cv {
            pad_in.push("cv");
            inits.push(tensor_i8("cv", &[], &[c as i8], true));
        }
        let mut nodes = vec![
            node("QuantizeLinear", "q", &["x", "s", "z"], &["q"], vec![]),
            node("Pad", "pad", &pad_in, &["p"], vec![]),
        ];
        let mut last = "p";
        if pool {
            nodes.push(node(
                "MaxPool",
                "pool",
                &["p"],
                &["m"],
                vec![attr_ints("kernel_shape", &[2, 2])],
            ));
            last = "m";
        }
        nodes.push(node(
            "DequantizeLinear",
            "dq",
            &[last, "s", "z"],
            &["y"],
            vec![],
        ));
        model(nodes, inits, &[1, 2, 3, 4], 13)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x = rand_vec(24, &mut rng);
    let q = |v: f32| ((f64::from(v / s)).round_ties_even() as i64 + z).clamp(0, 255);
    let dq = |c: i64| (c - z) as f32 * s;
    // (Code 100 pads with a real 0: a zero pad, pending until the graph's end.)
    for cv in [None, Some(130u8), Some(0u8), Some(100u8)] {
        let border = dq(cv.map_or(0, i64::from));
        let padded = |f: &dyn Fn(f32) -> f32| -> Vec<f32> {
            let mut out = Vec::new();
            for c in 0..2 {
                for h in 0..5 {
                    for w in 0..6 {
                        out.push(if (1..4).contains(&h) && (1..5).contains(&w) {
                            f(x[(c * 3 + h - 1) * 4 + w - 1])
                        } else {
                            border
                        });
                    }
                }
            }
            out
        };
        let onnx = import(&build(cv, false), None).unwrap();
        // FP32: the activation is not rounded; the border is the code's value.
        assert_eq!(
            run(ctx, &onnx, &x),
            padded(&|v| v),
            "FP32, constant_value {cv:?}"
        );
        let got = run_qmodel(ctx, &onnx, &x);
        let want = padded(&|v| dq(q(v)));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6,
                "INT8, constant_value {cv:?}, element {i}: {g} vs {w}"
            );
        }
        // Through a max pool of the codes (2x2, stride 1).
        let onnx = import(&build(cv, true), None).unwrap();
        let p = padded(&|v| dq(q(v)));
        let got = run_qmodel(ctx, &onnx, &x);
        let mut k = 0;
        for c in 0..2 {
            for h in 0..4 {
                for w in 0..5 {
                    let at = |dh: usize, dw: usize| p[(c * 5 + h + dh) * 6 + w + dw];
                    let m = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                    assert!(
                        (got[k] - m).abs() <= 1e-6,
                        "pooled, {cv:?}, {k}: {} vs {m}",
                        got[k]
                    );
                    k += 1;
                }
            }
        }
    }
    // A float zero pad as the graph's output (a pad that no convolution takes up).
    let m = model(
        vec![node("Pad", "pad", &["x", "pads"], &["y"], vec![])],
        vec![tensor_i64("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1])],
        &[1, 2, 3, 4],
        13,
    );
    let zero_border = |v: &[f32]| -> Vec<f32> {
        let mut out = vec![0.0; 60];
        for c in 0..2 {
            for h in 0..3 {
                for w in 0..4 {
                    out[(c * 5 + h + 1) * 6 + w + 1] = v[(c * 3 + h) * 4 + w];
                }
            }
        }
        out
    };
    assert_eq!(run(ctx, &import(&m, None).unwrap(), &x), zero_border(&x));
    // A constant_value of several codes is an error naming the node.
    let mut m = build(Some(1), false);
    let g = m.graph.as_mut().unwrap();
    g.initializer.retain(|t| t.name() != "cv");
    g.initializer.push(tensor_i8("cv", &[2], &[1, 2], true));
    let e = import_err(&m);
    assert!(
        e.contains("'pad'") && e.contains("constant_value of the codes has 2 values"),
        "{e}"
    );
}

/// Malformed com.microsoft QOperator nodes are errors naming the node and what is wrong.
#[test]
fn malformed_qoperator_nodes_are_errors() {
    let ms = |mut n: NodeProto| {
        n.domain = Some("com.microsoft".into());
        n
    };
    let inits = || {
        vec![
            tensor_f32("s", &[], &[0.05]),
            tensor_i8("z", &[], &[100], true),
            tensor_f32("s2", &[], &[0.1]),
        ]
    };
    let q = node("QuantizeLinear", "q", &["x", "s", "z"], &["q"], vec![]);
    // QLinearConcat: Y_scale, Y_zero_point, then triples.
    let cat = ms(node(
        "QLinearConcat",
        "cat",
        &["s2", "z", "q", "s", "z", "q"],
        &["c"],
        vec![attr_i("axis", 1)],
    ));
    let dq = node("DequantizeLinear", "dq", &["c", "s2", "z"], &["y"], vec![]);
    let e = import_err(&model(
        vec![q.clone(), cat, dq.clone()],
        inits(),
        &[1, 2, 3, 4],
        13,
    ));
    assert!(e.contains("'cat'") && e.contains("6 inputs"), "{e}");
    // The well-formed concatenation of q with itself imports, its output scale the file's.
    let cat = ms(node(
        "QLinearConcat",
        "cat",
        &["s2", "z", "q", "s", "z", "q", "s", "z"],
        &["c"],
        vec![attr_i("axis", 1)],
    ));
    let onnx = import(
        &model(vec![q.clone(), cat, dq.clone()], inits(), &[1, 2, 3, 4], 13),
        None,
    )
    .unwrap();
    assert_eq!(onnx.op_counts().get("QLinearConcat"), Some(&1));
    // channels_last pools are refused.
    let pool = ms(node(
        "QLinearAveragePool",
        "pool",
        &["q", "s", "z", "s2", "z"],
        &["c"],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_i("channels_last", 1),
        ],
    ));
    let e = import_err(&model(
        vec![q.clone(), pool, dq.clone()],
        inits(),
        &[1, 2, 3, 4],
        13,
    ));
    assert!(e.contains("'pool'") && e.contains("channels_last"), "{e}");
    // An output scale left out.
    let sig = ms(node(
        "QLinearSigmoid",
        "sig",
        &["q", "s", "z", "", "z"],
        &["c"],
        vec![],
    ));
    let e = import_err(&model(vec![q, sig, dq], inits(), &[1, 2, 3, 4], 13));
    assert!(e.contains("'sig'") && e.contains("output scale"), "{e}");
}

fn tensor_bool(name: &str, dims: &[usize], v: &[bool]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Bool as i32),
        raw_data: Some(v.iter().map(|&b| u8::from(b)).collect()),
        ..Default::default()
    }
}

/// Comparisons, the logic operators and `Where` on activations (an NCHW image, so the
/// constants move to the stored NHWC order): booleans are activations of 0 and 1, a
/// `Cast` to float reads them, and `Where` picks exactly, an infinite constant included
/// (an attention mask's fill); a constant branch of zeros adds no layer. FP32 exactly,
/// FP16 within its storage step. Constants fold, integer ones to integers.
#[test]
fn comparisons_logic_and_where_on_activations() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    // Values on a grid of 1/4 so that ties with the constants happen, exact in f16.
    let x: Vec<f32> = (0..24)
        .map(|_| rng.random_range(-6i32..7) as f32 / 4.0)
        .collect();
    let shape = [1usize, 2, 3, 4];
    let at = |c: usize, h: usize, w: usize| x[(c * 3 + h) * 4 + w];
    let each = |f: &dyn Fn(usize, usize, usize) -> f32| -> Vec<f32> {
        let mut v = Vec::new();
        for c in 0..2 {
            for h in 0..3 {
                for w in 0..4 {
                    v.push(f(c, h, w));
                }
            }
        }
        v
    };
    let b = |v: bool| if v { 1.0f32 } else { 0.0 };
    let thr = [-0.5f32, 0.0, 0.25, 1.0];
    let cases: Vec<(&str, ModelProto, Vec<f32>, usize)> = vec![
        (
            // An attention mask's fill: -inf where x < 0.
            "Where(Less(x, 0), -inf, x)",
            model(
                vec![
                    node("Less", "lt", &["x", "zero"], &["c"], vec![]),
                    node("Where", "where", &["c", "ninf", "x"], &["y"], vec![]),
                ],
                vec![
                    tensor_f32("zero", &[], &[0.0]),
                    tensor_f32("ninf", &[], &[f32::NEG_INFINITY]),
                ],
                &shape,
                13,
            ),
            each(&|c, h, w| {
                if at(c, h, w) < 0.0 {
                    f32::NEG_INFINITY
                } else {
                    at(c, h, w)
                }
            }),
            // compare, two halves, add
            4,
        ),
        (
            // The constant first (a swapped comparison), broadcast along W; three
            // activations in the Where.
            "Where(Greater(thr, x), x, 3x)",
            model(
                vec![
                    node("Greater", "gt", &["thr", "x"], &["c"], vec![]),
                    node("Mul", "m", &["x", "three"], &["x3"], vec![]),
                    node("Where", "where", &["c", "x", "x3"], &["y"], vec![]),
                ],
                vec![
                    tensor_f32("thr", &[4], &thr),
                    tensor_f32("three", &[], &[3.0]),
                ],
                &shape,
                13,
            ),
            each(&|c, h, w| {
                let v = at(c, h, w);
                if thr[w] > v {
                    v
                } else {
                    3.0 * v
                }
            }),
            5,
        ),
        (
            "Cast(Xor(Or(Not(x >= x*x), Equal(x < 0, x <= 0)), x < 0.5)) * x",
            model(
                vec![
                    node("Mul", "sq", &["x", "x"], &["xx"], vec![]),
                    node("GreaterOrEqual", "ge", &["x", "xx"], &["ge"], vec![]),
                    node("Not", "not", &["ge"], &["nge"], vec![]),
                    node("Less", "lt", &["x", "zero"], &["lt"], vec![]),
                    node("LessOrEqual", "le", &["x", "zero"], &["le"], vec![]),
                    node("Equal", "eq", &["lt", "le"], &["eq"], vec![]),
                    node("Or", "or", &["nge", "eq"], &["or"], vec![]),
                    node("Less", "lh", &["x", "half"], &["lh"], vec![]),
                    node("Xor", "xor", &["or", "lh"], &["xor"], vec![]),
                    node("Cast", "cast", &["xor"], &["f"], vec![attr_i("to", 1)]),
                    node("Mul", "out", &["f", "x"], &["y"], vec![]),
                ],
                vec![
                    tensor_f32("zero", &[], &[0.0]),
                    tensor_f32("half", &[], &[0.5]),
                ],
                &shape,
                13,
            ),
            each(&|c, h, w| {
                let v = at(c, h, w);
                let or = v < v * v || ((v < 0.0) == (v <= 0.0)); // (no NaN here: Not(x >= x^2) is x < x^2)
                b(or != (v < 0.5)) * v
            }),
            0,
        ),
        (
            // A constant condition along H and a zero branch: one mask layer.
            "Where(cond, x, 0)",
            model(
                vec![node(
                    "Where",
                    "where",
                    &["cond", "x", "zero"],
                    &["y"],
                    vec![],
                )],
                vec![
                    tensor_bool("cond", &[3, 1], &[true, false, true]),
                    tensor_f32("zero", &[], &[0.0]),
                ],
                &shape,
                13,
            ),
            each(&|c, h, w| if h != 1 { at(c, h, w) } else { 0.0 }),
            1,
        ),
    ];
    for (what, m, want, layers) in cases {
        let onnx = import(&m, None).unwrap_or_else(|e| panic!("{what}: {e}"));
        if layers > 0 {
            assert_eq!(onnx.graph().nodes.len(), layers, "{what}: layers");
        }
        let got = run(ctx, &onnx, &x);
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "{what}: FP32 element {i} = {g}, expected {w}");
        }
        // FP16: the grid values and their products are exact in f16.
        let got = fp16_output(ctx, &onnx, &x);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "{what}: FP16 element {i} = {g}, expected {w}");
        }
    }
    // All-constant comparisons and Where fold (integers stay integers: shape arithmetic).
    let m = model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node("Equal", "eq", &["s", "three"], &["is3"], vec![]),
            node("Where", "where", &["is3", "minus", "s"], &["t"], vec![]),
            node("Reshape", "reshape", &["x", "t"], &["y"], vec![]),
        ],
        vec![
            tensor_i64("three", &[], &[3]),
            tensor_i64("minus", &[], &[-1]),
        ],
        &shape,
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, 2, 3, 4]);
    assert_eq!(run(ctx, &onnx, &x), x);
}

/// Two small constants that broadcast to more values than a host holds are an error
/// naming the node before anything is allocated (the fold of Add, Equal and Where).
#[test]
fn huge_folded_broadcasts_are_errors() {
    for op in ["Add", "Equal", "Where"] {
        let (inputs, inits): (Vec<&str>, Vec<TensorProto>) = if op == "Where" {
            (
                vec!["c", "a", "b"],
                vec![
                    tensor_bool("c", &[1, 1], &[true]),
                    tensor_f32("a", &[65536, 1], &vec![1.0; 65536]),
                    tensor_f32("b", &[1, 65536], &vec![2.0; 65536]),
                ],
            )
        } else {
            (
                vec!["a", "b"],
                vec![
                    tensor_f32("a", &[65536, 1], &vec![1.0; 65536]),
                    tensor_f32("b", &[1, 65536], &vec![2.0; 65536]),
                ],
            )
        };
        let m = model(
            vec![
                node(op, "big", &inputs, &["k"], vec![]),
                node(
                    "ReduceSum",
                    "sum",
                    &["k"],
                    &["s"],
                    vec![attr_i("keepdims", 0)],
                ),
                node("Add", "add", &["x", "s"], &["y"], vec![]),
            ],
            inits,
            &[1, 4],
            13,
        );
        let e = import_err(&m);
        assert!(
            e.contains("'big'") && e.contains("[65536, 65536]") && e.contains("values to fold"),
            "{op}: {e}"
        );
    }
}

/// A mean over the middle axes of an NHWC-shaped activation (a TensorFlow export's global
/// pool: ReduceMean axes [1, 2], keepdims 0) feeds a MatMul: the rows are stored with
/// the batch axis first, so the linear layer reads one row of C features per image.
#[test]
fn a_reduction_over_middle_axes_feeds_a_linear_layer() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let (n, h, w, c, o) = (2usize, 5, 3, 4, 3);
    let x = rand_vec(n * h * w * c, &mut rng);
    let wt = rand_vec(c * o, &mut rng);
    let m = model(
        vec![
            node(
                "ReduceMean",
                "mean",
                &["x"],
                &["m"],
                vec![attr_ints("axes", &[1, 2]), attr_i("keepdims", 0)],
            ),
            node("MatMul", "fc", &["m", "w"], &["y"], vec![]),
        ],
        vec![tensor_f32("w", &[c, o], &wt)],
        &[n, h, w, c],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let got = run(ctx, &onnx, &x);
    let mut want = vec![0f64; n * o];
    for b in 0..n {
        for k in 0..c {
            let mean = (0..h * w)
                .map(|p| f64::from(x[(b * h * w + p) * c + k]))
                .sum::<f64>()
                / (h * w) as f64;
            for j in 0..o {
                want[b * o + j] += mean * f64::from(wt[k * o + j]);
            }
        }
    }
    check(&got, &want, 1e-5);
}

/// Matrix products of constants fold (an unrolled recurrent cell's first step multiplies
/// its constant initial state): Gemm with transA/transB, alpha, beta and a broadcast C,
/// and MatMul of two matrices, against f64; a product that does not fit is an error
/// naming the node.
#[test]
fn constant_matrix_products_fold() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let (k, n) = (4usize, 3usize);
    let h0: Vec<f32> = rand_vec(2 * k, &mut rng);
    let w: Vec<f32> = rand_vec(n * k, &mut rng);
    let cb: Vec<f32> = rand_vec(n, &mut rng);
    let x: Vec<f32> = rand_vec(2 * n, &mut rng);
    // h0^T stored [k, 2] (transA), W stored [n, k] (transB), alpha 0.5, beta 2, C [n];
    // then + MatMul(ones [2, 2], that) and + x.
    let h0t: Vec<f32> = (0..k * 2).map(|i| h0[(i % 2) * k + i / 2]).collect();
    let m = model(
        vec![
            node(
                "Gemm",
                "g",
                &["h0t", "w", "c"],
                &["s"],
                vec![
                    attr_i("transA", 1),
                    attr_i("transB", 1),
                    attr_f("alpha", 0.5),
                    attr_f("beta", 2.0),
                ],
            ),
            node("MatMul", "mm", &["ones", "s"], &["s2"], vec![]),
            node("Add", "add", &["x", "s2"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("h0t", &[k, 2], &h0t),
            tensor_f32("w", &[n, k], &w),
            tensor_f32("c", &[n], &cb),
            tensor_f32("ones", &[2, 2], &[1.0, 1.0, 1.0, 1.0]),
        ],
        &[2, n],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let s: Vec<f64> = (0..2 * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            let dot: f64 = (0..k)
                .map(|p| f64::from(h0[i * k + p]) * f64::from(w[j * k + p]))
                .sum();
            0.5 * dot + 2.0 * f64::from(cb[j])
        })
        .collect();
    let want: Vec<f64> = (0..2 * n)
        .map(|e| f64::from(x[e]) + s[e % n] + s[n + e % n])
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-6);
    // Inner dimensions that differ.
    let mut bad = m.clone();
    let g = bad.graph.as_mut().unwrap();
    g.initializer.retain(|t| t.name() != "w");
    g.initializer
        .push(tensor_f32("w", &[n, k + 1], &vec![0.0; n * (k + 1)]));
    let e = import_err(&bad);
    assert!(e.contains("'g'") && e.contains("do not multiply"), "{e}");
}

/// `Pow` beyond one constant exponent: a tensor exponent (broadcast along W of an NCHW
/// image), a constant base with an activation exponent, and two activations, against
/// f64 in FP32 and FP16.
#[test]
fn pow_with_tensor_and_activation_exponents() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(37);
    let x: Vec<f32> = (0..24).map(|_| rng.random_range(0.5f32..2.0)).collect();
    let e = [1.0f32, 2.0, -1.0, 0.5];
    let m = model(
        vec![
            node("Pow", "a", &["x", "e"], &["a"], vec![]),
            node("Pow", "b", &["two", "x"], &["b"], vec![]),
            node("Pow", "c", &["x", "x"], &["c"], vec![]),
            node("Sum", "sum", &["a", "b", "c"], &["y"], vec![]),
        ],
        vec![tensor_f32("e", &[4], &e), tensor_f32("two", &[], &[2.0])],
        &[1, 2, 3, 4],
        13,
    );
    let onnx = import(&m, None).unwrap();
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = f64::from(v);
            v.powf(f64::from(e[i % 4])) + 2f64.powf(v) + v.powf(v)
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
}

/// A weight that several layers hold with equal values (the steps of an unrolled
/// recurrent cell) is uploaded once: two MatMuls by one initializer keep one copy on the
/// GPU, in FP32 and FP16, and compute as two.
#[test]
fn equal_linear_weights_are_stored_once() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let k = 8;
    let w = rand_vec(k * k, &mut rng);
    let x = rand_vec(2 * k, &mut rng);
    let m = model(
        vec![
            node("MatMul", "m1", &["x", "w"], &["h"], vec![]),
            node("MatMul", "m2", &["h", "w"], &["y"], vec![]),
        ],
        vec![tensor_f32("w", &[k, k], &w)],
        &[2, k],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.graph().nodes.len(), 2);
    for (dt, size) in [(DType::F32, 4u64), (DType::F16, 2)] {
        let model = onnx.model(ctx, dt).unwrap();
        assert_eq!(model.weight_bytes(), (k * k) as u64 * size, "{dt:?}");
    }
    let mm = |a: &[f64]| -> Vec<f64> {
        (0..2 * k)
            .map(|e| {
                let (i, j) = (e / k, e % k);
                (0..k).map(|p| a[i * k + p] * f64::from(w[p * k + j])).sum()
            })
            .collect()
    };
    let want = mm(&mm(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()));
    check(&run(ctx, &onnx, &x), &want, 1e-5);
}

/// The f64 LSTM of ONNX (gates i, o, f, c; sigmoid, tanh, tanh), one direction:
/// `x` is `[S, B, I]`, `w` `[4H, I]`, `r` `[4H, H]`, `b` `[8H]`, states `[B, H]`; the
/// hidden states per step `[S][B * H]` (in time order) and the last cell state.
#[allow(clippy::too_many_arguments)]
fn lstm_ref(
    x: &[f64],
    (s, b, i, h): (usize, usize, usize, usize),
    w: &[f64],
    r: &[f64],
    bias: &[f64],
    h0: &[f64],
    c0: &[f64],
    reverse: bool,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let (mut hp, mut cp) = (h0.to_vec(), c0.to_vec());
    let mut ys = vec![Vec::new(); s];
    for step in 0..s {
        let t = if reverse { s - 1 - step } else { step };
        let (mut hn, mut cn) = (vec![0.0; b * h], vec![0.0; b * h]);
        for bi in 0..b {
            let gate = |g: usize, j: usize| -> f64 {
                let row = g * h + j;
                let mut v = bias[row] + bias[4 * h + row];
                for k in 0..i {
                    v += w[row * i + k] * x[(t * b + bi) * i + k];
                }
                for k in 0..h {
                    v += r[row * h + k] * hp[bi * h + k];
                }
                v
            };
            for j in 0..h {
                let (ig, og, fg, cg) = (
                    sig(gate(0, j)),
                    sig(gate(1, j)),
                    sig(gate(2, j)),
                    gate(3, j).tanh(),
                );
                let c = fg * cp[bi * h + j] + ig * cg;
                cn[bi * h + j] = c;
                hn[bi * h + j] = og * c.tanh();
            }
        }
        ys[t] = hn.clone();
        hp = hn;
        cp = cn;
    }
    (ys, cp)
}

/// `LSTM` unrolled into layers: bidirectional with biases and initial states (Y, and
/// Y_c read alone), forward without them (Y_h), in FP32 against f64 and FP16 within its
/// budget; a long sequence's recurrent weight is stored once; unsupported forms are
/// errors naming the node.
#[test]
fn lstm_unrolls_into_layers() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let (s, b, i, h) = (5usize, 2usize, 3usize, 4usize);
    let x = rand_vec(s * b * i, &mut rng);
    let w = rand_vec(2 * 4 * h * i, &mut rng);
    let r = rand_vec(2 * 4 * h * h, &mut rng);
    let bias = rand_vec(2 * 8 * h, &mut rng);
    let h0 = rand_vec(2 * b * h, &mut rng);
    let c0 = rand_vec(2 * b * h, &mut rng);
    let f = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
    let (x64, w64, r64, b64, h064, c064) = (f(&x), f(&w), f(&r), f(&bias), f(&h0), f(&c0));
    let dir = |d: usize| {
        lstm_ref(
            &x64,
            (s, b, i, h),
            &w64[d * 4 * h * i..(d + 1) * 4 * h * i],
            &r64[d * 4 * h * h..(d + 1) * 4 * h * h],
            &b64[d * 8 * h..(d + 1) * 8 * h],
            &h064[d * b * h..(d + 1) * b * h],
            &c064[d * b * h..(d + 1) * b * h],
            d == 1,
        )
    };
    let (fw, bw) = (dir(0), dir(1));
    let lstm = |outs: &[&str], with: bool, direction: &str| {
        let inputs: Vec<&str> = if with {
            vec!["x", "W", "R", "B", "", "h0", "c0"]
        } else {
            vec!["x", "W1", "R1"]
        };
        let mut n = node(
            "LSTM",
            "lstm",
            &inputs,
            outs,
            vec![attr_i("hidden_size", h as i64)],
        );
        n.attribute.push(AttributeProto {
            name: Some("direction".into()),
            s: Some(direction.as_bytes().to_vec()),
            r#type: Some(AttributeType::String as i32),
            ..Default::default()
        });
        let mut m = model(
            vec![n],
            vec![
                tensor_f32("W", &[2, 4 * h, i], &w),
                tensor_f32("R", &[2, 4 * h, h], &r),
                tensor_f32("B", &[2, 8 * h], &bias),
                tensor_f32("h0", &[2, b, h], &h0),
                tensor_f32("c0", &[2, b, h], &c0),
                tensor_f32("W1", &[1, 4 * h, i], &w[..4 * h * i]),
                tensor_f32("R1", &[1, 4 * h, h], &r[..4 * h * h]),
            ],
            &[s, b, i],
            14,
        );
        let g = m.graph.as_mut().unwrap();
        g.output[0].name = Some(
            outs.iter()
                .rev()
                .find(|o| !o.is_empty())
                .unwrap()
                .to_string(),
        );
        m
    };
    // Y [S, 2, B, H].
    let onnx = import(&lstm(&["y"], true, "bidirectional"), None).unwrap();
    let mut want = Vec::new();
    for t in 0..s {
        want.extend(&fw.0[t]);
        want.extend(&bw.0[t]);
    }
    assert_eq!(onnx.output().shape, vec![s, 2, b, h]);
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    // Post-training INT8 (static and dynamic, calibrated on this input) runs the
    // unrolled layers within INT8's error (measured: 9.3e-3 static on lavapipe).
    let xt = input_tensor(ctx, &onnx, &x);
    for mode in [QMode::Static, QMode::Dynamic] {
        check(&int8_output(ctx, &onnx, &xt, mode), &want, 0.03);
    }
    // Y_c [2, B, H] alone.
    let onnx = import(&lstm(&["", "", "yc"], true, "bidirectional"), None).unwrap();
    let want: Vec<f64> = fw.1.iter().chain(&bw.1).copied().collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    // Forward, no bias or initial states: Y_h [1, B, H].
    let zero = vec![0.0; 8 * h];
    let zs = vec![0.0; b * h];
    let (ys, _) = lstm_ref(
        &x64,
        (s, b, i, h),
        &w64[..4 * h * i],
        &r64[..4 * h * h],
        &zero,
        &zs,
        &zs,
        false,
    );
    let onnx = import(&lstm(&["", "yh"], false, "forward"), None).unwrap();
    check(&run(ctx, &onnx, &x), &ys[s - 1], 1e-5);
    // Sixteen steps: the recurrent weight is stored once on the GPU (plus W^T).
    let long = 16;
    let xl = rand_vec(long * b * i, &mut rng);
    let mut m = lstm(&["", "yh"], false, "forward");
    let g = m.graph.as_mut().unwrap();
    g.input[0] = value_info("x", &[Some(long), Some(b), Some(i)]);
    let onnx = import(&m, None).unwrap();
    let model = onnx.model(ctx, DType::F32).unwrap();
    assert_eq!(model.weight_bytes(), (4 * h * (i + h) * 4) as u64);
    let (ys, _) = lstm_ref(
        &f(&xl),
        (long, b, i, h),
        &w64[..4 * h * i],
        &r64[..4 * h * h],
        &zero,
        &zs,
        &zs,
        false,
    );
    check(&run(ctx, &onnx, &xl), &ys[long - 1], 1e-5);
    // Unsupported forms name the node and the reason.
    for (attr, why) in [
        (attr_f("clip", 3.0), "clip"),
        (attr_i("input_forget", 1), "input_forget"),
        (attr_i("layout", 2), "layout 2"),
    ] {
        let mut m = lstm(&["y"], true, "bidirectional");
        m.graph.as_mut().unwrap().node[0].attribute.push(attr);
        let e = import_err(&m);
        assert!(e.contains("'lstm'") && e.contains(why), "{e}");
    }
    let mut m = lstm(&["y"], true, "bidirectional");
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[4] = "lens".into();
    g.initializer.push(tensor_i64("lens", &[b], &[5, 3]));
    let e = import_err(&m);
    assert!(e.contains("'lstm'") && e.contains("sequence_lens"), "{e}");
    let mut m = lstm(&["y"], true, "bidirectional");
    m.graph.as_mut().unwrap().node[0].input.push("P".into());
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .push(tensor_f32("P", &[2, 3 * h], &vec![0.0; 6 * h]));
    let e = import_err(&m);
    assert!(e.contains("'lstm'") && e.contains("peephole"), "{e}");
}

/// The f64 GRU of ONNX (gates z, r, h), one direction, shapes as [`lstm_ref`]: `w`
/// `[3H, I]`, `r` `[3H, H]`, `b` `[6H]`; the hidden state per step.
fn gru_ref(
    x: &[f64],
    (s, b, i, h): (usize, usize, usize, usize),
    (w, r, bias): (&[f64], &[f64], &[f64]),
    h0: &[f64],
    linear_before_reset: bool,
) -> Vec<Vec<f64>> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut hp = h0.to_vec();
    let mut ys = Vec::new();
    for t in 0..s {
        let mut hn = vec![0.0; b * h];
        for bi in 0..b {
            let xw = |row: usize| -> f64 {
                bias[row]
                    + (0..i)
                        .map(|k| w[row * i + k] * x[(t * b + bi) * i + k])
                        .sum::<f64>()
            };
            let rh = |row: usize, hv: &dyn Fn(usize) -> f64| -> f64 {
                (0..h).map(|k| r[row * h + k] * hv(k)).sum::<f64>()
            };
            let prev = |k: usize| hp[bi * h + k];
            for j in 0..h {
                let z = sig(xw(j) + rh(j, &prev) + bias[3 * h + j]);
                let rr = |jj: usize| sig(xw(h + jj) + rh(h + jj, &prev) + bias[4 * h + jj]);
                let cand = if linear_before_reset {
                    (xw(2 * h + j) + rr(j) * (rh(2 * h + j, &prev) + bias[5 * h + j])).tanh()
                } else {
                    let gated = |k: usize| rr(k) * hp[bi * h + k];
                    (xw(2 * h + j) + rh(2 * h + j, &gated) + bias[5 * h + j]).tanh()
                };
                hn[bi * h + j] = (1.0 - z) * cand + z * hp[bi * h + j];
            }
        }
        ys.push(hn.clone());
        hp = hn;
    }
    ys
}

/// `GRU` unrolled into layers, with `linear_before_reset` 0 and 1 (PyTorch exports 1),
/// biases and an initial state: Y against f64 in FP32 and FP16.
#[test]
fn gru_unrolls_into_layers() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(47);
    let (s, b, i, h) = (6usize, 2usize, 3usize, 4usize);
    let x = rand_vec(s * b * i, &mut rng);
    let w = rand_vec(3 * h * i, &mut rng);
    let r = rand_vec(3 * h * h, &mut rng);
    let bias = rand_vec(6 * h, &mut rng);
    let h0 = rand_vec(b * h, &mut rng);
    let f = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
    for lbr in [0i64, 1] {
        let m = model(
            vec![node(
                "GRU",
                "gru",
                &["x", "W", "R", "B", "", "h0"],
                &["y"],
                vec![
                    attr_i("hidden_size", h as i64),
                    attr_i("linear_before_reset", lbr),
                ],
            )],
            vec![
                tensor_f32("W", &[1, 3 * h, i], &w),
                tensor_f32("R", &[1, 3 * h, h], &r),
                tensor_f32("B", &[1, 6 * h], &bias),
                tensor_f32("h0", &[1, b, h], &h0),
            ],
            &[s, b, i],
            14,
        );
        let onnx = import(&m, None).unwrap();
        assert_eq!(onnx.output().shape, vec![s, 1, b, h]);
        let want: Vec<f64> = gru_ref(
            &f(&x),
            (s, b, i, h),
            (&f(&w), &f(&r), &f(&bias)),
            &f(&h0),
            lbr == 1,
        )
        .concat();
        check(&run(ctx, &onnx, &x), &want, 1e-5);
        check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    }
}

/// 1-D convolutions and pools run lifted to 2-D (ONNX's and PyTorch's 1-D cases pass in
/// tests/onnx.rs): FP16 and static INT8 stay close to FP32; a 1-D attribute with the
/// wrong number of values is an error naming the node.
#[test]
fn one_d_convolutions_run_in_every_precision() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(53);
    let (c, o, l) = (3usize, 6usize, 33usize);
    let w = rand_vec(o * c * 5, &mut rng);
    let x = rand_vec(2 * c * l, &mut rng);
    let build = |pads: &[i64]| {
        model(
            vec![
                node(
                    "Conv",
                    "conv",
                    &["x", "w"],
                    &["c"],
                    vec![attr_ints("pads", pads), attr_ints("strides", &[2])],
                ),
                node("Relu", "relu", &["c"], &["r"], vec![]),
                node(
                    "MaxPool",
                    "pool",
                    &["r"],
                    &["y"],
                    vec![attr_ints("kernel_shape", &[3]), attr_ints("strides", &[2])],
                ),
            ],
            vec![tensor_f32("w", &[o, c, 5], &w)],
            &[2, c, l],
            13,
        )
    };
    let onnx = import(&build(&[2, 2]), None).unwrap();
    assert_eq!(onnx.output().shape, vec![2, o, 8]);
    let fp32: Vec<f64> = run(ctx, &onnx, &x).iter().map(|&v| f64::from(v)).collect();
    // FP32 against f64: conv (stride 2, pads 2), ReLU, max pool 3 stride 2.
    let conv = |b: usize, oc: usize, p: usize| -> f64 {
        let mut s = 0.0;
        for ic in 0..c {
            for k in 0..5 {
                let pos = (2 * p + k) as i64 - 2;
                if (0..l as i64).contains(&pos) {
                    s += f64::from(w[(oc * c + ic) * 5 + k])
                        * f64::from(x[(b * c + ic) * l + pos as usize]);
                }
            }
        }
        s.max(0.0)
    };
    let want: Vec<f64> = (0..2 * o * 8)
        .map(|e| {
            let (b, oc, p) = (e / (o * 8), e / 8 % o, e % 8);
            (0..3)
                .map(|k| conv(b, oc, 2 * p + k))
                .fold(f64::MIN, f64::max)
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-5);
    check(&fp16_output(ctx, &onnx, &x), &fp32, 3e-3);
    let xt = input_tensor(ctx, &onnx, &x);
    check(&int8_output(ctx, &onnx, &xt, QMode::Static), &fp32, 0.03);
    let e = import_err(&build(&[1, 1, 1, 1]));
    assert!(
        e.contains("'conv'") && e.contains("pads has 4 values"),
        "{e}"
    );
}

/// LogSoftmax (over an NCHW image's channels, and before opset 13 over the axes from
/// `axis`), Tile and SpaceToDepth as their function bodies, against f64 in FP32 and
/// FP16; SpaceToDepth then DepthToSpace (DCR) is the input.
#[test]
fn logsoftmax_tile_and_space_to_depth() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(59);
    let (c, hh, ww) = (3usize, 4usize, 6usize);
    let x: Vec<f32> = rand_vec(c * hh * ww, &mut rng)
        .iter()
        .map(|v| v * 4.0)
        .collect();
    let at = |ci: usize, y: usize, z: usize| f64::from(x[(ci * hh + y) * ww + z]);
    // Over the channels (opset 13) and over C, H, W (opset 11, axis 1).
    for (opset, whole) in [(13i64, false), (11, true)] {
        let m = model(
            vec![node(
                "LogSoftmax",
                "ls",
                &["x"],
                &["y"],
                vec![attr_i("axis", 1)],
            )],
            vec![],
            &[1, c, hh, ww],
            opset,
        );
        let onnx = import(&m, None).unwrap();
        let mut want = vec![0.0; c * hh * ww];
        for y in 0..hh {
            for z in 0..ww {
                let cells: Vec<(usize, usize, usize)> = if whole {
                    (0..c * hh * ww)
                        .map(|e| (e / (hh * ww), e / ww % hh, e % ww))
                        .collect()
                } else {
                    (0..c).map(|ci| (ci, y, z)).collect()
                };
                let m = cells
                    .iter()
                    .map(|&(a, b, d)| at(a, b, d))
                    .fold(f64::MIN, f64::max);
                let s: f64 = cells.iter().map(|&(a, b, d)| (at(a, b, d) - m).exp()).sum();
                for ci in 0..c {
                    want[(ci * hh + y) * ww + z] = at(ci, y, z) - m - s.ln();
                }
            }
        }
        check(&run(ctx, &onnx, &x), &want, 1e-6);
        check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    }
    // Tile by [1, 2, 1, 3] (a 4-D tile: axis by axis).
    let m = model(
        vec![node("Tile", "tile", &["x", "reps"], &["y"], vec![])],
        vec![tensor_i64("reps", &[4], &[1, 2, 1, 3])],
        &[1, c, hh, ww],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, 2 * c, hh, 3 * ww]);
    let want: Vec<f64> = (0..2 * c * hh * 3 * ww)
        .map(|e| {
            let (ci, y, z) = (e / (hh * 3 * ww), e / (3 * ww) % hh, e % (3 * ww));
            at(ci % c, y, z % ww)
        })
        .collect();
    check(&run(ctx, &onnx, &x), &want, 1e-7);
    check(&fp16_output(ctx, &onnx, &x), &want, 3e-3);
    // SpaceToDepth 2, then DepthToSpace 2 (DCR, the default: the block index leads the
    // channels, as SpaceToDepth writes them): the input again.
    let d2s = node(
        "DepthToSpace",
        "d2s",
        &["s"],
        &["y"],
        vec![attr_i("blocksize", 2)],
    );
    let m = model(
        vec![
            node(
                "SpaceToDepth",
                "s2d",
                &["x"],
                &["s"],
                vec![attr_i("blocksize", 2)],
            ),
            d2s,
        ],
        vec![],
        &[1, c, hh, ww],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(run(ctx, &onnx, &x), x);
    // A block size that does not divide the image.
    let m = model(
        vec![node(
            "SpaceToDepth",
            "s2d",
            &["x"],
            &["y"],
            vec![attr_i("blocksize", 4)],
        )],
        vec![],
        &[1, c, hh, ww],
        13,
    );
    let e = import_err(&m);
    assert!(e.contains("'s2d'") && e.contains("blocksize 4"), "{e}");
}

/// ArgMax over an NCHW image's channels (a segmentation head), keepdims 0: the index of
/// the f64 convolution's largest channel per pixel in FP32; the static INT8 model keeps
/// the indices exact (f32 whole numbers in range) and agrees with FP32 on most pixels.
#[test]
fn argmax_over_channels_gives_indices() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(67);
    let (c, oc, h, w) = (3usize, 5usize, 6usize, 7usize);
    let x = rand_vec(c * h * w, &mut rng);
    let wt = rand_vec(oc * c * 9, &mut rng);
    let m = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w"],
                &["c"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "ArgMax",
                "arg",
                &["c"],
                &["y"],
                vec![attr_i("axis", 1), attr_i("keepdims", 0)],
            ),
        ],
        vec![tensor_f32("w", &[oc, c, 3, 3], &wt)],
        &[1, c, h, w],
        13,
    );
    let onnx = import(&m, None).unwrap();
    assert_eq!(onnx.output().shape, vec![1, h, w]);
    let y = conv_ref(&x, [1, c, h, w], &wt, oc, 3, 1, &vec![0.0; oc]);
    let want: Vec<f32> = (0..h * w)
        .map(|p| {
            (0..oc)
                .max_by(|&a, &b| y[a * h * w + p].total_cmp(&y[b * h * w + p]))
                .unwrap() as f32
        })
        .collect();
    assert_eq!(run(ctx, &onnx, &x), want);
    let xt = input_tensor(ctx, &onnx, &x);
    let q = int8_output(ctx, &onnx, &xt, QMode::Static);
    assert!(
        q.iter()
            .all(|&v| v.fract() == 0.0 && (0.0..oc as f32).contains(&v)),
        "{q:?}"
    );
    let same = q.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(
        same * 10 >= want.len() * 8,
        "INT8 agrees on {same} of {} pixels",
        want.len()
    );
}
