//! ONNX's own conformance tests for QuantizeLinear, DequantizeLinear and
//! DynamicQuantizeLinear (vendored from the onnx==1.22.0 wheel into tests/data/onnx by
//! tools/vendor_onnx_tests.sh), run through our GPU kernels. The model and TensorProto
//! files are decoded with prost. Every case whose types we support must match ONNX's
//! expected output exactly (codes, scales and zero points bit for bit; dequantized
//! values bit for bit, which is stricter than ONNX's rtol 1e-3 / atol 1e-7). Cases with
//! types we do not support are named in UNSUPPORTED, and the test checks that each one
//! really uses such a type, so nothing is dropped silently.
//!
//! The same suite's integer convolutions (`test_convinteger_*`, `test_qlinearconv`) must
//! match exactly, and the float layers exported from PyTorch (`pytorch-converted`:
//! Conv2d with groups, depthwise, dilation, padding and strides, average and max pooling,
//! softmax, ReLU) must meet ONNX's tolerance (rtol 1e-3, atol 1e-7) after NCHW->NHWC
//! conversion at the edges. ONNX's `LayerNormalization` cases run through the importer
//! at the same tolerance.

mod common;

use std::path::{Path, PathBuf};

use half::f16;
use prost::Message;
use wgpu_quant::ops::conv::{
    conv2d, nchw_to_nhwc, nhwc_to_nchw, qconv2d, ConvDesc, ConvDims, ConvWeight, Padding,
    QConvWeight,
};
use wgpu_quant::ops::eltwise::{clip, softmax, Clip};
use wgpu_quant::ops::pool::{pool2d, PoolDesc, PoolKind};
use wgpu_quant::ops::qgemm::QGemmOutput;
use wgpu_quant::ops::quant::{dequantize, dynamic_quantize, quantize, DynamicQuant, QTensor};
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::{Context, DType, Tensor};

/// Cases using types wgpu-quant does not implement: float8 (e4m3fn, e5m2), fp4
/// (float4e2m1) and 2-bit integers.
const UNSUPPORTED: [&str; 12] = [
    "test_dequantizelinear_e4m3fn",
    "test_dequantizelinear_e4m3fn_float16",
    "test_dequantizelinear_e4m3fn_zero_point",
    "test_dequantizelinear_e5m2",
    "test_dequantizelinear_float4e2m1",
    "test_dequantizelinear_int2",
    "test_dequantizelinear_uint2",
    "test_quantizelinear_e4m3fn",
    "test_quantizelinear_e5m2",
    "test_quantizelinear_float4e2m1",
    "test_quantizelinear_int2",
    "test_quantizelinear_uint2",
];

use wgpu_quant::import::proto::type_proto::Value;
use wgpu_quant::import::proto::{ModelProto, NodeProto, TensorProto};
use wgpu_quant::import::OnnxImport;

/// TensorProto.DataType values.
fn type_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        10 => "float16",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        25 => "uint2",
        26 => "int2",
        _ => "other",
    }
}

fn qtype_of(t: i32) -> Option<QType> {
    match t {
        2 => Some(QType::U8),
        3 => Some(QType::I8),
        4 => Some(QType::U16),
        5 => Some(QType::I16),
        21 => Some(QType::U4),
        22 => Some(QType::I4),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Data {
    dtype: i32,
    shape: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i32>,
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn decode(t: &TensorProto) -> Result<Data, String> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = numel(&shape);
    let raw = t.raw_data();
    let mut d = Data {
        dtype: t.data_type(),
        shape,
        floats: vec![],
        ints: vec![],
    };
    match t.data_type() {
        1 => {
            d.floats = if raw.is_empty() {
                t.float_data.clone()
            } else {
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            }
        }
        10 => {
            let bits: Vec<u16> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                raw.chunks_exact(2)
                    .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            };
            d.floats = bits
                .into_iter()
                .map(|b| f16::from_bits(b).to_f32())
                .collect();
        }
        2..=5 => {
            d.ints = if raw.is_empty() {
                t.int32_data.clone()
            } else {
                match t.data_type() {
                    2 => raw.iter().map(|&b| i32::from(b)).collect(),
                    3 => raw.iter().map(|&b| i32::from(b as i8)).collect(),
                    4 => raw
                        .chunks_exact(2)
                        .map(|b| i32::from(u16::from_le_bytes([b[0], b[1]])))
                        .collect(),
                    _ => raw
                        .chunks_exact(2)
                        .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
                        .collect(),
                }
            };
        }
        7 => {
            // int64 (indices): raw or int64_data, kept while they fit an i32.
            let v: Vec<i64> = if raw.is_empty() {
                t.int64_data.clone()
            } else {
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            };
            d.ints = v
                .iter()
                .map(|&x| i32::try_from(x).map_err(|_| format!("int64 value {x} out of range")))
                .collect::<Result<_, _>>()?;
        }
        9 => {
            // Booleans: a byte each (or int32_data).
            d.ints = if raw.is_empty() {
                t.int32_data.clone()
            } else {
                raw.iter().map(|&b| i32::from(b != 0)).collect()
            };
        }
        6 => {
            d.ints = if raw.is_empty() {
                t.int32_data.clone()
            } else {
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            };
        }
        21 | 22 => {
            // Two 4-bit values per byte, low nibble first; int32_data holds one byte each.
            let bytes: Vec<u8> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u8).collect()
            } else {
                raw.to_vec()
            };
            d.ints = (0..n)
                .map(|i| {
                    let nib = (bytes[i / 2] >> (4 * (i % 2))) & 0xf;
                    if t.data_type() == 22 {
                        (i32::from(nib) << 28) >> 28
                    } else {
                        i32::from(nib)
                    }
                })
                .collect();
        }
        other => return Err(format!("unsupported element type {}", type_name(other))),
    }
    let got = d.floats.len().max(d.ints.len());
    if got != n {
        return Err(format!(
            "{}: {} values for shape {:?}",
            t.name(),
            got,
            d.shape
        ));
    }
    Ok(d)
}

