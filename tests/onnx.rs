//! ONNX's own conformance tests for QuantizeLinear, DequantizeLinear and
//! DynamicQuantizeLinear (vendored from the onnx==1.22.0 wheel into tests/data/onnx by
//! tools/vendor_onnx_tests.sh), run through our GPU kernels. The model and TensorProto
//! files are decoded with prost. Every case whose types we support must match ONNX's
//! expected output exactly (codes, scales and zero points bit for bit; dequantized
//! values bit for bit, which is stricter than ONNX's rtol 1e-3 / atol 1e-7). Cases with
//! types we do not support are named in UNSUPPORTED, and the test checks that each one
//! really uses such a type, so nothing is dropped silently.

mod common;

use std::path::{Path, PathBuf};

use half::f16;
use prost::Message;
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

// The subset of onnx.proto these tests read (field numbers from onnx/onnx.proto).
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

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
    let raw = &t.raw_data;
    let mut d = Data {
        dtype: t.data_type,
        shape,
        floats: vec![],
        ints: vec![],
    };
    match t.data_type {
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
                match t.data_type {
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
        21 | 22 => {
            // Two 4-bit values per byte, low nibble first; int32_data holds one byte each.
            let bytes: Vec<u8> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u8).collect()
            } else {
                raw.clone()
            };
            d.ints = (0..n)
                .map(|i| {
                    let nib = (bytes[i / 2] >> (4 * (i % 2))) & 0xf;
                    if t.data_type == 22 {
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
            t.name, got, d.shape
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
            graph.node[0].op_type.clone()
        } else {
            "DynamicQuantizeLinear".to_string()
        };
        let attrs = if graph.node.len() == 1 {
            graph.node[0]
                .attribute
                .iter()
                .map(|a| (a.name.clone(), a.i))
                .collect()
        } else {
            vec![]
        };
        let output_type = graph.output[0]
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .map_or(0, |t| t.elem_type);
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
            .map(|t| t.data_type)
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
    if p.scales[0].to_bits() != want_s.floats[0].to_bits() || p.zero_points[0] != want_z.ints[0] {
        return Err(format!(
            "scale {:e} zero point {}, ONNX expects {:e} and {}",
            p.scales[0], p.zero_points[0], want_s.floats[0], want_z.ints[0]
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
