//! Models: layers composed into a [`Graph`], weights from safetensors ([`WeightFile`]),
//! uploaded once into a [`Model`] that records the whole forward pass into the caller's
//! encoder, in FP32 or FP16; or quantized to INT8 after training ([`QModel`]: calibrated
//! static or dynamic, saved and loaded as safetensors).
//!
//! A graph is a list of nodes, each one layer reading the model input or an earlier
//! node's output ([`Src`]); a residual add names the other node it adds. The graph only
//! names its weights; [`Model::new`] looks them up, checks every shape against the
//! layer (a missing or mis-shaped tensor is an error naming it), infers every
//! activation's shape from the input shape, and allocates the activations once, so a
//! forward pass allocates nothing.
//!
//! ```
//! use wgpu_quant::model::{Graph, Layer, Model, WeightFile};
//! use wgpu_quant::ops::gemm::Activation;
//! use wgpu_quant::{Context, DType, Tensor};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! // y = softmax(relu(x W1^T + b1) W2^T): 4 inputs, 3 hidden, 2 classes.
//! let mut weights = WeightFile::default();
//! weights.insert("fc1.weight", &[3, 4], (0..12).map(|i| i as f32 / 12.0 - 0.5).collect())?;
//! weights.insert("fc1.bias", &[3], vec![0.1, -0.1, 0.0])?;
//! weights.insert("fc2.weight", &[2, 3], vec![1.0, -1.0, 0.5, -0.5, 1.0, 0.25])?;
//! let mut g = Graph::default();
//! g.push("fc1", Layer::linear("fc1.weight", Some("fc1.bias"), 3, 4).activation(Activation::Relu));
//! g.push("fc2", Layer::linear("fc2.weight", None, 2, 3));
//! g.push("prob", Layer::Softmax);
//! let model = Model::new(&ctx, &g, &weights, DType::F32, &[1, 4])?;
//! let x = Tensor::from_slice(&ctx, &[1, 4], &[1.0f32, 2.0, -1.0, 0.5])?;
//! let mut enc = ctx.encoder("forward");
//! let y = model.forward(&ctx, &mut enc, &x)?;
//! ctx.submit_and_wait(enc)?;
//! let p = y.read_blocking::<f32>(&ctx)?;
//! assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
//! // A weight the graph names but the file lacks is an error naming it.
//! g.push("fc3", Layer::linear("fc3.weight", None, 2, 2));
//! let e = Model::new(&ctx, &g, &weights, DType::F32, &[1, 4]).unwrap_err();
//! assert!(e.to_string().contains("fc3.weight"));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use half::f16;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::conv::{conv2d, ConvDesc, ConvDims, ConvWeight};
use crate::ops::eltwise::{
    add, binary, cast, channel_affine, layer_norm, map, row_reduce, softmax, BinaryOp, Clip,
    Reduce, UnaryOp,
};
use crate::ops::gemm::{gemm, Activation, GemmDesc};
use crate::ops::layout::{
    concat, concat_channels, depth_to_space, expand, pad, permute, resize_bilinear, slice,
    upsample_nearest, PadMode, ResizeCoords,
};
use crate::ops::pool::{pool2d, PoolDesc};
use crate::ops::wgemm::{wgemm, WGemmDesc, Weights};
use crate::tensor::{DType, Tensor};

mod efficientnet;
mod lenet;
mod onnx_rounding;
mod qlinear;
mod quantized;

pub use efficientnet::{efficientnet_lite0, EFFICIENTNET_LITE0_BLOCKS};
pub use lenet::lenet;
pub use qlinear::QLinear;
pub use quantized::{PtqOptions, QMode, QModel};

const OP: &str = "model";

/// Named f32 tensors and string metadata: the contents of a safetensors file.
#[derive(Debug, Clone, Default)]
pub struct WeightFile {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: BTreeMap<String, String>,
    source: String,
    allow_nonfinite: bool,
}

impl WeightFile {
    /// Reads a safetensors file (F32, F16 or BF16 tensors, widened to f32).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<Path>) -> Result<WeightFile> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        WeightFile::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses safetensors bytes; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<WeightFile> {
        let file_err = |message: String| Error::File {
            path: source.to_string(),
            message,
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let vals: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(file_err(format!(
                        "tensor '{name}' has dtype {other:?}; expected F32, F16 or BF16"
                    )))
                }
            };
            tensors.insert(name, (view.shape().to_vec(), vals));
        }
        Ok(WeightFile {
            tensors,
            metadata: meta
                .metadata()
                .clone()
                .map(|m| m.into_iter().collect())
                .unwrap_or_default(),
            source: source.to_string(),
            allow_nonfinite: false,
        })
    }

    /// Adds (or replaces) a tensor; `values` must hold `shape`'s element count.
    pub fn insert(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<()> {
        let numel = crate::error::checked_numel(OP, shape).map_err(|_| {
            Error::shape(
                OP,
                format!("tensor '{name}': shape {shape:?} overflows usize"),
            )
        })?;
        if numel != values.len() {
            return Err(Error::shape(
                OP,
                format!(
                    "tensor '{name}': shape {shape:?} holds {numel} values, got {}",
                    values.len()
                ),
            ));
        }
        self.tensors
            .insert(name.to_string(), (shape.to_vec(), values));
        Ok(())
    }

    /// Lets [`WeightFile::tensor`] hand out NaN and infinite values (off by default: a
    /// non-finite weight or bias is an error naming the tensor and the index, since it
    /// would make every output it reaches NaN without a word).
    pub fn allow_nonfinite(&mut self, allow: bool) {
        self.allow_nonfinite = allow;
    }

    /// The first NaN or infinite value of any tensor: `(tensor, index, value)`.
    pub fn first_nonfinite(&self) -> Option<(&str, usize, f32)> {
        self.tensors.iter().find_map(|(name, (_, v))| {
            v.iter()
                .position(|x| !x.is_finite())
                .map(|i| (name.as_str(), i, v[i]))
        })
    }

    /// The values of tensor `name`, which must have shape `shape` and (unless
    /// [`WeightFile::allow_nonfinite`]) hold only finite values.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let from = if self.source.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.source)
        };
        let (s, v) = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::invalid(OP, format!("weight '{name}' is missing{from}")))?;
        if s.as_slice() != shape {
            return Err(Error::shape(
                OP,
                format!("weight '{name}'{from} has shape {s:?}; the layer needs {shape:?}"),
            ));
        }
        if !self.allow_nonfinite {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "weight '{name}'{from} holds {} at index {i} (of shape {s:?}); \
                         allow_nonfinite(true) on the WeightFile (or the OnnxImport) accepts it",
                        v[i]
                    ),
                ));
            }
        }
        Ok(v)
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A metadata entry of the file's header.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Parameters (values) in the file.
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|(_, v)| v.len()).sum()
    }

    /// Writes every tensor (F32) and the metadata as a safetensors file that
    /// [`WeightFile::load`] reads back (trained weights: [`crate::train::Trainer`]).
    /// Returns the file's size in bytes.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let out = self.to_bytes(&path.display().to_string())?;
        std::fs::write(path, &out).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(out.len() as u64)
    }

    /// The safetensors bytes [`WeightFile::save`] writes; `name` names the destination in
    /// errors. [`WeightFile::from_bytes`] reads them.
    pub fn to_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let file_err = |message: String| Error::File {
            path: name.to_string(),
            message,
        };
        let bytes: Vec<(&String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, v))| {
                (
                    n,
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.to_string(), v))
                    .map_err(|e| file_err(format!("tensor '{n}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: std::collections::HashMap<String, String> =
            self.metadata.clone().into_iter().collect();
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| file_err(e.to_string()))
    }

    /// Sets a metadata entry (written by [`WeightFile::save`]).
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.metadata.insert(key.to_string(), value.to_string());
    }
}

