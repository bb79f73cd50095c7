//! ONNX tensors on the host: `TensorProto` decoded (inline typed fields, `raw_data`, or
//! an external-data file beside the model) into f32 or i64 values with checked sizes.
//! Integer types of every width widen to i64 and keep their ONNX element type, so a
//! quantized model's int8/uint8 codes and zero points survive import exactly.

use std::path::{Component, Path};

use half::{bf16, f16};

use super::proto::{tensor_proto::DataType, TensorProto};

/// Values of a constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    /// FLOAT, FLOAT16, BFLOAT16 and DOUBLE, as f32.
    F32(Vec<f32>),
    /// Every integer type and BOOL, as i64.
    I64(Vec<i64>),
}

/// A constant: an initializer, a `Constant` node or a folded subgraph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    /// The ONNX element type (`TensorProto.DataType`).
    pub elem: i32,
    pub data: Data,
}

impl Const {
    pub fn f32(dims: Vec<usize>, v: Vec<f32>) -> Const {
        Const {
            dims,
            elem: DataType::Float as i32,
            data: Data::F32(v),
        }
    }

    pub fn i64(dims: Vec<usize>, v: Vec<i64>) -> Const {
        Const {
            dims,
            elem: DataType::Int64 as i32,
            data: Data::I64(v),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64, or `None` for a float tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    /// The single value of a scalar or one-element tensor, as f32.
    pub fn scalar_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }
}

/// Name of an ONNX element type, for messages.
pub(crate) fn elem_name(elem: i32) -> String {
    DataType::try_from(elem)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {elem}"))
}

/// Element count of `dims`, checked (a dimension below zero or a product that overflows
/// is an error).
pub(crate) fn element_count(dims: &[i64], what: &str) -> Result<(Vec<usize>, usize), String> {
    let mut out = Vec::with_capacity(dims.len());
    let mut n: usize = 1;
    for &d in dims {
        let u = usize::try_from(d).map_err(|_| format!("{what} has dimension {d} in {dims:?}"))?;
        n = n
            .checked_mul(u)
            .ok_or_else(|| format!("{what}: the element count of {dims:?} overflows"))?;
        out.push(u);
    }
    Ok((out, n))
}

/// Decodes `t`; `dir` is the model file's folder, where external data lives.
pub(crate) fn decode(t: &TensorProto, dir: Option<&Path>) -> Result<Const, String> {
    let name = t.name().to_string();
    let err = |m: String| format!("tensor '{name}': {m}");
    let (dims, n) = element_count(&t.dims, "the tensor").map_err(err)?;
    let elem = t.data_type();
    let dt = DataType::try_from(elem).map_err(|_| err(format!("unknown element type {elem}")))?;
    let width = match dt {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Uint8 | DataType::Int8 | DataType::Bool => 1,
        DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => 2,
        DataType::Int64 | DataType::Uint64 | DataType::Double => 8,
        other => {
            return Err(err(format!(
                "element type {} is not supported (float, float16, bfloat16, double, \
                 integers and bool are)",
                other.as_str_name()
            )))
        }
    };
    let external;
    let raw: Option<&[u8]> =
        if t.data_location() == super::proto::tensor_proto::DataLocation::External {
            external = read_external(t, dir, n.checked_mul(width)).map_err(err)?;
            Some(&external)
        } else {
            t.raw_data.as_deref()
        };
    let data = match raw {
        Some(bytes) => {
            let want = n
                .checked_mul(width)
                .ok_or_else(|| err(format!("the byte size of {dims:?} overflows")))?;
            if bytes.len() != want {
                return Err(err(format!(
                    "raw data holds {} bytes; {dims:?} of {} needs {want}",
                    bytes.len(),
                    dt.as_str_name()
                )));
            }
            from_raw(dt, bytes)
        }
        None => from_fields(t, dt, n).map_err(err)?,
    };
    Ok(Const { dims, elem, data })
}

fn from_raw(dt: DataType, b: &[u8]) -> Data {
    fn words<const W: usize>(b: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
        b.chunks_exact(W)
            .map(|c| c.try_into().expect("chunk of W bytes"))
    }
    match dt {
        DataType::Float => Data::F32(words::<4>(b).map(f32::from_le_bytes).collect()),
        DataType::Float16 => Data::F32(
            words::<2>(b)
                .map(|w| f16::from_le_bytes(w).to_f32())
                .collect(),
        ),
        DataType::Bfloat16 => Data::F32(
            words::<2>(b)
                .map(|w| bf16::from_le_bytes(w).to_f32())
                .collect(),
        ),
        DataType::Double => Data::F32(
            words::<8>(b)
                .map(|w| f64::from_le_bytes(w) as f32)
                .collect(),
        ),
        DataType::Uint8 | DataType::Bool => Data::I64(b.iter().map(|&x| i64::from(x)).collect()),
        DataType::Int8 => Data::I64(b.iter().map(|&x| i64::from(x as i8)).collect()),
        DataType::Uint16 => Data::I64(
            words::<2>(b)
                .map(|w| u16::from_le_bytes(w).into())
                .collect(),
        ),
        DataType::Int16 => Data::I64(
            words::<2>(b)
                .map(|w| i16::from_le_bytes(w).into())
                .collect(),
        ),
        DataType::Int32 => Data::I64(
            words::<4>(b)
                .map(|w| i32::from_le_bytes(w).into())
                .collect(),
        ),
        DataType::Uint32 => Data::I64(
            words::<4>(b)
                .map(|w| u32::from_le_bytes(w).into())
                .collect(),
        ),
        DataType::Int64 => Data::I64(words::<8>(b).map(i64::from_le_bytes).collect()),
        // Values above i64::MAX wrap; no operator here reads such a tensor as a number.
        DataType::Uint64 => Data::I64(
            words::<8>(b)
                .map(|w| u64::from_le_bytes(w) as i64)
                .collect(),
        ),
        _ => unreachable!("decode admits only the types above"),
    }
}

fn from_fields(t: &TensorProto, dt: DataType, n: usize) -> Result<Data, String> {
    let (got, data) = match dt {
        DataType::Float => (t.float_data.len(), Data::F32(t.float_data.clone())),
        DataType::Double => (
            t.double_data.len(),
            Data::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        ),
        // float16 and bfloat16 values travel as their bits in int32_data.
        DataType::Float16 => (
            t.int32_data.len(),
            Data::F32(
                t.int32_data
                    .iter()
                    .map(|&v| f16::from_bits(v as u16).to_f32())
                    .collect(),
            ),
        ),
        DataType::Bfloat16 => (
            t.int32_data.len(),
            Data::F32(
                t.int32_data
                    .iter()
                    .map(|&v| bf16::from_bits(v as u16).to_f32())
                    .collect(),
            ),
        ),
        DataType::Int64 => (t.int64_data.len(), Data::I64(t.int64_data.clone())),
        DataType::Uint32 | DataType::Uint64 => (
            t.uint64_data.len(),
            Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        ),
        _ => (
            t.int32_data.len(),
            Data::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
        ),
    };
    if got != n {
        return Err(format!(
            "holds {got} values; its dimensions {:?} need {n}",
            t.dims
        ));
    }
    Ok(data)
}

/// Reads an external-data tensor: `location` relative to the model's folder (absolute
/// paths and `..` are refused, as ONNX Runtime does), with optional `offset`/`length`.
fn read_external(
    t: &TensorProto,
    dir: Option<&Path>,
    want: Option<usize>,
) -> Result<Vec<u8>, String> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &t.external_data {
        let v = e.value();
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("external data {} '{v}' is not a number", e.key()))
        };
        match e.key() {
            "location" => location = Some(v.to_string()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "external data location '{location}' must be a plain path inside the model's folder"
        ));
    }
    let dir = dir.ok_or_else(|| {
        format!("the tensor's data is in external file '{location}', but the model was given as bytes without a folder")
    })?;
    let path = dir.join(rel);
    let open_err = |e: std::io::Error| format!("external data file {}: {e}", path.display());
    let mut file = std::fs::File::open(&path).map_err(open_err)?;
    let size = file.metadata().map_err(open_err)?.len();
    let len = match length {
        Some(l) => l,
        None => match want {
            Some(w) => w as u64,
            None => size.saturating_sub(offset),
        },
    };
    let end = offset.checked_add(len).filter(|&e| e <= size);
    let (Some(_), Ok(len_usize)) = (end, usize::try_from(len)) else {
        return Err(format!(
            "external data file {} holds {size} bytes; the tensor reads {len} from offset {offset}",
            path.display()
        ));
    };
    // Only the tensor's bytes are read (a model's tensors often share one large file).
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset)).map_err(open_err)?;
    let mut bytes = vec![0u8; len_usize];
    file.read_exact(&mut bytes).map_err(open_err)?;
    Ok(bytes)
}
