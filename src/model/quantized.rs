//! Post-training quantization of a [`Graph`]: INT8 weights (symmetric, one scale per
//! output channel) with either
//!
//! - **static** activations: calibration batches run through the FP32 model, an
//!   [`Observer`] per node watches its output on the GPU, and each activation gets one
//!   scale and zero point (asymmetric u8 by default). Convolutions, residual adds and
//!   linears then chain in integers: each kernel reads 8-bit codes and writes requantized
//!   8-bit codes (`qconv2d`, `qadd`, `qgemm`). Pooling and softmax run in f32: a layer
//!   read only by them writes f32 (the classifier's logits are never quantized), and
//!   pooling quantizes its output again for the next integer layer; or
//! - **dynamic** activations: f32 between layers, each convolution and linear quantizing
//!   its input on the fly (u8 per tensor for convolutions, i8 per row for linears) and
//!   writing f32.
//!
//! In both modes the biases are corrected for the weights' rounding when calibration
//! batches are given ([`PtqOptions::bias_correction`], on by default): the mean shift
//! `sum((W_q - W) * E[x])` of each output channel is measured on the batches and taken
//! out of the bias (docs/QUANTIZATION.md, "Bias correction").
//!
//! ```
//! use wgpu_quant::model::{Graph, Layer, QMode, QModel, WeightFile};
//! use wgpu_quant::calib::ObserverKind;
//! use wgpu_quant::{Context, Tensor};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let mut w = WeightFile::default();
//! w.insert("fc.weight", &[2, 3], vec![1.0, -1.0, 0.5, -0.5, 1.0, 0.25])?;
//! let mut g = Graph::default();
//! g.push("fc", Layer::linear("fc.weight", None, 2, 3));
//! // Calibrate on two batches, then run the static INT8 model.
//! let batches = [
//!     Tensor::from_slice(&ctx, &[1, 3], &[1.0f32, 2.0, -1.0])?,
//!     Tensor::from_slice(&ctx, &[1, 3], &[-0.5f32, 0.5, 1.5])?,
//! ];
//! let q = QModel::calibrate(&ctx, &g, &w, &[1, 3], &batches, ObserverKind::MinMax, QMode::Static)?;
//! let mut enc = ctx.encoder("int8");
//! let y = q.forward(&ctx, &mut enc, &batches[0])?;
//! ctx.submit_and_wait(enc)?;
//! let y = y.read_blocking::<f32>(&ctx)?;
//! // 1 - 2 - 0.5 = -1.5 and -0.5 + 2 - 0.25 = 1.25, within the 8-bit steps.
//! assert!((y[0] + 1.5).abs() < 0.05 && (y[1] - 1.25).abs() < 0.05);
//! # Ok(()) }
//! ```

use super::{onnx_rounding, Graph, Layer, Model, Src, WeightFile};
use crate::calib::{Observer, ObserverKind};
use crate::context::Context;
use crate::desc::gemm::Activation;
use crate::error::{Error, Result};
use crate::ops::conv::{qconv2d, ConvShape, QConvWeight};
use crate::ops::eltwise::{
    add, binary, cast, channel_affine, layer_norm, map, qadd, row_reduce, softmax,
};
use crate::ops::layout::{depth_to_space, permute, resize_bilinear, upsample_nearest};
use crate::ops::pool::pool2d;
use crate::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use crate::ops::quant::{
    dequantize, dynamic_quantize, quantize, rows_pack_alike, DynamicQuant, QTensor,
};
use crate::quant::{Granularity, QType, QuantParams, QuantScheme};
use crate::tensor::{DType, Tensor};

const OP: &str = "QModel";

/// How activations are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QMode {
    /// Calibrated scales, integer chains between layers.
    Static,
    /// f32 between layers, quantized on the fly by each convolution and linear.
    Dynamic,
}

#[derive(Debug)]
enum QParams {
    None,
    Conv {
        w: QConvWeight,
        b: Option<Tensor>,
    },
    Linear {
        w: QTensor,
        b: Option<Tensor>,
    },
    /// A quantized file's convolution whose weights the file leaves in float: an f32
    /// convolution between the dequantized input and the quantized output.
    FloatConv {
        w: crate::ops::conv::ConvWeight,
        b: Option<Tensor>,
    },
    /// Likewise a linear layer (W stored `[N, K]`).
    FloatLinear {
        w: Tensor,
        b: Option<Tensor>,
    },
    /// A per-channel affine map's scale and shift (f32).
    Affine {
        scale: Tensor,
        shift: Tensor,
    },
    /// A layer norm's gamma and beta (f32).
    Norm {
        gamma: Option<Tensor>,
        beta: Option<Tensor>,
    },
    /// A constant operand (f32).
    Const(Tensor),
}

/// A node's output: 8-bit codes (static mode, except softmax and the last node) or f32.
/// (Few and long-lived: the size difference does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Act {
    Q(QTensor),
    F(Tensor),
}

/// Per-node buffers besides the output.
#[derive(Debug, Default)]
struct Scratch {
    /// Static pooling and softmax: the dequantized input.
    f_in: Option<Tensor>,
    /// Static pooling into a quantized output: the pooled f32 values.
    f_out: Option<Tensor>,
    /// Dynamic convolutions and linears: the input quantized on the fly.
    q_in: Option<QTensor>,
    /// How a dynamic linear quantizes its input (per row i8, or ONNX's u8 per tensor).
    dyn_linear: Option<DynamicQuant>,
    /// Static binary ops and concatenations: the other operands dequantized.
    f_others: Vec<Tensor>,
    /// A convolution or linear that requantizes as ONNX does (a quantized file's model).
    onnx: Option<OnnxRequant>,
    /// A node that keeps codes but is an output of the model: its values dequantized.
    deq: Option<Tensor>,
}

/// A layer requantized with ONNX's rule (see `onnx_rounding`): its int32 bias, if any.
#[derive(Debug)]
struct OnnxRequant {
    bias: Option<Tensor>,
}

/// A [`Graph`] with INT8 weights, ready to run (see the module docs).
#[derive(Debug)]
pub struct QModel {
    graph: Graph,
    mode: QMode,
    input_shape: Vec<usize>,
    input_q: Option<QTensor>,
    params: Vec<QParams>,
    acts: Vec<Act>,
    scratch: Vec<Scratch>,
    weight_bytes: u64,
    host: HostParams,
}

/// Weight name: per-channel parameters and codes.
type QWeights = std::collections::BTreeMap<String, (QuantParams, Vec<i32>)>;
/// Weight name: f32 values.
type FloatWeights = std::collections::BTreeMap<String, Vec<f32>>;

/// The quantized parameters on the host, for [`QModel::save`].
#[derive(Debug, Clone, Default)]
struct HostParams {
    /// Weight name: per-channel parameters and codes.
    weights: std::collections::BTreeMap<String, (QuantParams, Vec<i32>)>,
    /// Bias name: values.
    biases: std::collections::BTreeMap<String, Vec<f32>>,
    /// A quantized file's weights that the file leaves in float (ONNX Runtime leaves a
    /// ConvTranspose, or nodes excluded from quantization): those layers run in f32
    /// between codes.
    float_weights: std::collections::BTreeMap<String, Vec<f32>>,
    /// Per node: its output's parameters (static mode).
    acts: Vec<Option<QuantParams>>,
    /// The input's parameters (static mode).
    input: Option<QuantParams>,
    /// Dynamic mode: linears quantize their input as ONNX's DynamicQuantizeLinear (u8,
    /// asymmetric, per tensor; ONNX Runtime's dynamic files) instead of i8 per row.
    onnx_dynamic: bool,
    /// Static mode, a quantized file's model: every output the file quantizes is
    /// written as codes (none skipped for a float reader or at the end), and convolutions
    /// and linears round as ONNX's QLinear ops where they can (`onnx_rounding`).
    onnx_requant: bool,
}

