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
//! ```
//! use wgpu_quant::model::{Graph, Layer, QMode, QModel, WeightFile};
//! use wgpu_quant::quant::ObserverKind;
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

use super::{Graph, Layer, Model, Src, WeightFile};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::conv::{qconv2d, QConvWeight};
use crate::ops::eltwise::{add, qadd, softmax};
use crate::ops::pool::pool2d;
use crate::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use crate::ops::quant::{dequantize, dynamic_quantize, quantize, DynamicQuant, QTensor};
use crate::quant::{Granularity, Observer, ObserverKind, QType, QuantParams, QuantScheme};
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
    Conv { w: QConvWeight, b: Option<Tensor> },
    Linear { w: QTensor, b: Option<Tensor> },
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
}

impl QModel {
    /// Calibrates `graph` (FP32, weights from `weights`) on `batches` (each of shape
    /// `input_shape`, f32) with one `observer` per activation (and one for the input),
    /// and builds the INT8 model. In [`QMode::Dynamic`] nothing is calibrated and
    /// `batches` may be empty.
    pub fn calibrate(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        input_shape: &[usize],
        batches: &[Tensor],
        observer: ObserverKind,
        mode: QMode,
    ) -> Result<QModel> {
        let fp32 = Model::new(ctx, graph, weights, DType::F32, input_shape)?;
        let scheme = QuantScheme::asymmetric(QType::U8);
        let n_nodes = graph.nodes.len();
        let mut act_params: Vec<Option<QuantParams>> = vec![None; n_nodes];
        let mut input_params = None;
        if mode == QMode::Static {
            if batches.is_empty() {
                return Err(Error::invalid(
                    OP,
                    "static quantization needs calibration batches",
                ));
            }
            let mut obs_in = Observer::new(observer, Granularity::PerTensor)?;
            let mut obs: Vec<Observer> = (0..n_nodes)
                .map(|_| Observer::new(observer, Granularity::PerTensor))
                .collect::<Result<_>>()?;
            for b in batches {
                let mut enc = ctx.encoder("calibration");
                fp32.forward(ctx, &mut enc, b)?;
                ctx.submit_and_wait(enc)?;
                obs_in.observe(ctx, b)?;
                for (i, o) in obs.iter_mut().enumerate() {
                    o.observe(ctx, &fp32.acts[i])?;
                }
            }
            input_params = Some(obs_in.compute_params(&scheme, input_shape)?);
            for (i, o) in obs.iter().enumerate() {
                act_params[i] = Some(o.compute_params(&scheme, fp32.acts[i].shape())?);
            }
        }
        // Who reads each node: a convolution or linear whose every reader dequantizes
        // anyway (pooling, softmax) writes f32 directly and skips one rounding.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n_nodes];
        for (i, node) in graph.nodes.iter().enumerate() {
            if let Src::Node(j) = node.input {
                readers[j].push(i);
            }
            if let Layer::Add { other, .. } = node.layer {
                readers[other].push(i);
            }
        }
        let wscheme = QuantScheme::symmetric(QType::I8).per_channel(0);
        let mut params = Vec::with_capacity(n_nodes);
        let mut acts = Vec::with_capacity(n_nodes);
        let mut scratch = Vec::with_capacity(n_nodes);
        let mut weight_bytes = 0u64;
        for (i, node) in graph.nodes.iter().enumerate() {
            let out_shape = fp32.acts[i].shape().to_vec();
            let in_shape: Vec<usize> = match node.input {
                Src::Input => input_shape.to_vec(),
                Src::Node(j) => fp32.acts[j].shape().to_vec(),
            };
            let bias = |name: &Option<String>, n: usize| -> Result<Option<Tensor>> {
                name.as_ref()
                    .map(|b| Tensor::from_slice(ctx, &[n], weights.tensor(b, &[n])?))
                    .transpose()
            };
            // Codes, plus a scale and a zero point (4 bytes each) per channel, plus bias.
            let p = match &node.layer {
                Layer::Conv {
                    weight,
                    bias: b,
                    dims,
                    ..
                } => {
                    let wf = weights.tensor(weight, &dims.oihw())?;
                    let w = QConvWeight::quantize(ctx, *dims, wf, &wscheme)?;
                    let b = bias(b, dims.out_channels)?;
                    weight_bytes += dims.oihw().iter().product::<usize>() as u64
                        + 8 * dims.out_channels as u64
                        + b.as_ref().map_or(0, |b| b.size_bytes());
                    QParams::Conv { w, b }
                }
                Layer::Linear {
                    weight,
                    bias: b,
                    n,
                    k,
                    ..
                } => {
                    let wf = weights.tensor(weight, &[*n, *k])?;
                    let wp = QuantParams::from_data(&wscheme, &[*n, *k], wf)?;
                    let w = QTensor::from_codes(ctx, &wp, &wp.quantize(wf)?)?;
                    let b = bias(b, *n)?;
                    weight_bytes +=
                        (n * k) as u64 + 8 * *n as u64 + b.as_ref().map_or(0, |b| b.size_bytes());
                    QParams::Linear { w, b }
                }
                _ => QParams::None,
            };
            let last = i + 1 == n_nodes;
            let feeds_float = matches!(node.layer, Layer::Conv { .. } | Layer::Linear { .. })
                && !readers[i].is_empty()
                && readers[i]
                    .iter()
                    .all(|&r| matches!(graph.nodes[r].layer, Layer::Pool(_) | Layer::Softmax));
            let f32_out = mode == QMode::Dynamic
                || last
                || feeds_float
                || matches!(node.layer, Layer::Softmax);
            let act = if f32_out {
                Act::F(Tensor::zeros(ctx, &out_shape, DType::F32)?)
            } else {
                let ap = act_params[i]
                    .as_ref()
                    .expect("static mode calibrated every node");
                Act::Q(QTensor::new(ctx, ap)?)
            };
            let mut sc = Scratch::default();
            match (mode, &node.layer) {
                (QMode::Static, Layer::Pool(_)) => {
                    sc.f_in = Some(Tensor::zeros(ctx, &in_shape, DType::F32)?);
                    if let Act::Q(_) = act {
                        sc.f_out = Some(Tensor::zeros(ctx, &out_shape, DType::F32)?);
                    }
                }
                (QMode::Static, Layer::Softmax) => {
                    sc.f_in = Some(Tensor::zeros(ctx, &in_shape, DType::F32)?);
                }
                (QMode::Static, Layer::Add { .. }) if last => {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "node {i} '{}': a static INT8 graph cannot end in an add",
                            node.name
                        ),
                    ))
                }
                (QMode::Dynamic, Layer::Conv { .. }) => {
                    sc.q_in = Some(QTensor::for_dynamic(ctx, &DynamicQuant::onnx(), &in_shape)?);
                }
                (QMode::Dynamic, Layer::Linear { k, .. }) => {
                    let rows = in_shape.iter().product::<usize>() / k;
                    sc.q_in = Some(QTensor::for_dynamic(
                        ctx,
                        &DynamicQuant::per_row_i8(),
                        &[rows, *k],
                    )?);
                }
                _ => {}
            }
            params.push(p);
            acts.push(act);
            scratch.push(sc);
        }
        let input_q = input_params.map(|p| QTensor::new(ctx, &p)).transpose()?;
        Ok(QModel {
            graph: graph.clone(),
            mode,
            input_shape: input_shape.to_vec(),
            input_q,
            params,
            acts,
            scratch,
            weight_bytes,
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
            match (&node.layer, &self.params[i], input, &self.acts[i]) {
                (Layer::Conv { desc, .. }, QParams::Conv { w, b }, Act::Q(xq), out) => {
                    let o = match out {
                        Act::Q(q) => QGemmOutput::Quantized(q),
                        Act::F(t) => QGemmOutput::F32(t),
                    };
                    qconv2d(ctx, encoder, desc, xq, w, b.as_ref(), o)?
                }
                (Layer::Conv { desc, .. }, QParams::Conv { w, b }, Act::F(xf), Act::F(t)) => {
                    let q = sc
                        .q_in
                        .as_ref()
                        .ok_or_else(|| bad(i, "no dynamic buffer"))?;
                    dynamic_quantize(ctx, encoder, xf, &DynamicQuant::onnx(), q)?;
                    qconv2d(ctx, encoder, desc, q, w, b.as_ref(), QGemmOutput::F32(t))?
                }
                (Layer::Linear { k, activation, .. }, QParams::Linear { w, b }, inp, out) => {
                    let d = QGemmDesc::default().activation(*activation);
                    let o = match out {
                        Act::Q(q) => QGemmOutput::Quantized(q),
                        Act::F(t) => QGemmOutput::F32(t),
                    };
                    match inp {
                        Act::Q(xq) => {
                            let x2 = xq.reshape(&[xq.numel() / k, *k])?;
                            qgemm(ctx, encoder, &d, &x2, w, b.as_ref(), o)?
                        }
                        Act::F(xf) => {
                            let q = sc
                                .q_in
                                .as_ref()
                                .ok_or_else(|| bad(i, "no dynamic buffer"))?;
                            let rows = xf.numel() / k;
                            let x2 = xf.reshape(&[rows, *k])?;
                            dynamic_quantize(ctx, encoder, &x2, &DynamicQuant::per_row_i8(), q)?;
                            qgemm(ctx, encoder, &d, q, w, b.as_ref(), o)?
                        }
                    }
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
        }
        match self.acts.last() {
            Some(Act::F(t)) => Ok(t),
            _ => Err(Error::invalid(OP, "the last node has no f32 output")),
        }
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
}