/// Times the layers named `names`: `record` records one forward pass that writes
/// timestamps `2i` and `2i + 1` around layer `i`; the result is each layer's median
/// over `runs` passes (after one untimed), in milliseconds.
pub(crate) fn profile_layers(
    ctx: &Context,
    names: Vec<String>,
    runs: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder, &wgpu::QuerySet) -> Result<()>,
) -> Result<Vec<(String, f64)>> {
    const OPP: &str = "profile";
    let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if !ctx.device().features().contains(need) {
        return Err(Error::MissingFeature {
            op: OPP,
            feature: "TIMESTAMP_QUERY_INSIDE_ENCODERS",
            adapter: ctx.capabilities().adapter.name.clone(),
        });
    }
    let count = names
        .len()
        .checked_mul(2)
        .filter(|&c| c > 0 && c <= wgpu::QUERY_SET_MAX_QUERIES as usize)
        .ok_or_else(|| {
            Error::invalid(
                OPP,
                format!(
                    "{} layers need {} timestamps; a query set holds 1 to {}",
                    names.len(),
                    2 * names.len(),
                    wgpu::QUERY_SET_MAX_QUERIES
                ),
            )
        })? as u32;
    if runs == 0 {
        return Err(Error::invalid(
            OPP,
            format!("runs = {runs}: must be at least 1"),
        ));
    }
    let device = ctx.device();
    let qs = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("layer timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = u64::from(count) * 8;
    let resolve = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("layer timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let period = f64::from(ctx.queue().get_timestamp_period());
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); names.len()];
    for run in 0..=runs {
        let mut enc = ctx.encoder("profile");
        record(&mut enc, &qs)?;
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        ctx.block("profile_layers", ctx.submit(enc))?;
        if run == 0 {
            continue;
        }
        let raw = ctx.block(
            "profile_layers",
            ctx.read_buffer(&resolve, bytes, "layer timestamps"),
        )?;
        let t: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        for (i, v) in per_layer.iter_mut().enumerate() {
            v.push(t[2 * i + 1].wrapping_sub(t[2 * i]) as f64 * period / 1e6);
        }
    }
    Ok(names
        .into_iter()
        .zip(per_layer)
        .map(|(n, mut v)| {
            v.sort_by(f64::total_cmp);
            (n, v[v.len() / 2])
        })
        .collect())
}

/// Where a node reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// The model input.
    Input,
    /// The output of node `i`.
    Node(usize),
}