/// How [`QModel::calibrate_with`] quantizes a graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PtqOptions {
    /// The observer of every activation (static mode).
    pub observer: ObserverKind,
    /// Static or dynamic activations.
    pub mode: QMode,
    /// Empirical bias correction (on by default; needs calibration batches). Rounding
    /// the weights to 8 bits shifts each output channel's mean by
    /// `sum((W_q - W) * E[x])`; the correction measures `E[x]` for every tap and input
    /// channel on the calibration batches (padding included) and subtracts that shift
    /// from the bias. A layer without a bias gets one (saved as `WEIGHT.bias_correction`).
    pub bias_correction: bool,
    /// Bits of the weights' codes (2 to 8; 8 by default): symmetric per output channel,
    /// in -127..=127 style restricted ranges below 8 bits (-7..=7 at 4 bits), stored as
    /// INT8 codes, so the integer kernels stay exact.
    pub weight_bits: u32,
    /// Bits of the activations' codes (2 to 8; 8 by default; static mode): 0..=15 at 4
    /// bits, stored as UINT8 codes.
    pub act_bits: u32,
}

impl PtqOptions {
    /// `observer` and `mode`, with bias correction.
    pub fn new(observer: ObserverKind, mode: QMode) -> PtqOptions {
        PtqOptions {
            observer,
            mode,
            bias_correction: true,
            weight_bits: 8,
            act_bits: 8,
        }
    }

    /// Codes of `weights` bits for the weights and `activations` bits for the activations
    /// (each 2 to 8; [`QModel::calibrate_with`] refuses others).
    pub fn bits(mut self, weights: u32, activations: u32) -> PtqOptions {
        self.weight_bits = weights;
        self.act_bits = activations;
        self
    }

    /// Turns bias correction on or off.
    pub fn bias_correction(mut self, on: bool) -> PtqOptions {
        self.bias_correction = on;
        self
    }
}

/// The name under which the bias correction of a layer without a bias is kept.
fn correction_name(weight: &str) -> String {
    format!("{weight}.bias_correction")
}

/// The mean of each of the `k` inputs of a linear over the rows of `x`.
fn column_means(x: &[f32], k: usize) -> Vec<f64> {
    let rows = x.len() / k;
    let mut m = vec![0f64; k];
    for row in x.chunks_exact(k) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    m.into_iter().map(|v| v / rows as f64).collect()
}

/// The mean input of every tap and input channel of a convolution, over every output
/// position of the batch: `[KH * KW * C]` (tap-major), padding counted as zeros.
fn tap_means(x: &[f32], cs: &ConvShape) -> Vec<f64> {
    let c = cs.dims.in_channels;
    let [kh, kw] = cs.dims.kernel;
    let mut m = vec![0f64; kh * kw * c];
    for b in 0..cs.batch {
        for oh in 0..cs.out_h {
            for ow in 0..cs.out_w {
                for i in 0..kh {
                    let ih = (oh * cs.stride[0] + i * cs.dilation[0]).checked_sub(cs.pad[0]);
                    let Some(ih) = ih.filter(|&h| h < cs.in_h) else {
                        continue;
                    };
                    for j in 0..kw {
                        let iw = (ow * cs.stride[1] + j * cs.dilation[1]).checked_sub(cs.pad[1]);
                        let Some(iw) = iw.filter(|&w| w < cs.in_w) else {
                            continue;
                        };
                        let at = ((b * cs.in_h + ih) * cs.in_w + iw) * c;
                        let tap = (i * kw + j) * c;
                        for (a, &v) in m[tap..tap + c].iter_mut().zip(&x[at..at + c]) {
                            *a += f64::from(v);
                        }
                    }
                }
            }
        }
    }
    let n = (cs.batch * cs.out_h * cs.out_w) as f64;
    m.into_iter().map(|v| v / n).collect()
}

/// The shift of each output channel's mean that rounding the weights causes:
/// `sum over (input channel of its group, tap) of (W_q - W) * E[x]`, for OIHW weights of
/// shape `shape` (`[N, K]` for a linear) in `groups` groups.
fn weight_error_shift(
    shape: &[usize],
    groups: usize,
    w: &[f32],
    wq: &[f32],
    means: &[f64],
) -> Vec<f32> {
    let oc = shape[0];
    let cpg = shape[1];
    let taps: usize = shape[2..].iter().product();
    let c = cpg * groups;
    let opg = oc / groups;
    (0..oc)
        .map(|o| {
            let g = o / opg;
            let mut shift = 0f64;
            for icl in 0..cpg {
                for t in 0..taps {
                    let wi = (o * cpg + icl) * taps + t;
                    shift += f64::from(wq[wi] - w[wi]) * means[t * c + g * cpg + icl];
                }
            }
            shift as f32
        })
        .collect()
}

impl QModel {
    /// Calibrates `graph` (FP32, weights from `weights`) on `batches` (each of shape
    /// `input_shape`, f32) with one `observer` per activation (and one for the input),
    /// and builds the INT8 model, with bias correction ([`PtqOptions`]). In
    /// [`QMode::Dynamic`] no activation is calibrated, and `batches` may be empty (then
    /// the biases are not corrected). Waits on the GPU: natively only;
    /// [`QModel::calibrate_async`] is the async form.
    pub fn calibrate(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        input_shape: &[usize],
        batches: &[Tensor],
        observer: ObserverKind,
        mode: QMode,
    ) -> Result<QModel> {
        let opts = PtqOptions::new(observer, mode);
        QModel::calibrate_with(ctx, graph, weights, input_shape, batches, &opts)
    }

    /// [`QModel::calibrate`] without blocking (the form a browser build uses).
    pub async fn calibrate_async(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        input_shape: &[usize],
        batches: &[Tensor],
        observer: ObserverKind,
        mode: QMode,
    ) -> Result<QModel> {
        let opts = PtqOptions::new(observer, mode);
        QModel::calibrate_with_async(ctx, graph, weights, input_shape, batches, &opts).await
    }

    /// [`QModel::calibrate`] with every option spelled out (natively only;
    /// [`QModel::calibrate_with_async`] is the async form).
    pub fn calibrate_with(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        input_shape: &[usize],
        batches: &[Tensor],
        opts: &PtqOptions,
    ) -> Result<QModel> {
        ctx.block(
            "QModel::calibrate_with",
            QModel::calibrate_with_async(ctx, graph, weights, input_shape, batches, opts),
        )
    }