fn read_pb<M: Message + Default>(path: &Path) -> M {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Case {
    name: String,
    op: String,
    attrs: Vec<(String, i64)>,
    output_type: i32,
    inputs: Vec<TensorProto>,
    outputs: Vec<TensorProto>,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let model: ModelProto = read_pb(&dir.join("model.onnx"));
        let graph = model.graph.expect("model without graph");
        let read_all = |prefix: &str| -> Vec<TensorProto> {
            (0..)
                .map(|i| dir.join("test_data_set_0").join(format!("{prefix}_{i}.pb")))
                .take_while(|p| p.exists())
                .map(|p| read_pb(&p))
                .collect()
        };
        // The expanded variants spell the op as a subgraph with the same inputs/outputs.
        let op = if graph.node.len() == 1 {
            graph.node[0].op_type().to_string()
        } else {
            "DynamicQuantizeLinear".to_string()
        };
        let attrs = if graph.node.len() == 1 {
            graph.node[0]
                .attribute
                .iter()
                .map(|a| (a.name().to_string(), a.i()))
                .collect()
        } else {
            vec![]
        };
        let output_type = graph.output[0]
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(Value::TensorType(t)) => Some(t.elem_type()),
                _ => None,
            })
            .unwrap_or(0);
        Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            op,
            attrs,
            output_type,
            inputs: read_all("input"),
            outputs: read_all("output"),
        }
    }

    fn attr(&self, name: &str) -> Option<i64> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Element types this case uses that we do not support, if any.
    fn unsupported_types(&self) -> Vec<&'static str> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .map(|t| t.data_type())
            .chain([self.output_type])
            .filter(|&t| !matches!(t, 1 | 10) && qtype_of(t).is_none())
            .map(type_name)
            .collect()
    }
}

/// Scale/zero-point granularity of ONNX (De)QuantizeLinear.
fn granularity(case: &Case, x_shape: &[usize], scale_shape: &[usize]) -> Granularity {
    let rank = x_shape.len() as i64;
    let axis = case.attr("axis").unwrap_or(1);
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    let block = case.attr("block_size").unwrap_or(0);
    if block > 0 {
        Granularity::PerGroup {
            axis,
            group_size: block as usize,
        }
    } else if numel(scale_shape) == 1 && scale_shape.len() <= 1 {
        Granularity::PerTensor
    } else {
        Granularity::PerChannel { axis }
    }
}

fn upload(ctx: &Context, d: &Data) -> Tensor {
    if d.dtype == 10 {
        let h: Vec<f16> = d.floats.iter().map(|&v| f16::from_f32(v)).collect();
        Tensor::from_slice(ctx, &d.shape, &h).unwrap()
    } else {
        Tensor::from_slice(ctx, &d.shape, &d.floats).unwrap()
    }
}

fn run_quantize(ctx: &Context, case: &Case) -> Result<(), String> {
    let x = decode(&case.inputs[0])?;
    let scale = decode(&case.inputs[1])?;
    let zp = case.inputs.get(2).map(decode).transpose()?;
    let want = decode(&case.outputs[0])?;
    let qtype = qtype_of(want.dtype).ok_or("output type")?;
    let g = granularity(case, &x.shape, &scale.shape);
    let zps = zp.map_or(vec![0; scale.floats.len()], |z| z.ints);
    let params = QuantParams::new(qtype, g, &x.shape, scale.floats.clone(), zps)
        .map_err(|e| e.to_string())?;
    let q = QTensor::new(ctx, &params).map_err(|e| e.to_string())?;
    let mut enc = ctx.encoder(&case.name);
    quantize(ctx, &mut enc, &upload(ctx, &x), &q).map_err(|e| e.to_string())?;
    ctx.submit_and_wait(enc).map_err(|e| e.to_string())?;
    let got = q.read_codes_blocking(ctx).map_err(|e| e.to_string())?;
    if got != want.ints {
        return Err(format!("codes {got:?}, ONNX expects {:?}", want.ints));
    }
    if params.quantize(&x.floats).unwrap() != want.ints {
        return Err("the Rust reference disagrees with ONNX".into());
    }
    Ok(())
}

fn run_dequantize(ctx: &Context, case: &Case) -> Result<(), String> {
    let x = decode(&case.inputs[0])?;
    let scale = decode(&case.inputs[1])?;
    let zp = case.inputs.get(2).map(decode).transpose()?;
    let want = decode(&case.outputs[0])?;
    let qtype = qtype_of(x.dtype).ok_or("input type")?;
    let g = granularity(case, &x.shape, &scale.shape);
    let zps = zp.map_or(vec![0; scale.floats.len()], |z| z.ints);
    let params = QuantParams::new(qtype, g, &x.shape, scale.floats.clone(), zps)
        .map_err(|e| e.to_string())?;
    let q = QTensor::from_codes(ctx, &params, &x.ints).map_err(|e| e.to_string())?;
    let out = Tensor::zeros(ctx, &x.shape, DType::F32).unwrap();
    let mut enc = ctx.encoder(&case.name);
    dequantize(ctx, &mut enc, &q, &out).map_err(|e| e.to_string())?;
    ctx.submit_and_wait(enc).map_err(|e| e.to_string())?;
    let got = out.read_blocking::<f32>(ctx).map_err(|e| e.to_string())?;
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    if bits(&got) != bits(&want.floats) {
        return Err(format!("values {got:?}, ONNX expects {:?}", want.floats));
    }
    Ok(())
}