/// One layer of a [`Graph`].
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// 2-D convolution (NHWC), OIHW weights `weight` (`[OC, C / groups, KH, KW]`), an
    /// optional f32 bias `[OC]`; stride, padding, dilation and activation in `desc`.
    /// Depthwise when `groups == C == OC`.
    Conv {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
        /// The weight's dimensions.
        dims: ConvDims,
        /// Stride, padding, dilation and activation.
        desc: ConvDesc,
    },
    /// `y[B, N] = act(x[B, K] W^T + b)`, `W` stored `[N, K]` (PyTorch's layout); the
    /// input is flattened to `[B, K]` (NHWC order).
    Linear {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
        /// Outputs.
        n: usize,
        /// Inputs.
        k: usize,
        /// Activation.
        activation: Activation,
    },
    /// Max or average pooling.
    Pool(PoolDesc),
    /// `clip(input + output of node `other`)` (a residual connection).
    Add {
        /// The other operand.
        other: usize,
        /// Clip after the add.
        clip: Clip,
    },
    /// Softmax over the last axis.
    Softmax,
    /// `clip(f(x))` elementwise (sigmoid, hard sigmoid, hard swish, tanh, leaky ReLU,
    /// affine; [`UnaryOp`]).
    Map {
        /// The function.
        f: UnaryOp,
        /// Clip after it.
        clip: Clip,
    },
    /// Nearest upsampling by integer factors `[fh, fw]`.
    Upsample {
        /// `[vertical, horizontal]` factors.
        factors: [usize; 2],
    },
    /// Bilinear resize to `size` (`[OH, OW]`), coordinates by `coords` with `scales`
    /// (output over input size per axis; [`crate::ops::layout::resize_bilinear`]).
    ResizeBilinear {
        /// `[OH, OW]`.
        size: [usize; 2],
        /// The coordinate transformation.
        coords: ResizeCoords,
        /// Output size over input size, per axis.
        scales: [f32; 2],
    },
    /// Zero insertion by `[fh, fw]`: `[N, (H - 1) fh + 1, (W - 1) fw + 1, C]` with the
    /// input's pixels at multiples of the factors, zeros between (before the stride-1
    /// convolution of a strided transposed convolution;
    /// [`crate::ops::layout::zero_insert`]).
    ZeroInsert {
        /// `[vertical, horizontal]` factors.
        factors: [usize; 2],
    },
    /// Depth to space by `[fh, fw]` (after a 1x1 convolution: a transposed convolution
    /// whose kernel equals its stride; [`crate::ops::layout::depth_to_space`]).
    DepthToSpace {
        /// `[vertical, horizontal]` block.
        block: [usize; 2],
    },
    /// The input, then the outputs of nodes `others`, in order, along the stored axis
    /// `axis` (every other dimension equal; an NHWC image's channels are axis 3;
    /// [`crate::ops::layout::concat`]).
    Concat {
        /// The other inputs.
        others: Vec<usize>,
        /// The axis of the stored shapes.
        axis: usize,
    },
    /// `input[.., M, K] x output of node other[.., K, N]`: batched matrix products of two
    /// activations (attention's `Q K^T` and `P V`), row-major; the other operand has the
    /// same leading dimensions or none (one matrix for every batch entry). Runs in f32
    /// (an FP16 model converts its operands).
    MatMul {
        /// The right-hand operand.
        other: usize,
    },
    /// `size[a]` elements from `start[a]` by `step[a]` on each axis of the input viewed
    /// as `view` (row-major, the same element count; ONNX `Slice`, a negative step walks
    /// back; [`crate::ops::layout::slice`]).
    Crop {
        /// The shape the input is read as.
        view: Vec<usize>,
        /// The first index on each axis.
        start: Vec<usize>,
        /// The step on each axis (not 0).
        step: Vec<isize>,
        /// The count on each axis (the output's shape).
        size: Vec<usize>,
    },
    /// The constant `value` of `dims` (row-major, f32), whatever the input (a constant
    /// piece of a concatenation: a transformer's class token).
    Const {
        /// The values.
        value: Vec<f32>,
        /// The shape.
        dims: Vec<usize>,
    },
    /// The stored input gathered along `axis` by `indices` (each below that axis'
    /// length; ONNX `Gather` of an activation, a nearest `Resize` by any factors;
    /// [`crate::ops::layout::gather`]).
    Gather {
        /// The stored axis.
        axis: usize,
        /// The picks.
        indices: Vec<usize>,
    },
    /// The input viewed as `view` and broadcast to `to` (numpy's rules; ONNX `Expand`;
    /// [`crate::ops::layout::expand`]).
    Expand {
        /// The shape the input is read as.
        view: Vec<usize>,
        /// The output's shape.
        to: Vec<usize>,
    },
    /// The stored input padded by `before`/`after` elements on each axis, filled as
    /// `mode` says (ONNX `Pad`; [`crate::ops::layout::pad`]).
    Pad {
        /// Elements in front, per stored axis.
        before: Vec<usize>,
        /// Elements behind, per stored axis.
        after: Vec<usize>,
        /// The fill.
        mode: PadMode,
    },
    /// The input viewed as `view` (row-major, the same element count) and transposed by
    /// `perm` (`out.shape[i] = view[perm[i]]`, rank 6 or less; moves the data:
    /// [`crate::ops::layout::permute`]).
    Permute {
        /// The shape the input is read as.
        view: Vec<usize>,
        /// The output's axes, as axes of `view`.
        perm: Vec<usize>,
    },
    /// Layer normalization along the input's last (stored) axis:
    /// `(x - mean) / sqrt(var + eps) * gamma + beta` per row
    /// ([`crate::ops::eltwise::layer_norm`]); ONNX `LayerNormalization` over the last
    /// axis, and the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div pattern older exporters
    /// write. The per-channel `gamma` and `beta` (one value per element of the last
    /// axis; absent: 1 and 0) are carried in the layer. Runs in f32 arithmetic (a static
    /// INT8 model dequantizes its input and quantizes its output).
    LayerNorm {
        /// Added to the variance.
        eps: f32,
        /// Scale per channel.
        gamma: Option<Vec<f32>>,
        /// Shift per channel.
        beta: Option<Vec<f32>>,
    },
    /// `x * scale[c] + shift[c]` along the input's last (stored) axis: a per-channel
    /// affine map of a row-major activation (a scale or shift of a sequence's features;
    /// [`crate::ops::eltwise::channel_affine`]). Runs in f32 arithmetic.
    ChannelAffine {
        /// Factor per channel.
        scale: Vec<f32>,
        /// Offset per channel.
        shift: Vec<f32>,
    },
    /// `input op c` for a constant tensor `c` of `dims` (row-major, f32): of the input's
    /// shape, or broadcast over one contiguous run of its axes as [`Layer::Binary`]'s
    /// other operand (a position embedding added to a sequence; [`BinaryOp::RSub`] and
    /// [`BinaryOp::RDiv`] put the constant first). Runs in f32 arithmetic.
    BinaryConst {
        /// The operation.
        op: BinaryOp,
        /// The constant's values.
        value: Vec<f32>,
        /// The constant's shape.
        dims: Vec<usize>,
    },
    /// The mean, sum or maximum along the input's last (stored) axis, kept as an axis of
    /// length 1 (ONNX `ReduceMean`/`ReduceSum`/`ReduceMax` over the last axis;
    /// [`crate::ops::eltwise::row_reduce`]).
    RowReduce(Reduce),
    /// `clip(input op output of node `other`)`: the other operand of the input's shape,
    /// or of its rank with 1 on one contiguous run of axes (broadcast over them: `[N, 1,
    /// 1, C]` against an `[N, H, W, C]` input, a squeeze-excite scale; `[.., T, 1]`
    /// against `[.., T, C]`, a row statistic; [`crate::ops::eltwise::binary`]).
    Binary {
        /// Add, sub, mul, div, or sub and div with the other operand first.
        op: BinaryOp,
        /// The other operand.
        other: usize,
        /// Clip after it.
        clip: Clip,
    },
}