    /// [`QModel::calibrate_with`] without blocking (the form a browser build uses).
    pub async fn calibrate_with_async(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        input_shape: &[usize],
        batches: &[Tensor],
        opts: &PtqOptions,
    ) -> Result<QModel> {
        let (observer, mode) = (opts.observer, opts.mode);
        let scheme = QuantScheme::asymmetric(QType::U8).with_bits(opts.act_bits)?;
        let wscheme = match opts.weight_bits {
            8 => QuantScheme::symmetric(QType::I8).per_channel(0),
            b => QuantScheme::symmetric(QType::I8)
                .per_channel(0)
                .restricted()
                .with_bits(b)?,
        };
        let n_nodes = graph.nodes.len();
        let mut host = HostParams {
            acts: vec![None; n_nodes],
            ..Default::default()
        };
        if mode == QMode::Static && batches.is_empty() {
            return Err(Error::invalid(
                OP,
                "static quantization needs calibration batches",
            ));
        }
        let correct = opts.bias_correction && !batches.is_empty();
        // Per node with weights: the mean of each tap's input (bias correction).
        let mut means: Vec<Vec<f64>> = vec![Vec::new(); n_nodes];
        // The FP32 model is needed only to observe its activations.
        if mode == QMode::Static || correct {
            let fp32 = Model::new(ctx, graph, weights, DType::F32, input_shape)?;
            let shapes = super::infer_shapes(graph, input_shape)?;
            let mut obs_in = Observer::new(observer, Granularity::PerTensor)?;
            let mut obs: Vec<Observer> = (0..n_nodes)
                .map(|_| Observer::new(observer, Granularity::PerTensor))
                .collect::<Result<_>>()?;
            // A calibration batch with NaN or infinite values is refused, naming the
            // batch and the tensor (in dynamic mode too: bias correction reads it).
            let calib_err = |b: usize, what: &str, e: Error| {
                Error::invalid(
                    "QModel::calibrate",
                    format!("calibration batch {b}, {what}: {e}"),
                )
            };
            for (bi, b) in batches.iter().enumerate() {
                obs_in
                    .observe_async(ctx, b)
                    .await
                    .map_err(|e| calib_err(bi, "the model's input", e))?;
                let mut enc = ctx.encoder("calibration");
                fp32.forward(ctx, &mut enc, b)?;
                ctx.submit(enc).await?;
                if mode == QMode::Static {
                    for (i, o) in obs.iter_mut().enumerate() {
                        o.observe_async(ctx, &fp32.acts[i]).await.map_err(|e| {
                            calib_err(bi, &format!("the output of '{}'", graph.nodes[i].name), e)
                        })?;
                    }
                }
                if !correct {
                    continue;
                }
                for (i, node) in graph.nodes.iter().enumerate() {
                    let (input, in_shape) = match node.input {
                        Src::Input => (b, input_shape),
                        Src::Node(j) => (&fp32.acts[j], shapes[j].as_slice()),
                    };
                    let m = match &node.layer {
                        Layer::Conv { dims, desc, .. } => {
                            let cs = desc.shape(dims, in_shape)?;
                            tap_means(&input.read::<f32>(ctx).await?, &cs)
                        }
                        Layer::Linear { k, .. } => column_means(&input.read::<f32>(ctx).await?, *k),
                        _ => continue,
                    };
                    let acc = &mut means[i];
                    acc.resize(m.len(), 0.0);
                    for (a, v) in acc.iter_mut().zip(m) {
                        *a += v / batches.len() as f64;
                    }
                }
            }
            if mode == QMode::Static {
                host.input = Some(obs_in.compute_params(&scheme, input_shape)?);
                for (i, o) in obs.iter().enumerate() {
                    host.acts[i] = Some(o.compute_params(&scheme, fp32.acts[i].shape())?);
                }
            }
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            let Some((weight, bias, shape)) = node.layer.weight_spec() else {
                continue;
            };
            let wf = weights.tensor(weight, &shape)?;
            let wp = QuantParams::from_data(&wscheme, &shape, wf)?;
            let codes = wp.quantize(wf)?;
            let mut b = match bias {
                Some(b) => Some(weights.tensor(b, &shape[..1])?.to_vec()),
                None => None,
            };
            if correct {
                let groups = match &node.layer {
                    Layer::Conv { dims, .. } => dims.groups,
                    _ => 1,
                };
                let wq = wp.dequantize(&codes)?;
                let shift = weight_error_shift(&shape, groups, wf, &wq, &means[i]);
                let b = b.get_or_insert_with(|| vec![0.0; shape[0]]);
                for (b, s) in b.iter_mut().zip(shift) {
                    *b -= s;
                }
            }
            if let Some(v) = b {
                let name = bias.map_or_else(|| correction_name(weight), str::to_string);
                host.biases.insert(name, v);
            }
            host.weights.insert(weight.to_string(), (wp, codes));
        }
        QModel::build(ctx, graph, input_shape, mode, host)
    }

    /// A static INT8 model from parameters decided elsewhere (a quantized ONNX file):
    /// per weight its parameters and codes, per bias its values, per node its output's
    /// parameters (`None` where the node writes f32) and the input's parameters.
    pub(crate) fn from_parts(
        ctx: &Context,
        graph: &Graph,
        input_shape: &[usize],
        (weights, float_weights): (QWeights, FloatWeights),
        biases: std::collections::BTreeMap<String, Vec<f32>>,
        acts: Vec<Option<QuantParams>>,
        input: QuantParams,
    ) -> Result<QModel> {
        let host = HostParams {
            weights,
            biases,
            float_weights,
            acts,
            input: Some(input),
            onnx_dynamic: false,
            onnx_requant: true,
        };
        QModel::build(ctx, graph, input_shape, QMode::Static, host)
    }

    /// A dynamic INT8 model from a quantized file's weight codes and parameters (ONNX
    /// Runtime's dynamic format): activations are quantized on the fly.
    pub(crate) fn from_parts_dynamic(
        ctx: &Context,
        graph: &Graph,
        input_shape: &[usize],
        weights: std::collections::BTreeMap<String, (QuantParams, Vec<i32>)>,
        biases: std::collections::BTreeMap<String, Vec<f32>>,
    ) -> Result<QModel> {
        let host = HostParams {
            weights,
            biases,
            float_weights: Default::default(),
            acts: vec![None; graph.nodes.len()],
            input: None,
            onnx_dynamic: true,
            onnx_requant: false,
        };
        QModel::build(ctx, graph, input_shape, QMode::Dynamic, host)
    }

    /// The model from host-side parameters (calibrated or loaded).
    fn build(
        ctx: &Context,
        graph: &Graph,
        input_shape: &[usize],
        mode: QMode,
        host: HostParams,
    ) -> Result<QModel> {
        let shapes = super::infer_shapes(graph, input_shape)?;
        let n_nodes = graph.nodes.len();
        let readers = readers(graph);
        let mut params = Vec::with_capacity(n_nodes);
        let mut acts: Vec<Act> = Vec::with_capacity(n_nodes);
        let mut scratch = Vec::with_capacity(n_nodes);
        let mut weight_bytes = 0u64;
        for (i, node) in graph.nodes.iter().enumerate() {
            let out_shape = &shapes[i];
            let in_shape: Vec<usize> = match node.input {
                Src::Input => input_shape.to_vec(),
                Src::Node(j) => shapes[j].clone(),
            };
            let (p, bytes) = upload_params(ctx, &node.layer, &host)?;
            weight_bytes += bytes;
            let last = i + 1 == n_nodes;
            // A convolution or linear whose every reader dequantizes anyway (pooling,
            // softmax) writes f32 directly and skips one rounding.
            let feeds_float = matches!(node.layer, Layer::Conv { .. } | Layer::Linear { .. })
                && !readers[i].is_empty()
                && readers[i]
                    .iter()
                    .all(|&r| float_layer(&graph.nodes[r].layer));
            // A quantized file's model writes the codes the file asks for everywhere.
            let keep_codes = mode == QMode::Static
                && host.onnx_requant
                && host.acts[i].is_some()
                && !matches!(node.layer, Layer::Softmax);
            // The caller's other outputs that no layer reads write f32 too, and so does
            // a quantized file's node whose output the file leaves in float.
            let f32_out = !keep_codes
                && (mode == QMode::Dynamic
                    || host.onnx_requant
                    || last
                    || (graph.outputs.contains(&i) && readers[i].is_empty())
                    || feeds_float
                    || matches!(node.layer, Layer::Softmax)
                    // An index stays exact.
                    || matches!(node.layer, Layer::RowReduce(k) if k.is_index()));
            // The parameters of the node's 8-bit input, if it has any.
            let in_params = match node.input {
                Src::Input => host.input.as_ref(),
                Src::Node(j) => match acts[j] {
                    Act::Q(_) => host.acts[j].as_ref(),
                    Act::F(_) => None,
                },
            };
            let onnx = match keep_codes {
                true => onnx_plan(&node.layer, in_params, &host, i),
                false => None,
            };
            let act = if f32_out {
                Act::F(Tensor::zeros(ctx, out_shape, DType::F32)?)
            } else {
                let range = onnx.as_ref().map(|p| p.range);
                Act::Q(static_activation(
                    ctx,
                    &host,
                    (i, &node.name),
                    out_shape,
                    range,
                )?)
            };
            let other_shapes: Vec<&[usize]> = others_of(&node.layer)
                .into_iter()
                .filter_map(|o| shapes.get(o).map(Vec::as_slice))
                .collect();
            let io = (&in_shape[..], &out_shape[..], &other_shapes[..]);
            let mut sc = node_scratch(
                ctx,
                (
                    mode,
                    host.onnx_dynamic,
                    matches!(p, QParams::FloatConv { .. } | QParams::FloatLinear { .. }),
                ),
                graph,
                i,
                io,
                in_params,
                &act,
            )?;
            sc.onnx = onnx
                .map(|p| -> Result<OnnxRequant> {
                    let bias = match p.bias {
                        Some(b) => Some(Tensor::from_slice(ctx, &[b.len()], &b)?),
                        None => None,
                    };
                    Ok(OnnxRequant { bias })
                })
                .transpose()?;
            params.push(p);
            acts.push(act);
            scratch.push(sc);
        }
        let input_q = match mode {
            QMode::Static => {
                let p = host
                    .input
                    .as_ref()
                    .ok_or_else(|| missing_params("act.input"))?;
                Some(QTensor::new(ctx, p)?)
            }
            QMode::Dynamic => None,
        };
        Ok(QModel {
            graph: graph.clone(),
            mode,
            input_shape: input_shape.to_vec(),
            input_q,
            params,
            acts,
            scratch,
            weight_bytes,
            host,
        })
    }