fn run_dynamic(ctx: &Context, case: &Case) -> Result<(), String> {
    let x = decode(&case.inputs[0])?;
    let (want_y, want_s, want_z) = (
        decode(&case.outputs[0])?,
        decode(&case.outputs[1])?,
        decode(&case.outputs[2])?,
    );
    let spec = DynamicQuant::onnx();
    let q = QTensor::for_dynamic(ctx, &spec, &x.shape).map_err(|e| e.to_string())?;
    let mut enc = ctx.encoder(&case.name);
    dynamic_quantize(ctx, &mut enc, &upload(ctx, &x), &spec, &q).map_err(|e| e.to_string())?;
    ctx.submit_and_wait(enc).map_err(|e| e.to_string())?;
    let p = q.read_params_blocking(ctx).map_err(|e| e.to_string())?;
    if p.scales()[0].to_bits() != want_s.floats[0].to_bits() || p.zero_points()[0] != want_z.ints[0]
    {
        return Err(format!(
            "scale {:e} zero point {}, ONNX expects {:e} and {}",
            p.scales()[0],
            p.zero_points()[0],
            want_s.floats[0],
            want_z.ints[0]
        ));
    }
    let got = q.read_codes_blocking(ctx).map_err(|e| e.to_string())?;
    if got != want_y.ints {
        return Err(format!("codes {got:?}, ONNX expects {:?}", want_y.ints));
    }
    Ok(())
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/node");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}; run tools/vendor_onnx_tests.sh", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("test_quantizelinear")
                || n.starts_with("test_dequantizelinear")
                || n.starts_with("test_dynamicquantizelinear")
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn onnx_quantization_node_tests() {
    let ctx = common::ctx();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for dir in case_dirs() {
        let case = Case::load(&dir);
        let listed = UNSUPPORTED.contains(&case.name.as_str());
        let bad_types = case.unsupported_types();
        if listed {
            assert!(
                !bad_types.is_empty(),
                "{} is listed as unsupported but uses only supported types",
                case.name
            );
            skipped.push(format!("{} ({})", case.name, bad_types.join(", ")));
            continue;
        }
        assert!(
            bad_types.is_empty(),
            "{} uses {:?}: support it or list it in UNSUPPORTED",
            case.name,
            bad_types
        );
        let result = match case.op.as_str() {
            "QuantizeLinear" => run_quantize(ctx, &case),
            "DequantizeLinear" => run_dequantize(ctx, &case),
            "DynamicQuantizeLinear" => run_dynamic(ctx, &case),
            other => Err(format!("unexpected operator {other}")),
        };
        match result {
            Ok(()) => passed.push(case.name),
            Err(e) => failed.push(format!("{}: {e}", case.name)),
        }
    }
    eprintln!("passed ({}): {passed:?}", passed.len());
    eprintln!("unsupported types ({}): {skipped:?}", skipped.len());
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    assert_eq!(
        skipped.len(),
        UNSUPPORTED.len(),
        "a listed case is missing from tests/data/onnx"
    );
    // 21 supported cases: int8/uint8/int16/uint16/int4/uint4, per-axis, blocked, dynamic.
    assert_eq!(passed.len(), 21, "passed: {passed:?}");
}

/// A vendored model with its single node, initializers and first test data set.
struct Layer {
    name: String,
    node: NodeProto,
    init: Vec<TensorProto>,
    inputs: Vec<Data>,
    output: Data,
}

impl Layer {
    fn load(dir: &Path) -> Layer {
        let model: ModelProto = read_pb(&dir.join("model.onnx"));
        let graph = model.graph.expect("model without graph");
        assert_eq!(graph.node.len(), 1, "{}: one node expected", dir.display());
        let set = dir.join("test_data_set_0");
        let inputs = (0..)
            .map(|i| set.join(format!("input_{i}.pb")))
            .take_while(|p| p.exists())
            .map(|p| decode(&read_pb(&p)).unwrap())
            .collect();
        Layer {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            node: graph.node[0].clone(),
            init: graph.initializer,
            inputs,
            output: decode(&read_pb(&set.join("output_0.pb"))).unwrap(),
        }
    }

    /// Input `i` of the node: from the test data set, else an initializer.
    fn input(&self, i: usize) -> Option<Data> {
        let name = self.node.input.get(i).filter(|n| !n.is_empty())?;
        if let Some(t) = self.init.iter().find(|t| t.name() == name) {
            return Some(decode(t).unwrap());
        }
        // Data-set inputs are in the order of the graph inputs that are not initializers.
        let pos = self
            .node
            .input
            .iter()
            .filter(|n| !self.init.iter().any(|t| t.name() == n.as_str()))
            .position(|n| n == name)?;
        self.inputs.get(pos).cloned()
    }

    fn ints(&self, name: &str) -> Option<Vec<usize>> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name() == name)
            .map(|a| a.ints.iter().map(|&v| v as usize).collect())
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name() == name)
            .map(|a| a.i())
    }

    fn conv_desc(&self) -> ConvDesc {
        let two = |v: Option<Vec<usize>>| v.map_or([1, 1], |v| [v[0], v[1]]);
        let pads = self.ints("pads").unwrap_or(vec![0; 4]);
        ConvDesc {
            stride: two(self.ints("strides")),
            dilation: two(self.ints("dilations")),
            padding: Padding::Explicit([pads[0], pads[1], pads[2], pads[3]]),
            ..ConvDesc::default()
        }
    }
}

fn nchw(shape: &[usize]) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// ONNX's comparison: |got - want| <= atol + rtol * |want| everywhere.
fn close(got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() && g.is_nan() || (w.is_infinite() && g == w) {
            continue;
        }
        if g.is_nan() || (g - w).abs() > 1e-7 + 1e-3 * w.abs() {
            return Err(format!("output[{i}] = {g}, expected {w}"));
        }
    }
    Ok(())
}