impl Layer {
    /// A convolution layer with weights `weight` (and `bias`).
    pub fn conv(weight: &str, bias: Option<&str>, dims: ConvDims, desc: ConvDesc) -> Layer {
        Layer::Conv {
            weight: weight.into(),
            bias: bias.map(Into::into),
            dims,
            desc,
        }
    }

    /// A linear layer `[B, k] -> [B, n]` without activation.
    pub fn linear(weight: &str, bias: Option<&str>, n: usize, k: usize) -> Layer {
        Layer::Linear {
            weight: weight.into(),
            bias: bias.map(Into::into),
            n,
            k,
            activation: Activation::None,
        }
    }

    /// Weight name, bias name and weight shape (OIHW, or `[N, K]`) of a convolution or
    /// linear layer.
    pub(crate) fn weight_spec(&self) -> Option<(&str, Option<&str>, Vec<usize>)> {
        match self {
            Layer::Conv {
                weight, bias, dims, ..
            } => Some((weight, bias.as_deref(), dims.oihw().to_vec())),
            Layer::Linear {
                weight, bias, n, k, ..
            } => Some((weight, bias.as_deref(), vec![*n, *k])),
            _ => None,
        }
    }

    /// Sets the activation of a convolution or linear layer (others are unchanged).
    pub fn activation(mut self, a: Activation) -> Layer {
        match &mut self {
            Layer::Conv { desc, .. } => *desc = desc.activation(a),
            Layer::Linear { activation, .. } => *activation = a,
            _ => {}
        }
        self
    }
}

/// A node: a named layer and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Name (in errors and [`Model::output`] lookups).
    pub name: String,
    /// The layer.
    pub layer: Layer,
    /// Its input.
    pub input: Src,
}

/// Layers in execution order; the last node's output is the model's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Nodes whose outputs the caller reads besides the last node's (an imported model's
    /// other graph outputs), with `Model::output` / `QModel::output`: an INT8 model keeps
    /// them in f32.
    pub outputs: Vec<usize>,
}

impl Graph {
    /// Appends `layer` reading the previous node's output (the model input for the
    /// first node); returns its index.
    pub fn push(&mut self, name: &str, layer: Layer) -> usize {
        let input = match self.nodes.len() {
            0 => Src::Input,
            n => Src::Node(n - 1),
        };
        self.push_from(name, layer, input)
    }

    /// Appends `layer` reading `input`; returns its index.
    pub fn push_from(&mut self, name: &str, layer: Layer, input: Src) -> usize {
        self.nodes.push(Node {
            name: name.into(),
            layer,
            input,
        });
        self.nodes.len() - 1
    }
}

/// The output shape of every node of `graph` for inputs of `input_shape`, checking that
/// each node reads an earlier one and that its layer takes that shape (errors name the
/// node).
pub(crate) fn infer_shapes(graph: &Graph, input_shape: &[usize]) -> Result<Vec<Vec<usize>>> {
    if graph.nodes.is_empty() {
        return Err(Error::invalid(OP, "the graph has no nodes"));
    }
    let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        let at =
            |e: Error| -> Error { Error::invalid(OP, format!("node {i} '{}': {e}", node.name)) };
        let x_shape: Vec<usize> = match node.input {
            Src::Input => input_shape.to_vec(),
            Src::Node(j) if j < i => shapes[j].clone(),
            Src::Node(j) => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "node {i} '{}' reads node {j}, which is not before it",
                        node.name
                    ),
                ))
            }
        };
        let out =
            match &node.layer {
                Layer::Conv { dims, desc, .. } => desc.output_shape(dims, &x_shape).map_err(at)?,
                Layer::Linear { n, k, .. } => {
                    linear_output_shape(&x_shape, *k, *n).ok_or_else(|| {
                        at(Error::shape(
                    OP,
                    format!("input {x_shape:?} does not flatten to [B, {k}] (or rows [.., {k}])"),
                ))
                    })?
                }
                Layer::Pool(desc) => desc.output_shape(&x_shape).map_err(at)?,
                Layer::Add { other, .. } => {
                    let o = shapes.get(*other).filter(|_| *other < i).ok_or_else(|| {
                        at(Error::invalid(
                            OP,
                            format!("adds node {other}, which is not before it"),
                        ))
                    })?;
                    if *o != x_shape {
                        return Err(at(Error::shape(
                            OP,
                            format!("adds {x_shape:?} and {o:?} (node {other})"),
                        )));
                    }
                    x_shape.clone()
                }
                Layer::Softmax | Layer::Map { .. } => x_shape.clone(),
                Layer::BinaryConst { value, dims, .. } => {
                    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                    let fits = dims == &x_shape
                        || crate::ops::eltwise::broadcast_block(&x_shape, dims).is_some();
                    if n != Some(value.len()) || !fits {
                        return Err(at(Error::shape(
                            OP,
                            format!(
                                "combines {x_shape:?} with a constant of {dims:?} ({} values): \
                                 the same shape or 1 on one contiguous run of its axes",
                                value.len()
                            ),
                        )));
                    }
                    x_shape.clone()
                }
                Layer::RowReduce(_) => match x_shape.split_last() {
                    Some((_, lead)) => [lead, &[1]].concat(),
                    None => return Err(at(Error::shape(OP, "reduces a scalar's last axis"))),
                },
                Layer::ChannelAffine { .. } | Layer::LayerNorm { .. } => {
                    per_channel_shape(&node.layer, &x_shape).map_err(at)?
                }
                Layer::MatMul { other } => {
                    let o = shapes.get(*other).filter(|_| *other < i).ok_or_else(|| {
                        at(Error::invalid(
                            OP,
                            format!("multiplies by node {other}, which is not before it"),
                        ))
                    })?;
                    matmul_shape(&x_shape, o).map_err(|m| at(Error::shape(OP, m)))?
                }
                Layer::Permute { view, perm } => {
                    check_view(&x_shape, view).map_err(at)?;
                    crate::ops::layout::permuted_shape(view, perm)
                        .map_err(|m| at(Error::invalid(OP, m)))?
                }
                Layer::Crop { .. }
                | Layer::Const { .. }
                | Layer::Gather { .. }
                | Layer::Expand { .. }
                | Layer::Pad { .. } => strided_shape(&node.layer, &x_shape).map_err(at)?,
                Layer::Upsample { .. } | Layer::DepthToSpace { .. } | Layer::ZeroInsert { .. } => {
                    scaled_shape(&node.layer, &x_shape).map_err(at)?
                }
                Layer::ResizeBilinear { size, .. } => match x_shape[..] {
                    [n, _, _, c] if size[0] > 0 && size[1] > 0 => vec![n, size[0], size[1], c],
                    _ => {
                        return Err(at(Error::shape(
                            OP,
                            format!("resizes {x_shape:?} to {size:?}"),
                        )))
                    }
                },
                Layer::Concat { others, axis } => {
                    let mut all = vec![x_shape.as_slice()];
                    for &o in others {
                        let s = shapes.get(o).filter(|_| o < i).ok_or_else(|| {
                            at(Error::invalid(
                                OP,
                                format!("reads node {o}, which is not before it"),
                            ))
                        })?;
                        all.push(s);
                    }
                    crate::ops::layout::concat_shape(&all, *axis).map_err(|m| {
                        at(Error::shape(
                            OP,
                            format!("concatenates nodes {others:?}: {m}"),
                        ))
                    })?
                }
                Layer::Binary { other, .. } => {
                    let o = shapes.get(*other).filter(|_| *other < i).ok_or_else(|| {
                        at(Error::invalid(
                            OP,
                            format!("reads node {other}, which is not before it"),
                        ))
                    })?;
                    let broadcast = crate::ops::eltwise::broadcast_block(&x_shape, o).is_some();
                    if *o != x_shape && !broadcast {
                        return Err(at(Error::shape(
                            OP,
                            format!(
                                "combines {x_shape:?} with {o:?} (node {other}): the same shape \
                                 or 1 on one contiguous run of its axes"
                            ),
                        )));
                    }
                    x_shape.clone()
                }
            };
        shapes.push(out);
    }
    Ok(shapes)
}