    /// Records the forward pass of the f32 input `x` (the calibration shape) into
    /// `encoder`; returns the last node's f32 output.
    pub fn forward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
    ) -> Result<&Tensor> {
        self.forward_stamped(ctx, encoder, x, None)
    }

    /// The GPU time of each layer, as [`Model::profile`] measures it (the input's
    /// quantization is not counted).
    pub fn profile(&self, ctx: &Context, x: &Tensor, runs: usize) -> Result<Vec<(String, f64)>> {
        let names = self.graph.nodes.iter().map(|n| n.name.clone()).collect();
        super::profile_layers(ctx, names, runs, |enc, q| {
            self.forward_stamped(ctx, enc, x, Some(q)).map(|_| ())
        })
    }

    /// [`QModel::forward`] with timestamps `2i`, `2i + 1` around layer `i` when given.
    fn forward_stamped(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
        stamps: Option<&wgpu::QuerySet>,
    ) -> Result<&Tensor> {
        if x.shape() != self.input_shape.as_slice() || x.dtype() != DType::F32 {
            return Err(Error::shape(
                OP,
                format!(
                    "the input is {:?} {:?}; the model takes {:?} F32",
                    x.shape(),
                    x.dtype(),
                    self.input_shape
                ),
            ));
        }
        let xin = match &self.input_q {
            Some(q) => {
                quantize(ctx, encoder, x, q)?;
                Act::Q(q.clone())
            }
            None => Act::F(x.clone()),
        };
        let bad = |i: usize, what: &str| -> Error {
            Error::invalid(
                OP,
                format!("node {i} '{}': {what}", self.graph.nodes[i].name),
            )
        };
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let input = match node.input {
                Src::Input => &xin,
                Src::Node(j) => &self.acts[j],
            };
            let sc = &self.scratch[i];
            if let Some(q) = stamps {
                encoder.write_timestamp(q, 2 * i as u32);
            }
            match (&node.layer, &self.params[i], input, &self.acts[i]) {
                (Layer::Conv { .. } | Layer::Linear { .. }, _, inp, out) => {
                    self.record_weighted(ctx, encoder, i, inp, out)?
                }
                (Layer::Pool(desc), _, inp, out) => {
                    let xf = match inp {
                        Act::Q(q) => {
                            let f = sc.f_in.as_ref().ok_or_else(|| bad(i, "no f32 input"))?;
                            dequantize(ctx, encoder, q, f)?;
                            f
                        }
                        Act::F(f) => f,
                    };
                    match out {
                        Act::F(t) => pool2d(ctx, encoder, desc, xf, t)?,
                        Act::Q(q) => {
                            let t = sc.f_out.as_ref().ok_or_else(|| bad(i, "no f32 output"))?;
                            pool2d(ctx, encoder, desc, xf, t)?;
                            quantize(ctx, encoder, t, q)?
                        }
                    }
                }
                (Layer::Add { other, clip }, _, Act::Q(a), Act::Q(o)) => match &self.acts[*other] {
                    Act::Q(bq) => qadd(ctx, encoder, a, bq, *clip, o)?,
                    Act::F(_) => return Err(bad(i, "adds an f32 output to codes")),
                },
                (Layer::Add { other, clip }, _, Act::F(a), Act::F(o)) => match &self.acts[*other] {
                    Act::F(bf) => add(ctx, encoder, a, bf, *clip, o)?,
                    Act::Q(_) => return Err(bad(i, "adds codes to an f32 output")),
                },
                (
                    Layer::Map { .. }
                    | Layer::RowReduce(_)
                    | Layer::BinaryConst { .. }
                    | Layer::ChannelAffine { .. }
                    | Layer::LayerNorm { .. }
                    | Layer::Binary { .. }
                    | Layer::Upsample { .. }
                    | Layer::ResizeBilinear { .. }
                    | Layer::DepthToSpace { .. }
                    | Layer::ZeroInsert { .. }
                    | Layer::Concat { .. }
                    | Layer::Permute { .. }
                    | Layer::Crop { .. }
                    | Layer::Expand { .. }
                    | Layer::Gather { .. }
                    | Layer::Const { .. }
                    | Layer::Pad { .. }
                    | Layer::MatMul { .. },
                    _,
                    inp,
                    out,
                ) => self.record_float_layer(ctx, encoder, i, inp, out)?,
                (Layer::Softmax, _, inp, Act::F(o)) => {
                    let xf = match inp {
                        Act::Q(q) => {
                            let f = sc.f_in.as_ref().ok_or_else(|| bad(i, "no f32 input"))?;
                            dequantize(ctx, encoder, q, f)?;
                            f
                        }
                        Act::F(f) => f,
                    };
                    softmax(ctx, encoder, xf, o)?
                }
                _ => return Err(bad(i, "this layer has no INT8 form here")),
            }
            if let (Some(f), Act::Q(q)) = (&sc.deq, &self.acts[i]) {
                dequantize(ctx, encoder, q, f)?;
            }
            if let Some(q) = stamps {
                encoder.write_timestamp(q, 2 * i as u32 + 1);
            }
        }
        match (
            self.acts.last(),
            self.scratch.last().and_then(|s| s.deq.as_ref()),
        ) {
            (Some(Act::F(t)), _) | (Some(Act::Q(_)), Some(t)) => Ok(t),
            _ => Err(Error::invalid(OP, "the last node has no f32 output")),
        }
    }

    /// A convolution or linear: static (codes in, codes or f32 out; ONNX's rounding
    /// where the layer has it) or dynamic (f32 in, quantized on the fly, f32 out).
    fn record_weighted(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        i: usize,
        input: &Act,
        out: &Act,
    ) -> Result<()> {
        let node = &self.graph.nodes[i];
        let sc = &self.scratch[i];
        let bad = |what: &str| Error::invalid(OP, format!("node {i} '{}': {what}", node.name));
        let o = match out {
            Act::Q(q) => QGemmOutput::Quantized(q),
            Act::F(t) => QGemmOutput::F32(t),
        };
        if matches!(
            self.params[i],
            QParams::FloatConv { .. } | QParams::FloatLinear { .. }
        ) {
            return self.record_float_layer(ctx, encoder, i, input, out);
        }
        // ONNX's rule: an i32 bias, the activation already in the output's code range.
        let onnx_bias = sc.onnx.as_ref().map(|r| r.bias.as_ref());
        match (&node.layer, &self.params[i], input) {
            (Layer::Conv { desc, .. }, QParams::Conv { w, b }, Act::Q(xq)) => match onnx_bias {
                Some(ib) => {
                    let d = desc.activation(Activation::None).onnx_requant(true);
                    qconv2d(ctx, encoder, &d, xq, w, ib, o)
                }
                None => qconv2d(ctx, encoder, desc, xq, w, b.as_ref(), o),
            },
            (Layer::Conv { desc, .. }, QParams::Conv { w, b }, Act::F(xf)) => {
                let q = sc.q_in.as_ref().ok_or_else(|| bad("no dynamic buffer"))?;
                dynamic_quantize(ctx, encoder, xf, &DynamicQuant::onnx(), q)?;
                qconv2d(ctx, encoder, desc, q, w, b.as_ref(), o)
            }
            (
                Layer::Linear {
                    k, n, activation, ..
                },
                QParams::Linear { w, b },
                inp,
            ) => {
                // Rows of k (the batch, or a sequence's tokens), written as rows of n.
                let rows = match input {
                    Act::Q(q) => q.numel(),
                    Act::F(t) => t.numel(),
                } / k;
                let (oq, of);
                let o = match out {
                    Act::Q(q) => {
                        oq = q.reshape(&[rows, *n])?;
                        QGemmOutput::Quantized(&oq)
                    }
                    Act::F(t) => {
                        of = t.reshape(&[rows, *n])?;
                        QGemmOutput::F32(&of)
                    }
                };
                let (d, b) = match onnx_bias {
                    Some(ib) => (QGemmDesc::default().onnx_requant(true), ib),
                    None => (QGemmDesc::default().activation(*activation), b.as_ref()),
                };
                match inp {
                    Act::Q(xq) => match (&sc.f_in, &sc.q_in) {
                        (Some(f), Some(q)) => {
                            dequantize(ctx, encoder, xq, f)?;
                            quantize(ctx, encoder, &f.reshape(q.shape())?, q)?;
                            qgemm(ctx, encoder, &d, q, w, b, o)
                        }
                        _ => {
                            let x2 = xq.reshape(&[xq.numel() / k, *k])?;
                            qgemm(ctx, encoder, &d, &x2, w, b, o)
                        }
                    },
                    Act::F(xf) => {
                        let q = sc.q_in.as_ref().ok_or_else(|| bad("no dynamic buffer"))?;
                        let x2 = xf.reshape(&[xf.numel() / k, *k])?;
                        let spec = sc.dyn_linear.unwrap_or_else(DynamicQuant::per_row_i8);
                        dynamic_quantize(ctx, encoder, &x2, &spec, q)?;
                        qgemm(ctx, encoder, &d, q, w, b, o)
                    }
                }
            }
            _ => Err(bad("this layer has no INT8 form here")),
        }
    }

    /// A layer that computes in f32 between 8-bit neighbours (elementwise, resizing,
    /// concatenation): its 8-bit operands dequantized, its output quantized again when
    /// the next layer reads codes.
    fn record_float_layer(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        i: usize,
        inp: &Act,
        out: &Act,
    ) -> Result<()> {
        let node = &self.graph.nodes[i];
        let sc = &self.scratch[i];
        let bad =
            |i: usize, what: &str| Error::invalid(OP, format!("node {i} '{}': {what}", node.name));
        let xf = float_of(inp, sc.f_in.as_ref(), ctx, encoder)
            .ok_or_else(|| bad(i, "no f32 input"))??;
        let t = match out {
            Act::F(t) => t,
            Act::Q(_) => sc.f_out.as_ref().ok_or_else(|| bad(i, "no f32 output"))?,
        };
        let mut others = Vec::new();
        for (k, o) in others_of(&node.layer).into_iter().enumerate() {
            let f = float_of(&self.acts[o], sc.f_others.get(k), ctx, encoder)
                .ok_or_else(|| bad(i, "no f32 copy of another operand"))??;
            others.push(f);
        }
        match &node.layer {
            Layer::Map { f, clip } => map(ctx, encoder, *f, *clip, xf, t)?,
            Layer::RowReduce(k) => row_reduce(ctx, encoder, *k, xf, t)?,
            Layer::Const { .. } => {
                let QParams::Const(c) = &self.params[i] else {
                    return Err(bad(i, "no constant on the GPU"));
                };
                cast(ctx, encoder, c, t)?
            }
            Layer::Gather { axis, .. } => {
                let QParams::Const(c) = &self.params[i] else {
                    return Err(bad(i, "no indices on the GPU"));
                };
                crate::ops::layout::gather(ctx, encoder, xf, *axis, c, t)?
            }
            Layer::BinaryConst { op, .. } => {
                let QParams::Const(c) = &self.params[i] else {
                    return Err(bad(i, "no constant on the GPU"));
                };
                binary(
                    ctx,
                    encoder,
                    *op,
                    xf,
                    c,
                    crate::desc::eltwise::Clip::NONE,
                    t,
                )?
            }
            Layer::Conv { desc, .. } => {
                let QParams::FloatConv { w, b } = &self.params[i] else {
                    return Err(bad(i, "no float weights"));
                };
                crate::ops::conv::conv2d(ctx, encoder, desc, xf, w, b.as_ref(), t)?
            }
            Layer::Linear {
                n, k, activation, ..
            } => {
                let QParams::FloatLinear { w, b } = &self.params[i] else {
                    return Err(bad(i, "no float weights"));
                };
                let rows = xf.numel() / k;
                let mut d = crate::desc::gemm::GemmDesc::new(rows, *n, *k).transpose(false, true);
                d.activation = *activation;
                let (x2, y2) = (xf.reshape(&[rows, *k])?, t.reshape(&[rows, *n])?);
                crate::ops::gemm::gemm(ctx, encoder, &d, &x2, w, b.as_ref(), &y2)?
            }
            Layer::ChannelAffine { .. } => {
                let QParams::Affine { scale, shift } = &self.params[i] else {
                    return Err(bad(i, "no scale and shift on the GPU"));
                };
                channel_affine(ctx, encoder, xf, scale, shift, t)?
            }
            Layer::LayerNorm { eps, .. } => {
                let QParams::Norm { gamma, beta } = &self.params[i] else {
                    return Err(bad(i, "no gamma and beta on the GPU"));
                };
                layer_norm(ctx, encoder, xf, gamma.as_ref(), beta.as_ref(), *eps, t)?
            }
            Layer::Binary { op, clip, .. } => binary(ctx, encoder, *op, xf, others[0], *clip, t)?,
            Layer::Upsample { factors } => upsample_nearest(ctx, encoder, xf, *factors, t)?,
            Layer::DepthToSpace { block } => depth_to_space(ctx, encoder, xf, *block, t)?,
            Layer::ZeroInsert { factors } => {
                crate::ops::layout::zero_insert(ctx, encoder, xf, *factors, t)?
            }
            Layer::ResizeBilinear { coords, scales, .. } => {
                resize_bilinear(ctx, encoder, xf, *coords, *scales, t)?
            }
            Layer::Concat { axis, .. } => {
                let mut all = vec![xf];
                all.extend(others);
                super::concat_any(ctx, encoder, &all, *axis, t)?
            }
            Layer::Permute { view, perm } => permute(ctx, encoder, &xf.reshape(view)?, perm, t)?,
            Layer::MatMul { .. } => super::record_matmul(ctx, encoder, xf, others[0], t)?,
            Layer::Crop {
                view, start, step, ..
            } => crate::ops::layout::slice(ctx, encoder, &xf.reshape(view)?, start, step, t)?,
            Layer::Expand { view, .. } => {
                crate::ops::layout::expand(ctx, encoder, &xf.reshape(view)?, t)?
            }
            Layer::Pad {
                before,
                after,
                mode,
            } => crate::ops::layout::pad(ctx, encoder, xf, before, after, *mode, t)?,
            _ => unreachable!("matched above"),
        }
        if let Act::Q(q) = out {
            quantize(ctx, encoder, t, q)?
        }
        Ok(())
    }

    /// Writes the quantized model to a safetensors file: each weight as `I8` (or `U8`)
    /// codes with `NAME.scale` (F32) and `NAME.zero_point` (I32) per output channel, the
    /// biases (F32), and in static mode `act.NODE.scale` (F32) / `act.NODE.zero_point`
    /// (`U8` or `I8`: the activation's type) for every activation (`act.input.*` for the
    /// input); where the codes are narrower than the type (a low bit width, PTQ or QAT
    /// below 8 bits), `NAME.code_range` / `act.NODE.code_range` (`I32 [qmin, qmax]`); the
    /// mode, the requantization rule (`requant = onnx` for a quantized
    /// file's model) and a CRC-32 of the data are in the metadata. Returns the file's
    /// size in bytes. [`QModel::load`] reads it back with the same graph (and files
    /// whose activation zero points are I32, which are u8 activations).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<u64> {
        let path = path.as_ref();
        let bytes = self.to_bytes(&path.display().to_string())?;
        std::fs::write(path, &bytes).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(bytes.len() as u64)
    }

    /// The bytes [`QModel::save`] writes (for a browser, which has no files, or any other
    /// store); `name` names the destination in errors. [`QModel::from_bytes`] reads them.
    pub fn to_bytes(&self, name: &str) -> Result<Vec<u8>> {
        use safetensors::Dtype;
        let file_err = |e: String| Error::File {
            path: name.to_string(),
            message: e,
        };
        let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i32s = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        // Codes are stored in their own type (I8 or U8; a file's weights may be either),
        // and so is each activation's zero point.
        let dtype = |q: QType| match q {
            QType::U8 => Dtype::U8,
            _ => Dtype::I8,
        };
        for (name, (p, codes)) in &self.host.weights {
            let bytes = codes.iter().map(|&c| c as u8).collect();
            blobs.push((name.clone(), dtype(p.qtype), p.shape.clone(), bytes));
            let n = p.scales.len();
            blobs.push((
                format!("{name}.scale"),
                Dtype::F32,
                vec![n],
                f32s(&p.scales),
            ));
            blobs.push((
                format!("{name}.zero_point"),
                Dtype::I32,
                vec![n],
                i32s(&p.zero_points),
            ));
            if let Some(r) = narrowed(p) {
                blobs.push((format!("{name}.code_range"), Dtype::I32, vec![2], i32s(&r)));
            }
        }
        for (name, v) in &self.host.biases {
            blobs.push((name.clone(), Dtype::F32, vec![v.len()], f32s(v)));
        }
        // A quantized file's float weights, as F32 in the layer's shape.
        for (w, _, shape) in self
            .graph
            .nodes
            .iter()
            .filter_map(|n| n.layer.weight_spec())
        {
            if let Some(v) = self.host.float_weights.get(w) {
                blobs.push((w.to_string(), Dtype::F32, shape, f32s(v)));
            }
        }
        let named = self
            .graph
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .zip(&self.host.acts)
            .chain(std::iter::once(("input", &self.host.input)));
        for (node, p) in named {
            if let Some(p) = p {
                blobs.push((
                    format!("act.{node}.scale"),
                    Dtype::F32,
                    vec![1],
                    f32s(&p.scales),
                ));
                blobs.push((
                    format!("act.{node}.zero_point"),
                    dtype(p.qtype),
                    vec![1],
                    p.zero_points.iter().map(|&z| z as u8).collect(),
                ));
                if let Some(r) = narrowed(p) {
                    blobs.push((
                        format!("act.{node}.code_range"),
                        Dtype::I32,
                        vec![2],
                        i32s(&r),
                    ));
                }
            }
        }
        let views = blobs
            .iter()
            .map(|(n, d, s, b)| {
                safetensors::tensor::TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| file_err(format!("tensor '{n}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mode = match self.mode {
            QMode::Static => "static",
            QMode::Dynamic => "dynamic",
        };
        let mut meta = std::collections::HashMap::from([
            ("format".to_string(), "wgpu-quant int8".to_string()),
            ("mode".to_string(), mode.to_string()),
        ]);
        if self.host.onnx_dynamic {
            meta.insert("dynamic_linear".to_string(), "onnx".to_string());
        }
        if self.host.onnx_requant {
            meta.insert("requant".to_string(), "onnx".to_string());
        }
        // A CRC-32 of the data section (safetensors has no checksum): the header's
        // metadata does not move the data, so it is computed on a first serialization.
        let first = safetensors::tensor::serialize(views.clone(), Some(meta.clone()))
            .map_err(|e| file_err(e.to_string()))?;
        meta.insert(
            "crc32".to_string(),
            format!("{:08x}", crc32fast::hash(data_section(&first))),
        );
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| file_err(e.to_string()))
    }

    /// Reads a model written by [`QModel::save`] for `graph` (the same graph it was
    /// quantized from) with inputs of `input_shape`. Every tensor the graph needs must be
    /// there with the layer's shape; errors name the missing or mis-shaped one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        ctx: &Context,
        graph: &Graph,
        path: impl AsRef<std::path::Path>,
        input_shape: &[usize],
    ) -> Result<QModel> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(ctx, graph, &bytes, &path.display().to_string(), input_shape)
    }

    /// [`QModel::load`] from bytes (a browser's fetch, an embedded file); `name` names
    /// them in errors.
    pub fn from_bytes(
        ctx: &Context,
        graph: &Graph,
        bytes: &[u8],
        name: &str,
        input_shape: &[usize],
    ) -> Result<QModel> {
        let file_err = |e: String| Error::File {
            path: name.to_string(),
            message: e,
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("wgpu-quant int8") {
            return Err(file_err(
                "not a wgpu-quant INT8 model (metadata 'format')".into(),
            ));
        }
        // Files written by `save` carry a CRC-32 of their data; older ones do not.
        if let Some(want) = meta.get("crc32") {
            let got = format!("{:08x}", crc32fast::hash(data_section(bytes)));
            if *want != got {
                return Err(file_err(format!(
                    "the data's CRC-32 is {got}, the header says {want}: the file was \
                     changed or damaged after it was written"
                )));
            }
        }
        let mode = match meta.get("mode").map(String::as_str) {
            Some("static") => QMode::Static,
            Some("dynamic") => QMode::Dynamic,
            other => return Err(file_err(format!("metadata 'mode' is {other:?}"))),
        };
        let saved = SavedTensors { st, path: name };
        let shapes = super::infer_shapes(graph, input_shape)?;
        let mut host = HostParams {
            acts: vec![None; graph.nodes.len()],
            onnx_dynamic: meta.get("dynamic_linear").map(String::as_str) == Some("onnx"),
            onnx_requant: meta.get("requant").map(String::as_str) == Some("onnx"),
            ..Default::default()
        };
        for node in &graph.nodes {
            let Some((weight, bias, shape)) = node.layer.weight_spec() else {
                continue;
            };
            let oc = shape[0];
            // (Only a quantized file's model has them: its metadata says `requant = onnx`.)
            let float = host.onnx_requant
                && saved.st.tensor(weight).map(|t| t.dtype()).ok() == Some(safetensors::Dtype::F32);
            if float {
                // A quantized file's float weights (run in f32 between codes).
                host.float_weights
                    .insert(weight.to_string(), saved.f32s(weight, &shape)?);
                if let Some(b) = bias {
                    host.biases.insert(b.to_string(), saved.f32s(b, &[oc])?);
                }
                continue;
            }
            let (qt, codes) = saved.codes(weight, &shape, None)?;
            let scales = saved.f32s(&format!("{weight}.scale"), &[oc])?;
            let zeros = saved.i32s(&format!("{weight}.zero_point"), &[oc])?;
            let p = QuantParams::new(
                qt,
                Granularity::PerChannel { axis: 0 },
                &shape,
                scales,
                zeros,
            )
            .and_then(|p| saved.code_range(p, &format!("{weight}.code_range")))
            .map_err(|e| saved.err(format!("weight '{weight}': {e}")))?;
            host.weights.insert(weight.to_string(), (p, codes));
            let c = correction_name(weight);
            match bias {
                Some(b) => {
                    host.biases.insert(b.to_string(), saved.f32s(b, &[oc])?);
                }
                None if saved.st.tensor(&c).is_ok() => {
                    let v = saved.f32s(&c, &[oc])?;
                    host.biases.insert(c, v);
                }
                None => {}
            }
        }
        if mode == QMode::Static {
            let act = |name: &str, shape: &[usize]| -> Result<Option<QuantParams>> {
                let key = format!("act.{name}.scale");
                if saved.st.tensor(&key).is_err() {
                    return Ok(None);
                }
                let s = saved.f32s(&key, &[1])?;
                // Files written before zero points were typed hold I32 (u8 activations).
                let (qt, z) =
                    saved.codes(&format!("act.{name}.zero_point"), &[1], Some(QType::U8))?;
                QuantParams::new(qt, Granularity::PerTensor, shape, s, z)
                    .and_then(|p| saved.code_range(p, &format!("act.{name}.code_range")))
                    .map(Some)
                    .map_err(|e| saved.err(format!("activation '{name}': {e}")))
            };
            host.input = act("input", input_shape)?;
            for (i, node) in graph.nodes.iter().enumerate() {
                host.acts[i] = act(&node.name, &shapes[i])?;
            }
        }
        QModel::build(ctx, graph, input_shape, mode, host)
    }

    /// Bytes of the weights as stored: 8-bit codes, an f32 scale and an i32 zero point
    /// per output channel, f32 biases.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Static or dynamic.
    pub fn mode(&self) -> QMode {
        self.mode
    }

    /// The f32 output of the node named `name` after a forward pass: the last node's, a
    /// node listed in [`Graph::outputs`] that no layer reads, and any node the model keeps
    /// in f32 (all of them in dynamic mode); for a quantized file's model, which keeps
    /// the codes the file asks for, the last node's and those outputs' codes
    /// dequantized. `None` for an inner node that holds 8-bit codes.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        let i = self.graph.nodes.iter().position(|n| n.name == name)?;
        match &self.acts[i] {
            Act::F(t) => Some(t),
            Act::Q(_) => self.scratch[i].deq.as_ref(),
        }
    }
}