fn run_float_layer(ctx: &Context, l: &Layer) -> Result<(), String> {
    let x = l.input(0).ok_or("no input")?;
    let rank = x.shape.len();
    let xt = |data: &[f32], shape: &[usize]| Tensor::from_slice(ctx, shape, data).unwrap();
    let mut enc = ctx.encoder("onnx layer");
    let e = |e: wgpu_quant::Error| e.to_string();
    let (out, nhwc_out) = match l.node.op_type() {
        "Conv" | "AveragePool" | "MaxPool" => {
            let [n, c, h, w] = nchw(&x.shape);
            let x_nhwc = xt(&nchw_to_nhwc(&x.floats, [n, c, h, w]), &[n, h, w, c]);
            if l.node.op_type() == "Conv" {
                let wd = l.input(1).ok_or("no weight")?;
                let group = l.int("group").unwrap_or(1).max(1) as usize;
                let dims =
                    ConvDims::new(wd.shape[0], c, [wd.shape[2], wd.shape[3]], group).map_err(e)?;
                let weight = ConvWeight::from_oihw(ctx, dims, &wd.floats, DType::F32).map_err(e)?;
                let bias = l.input(2).map(|b| xt(&b.floats, &b.shape));
                let desc = l.conv_desc();
                let oshape = desc.output_shape(&dims, x_nhwc.shape()).map_err(e)?;
                let out = Tensor::zeros(ctx, &oshape, DType::F32).unwrap();
                conv2d(ctx, &mut enc, &desc, &x_nhwc, &weight, bias.as_ref(), &out).map_err(e)?;
                (out, true)
            } else {
                let k = l.ints("kernel_shape").ok_or("no kernel_shape")?;
                let cd = l.conv_desc();
                let desc = PoolDesc {
                    kind: if l.node.op_type() == "MaxPool" {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    },
                    kernel: Some([k[0], k[1]]),
                    stride: cd.stride,
                    padding: cd.padding,
                    dilation: cd.dilation,
                    count_pad: l.int("count_include_pad").unwrap_or(0) != 0,
                };
                let oshape = desc.output_shape(x_nhwc.shape()).map_err(e)?;
                let out = Tensor::zeros(ctx, &oshape, DType::F32).unwrap();
                pool2d(ctx, &mut enc, &desc, &x_nhwc, &out).map_err(e)?;
                (out, true)
            }
        }
        "Relu" => {
            let out = Tensor::zeros(ctx, &x.shape, DType::F32).unwrap();
            clip(ctx, &mut enc, &xt(&x.floats, &x.shape), Clip::RELU, &out).map_err(e)?;
            (out, false)
        }
        "Softmax" => {
            let axis = l.int("axis").unwrap_or(-1);
            if axis != -1 && axis as usize != rank - 1 {
                return Err(format!("softmax over axis {axis} of a rank-{rank} tensor"));
            }
            let out = Tensor::zeros(ctx, &x.shape, DType::F32).unwrap();
            softmax(ctx, &mut enc, &xt(&x.floats, &x.shape), &out).map_err(e)?;
            (out, false)
        }
        other => return Err(format!("unexpected operator {other}")),
    };
    ctx.submit_and_wait(enc).map_err(e)?;
    let got = out.read_blocking::<f32>(ctx).unwrap();
    let got = if nhwc_out {
        let s = out.shape();
        nhwc_to_nchw(&got, [s[0], s[1], s[2], s[3]])
    } else {
        got
    };
    if got.len() != l.output.floats.len() {
        return Err(format!(
            "output shape {:?} (NHWC), expected {:?} (NCHW)",
            out.shape(),
            l.output.shape
        ));
    }
    close(&got, &l.output.floats)
}

/// Per-tensor or per-output-channel parameters for OIHW weights from ONNX scale/zero-point
/// tensors.
fn weight_params(qt: QType, oihw: &[usize], scale: &[f32], zp: &[i32]) -> QuantParams {
    let (g, n) = if scale.len() == 1 && zp.len() <= 1 {
        (Granularity::PerTensor, 1)
    } else {
        (Granularity::PerChannel { axis: 0 }, oihw[0])
    };
    let zp = if zp.is_empty() {
        vec![0; n]
    } else {
        zp.to_vec()
    };
    let zp = if zp.len() == 1 { vec![zp[0]; n] } else { zp };
    let scale = if scale.len() == 1 {
        vec![scale[0]; n]
    } else {
        scale.to_vec()
    };
    QuantParams::new(qt, g, oihw, scale, zp).unwrap()
}