/// The output shape of a per-channel layer along the last axis (channel affine, layer
/// norm): the input's, once its parameters fit that axis.
fn per_channel_shape(layer: &Layer, x_shape: &[usize]) -> Result<Vec<usize>> {
    let c = x_shape.last().copied().unwrap_or(1);
    let bad = |what: &str, n: usize| {
        Error::shape(
            OP,
            format!("{what} of {x_shape:?} has {n} values, not {c} (one per channel)"),
        )
    };
    match layer {
        Layer::ChannelAffine { scale, shift } => {
            for (what, v) in [
                ("channel affine scale", scale),
                ("channel affine shift", shift),
            ] {
                if v.len() != c {
                    return Err(bad(what, v.len()));
                }
            }
        }
        Layer::LayerNorm { eps, gamma, beta } => {
            for (what, v) in [("layer norm gamma", gamma), ("layer norm beta", beta)] {
                if let Some(v) = v.as_ref().filter(|v| v.len() != c) {
                    return Err(bad(what, v.len()));
                }
            }
            if !eps.is_finite() || *eps < 0.0 {
                return Err(Error::invalid(
                    OP,
                    format!("layer norm epsilon {eps} must be finite and not negative"),
                ));
            }
        }
        _ => unreachable!("called for per-channel layers"),
    }
    Ok(x_shape.to_vec())
}

/// The output shape of nearest upsampling or depth to space of an NHWC input.
fn scaled_shape(layer: &Layer, x_shape: &[usize]) -> Result<Vec<usize>> {
    let (f, per) = match layer {
        Layer::Upsample { factors } => (factors, 1),
        Layer::DepthToSpace { block } => (block, block[0] * block[1]),
        Layer::ZeroInsert { factors } => (factors, 1),
        _ => unreachable!("called for upsampling, depth to space and zero insertion"),
    };
    let [n, h, w, c] = x_shape[..] else {
        return Err(Error::shape(OP, format!("input {x_shape:?} is not NHWC")));
    };
    let grow = |d: usize, f: usize| match layer {
        Layer::ZeroInsert { .. } => d.checked_sub(1)?.checked_mul(f)?.checked_add(1),
        _ => d.checked_mul(f),
    };
    match (grow(h, f[0]), grow(w, f[1])) {
        (Some(oh), Some(ow)) if per > 0 && c % per == 0 => Ok(vec![n, oh, ow, c / per]),
        _ => Err(Error::shape(
            OP,
            format!("{layer:?} does not apply to {x_shape:?}"),
        )),
    }
}

/// A layer norm's gamma and beta on the GPU (f32).
pub(crate) fn norm_params(
    ctx: &Context,
    gamma: &Option<Vec<f32>>,
    beta: &Option<Vec<f32>>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let up = |v: &Option<Vec<f32>>| {
        v.as_ref()
            .map(|v| Tensor::from_slice(ctx, &[v.len()], v))
            .transpose()
    };
    Ok((up(gamma)?, up(beta)?))
}

#[derive(Debug)]
enum Params {
    None,
    Conv {
        w: ConvWeight,
        b: Option<Tensor>,
    },
    /// FP16: W stored `[N, K]`; FP32: likewise when `trans` (the plan's choice on CPU
    /// adapters, [`crate::plan::linear_weight_transposed`]), else W^T stored `[K, N]`.
    Linear {
        w: Tensor,
        b: Option<Tensor>,
        trans: bool,
    },
    /// A layer norm's gamma and beta (f32).
    Norm {
        gamma: Option<Tensor>,
        beta: Option<Tensor>,
    },
    /// A per-channel affine map's scale and shift (f32).
    Affine {
        scale: Tensor,
        shift: Tensor,
    },
    /// A constant operand (f32).
    Const(Tensor),
    /// An FP16 model's matrix product of activations: f32 copies of both operands and
    /// of the product.
    MatMulF32 {
        a: Tensor,
        b: Tensor,
        c: Tensor,
    },
}