/// The error for parameters the host side lacks.
fn missing_params(what: &str) -> Error {
    Error::invalid(OP, format!("no parameters for '{what}'"))
}

/// Layers that compute in f32 in a static INT8 graph (their 8-bit inputs are
/// dequantized first).
/// The data section of safetensors bytes (after the 8-byte length and the header).
fn data_section(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .and_then(|start| bytes.get(start..))
        .unwrap_or(&[])
}

/// A saved model's tensors, read with checks; errors name the file and the tensor.
struct SavedTensors<'a> {
    st: safetensors::SafeTensors<'a>,
    path: &'a str,
}

impl SavedTensors<'_> {
    fn err(&self, message: String) -> Error {
        Error::File {
            path: self.path.to_string(),
            message,
        }
    }

    /// The bytes of `name`, which must be `dtype` of `shape` (and finite, for F32).
    fn get(&self, name: &str, dtype: safetensors::Dtype, shape: &[usize]) -> Result<&[u8]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| self.err(format!("tensor '{name}' is missing")))?;
        if t.dtype() != dtype || t.shape() != shape {
            return Err(self.err(format!(
                "tensor '{name}' is {:?} {:?}; expected {dtype:?} {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t.data())
    }

    /// An F32 tensor. A NaN or infinite scale or bias (a corrupt file) would make every
    /// output it reaches NaN without a word, so it is refused.
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let v: Vec<f32> = self
            .get(name, safetensors::Dtype::F32, shape)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        match v.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            Some((i, x)) => Err(self.err(format!("tensor '{name}' holds {x} at index {i}"))),
            None => Ok(v),
        }
    }

    /// `p` narrowed to the code range stored under `name`, if the file has one (a low
    /// bit width); checked against the type and the zero points.
    fn code_range(&self, p: QuantParams, name: &str) -> Result<QuantParams> {
        if self.st.tensor(name).is_err() {
            return Ok(p);
        }
        match self.i32s(name, &[2])?[..] {
            [lo, hi] => p.with_code_range(lo, hi),
            _ => unreachable!("two values were read"),
        }
    }

    fn i32s(&self, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
        Ok(self
            .get(name, safetensors::Dtype::I32, shape)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// 8-bit codes in their stored type (I8 or U8); an I32 tensor only where `legacy`
    /// says which type earlier files meant by it.
    fn codes(
        &self,
        name: &str,
        shape: &[usize],
        legacy: Option<QType>,
    ) -> Result<(QType, Vec<i32>)> {
        use safetensors::Dtype;
        let dtype = self.st.tensor(name).map(|t| t.dtype()).ok();
        match (dtype, legacy) {
            (Some(Dtype::U8), _) => Ok((
                QType::U8,
                self.get(name, Dtype::U8, shape)?
                    .iter()
                    .map(|&b| i32::from(b))
                    .collect(),
            )),
            (Some(Dtype::I32), Some(qt)) => Ok((qt, self.i32s(name, shape)?)),
            // I8, or a missing or mistyped tensor (`get` names what is wrong).
            _ => Ok((
                QType::I8,
                self.get(name, Dtype::I8, shape)?
                    .iter()
                    .map(|&b| i32::from(b as i8))
                    .collect(),
            )),
        }
    }
}

fn float_layer(layer: &Layer) -> bool {
    matches!(
        layer,
        Layer::Pool(_)
            | Layer::Softmax
            | Layer::Map { .. }
            | Layer::RowReduce(_)
            | Layer::BinaryConst { .. }
            | Layer::ChannelAffine { .. }
            | Layer::LayerNorm { .. }
            | Layer::Binary { .. }
            | Layer::Upsample { .. }
            | Layer::ResizeBilinear { .. }
            | Layer::DepthToSpace { .. }
            | Layer::ZeroInsert { .. }
            | Layer::Concat { .. }
            | Layer::Permute { .. }
            | Layer::Crop { .. }
            | Layer::Expand { .. }
            | Layer::Gather { .. }
            | Layer::Const { .. }
            | Layer::Pad { .. }
            | Layer::MatMul { .. }
    )
}

/// The nodes a layer reads besides its input.
fn others_of(layer: &Layer) -> Vec<usize> {
    match layer {
        Layer::Add { other, .. } | Layer::Binary { other, .. } | Layer::MatMul { other } => {
            vec![*other]
        }
        Layer::Concat { others, .. } => others.clone(),
        _ => Vec::new(),
    }
}

/// The f32 values of `act`: itself, or (recorded now) its codes dequantized into
/// `scratch`; `None` when codes have no scratch to go to.
fn float_of<'a>(
    act: &'a Act,
    scratch: Option<&'a Tensor>,
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
) -> Option<Result<&'a Tensor>> {
    match act {
        Act::F(t) => Some(Ok(t)),
        Act::Q(q) => scratch.map(|f| dequantize(ctx, encoder, q, f).map(|()| f)),
    }
}