fn run_int_conv(ctx: &Context, l: &Layer) -> Result<(), String> {
    let e = |e: wgpu_quant::Error| e.to_string();
    let linear = l.node.op_type() == "QLinearConv";
    // ConvInteger: x, w, x_zp, w_zp. QLinearConv: x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp.
    let (xi, wi) = if linear { (0, 3) } else { (0, 1) };
    let x = l.input(xi).ok_or("no x")?;
    let w = l.input(wi).ok_or("no w")?;
    let scalar_f = |i: usize| l.input(i).map_or(vec![1.0], |d| d.floats);
    let ints = |i: usize| l.input(i).map_or(vec![], |d| d.ints);
    let (xs, xz, ws, wz) = if linear {
        (scalar_f(1), ints(2), scalar_f(4), ints(5))
    } else {
        (vec![1.0], ints(2), vec![1.0], ints(3))
    };
    let xq_t = qtype_of(x.dtype).ok_or("x type")?;
    let wq_t = qtype_of(w.dtype).ok_or("w type")?;
    let [n, c, h, wd] = nchw(&x.shape);
    let xshape = [n, h, wd, c];
    let xp = QuantParams::new(
        xq_t,
        Granularity::PerTensor,
        &xshape,
        xs.clone(),
        vec![xz.first().copied().unwrap_or(0)],
    )
    .unwrap();
    let xq = QTensor::from_codes(ctx, &xp, &nchw_to_nhwc(&x.ints, [n, c, h, wd])).map_err(e)?;
    let group = l.int("group").unwrap_or(1).max(1) as usize;
    let dims = ConvDims::new(w.shape[0], c, [w.shape[2], w.shape[3]], group).map_err(e)?;
    let wp = weight_params(wq_t, &dims.oihw(), &ws, &wz);
    let wq = QConvWeight::from_codes(ctx, dims, &w.ints, &wp).map_err(e)?;
    let desc = l.conv_desc();
    let oshape = desc.output_shape(&dims, &xshape).map_err(e)?;
    let mut enc = ctx.encoder("onnx int conv");
    let got = if linear {
        let yq_t = qtype_of(l.output.dtype).ok_or("y type")?;
        let yp = QuantParams::new(
            yq_t,
            Granularity::PerTensor,
            &oshape,
            scalar_f(6),
            vec![ints(7).first().copied().unwrap_or(0)],
        )
        .unwrap();
        let yq = QTensor::new(ctx, &yp).map_err(e)?;
        qconv2d(
            ctx,
            &mut enc,
            &desc,
            &xq,
            &wq,
            None,
            QGemmOutput::Quantized(&yq),
        )
        .map_err(e)?;
        ctx.submit_and_wait(enc).map_err(e)?;
        yq.read_codes_blocking(ctx).map_err(e)?
    } else {
        let out = Tensor::zeros(ctx, &oshape, DType::I32).unwrap();
        qconv2d(ctx, &mut enc, &desc, &xq, &wq, None, QGemmOutput::I32(&out)).map_err(e)?;
        ctx.submit_and_wait(enc).map_err(e)?;
        out.read_blocking::<i32>(ctx).unwrap()
    };
    let got = nhwc_to_nchw(&got, [oshape[0], oshape[1], oshape[2], oshape[3]]);
    if got != l.output.ints {
        return Err(format!("got {got:?}, expected {:?}", l.output.ints));
    }
    Ok(())
}

#[test]
fn onnx_convolution_and_layer_tests() {
    let ctx = common::ctx();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx");
    let list = |sub: &str, keep: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
            .unwrap_or_else(|e| panic!("{sub}: {e}; run tools/vendor_onnx_tests.sh"))
            .map(|e| e.unwrap().path())
            .filter(|p| keep(&p.file_name().unwrap().to_string_lossy()))
            .collect();
        v.sort();
        v
    };
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for dir in list("node", &|n| {
        n.starts_with("test_convinteger") || n.starts_with("test_qlinearconv")
    }) {
        let l = Layer::load(&dir);
        match run_int_conv(ctx, &l) {
            Ok(()) => passed.push(l.name),
            Err(e) => failed.push(format!("{}: {e}", l.name)),
        }
    }
    // (The 1-D cases run through the importer only, which lifts them to 2-D.)
    for dir in list("pytorch-converted", &|n| !n.contains("1d")) {
        let l = Layer::load(&dir);
        match run_float_layer(ctx, &l) {
            Ok(()) => passed.push(l.name),
            Err(e) => failed.push(format!("{}: {e}", l.name)),
        }
    }
    eprintln!("passed ({}): {passed:?}", passed.len());
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    // 3 integer convolutions, 11 Conv2d, 3 pooling, 2 softmax, 1 ReLU.
    assert_eq!(passed.len(), 20, "passed: {passed:?}");
}