/// A [`Graph`] with its weights on the GPU and its activations allocated for one input
/// shape, in FP32 or FP16 (activations and weights; biases stay f32).
#[derive(Debug)]
pub struct Model {
    graph: Graph,
    dtype: DType,
    input_shape: Vec<usize>,
    params: Vec<Params>,
    acts: Vec<Tensor>,
    weight_bytes: u64,
}

impl Model {
    /// Uploads `graph`'s weights from `weights` in `dtype` (F32 or F16) and allocates
    /// the activations for inputs of shape `input_shape` (NHWC for images).
    pub fn new(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        dtype: DType,
        input_shape: &[usize],
    ) -> Result<Model> {
        if !matches!(dtype, DType::F32 | DType::F16) {
            return Err(Error::invalid(
                OP,
                format!("a float model runs in F32 or F16, not {dtype:?}"),
            ));
        }
        let shapes = infer_shapes(graph, input_shape)?;
        let mut params = Vec::with_capacity(graph.nodes.len());
        let mut acts = Vec::with_capacity(graph.nodes.len());
        let mut weight_bytes = 0u64;
        // Linear weights that several layers hold with equal values (the steps of an
        // unrolled recurrent cell, tied weights) are uploaded once and shared: keyed by
        // shape and a hash of the bits, compared in full on a hit.
        let mut shared: HashMap<(usize, usize, u64), SharedWeights> = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let bias = |name: &Option<String>, n: usize| -> Result<Option<Tensor>> {
                name.as_ref()
                    .map(|b| Tensor::from_slice(ctx, &[n], weights.tensor(b, &[n])?))
                    .transpose()
            };
            let p = match &node.layer {
                Layer::Conv {
                    weight,
                    bias: b,
                    dims,
                    ..
                } => {
                    let w = weights.tensor(weight, &dims.oihw())?;
                    let cw = ConvWeight::from_oihw(ctx, *dims, w, dtype)?;
                    weight_bytes += (w.len() * dtype.size()) as u64;
                    let b = bias(b, dims.out_channels)?;
                    weight_bytes += b.as_ref().map_or(0, |b| b.size_bytes());
                    Params::Conv { w: cw, b }
                }
                Layer::Linear {
                    weight,
                    bias: b,
                    n,
                    k,
                    ..
                } => {
                    let w = weights.tensor(weight, &[*n, *k])?;
                    let trans = crate::plan::linear_weight_transposed(ctx.capabilities(), *k);
                    let key = (*n, *k, bits_hash(w));
                    let same = shared
                        .get(&key)
                        .and_then(|v| {
                            v.iter().find(|(c, _)| {
                                c.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits())
                            })
                        })
                        .map(|(_, t)| t.clone());
                    let t = match same {
                        Some(t) => t,
                        None => {
                            let t = if dtype == DType::F32 {
                                if trans {
                                    Tensor::from_slice(ctx, &[*n, *k], w)?
                                } else {
                                    let wt = crate::reference::transpose(w, *n, *k);
                                    Tensor::from_slice(ctx, &[*k, *n], &wt)?
                                }
                            } else {
                                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                                Tensor::from_slice(ctx, &[*n, *k], &h)?
                            };
                            weight_bytes += t.size_bytes();
                            shared.entry(key).or_default().push((w, t.clone()));
                            t
                        }
                    };
                    let b = bias(b, *n)?;
                    weight_bytes += b.as_ref().map_or(0, |b| b.size_bytes());
                    Params::Linear { w: t, b, trans }
                }
                Layer::MatMul { other } if dtype == DType::F16 => {
                    let a_shape = match node.input {
                        Src::Input => input_shape,
                        Src::Node(j) => &shapes[j][..],
                    };
                    Params::MatMulF32 {
                        a: Tensor::zeros(ctx, a_shape, DType::F32)?,
                        b: Tensor::zeros(ctx, &shapes[*other], DType::F32)?,
                        c: Tensor::zeros(ctx, &shapes[i], DType::F32)?,
                    }
                }
                Layer::ChannelAffine { scale, shift } => {
                    let scale = Tensor::from_slice(ctx, &[scale.len()], scale)?;
                    let shift = Tensor::from_slice(ctx, &[shift.len()], shift)?;
                    weight_bytes += scale.size_bytes() + shift.size_bytes();
                    Params::Affine { scale, shift }
                }
                Layer::BinaryConst { value, dims, .. } | Layer::Const { value, dims } => {
                    let c = Tensor::from_slice(ctx, dims, value)?;
                    weight_bytes += c.size_bytes();
                    Params::Const(c)
                }
                Layer::Gather { indices, .. } => {
                    let c = index_tensor(ctx, indices)?;
                    weight_bytes += c.size_bytes();
                    Params::Const(c)
                }
                Layer::LayerNorm { gamma, beta, .. } => {
                    let (gamma, beta) = norm_params(ctx, gamma, beta)?;
                    weight_bytes += [&gamma, &beta]
                        .iter()
                        .map(|t| t.as_ref().map_or(0, Tensor::size_bytes))
                        .sum::<u64>();
                    Params::Norm { gamma, beta }
                }
                _ => Params::None,
            };
            acts.push(Tensor::zeros(ctx, &shapes[i], dtype)?);
            params.push(p);
        }
        Ok(Model {
            graph: graph.clone(),
            dtype,
            input_shape: input_shape.to_vec(),
            params,
            acts,
            weight_bytes,
        })
    }

    /// Records the forward pass of `x` (the input shape given to [`Model::new`], the
    /// model's dtype) into `encoder`; returns the last node's output (valid once the
    /// encoder has run, until the next forward pass).
    pub fn forward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
    ) -> Result<&Tensor> {
        self.forward_stamped(ctx, encoder, x, None)
    }

    /// The GPU time of each layer of a forward pass of `x`, in milliseconds: the median
    /// of `runs` passes (after one untimed), from timestamps written around every layer.
    /// Needs `TIMESTAMP_QUERY_INSIDE_ENCODERS`.
    pub fn profile(&self, ctx: &Context, x: &Tensor, runs: usize) -> Result<Vec<(String, f64)>> {
        let names = self.graph.nodes.iter().map(|n| n.name.clone()).collect();
        profile_layers(ctx, names, runs, |enc, q| {
            self.forward_stamped(ctx, enc, x, Some(q)).map(|_| ())
        })
    }

    /// [`Model::forward`], writing timestamps `2i` and `2i + 1` around layer `i` into
    /// `stamps` when given.
    fn forward_stamped(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
        stamps: Option<&wgpu::QuerySet>,
    ) -> Result<&Tensor> {
        if x.shape() != self.input_shape.as_slice() || x.dtype() != self.dtype {
            return Err(Error::shape(
                OP,
                format!(
                    "the input is {:?} {:?}; the model was built for {:?} {:?}",
                    x.shape(),
                    x.dtype(),
                    self.input_shape,
                    self.dtype
                ),
            ));
        }
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let input = match node.input {
                Src::Input => x,
                Src::Node(j) => &self.acts[j],
            };
            let out = &self.acts[i];
            if let Some(q) = stamps {
                encoder.write_timestamp(q, 2 * i as u32);
            }
            match (&node.layer, &self.params[i]) {
                (Layer::Conv { desc, .. }, Params::Conv { w, b }) => {
                    conv2d(ctx, encoder, desc, input, w, b.as_ref(), out)?
                }
                (
                    Layer::Linear {
                        n, k, activation, ..
                    },
                    Params::Linear { w, b, trans },
                ) => {
                    // Rows of k: the batch, or every token of a sequence.
                    let rows = input.numel() / k;
                    let x2 = input.reshape(&[rows, *k])?;
                    let y2 = out.reshape(&[rows, *n])?;
                    if self.dtype == DType::F32 {
                        let mut d = GemmDesc::new(rows, *n, *k).transpose(false, *trans);
                        d.activation = *activation;
                        gemm(ctx, encoder, &d, &x2, w, b.as_ref(), &y2)?
                    } else {
                        let d = WGemmDesc::default().activation(*activation);
                        wgemm(ctx, encoder, &d, &x2, Weights::F16(w), b.as_ref(), &y2)?
                    }
                }
                (Layer::Pool(desc), _) => pool2d(ctx, encoder, desc, input, out)?,
                (Layer::Add { other, clip }, _) => {
                    add(ctx, encoder, input, &self.acts[*other], *clip, out)?
                }
                (Layer::Softmax, _) => softmax(ctx, encoder, input, out)?,
                (Layer::Const { .. }, Params::Const(c)) => cast(ctx, encoder, c, out)?,
                (Layer::Gather { axis, .. }, Params::Const(c)) => {
                    crate::ops::layout::gather(ctx, encoder, input, *axis, c, out)?
                }
                (Layer::RowReduce(k), _) => row_reduce(ctx, encoder, *k, input, out)?,
                (Layer::BinaryConst { op, .. }, Params::Const(c)) => {
                    binary(ctx, encoder, *op, input, c, Clip::NONE, out)?
                }
                (Layer::Map { f, clip }, _) => map(ctx, encoder, *f, *clip, input, out)?,
                (Layer::ChannelAffine { .. }, Params::Affine { scale, shift }) => {
                    channel_affine(ctx, encoder, input, scale, shift, out)?
                }
                (Layer::LayerNorm { eps, .. }, Params::Norm { gamma, beta }) => layer_norm(
                    ctx,
                    encoder,
                    input,
                    gamma.as_ref(),
                    beta.as_ref(),
                    *eps,
                    out,
                )?,
                (Layer::Upsample { factors }, _) => {
                    upsample_nearest(ctx, encoder, input, *factors, out)?
                }
                (Layer::DepthToSpace { block }, _) => {
                    depth_to_space(ctx, encoder, input, *block, out)?
                }
                (Layer::ZeroInsert { factors }, _) => {
                    crate::ops::layout::zero_insert(ctx, encoder, input, *factors, out)?
                }
                (Layer::ResizeBilinear { coords, scales, .. }, _) => {
                    resize_bilinear(ctx, encoder, input, *coords, *scales, out)?
                }
                (Layer::Concat { others, axis }, _) => {
                    let mut all = vec![input];
                    all.extend(others.iter().map(|&o| &self.acts[o]));
                    concat_any(ctx, encoder, &all, *axis, out)?
                }
                (Layer::Binary { op, other, clip }, _) => {
                    binary(ctx, encoder, *op, input, &self.acts[*other], *clip, out)?
                }
                (Layer::Permute { view, perm }, _) => {
                    permute(ctx, encoder, &input.reshape(view)?, perm, out)?
                }
                (
                    Layer::Crop {
                        view, start, step, ..
                    },
                    _,
                ) => slice(ctx, encoder, &input.reshape(view)?, start, step, out)?,
                (Layer::Expand { view, .. }, _) => {
                    expand(ctx, encoder, &input.reshape(view)?, out)?
                }
                (
                    Layer::Pad {
                        before,
                        after,
                        mode,
                    },
                    _,
                ) => pad(ctx, encoder, input, before, after, *mode, out)?,
                (Layer::MatMul { other }, Params::MatMulF32 { a, b, c }) => {
                    cast(ctx, encoder, input, a)?;
                    cast(ctx, encoder, &self.acts[*other], b)?;
                    record_matmul(ctx, encoder, a, b, c)?;
                    cast(ctx, encoder, c, out)?
                }
                (Layer::MatMul { other }, _) => {
                    record_matmul(ctx, encoder, input, &self.acts[*other], out)?
                }
                _ => unreachable!("params are built from the same layers"),
            }
            if let Some(q) = stamps {
                encoder.write_timestamp(q, 2 * i as u32 + 1);
            }
        }
        Ok(self.acts.last().expect("a model has nodes"))
    }

    /// The output of node `name` after a forward pass.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.graph
            .nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| &self.acts[i])
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Activation and weight dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of the weights and biases on the GPU (as stored: f32 or f16). A linear
    /// weight that several layers hold with equal values is stored, and counted, once.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }
}