/// Who reads each node (its input, and the other operand of an add).
fn readers(graph: &Graph) -> Vec<Vec<usize>> {
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if let Src::Node(j) = node.input {
            readers[j].push(i);
        }
        for o in others_of(&node.layer) {
            readers[o].push(i);
        }
    }
    readers
}

/// A layer's weights and bias on the GPU, and their bytes: codes, plus a scale and a zero
/// point (4 bytes each) per channel, plus the bias.
fn upload_params(ctx: &Context, layer: &Layer, host: &HostParams) -> Result<(QParams, u64)> {
    // The layer's bias, or else the bias correction of a layer without one.
    let bias = |name: &Option<String>, weight: &str| -> Result<Option<Tensor>> {
        let v = match name {
            Some(b) => Some(host.biases.get(b).ok_or_else(|| missing_params(b))?),
            None => host.biases.get(&correction_name(weight)),
        };
        v.map(|v| Tensor::from_slice(ctx, &[v.len()], v))
            .transpose()
    };
    let weight = |name: &str| host.weights.get(name).ok_or_else(|| missing_params(name));
    let bytes = |codes: usize, channels: usize, b: &Option<Tensor>| {
        codes as u64 + 8 * channels as u64 + b.as_ref().map_or(0, |b| b.size_bytes())
    };
    Ok(match layer {
        Layer::Conv {
            weight: name,
            bias: b,
            dims,
            ..
        } if host.float_weights.contains_key(name) => {
            let w = &host.float_weights[name];
            let cw = crate::ops::conv::ConvWeight::from_oihw(ctx, *dims, w, DType::F32)?;
            let b = bias(b, name)?;
            let n = 4 * w.len() as u64 + b.as_ref().map_or(0, Tensor::size_bytes);
            (QParams::FloatConv { w: cw, b }, n)
        }
        Layer::Linear {
            weight: name,
            bias: b,
            n,
            k,
            ..
        } if host.float_weights.contains_key(name) => {
            let w = Tensor::from_slice(ctx, &[*n, *k], &host.float_weights[name])?;
            let b = bias(b, name)?;
            let bytes = w.size_bytes() + b.as_ref().map_or(0, Tensor::size_bytes);
            (QParams::FloatLinear { w, b }, bytes)
        }
        Layer::Conv {
            weight: name,
            bias: b,
            dims,
            ..
        } => {
            let (wp, codes) = weight(name)?;
            let w = QConvWeight::from_codes(ctx, *dims, codes, wp)?;
            let b = bias(b, name)?;
            let n = bytes(codes.len(), dims.out_channels, &b);
            (QParams::Conv { w, b }, n)
        }
        Layer::Linear {
            weight: name,
            bias: b,
            n,
            ..
        } => {
            let (wp, codes) = weight(name)?;
            let w = QTensor::from_codes(ctx, wp, codes)?;
            let b = bias(b, name)?;
            let n = bytes(codes.len(), *n, &b);
            (QParams::Linear { w, b }, n)
        }
        Layer::ChannelAffine { scale, shift } => {
            let scale = Tensor::from_slice(ctx, &[scale.len()], scale)?;
            let shift = Tensor::from_slice(ctx, &[shift.len()], shift)?;
            let n = scale.size_bytes() + shift.size_bytes();
            (QParams::Affine { scale, shift }, n)
        }
        Layer::BinaryConst { value, dims, .. } | Layer::Const { value, dims } => {
            let c = Tensor::from_slice(ctx, dims, value)?;
            let n = c.size_bytes();
            (QParams::Const(c), n)
        }
        Layer::Gather { indices, .. } => {
            let c = super::index_tensor(ctx, indices)?;
            let n = c.size_bytes();
            (QParams::Const(c), n)
        }
        Layer::LayerNorm { gamma, beta, .. } => {
            let (gamma, beta) = super::norm_params(ctx, gamma, beta)?;
            let n = [&gamma, &beta]
                .iter()
                .map(|t| t.as_ref().map_or(0, Tensor::size_bytes))
                .sum();
            (QParams::Norm { gamma, beta }, n)
        }
        _ => (QParams::None, 0),
    })
}