/// A whole `model.onnx` through the importer (`OnnxImport`: layout at the edges, the
/// plan's kernels), compared with ONNX's expected output at ONNX's tolerance.
fn run_imported(ctx: &Context, dir: &Path) -> Result<(), String> {
    let set = dir.join("test_data_set_0");
    let x = decode(&read_pb(&set.join("input_0.pb")))?;
    let want = decode(&read_pb(&set.join("output_0.pb")))?;
    let onnx =
        OnnxImport::load(dir.join("model.onnx"), Some(&x.shape)).map_err(|e| e.to_string())?;
    let model = onnx.model(ctx, DType::F32).map_err(|e| e.to_string())?;
    let xin = onnx.to_model_input(&x.floats).map_err(|e| e.to_string())?;
    let xt = Tensor::from_slice(ctx, &onnx.input().model_shape, &xin).map_err(|e| e.to_string())?;
    let mut enc = ctx.encoder("imported");
    let y = model
        .forward(ctx, &mut enc, &xt)
        .map_err(|e| e.to_string())?
        .clone();
    ctx.submit_and_wait(enc).map_err(|e| e.to_string())?;
    let got = onnx
        .from_model_output(&y.read_blocking::<f32>(ctx).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if onnx.output().shape != want.shape {
        return Err(format!(
            "output shape {:?}, expected {:?}",
            onnx.output().shape,
            want.shape
        ));
    }
    close(&got, &want.floats)
}

#[test]
fn onnx_float_models_through_the_importer() {
    let ctx = common::ctx();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/pytorch-converted");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}; run tools/vendor_onnx_tests.sh", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let mut failed = Vec::new();
    for dir in &dirs {
        if let Err(e) = run_imported(ctx, dir) {
            failed.push(format!("{}: {e}", dir.display()));
        }
    }
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    // 17 2-D cases, and 13 1-D ones (Conv1d, AvgPool1d, MaxPool1d) lifted to 2-D.
    assert_eq!(dirs.len(), 30, "the vendored pytorch-converted cases");
}

/// ONNX's own QLinearConv and 2-D QLinearMatMul cases through the importer: the node
/// wrapped as `QuantizeLinear -> node -> DequantizeLinear` with its other inputs as
/// initializers, fed the dequantized codes (which quantize back to the same codes), run
/// by `OnnxImport::qmodel` on the integer kernels. The model's last layer writes the
/// file's codes with ONNX's requantization and `forward` returns them dequantized;
/// quantized again with the output's scale and zero point they are ONNX's codes (the
/// helper refuses more than one code apart and counts the exact ones; the test wants
/// all).
fn run_qoperator_case(ctx: &Context, dir: &Path) -> Result<(usize, usize), String> {
    let mut m: ModelProto = read_pb(&dir.join("model.onnx"));
    let set = dir.join("test_data_set_0");
    let g = m.graph.as_mut().ok_or("no graph")?;
    let names: Vec<String> = g.input.iter().map(|i| i.name().to_string()).collect();
    let mut inits = Vec::new();
    for (k, name) in names.iter().enumerate().skip(1) {
        let mut t: TensorProto = read_pb(&set.join(format!("input_{k}.pb")));
        t.name = Some(name.clone());
        inits.push(t);
    }
    let x = decode(&read_pb(&set.join("input_0.pb")))?;
    let want = decode(&read_pb(&set.join("output_0.pb")))?;
    let (xs, xz) = (decode(&inits[0])?.floats[0], decode(&inits[1])?.ints[0]);
    let (ys, yz) = (
        decode(&inits[names.len() - 3])?.floats[0],
        decode(&inits[names.len() - 2])?.ints[0],
    );
    let node = &mut g.node[0];
    let y_name = node.output[0].clone();
    node.input[0] = "xq".into();
    node.output[0] = "yq".into();
    let q = NodeProto {
        op_type: Some("QuantizeLinear".into()),
        input: vec!["xf".into(), names[1].clone(), names[2].clone()],
        output: vec!["xq".into()],
        ..Default::default()
    };
    let dq = NodeProto {
        op_type: Some("DequantizeLinear".into()),
        input: vec![
            "yq".into(),
            names[names.len() - 2].clone(),
            names[names.len() - 1].clone(),
        ],
        output: vec![y_name.clone()],
        ..Default::default()
    };
    g.node.insert(0, q);
    g.node.push(dq);
    let mut xin = g.input[0].clone();
    xin.name = Some("xf".into());
    if let Some(Value::TensorType(t)) = xin.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = Some(1);
    }
    g.input = vec![xin];
    g.initializer = inits;
    if let Some(Value::TensorType(t)) = g.output[0].r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = Some(1);
    }
    let onnx = OnnxImport::from_bytes(
        &m.encode_to_vec(),
        &dir.display().to_string(),
        None,
        Some(&x.shape),
    )
    .map_err(|e| e.to_string())?;
    let model = onnx.qmodel(ctx).map_err(|e| e.to_string())?;
    let xf: Vec<f32> = x.ints.iter().map(|&q| (q - xz) as f32 * xs).collect();
    let xt = Tensor::from_slice(
        ctx,
        &onnx.input().model_shape,
        &onnx.to_model_input(&xf).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut enc = ctx.encoder("qoperator");
    let y = model
        .forward(ctx, &mut enc, &xt)
        .map_err(|e| e.to_string())?
        .clone();
    ctx.submit_and_wait(enc).map_err(|e| e.to_string())?;
    let got = onnx
        .from_model_output(&y.read_blocking::<f32>(ctx).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let qt = qtype_of(want.dtype).ok_or("output type")?;
    let mut exact = 0;
    for (i, (&g, &w)) in got.iter().zip(&want.ints).enumerate() {
        let code = ((g / ys).round_ties_even() as i32 + yz).clamp(qt.qmin(), qt.qmax());
        if (code - w).abs() > 1 {
            return Err(format!("y[{i}]: code {code} (value {g}), ONNX {w}"));
        }
        exact += usize::from(code == w);
    }
    Ok((exact, got.len()))
}

/// ONNX's `QLinearConv` and `QLinearMatMul` node cases through `OnnxImport::qmodel`,
/// every output code ONNX's: the 2-D products on the integer kernels, the 3-D ones
/// (a batched constant B) as batched f32 products of the dequantized codes.
#[test]
fn onnx_qoperator_cases_through_the_importer() {
    let ctx = common::ctx();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/node");
    let mut ran = Vec::new();
    for name in [
        "test_qlinearconv",
        "test_qlinearmatmul_2D_int8_float32",
        "test_qlinearmatmul_2D_uint8_float32",
        "test_qlinearmatmul_2D_int8_float16",
        "test_qlinearmatmul_2D_uint8_float16",
        "test_qlinearmatmul_3D_int8_float32",
        "test_qlinearmatmul_3D_uint8_float32",
        "test_qlinearmatmul_3D_int8_float16",
        "test_qlinearmatmul_3D_uint8_float16",
    ] {
        let (exact, n) =
            run_qoperator_case(ctx, &root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every code of these cases is ONNX's exactly.
        assert_eq!(exact, n, "{name}: {exact} of {n} codes exact");
        ran.push(name);
    }
    assert_eq!(ran.len(), 9);
}

/// ONNX's own `LayerNormalization` cases (2-D to 4-D, every axis, epsilon) through the
/// importer: the Scale and B inputs become initializers and only Y is read (the Mean and
/// InvStdDev outputs are training outputs), FP32 at ONNX's tolerance: all 19 run, and
/// so do the 38 `_expanded` variants, which spell the operator as its function body
/// (shape arithmetic, `Flatten` with negative axes, the statistics as row means of
/// products of the model input with itself, broadcast `Sub`/`Div`, `Sqrt`,
/// `Reciprocal`).
#[test]
fn onnx_layer_normalization_cases_through_the_importer() {
    let ctx = common::ctx();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/node");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("test_layer_normalization")
        })
        .collect();
    dirs.sort();
    let (mut passed, mut refused, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let set = dir.join("test_data_set_0");
        let mut m: ModelProto = read_pb(&dir.join("model.onnx"));
        let g = m.graph.as_mut().unwrap();
        for (k, input) in g.input.clone().iter().enumerate().skip(1) {
            let mut t: TensorProto = read_pb(&set.join(format!("input_{k}.pb")));
            t.name = Some(input.name().to_string());
            g.initializer.push(t);
        }
        g.input.truncate(1);
        g.output.truncate(1);
        let x = decode(&read_pb(&set.join("input_0.pb"))).unwrap();
        let want = decode(&read_pb(&set.join("output_0.pb"))).unwrap();
        let onnx = match OnnxImport::from_bytes(&m.encode_to_vec(), &name, None, Some(&x.shape)) {
            Ok(o) => o,
            Err(e) => {
                refused.push(format!("{name}: {e}"));
                continue;
            }
        };
        let model = onnx.model(ctx, DType::F32).unwrap();
        let xin = onnx.to_model_input(&x.floats).unwrap();
        let xt = Tensor::from_slice(ctx, &onnx.input().model_shape, &xin).unwrap();
        let mut enc = ctx.encoder("layer norm case");
        let y = model.forward(ctx, &mut enc, &xt).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let got = onnx
            .from_model_output(&y.read_blocking::<f32>(ctx).unwrap())
            .unwrap();
        match close(&got, &want.floats) {
            Ok(()) if onnx.output().shape == want.shape => passed.push(name),
            Ok(()) => failed.push(format!("{name}: shape {:?}", onnx.output().shape)),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    eprintln!("passed ({}): {passed:?}", passed.len());
    eprintln!("refused ({}):\n{}", refused.len(), refused.join("\n"));
    assert!(failed.is_empty(), "wrong results:\n{}", failed.join("\n"));
    // Every case runs, the function bodies included.
    assert!(refused.is_empty(), "refused: {refused:?}");
    assert_eq!(passed.len(), 57, "{passed:?}");
}

/// The prefixes of the vendored ONNX node cases of float operators the importer lists
/// (`tools/vendor_onnx_tests.sh`), run by [`onnx_float_operator_cases_through_the_importer`].
const FLOAT_CASES: &[&str] = &[
    "test_abs",
    "test_add",
    "test_averagepool",
    "test_basic_conv",
    "test_batchnorm",
    "test_cast",
    "test_clip",
    "test_concat",
    "test_constant_pad",
    "test_constantofshape",
    "test_conv_with",
    "test_convtranspose",
    "test_depthtospace",
    "test_div",
    "test_dropout",
    "test_edge_pad",
    "test_erf",
    "test_exp",
    "test_flatten",
    "test_gelu",
    "test_gather_0",
    "test_gather_1",
    "test_gather_2d",
    "test_gather_negative",
    "test_gemm",
    "test_globalaveragepool",
    "test_globalmaxpool",
    "test_hardsigmoid",
    "test_hardswish",
    "test_identity",
    "test_leakyrelu",
    "test_log",
    "test_matmul_",
    "test_maxpool",
    "test_mul",
    "test_neg",
    "test_pow",
    "test_reciprocal",
    "test_reduce_max",
    "test_reduce_sum",
    "test_reduce_mean",
    "test_reflect_pad",
    "test_relu",
    "test_reshape",
    "test_resize",
    "test_shape",
    "test_sigmoid",
    "test_slice",
    "test_softmax",
    "test_sqrt",
    "test_squeeze",
    "test_sub",
    "test_tanh",
    "test_transpose",
    "test_unsqueeze",
    "test_upsample",
    "test_celu",
    "test_elu",
    "test_selu",
    "test_softplus",
    "test_softsign",
    "test_mish",
    "test_prelu",
    "test_sum",
    "test_mean",
    "test_max_",
    "test_min_",
    "test_split",
    "test_lrn",
    "test_instancenorm",
    "test_reduce_l1",
    "test_reduce_l2",
    "test_reduce_min",
    "test_group_normalization",
    "test_less",
    "test_greater",
    "test_equal",
    "test_where",
    "test_not",
    "test_and",
    "test_or",
    "test_xor",
    "test_lstm",
    "test_gru",
    "test_logsoftmax",
    "test_tile",
    "test_spacetodepth",
    "test_argmax",
    "test_argmin",
];

/// Every vendored ONNX node case of the float operators the importer lists, through
/// `OnnxImport` at FP32: the first input is the model input (its shape given), the others
/// become initializers, the first output is compared at ONNX's tolerance (rtol 1e-3, atol
/// 1e-7). A case either gives ONNX's output or is refused with an import error that names
/// its node; a wrong result, a wrong shape or a panic fails the test. The refusals (several
/// graph inputs of one shape, integer tensors, 3-D pooling, ...) are printed with their
/// reasons (`cargo test --test onnx float_operator -- --nocapture`).
#[test]
fn onnx_float_operator_cases_through_the_importer() {
    let ctx = common::ctx();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/node");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}; run tools/vendor_onnx_tests.sh", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            FLOAT_CASES.iter().any(|c| n.starts_with(c))
        })
        .collect();
    dirs.sort();
    let (mut passed, mut refused, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        match float_case(ctx, dir, &name) {
            Ok(Ok(())) => passed.push(name),
            Ok(Err(e)) => failed.push(format!("{name}: {e}")),
            Err(e) => refused.push(format!("{name}: {e}")),
        }
    }
    eprintln!("passed ({}): {passed:?}", passed.len());
    eprintln!("refused ({}):\n{}", refused.len(), refused.join("\n"));
    assert!(failed.is_empty(), "wrong results:\n{}", failed.join("\n"));
    for r in &refused {
        assert!(
            r.contains("cannot be imported")
                || r.contains("input")
                || r.contains("type")
                || r.contains("is a constant"),
            "a refusal without its reason: {r}"
        );
    }
    // Operators whose every case (with a float input; not the function bodies, not 1-D
    // or 3-D images) runs.
    let whole = [
        "test_abs",
        "test_erf",
        "test_exp",
        "test_log",
        "test_neg",
        "test_reciprocal",
        "test_sqrt",
        "test_relu",
        "test_sigmoid",
        "test_tanh",
        "test_gelu",
        "test_hardswish",
        "test_hardsigmoid",
        "test_leakyrelu",
        "test_clip",
        "test_flatten",
        "test_transpose",
        "test_unsqueeze",
        "test_squeeze",
        "test_globalaveragepool",
        "test_globalmaxpool",
        "test_dropout",
        "test_conv_with",
        "test_basic_conv",
        "test_identity",
        "test_convtranspose",
        "test_concat",
        "test_constant_pad",
        "test_expand",
        "test_depthtospace",
        "test_gemm",
        "test_matmul",
        "test_softmax",
        "test_reduce_mean",
        "test_reduce_max",
        "test_reduce_sum_default",
        "test_reduce_sum_keepdims",
        "test_reduce_sum_do_not",
        "test_reduce_sum_negative",
        "test_slice",
        "test_averagepool",
        "test_maxpool",
        "test_gather_0",
        "test_gather_1",
        "test_gather_2d",
        "test_gather_negative",
        "test_celu",
        "test_elu",
        "test_selu",
        "test_softplus",
        "test_softsign",
        "test_mish",
        "test_prelu",
        "test_sum",
        "test_mean",
        "test_max",
        "test_min",
        "test_split",
        "test_lrn",
        "test_instancenorm",
        "test_reduce_l1",
        "test_reduce_l2",
        "test_reduce_min",
        "test_reduce_sum_square",
        "test_group_normalization",
        "test_less",
        "test_greater",
        "test_pow",
        "test_lstm_defaults",
        "test_lstm_with_initial_bias",
        "test_lstm_batchwise",
        "test_gru",
        "test_logsoftmax",
        "test_tile",
        "test_spacetodepth",
        "test_argmax",
        "test_argmin",
        // keep_aspect_ratio_policy (not_larger, not_smaller).
        "test_resize_upsample_sizes_nearest_not",
        "test_resize_downsample_sizes_nearest_not",
        "test_resize_upsample_scales_linear_half_pixel_symmetric",
        "test_resize_downsample_scales_linear_half_pixel_symmetric",
    ];
    let missing: Vec<&String> = refused
        .iter()
        .filter(|r| {
            whole
                .iter()
                .any(|w| r.starts_with(&format!("{w}:")) || r.starts_with(&format!("{w}_")))
                && !r.contains("_expanded")
                && !r.contains("_1d")
                && !r.contains("_3d")
                && !r.contains("not float")
                && !r.contains("not a tensor")
                && !r.contains("positive dimensions")
                && !r.contains("is empty")
        })
        .collect();
    assert!(missing.is_empty(), "refused: {missing:?}");
}