/// Checks that a tensor of `x` elements can be viewed as `view`.
/// The output shape of a data-moving layer (slice, constant, gather, broadcast, pad) on
/// an input of `x_shape`, or what is wrong.
fn strided_shape(layer: &Layer, x_shape: &[usize]) -> Result<Vec<usize>> {
    let bad = |m: String| Error::invalid(OP, m);
    Ok(match layer {
        Layer::Crop {
            view,
            start,
            step,
            size,
        } => {
            check_view(x_shape, view)?;
            crate::ops::layout::check_slice(view, start, step, size).map_err(bad)?;
            size.clone()
        }
        Layer::Const { value, dims } => {
            if dims.iter().product::<usize>() != value.len() || dims.is_empty() {
                return Err(Error::shape(
                    OP,
                    format!("a constant of {dims:?} holds {} values", value.len()),
                ));
            }
            dims.clone()
        }
        Layer::Gather { axis, indices } => {
            let out =
                crate::ops::layout::gathered_shape(x_shape, *axis, indices.len()).map_err(bad)?;
            if let Some(&j) = indices.iter().find(|&&j| j >= x_shape[*axis]) {
                return Err(bad(format!("index {j} on axis {axis} of {x_shape:?}")));
            }
            out
        }
        Layer::Expand { view, to } => {
            check_view(x_shape, view)?;
            crate::ops::layout::expand_strides(view, to).map_err(bad)?;
            to.clone()
        }
        Layer::Pad {
            before,
            after,
            mode,
        } => crate::ops::layout::padded_shape(x_shape, before, after, *mode).map_err(bad)?,
        _ => unreachable!("called for the data-moving layers"),
    })
}