/// Node `i`'s 8-bit output with its calibrated static parameters (codes limited to
/// `range` when given: an activation folded into ONNX's requantization).
fn static_activation(
    ctx: &Context,
    host: &HostParams,
    (i, name): (usize, &str),
    out_shape: &[usize],
    range: Option<(i32, i32)>,
) -> Result<QTensor> {
    let ap = host.acts[i]
        .as_ref()
        .ok_or_else(|| missing_params(&format!("act.{name}")))?;
    if ap.shape != out_shape {
        return Err(Error::shape(
            OP,
            format!(
                "activation parameters of '{name}' are for {:?}; the node outputs {out_shape:?}",
                ap.shape
            ),
        ));
    }
    match range {
        Some((lo, hi)) if (lo, hi) != (ap.qmin(), ap.qmax()) => {
            QTensor::new(ctx, &ap.clone().with_code_range(lo, hi)?)
        }
        _ => QTensor::new(ctx, ap),
    }
}

/// How a convolution or linear of a quantized file's model requantizes with ONNX's rule
/// (reading codes `x`, writing node `i`'s codes); `None` keeps the default rule.
fn onnx_plan(
    layer: &Layer,
    x: Option<&QuantParams>,
    host: &HostParams,
    i: usize,
) -> Option<onnx_rounding::OnnxLayer> {
    let (weight, bias, activation) = match layer {
        Layer::Conv {
            weight, bias, desc, ..
        } => (weight, bias, desc.activation),
        Layer::Linear {
            weight,
            bias,
            activation,
            ..
        } => (weight, bias, *activation),
        _ => return None,
    };
    let (wp, _) = host.weights.get(weight)?;
    let b = match bias {
        Some(b) => Some(host.biases.get(b)?.as_slice()),
        None => host.biases.get(&correction_name(weight)).map(Vec::as_slice),
    };
    onnx_rounding::plan(x?, wp, b, activation, host.acts[i].as_ref()?)
}