/// One node case: `Err` when the importer refuses it (the message), `Ok(Err)` for a wrong
/// result.
fn float_case(ctx: &Context, dir: &Path, name: &str) -> Result<Result<(), String>, String> {
    let set = dir.join("test_data_set_0");
    let mut m: ModelProto = read_pb(&dir.join("model.onnx"));
    let g = m.graph.as_mut().unwrap();
    let inp = g.input.first().ok_or("no graph input")?;
    let is_tensor = matches!(
        inp.r#type.as_ref().and_then(|t| t.value.as_ref()),
        Some(Value::TensorType(_))
    );
    if !is_tensor {
        return Err("the model input is not a tensor (a sequence or optional)".into());
    }
    let first = inp.name().to_string();
    for (k, input) in g.input.clone().iter().enumerate().skip(1) {
        let path = set.join(format!("input_{k}.pb"));
        if !path.exists() {
            continue;
        }
        let mut t: TensorProto = read_pb(&path);
        t.name = Some(input.name().to_string());
        g.initializer.push(t);
    }
    g.input.retain(|i| i.name() == first);
    g.output.truncate(1);
    let x_pb: TensorProto = read_pb(&set.join("input_0.pb"));
    if x_pb.data_type() != 1 {
        return Err(format!(
            "the model input is of type {} (not float)",
            x_pb.data_type()
        ));
    }
    let x = decode(&x_pb)?;
    let want = decode(&read_pb(&set.join("output_0.pb")))?;
    let onnx = OnnxImport::from_bytes(&m.encode_to_vec(), name, None, Some(&x.shape))
        .map_err(|e| e.to_string())?;
    let model = onnx.model(ctx, DType::F32).map_err(|e| e.to_string())?;
    let run = || -> wgpu_quant::Result<Vec<f32>> {
        let xin = onnx.to_model_input(&x.floats)?;
        let xt = Tensor::from_slice(ctx, &onnx.input().model_shape, &xin)?;
        let mut enc = ctx.encoder("float case");
        let y = model.forward(ctx, &mut enc, &xt)?.clone();
        ctx.submit_and_wait(enc)?;
        onnx.from_model_output(&y.read_blocking::<f32>(ctx)?)
    };
    let got = match run() {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!("imported, then failed to run: {e}"))),
    };
    let want_f = if want.dtype == 1 || want.dtype == 10 {
        want.floats.clone()
    } else if want.dtype == 9 || want.dtype == 7 {
        // A boolean output (a comparison) holds 1 and 0, an index output (ArgMax) the
        // index, as floats.
        want.ints.iter().map(|&b| b as f32).collect()
    } else {
        return Ok(Err(format!("imported an output of type {}", want.dtype)));
    };
    if onnx.output().shape != want.shape {
        return Ok(Err(format!(
            "shape {:?}, expected {:?}",
            onnx.output().shape,
            want.shape
        )));
    }
    Ok(close(&got, &want_f))
}