/// A gather's indices on the GPU (u32; the shape check has bounded them).
pub(crate) fn index_tensor(ctx: &Context, indices: &[usize]) -> Result<Tensor> {
    let v: Vec<u32> = indices
        .iter()
        .map(|&j| u32::try_from(j).map_err(|_| Error::invalid("gather", format!("index {j}"))))
        .collect::<Result<_>>()?;
    Tensor::from_slice(ctx, &[v.len()], &v)
}

/// Records a concatenation along stored `axis`: NHWC images along channels through
/// [`concat_channels`], anything else through [`concat`].
pub(crate) fn concat_any(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    all: &[&Tensor],
    axis: usize,
    out: &Tensor,
) -> Result<()> {
    if axis == 3 && out.shape().len() == 4 {
        concat_channels(ctx, encoder, all, out)
    } else {
        concat(ctx, encoder, all, axis, out)
    }
}

fn check_view(x: &[usize], view: &[usize]) -> Result<()> {
    let n: Option<usize> = view.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(x.iter().product()) {
        return Err(Error::shape(OP, format!("views {x:?} as {view:?}")));
    }
    Ok(())
}

/// The output shape of a linear layer (`k` inputs, `n` outputs) on an input of `x`:
/// `[B, n]` when `x` flattens to `[B, k]` (`x[0]` rows), else `[.., n]` when `x` is rows
/// of `k` (its last axis; a sequence's tokens); `None` when neither.
pub(crate) fn linear_output_shape(x: &[usize], k: usize, n: usize) -> Option<Vec<usize>> {
    let feats: usize = x.iter().skip(1).product();
    if x.len() >= 2 && feats == k {
        Some(vec![x[0], n])
    } else if x.len() > 2 && x.last() == Some(&k) {
        let mut out = x.to_vec();
        *out.last_mut()? = n;
        Some(out)
    } else {
        None
    }
}

/// Uploaded linear weights with one shape and hash: their values and tensors.
type SharedWeights<'a> = Vec<(&'a [f32], Tensor)>;

/// A hash of the bits of `v` (to find equal weight tensors).
fn bits_hash(v: &[f32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for x in v {
        x.to_bits().hash(&mut h);
    }
    h.finish()
}

/// The output shape of `a[.., M, K] x b[.., K, N]` (b's leading dimensions equal a's, or
/// b is one matrix), or what does not fit.
pub(crate) fn matmul_shape(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let (ra, rb) = (a.len(), b.len());
    let fits = ra >= 2
        && rb >= 2
        && a[ra - 1] == b[rb - 2]
        && (rb == 2 || (ra == rb && a[..ra - 2] == b[..rb - 2]));
    if !fits {
        return Err(format!(
            "multiplies {a:?} by {b:?}: [.., M, K] x [.., K, N] with the same leading \
             dimensions (or one [K, N] matrix) is needed"
        ));
    }
    let mut out = a.to_vec();
    out[ra - 1] = b[rb - 1];
    Ok(out)
}

/// Records the f32 matrix product of [`Layer::MatMul`]: `c[.., M, N] = a[.., M, K] x
/// b[.., K, N]` (shapes as [`matmul_shape`] checks them).
pub(crate) fn record_matmul(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<()> {
    let (sa, sb) = (a.shape(), b.shape());
    let out = matmul_shape(sa, sb).map_err(|m| Error::shape("matmul", m))?;
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let batch: usize = sa[..ra - 2].iter().product();
    let a3 = a.reshape(&[batch, m, k])?;
    let b3 = if rb == 2 {
        b.clone()
    } else {
        b.reshape(&[batch, k, n])?
    };
    let c3 = c.reshape(&[batch, m, n])?;
    if c.shape() != out.as_slice() {
        return Err(Error::shape(
            "matmul",
            format!(
                "the product is {out:?}; the output has shape {:?}",
                c.shape()
            ),
        ));
    }
    gemm(
        ctx,
        encoder,
        &GemmDesc::new(m, n, k).batch(batch),
        &a3,
        &b3,
        None,
        &c3,
    )
}