/// The intermediates node `i` needs besides its output: float copies around pooling and
/// softmax, a re-packed input for a static linear, the dynamic quantization output.
fn node_scratch(
    ctx: &Context,
    (mode, onnx_dynamic, float_weights): (QMode, bool, bool),
    graph: &Graph,
    i: usize,
    (in_shape, out_shape, other_shapes): (&[usize], &[usize], &[&[usize]]),
    in_params: Option<&QuantParams>,
    act: &Act,
) -> Result<Scratch> {
    let node = &graph.nodes[i];
    // The last node and the caller's other outputs that no layer reads write f32.
    let last =
        i + 1 == graph.nodes.len() || (graph.outputs.contains(&i) && readers(graph)[i].is_empty());
    let mut sc = Scratch::default();
    if let (true, Act::Q(_)) = (last, act) {
        sc.deq = Some(Tensor::zeros(ctx, out_shape, DType::F32)?);
    }
    match (mode, &node.layer) {
        (QMode::Static, Layer::Pool(_)) => {
            sc.f_in = Some(Tensor::zeros(ctx, in_shape, DType::F32)?);
            if let Act::Q(_) = act {
                sc.f_out = Some(Tensor::zeros(ctx, out_shape, DType::F32)?);
            }
        }
        (QMode::Static, Layer::Softmax) => {
            sc.f_in = Some(Tensor::zeros(ctx, in_shape, DType::F32)?);
        }
        (QMode::Static, l)
            if float_weights
                || (float_layer(l) && !matches!(l, Layer::Pool(_) | Layer::Softmax)) =>
        {
            sc.f_in = Some(Tensor::zeros(ctx, in_shape, DType::F32)?);
            if let Act::Q(_) = act {
                sc.f_out = Some(Tensor::zeros(ctx, out_shape, DType::F32)?);
            }
            for s in other_shapes {
                sc.f_others.push(Tensor::zeros(ctx, s, DType::F32)?);
            }
        }
        (QMode::Static, Layer::Add { .. }) if last && matches!(act, Act::F(_)) => {
            return Err(Error::invalid(
                OP,
                format!(
                    "node {i} '{}': a static INT8 graph cannot end in an add",
                    node.name
                ),
            ))
        }
        // A linear whose 8-bit input cannot be viewed as [rows, k] (the packing pads rows
        // to whole words): dequantize and quantize it again, with the same parameters, in
        // the linear's shape.
        (QMode::Static, Layer::Linear { k, .. }) => {
            let rows = in_shape.iter().product::<usize>() / k;
            let view = rows_pack_alike(QType::U8, in_shape, &[rows, *k]);
            if let (false, Some(p)) = (view, in_params) {
                let mut p = p.clone();
                p.shape = vec![rows, *k];
                sc.f_in = Some(Tensor::zeros(ctx, in_shape, DType::F32)?);
                sc.q_in = Some(QTensor::new(ctx, &p)?);
            }
        }
        (QMode::Dynamic, Layer::Conv { .. }) => {
            sc.q_in = Some(QTensor::for_dynamic(ctx, &DynamicQuant::onnx(), in_shape)?);
        }
        (QMode::Dynamic, Layer::Linear { k, .. }) => {
            let rows = in_shape.iter().product::<usize>() / k;
            let spec = if onnx_dynamic {
                DynamicQuant::onnx()
            } else {
                DynamicQuant::per_row_i8()
            };
            sc.q_in = Some(QTensor::for_dynamic(ctx, &spec, &[rows, *k])?);
            sc.dyn_linear = Some(spec);
        }
        _ => {}
    }
    Ok(sc)
}

/// The codes of `p` when narrower than its type's (a low bit width): `[qmin, qmax]`.
fn narrowed(p: &QuantParams) -> Option<[i32; 2]> {
    ((p.qmin(), p.qmax()) != (p.qtype().qmin(), p.qtype().qmax())).then(|| [p.qmin(), p.qmax()])
}
