//! Training on the GPU: a [`Trainer`] runs mini-batch gradient descent on the layers of a
//! [`Graph`] (FP32, or with fake quantization for quantization-aware training:
//! [`QatConfig`]), and a trained fake-quant graph converts to a [`crate::model::QModel`]
//! on the integer kernels ([`Trainer::to_qmodel`]).
//!
//! What trains: convolutions (groups and depthwise, stride, padding, dilation; their
//! ReLU/ReLU6), linears, max and average pooling (global too), residual adds with their
//! clip, `Map` layers of an affine function with a clip (ReLU, ReLU6, any clip), and a
//! final `Softmax` read as the softmax cross-entropy loss of its input (the logits; a
//! graph without one is trained on its last output as logits). Another layer is refused
//! by name. The forward pass keeps every layer's input and pre-activation, the backward
//! runs in reverse with the kernels of [`crate::ops::train`] (gradients of an output
//! read twice, a residual connection, are summed), and the optimizer ([`Optimizer`]:
//! SGD with momentum, or AdamW) updates every weight and bias in place. Mini-batches are
//! drawn in a shuffled order from a generator seeded by [`TrainConfig::seed`]: the same
//! seed on the same adapter trains the same weights.
//!
//! [`Trainer::record_step`] records one step into the caller's encoder, like inference;
//! [`Trainer::fit`] runs epochs of them, reads the loss, the logits and the gradients
//! back after each step, and stops with an error naming the step and the layer when a
//! loss or a gradient is NaN or infinite.
//!
//! ```
//! use wgpu_quant::model::{lenet, WeightFile};
//! use wgpu_quant::train::{Dataset, Optimizer, TrainConfig, Trainer};
//! use wgpu_quant::ops::train::Sgd;
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = wgpu_quant::Context::request_blocking(&Default::default())?;
//! // 100 blank "digits" of class 3 (real data: examples/qat.rs).
//! let data = Dataset::new(vec![0.5; 100 * 784], vec![3; 100], [28, 28, 1])?;
//! let graph = lenet();
//! let init = Trainer::init_weights(&graph, [28, 28, 1], 0)?;
//! let cfg = TrainConfig {
//!     batch: 50,
//!     epochs: 1,
//!     optimizer: Optimizer::Sgd(Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 }),
//!     ..TrainConfig::default()
//! };
//! let mut trainer = Trainer::new(&ctx, &graph, &init, [28, 28, 1], cfg)?;
//! let stats = trainer.fit(&ctx, &data, |_| {})?;
//! assert!(stats[0].loss.is_finite());
//! let trained: WeightFile = trainer.weights(&ctx)?;
//! # Ok(()) }
//! ```

use web_time::Instant;

use crate::context::Context;
use crate::desc::conv::ConvDesc;
use crate::desc::eltwise::{Clip, UnaryOp};
use crate::desc::gemm::{Activation, GemmDesc};
use crate::error::{Error, Result};
use crate::model::{infer_shapes, Graph, Layer, Src, WeightFile};
use crate::ops::eltwise::{add, map};
use crate::ops::gemm::gemm;
use crate::ops::pool::pool2d;
use crate::ops::train::{
    adam_step, clip_backward, col2im, column_sums, columns_shape, conv2d_backward_input,
    conv2d_backward_weight, conv2d_oihw, im2col, linear_backward, pool2d_backward, sgd_step,
    softmax_cross_entropy, Adam, Sgd,
};
use crate::tensor::{DType, Tensor};

mod data;
mod qat;

pub use data::Dataset;
pub use qat::QatConfig;

/// A terminal progress bar for [`Trainer::fit`] (the `cli` feature, on by default):
/// steps of all epochs, with the epoch, the running loss and accuracy, cleared when the
/// last step is done.
///
/// ```no_run
/// # use wgpu_quant::train::{progress_bar, Dataset, Trainer};
/// # fn f(ctx: &wgpu_quant::Context, t: &mut Trainer, data: &Dataset) -> wgpu_quant::Result<()> {
/// t.fit(ctx, data, progress_bar("FP32"))?;
/// # Ok(()) }
/// ```
#[cfg(feature = "cli")]
pub fn progress_bar(label: &str) -> impl FnMut(&Progress) {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let label = label.to_string();
    move |p: &Progress| {
        bar.set_length((p.steps * p.epochs) as u64);
        bar.set_position(((p.epoch - 1) * p.steps + p.step) as u64);
        bar.set_prefix(format!("{label} epoch {}/{}", p.epoch, p.epochs));
        bar.set_message(format!(
            "loss {:.4} accuracy {:.1}%",
            p.loss,
            100.0 * p.accuracy
        ));
        if p.epoch == p.epochs && p.step == p.steps {
            bar.finish_and_clear();
        }
    }
}

const OP: &str = "Trainer";

/// The optimizer of every parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// SGD with momentum and L2 weight decay (PyTorch's `SGD`).
    Sgd(Sgd),
    /// AdamW (decoupled weight decay).
    Adam(Adam),
}

impl Optimizer {
    fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adam(o) => o.lr,
        }
    }
}

/// How a [`Trainer`] trains.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Samples per step (1 or more; the last incomplete batch of an epoch is skipped).
    pub batch: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// The optimizer and its learning rate.
    pub optimizer: Optimizer,
    /// `(every, factor)`: the learning rate is multiplied by `factor` (in (0, 1]) every
    /// `every` epochs.
    pub lr_step: Option<(usize, f32)>,
    /// Seeds the shuffling.
    pub seed: u64,
    /// Quantization-aware training: fake quantization of weights and activations.
    pub qat: Option<QatConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch: 32,
            epochs: 1,
            optimizer: Optimizer::Sgd(Sgd {
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 0.0,
            }),
            lr_step: None,
            seed: 0,
            qat: None,
        }
    }
}

/// Where training is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// Step of this epoch, from 1.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// The mean loss of this epoch's steps so far.
    pub loss: f64,
    /// The fraction of this epoch's samples so far that the model (before each step's
    /// update) classified right.
    pub accuracy: f64,
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy (before each step's update).
    pub accuracy: f64,
    /// Wall-clock seconds, reading back included.
    pub seconds: f64,
    /// Samples per second.
    pub samples_per_second: f64,
}

/// A parameter: its values, gradient and optimizer state.
#[derive(Debug)]
struct Param {
    name: String,
    node: usize,
    value: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    /// Weight decay applies (not to LSQ's scales).
    decay: bool,
}

/// A node's buffers.
#[derive(Debug)]
struct Bufs {
    out: Tensor,
    /// Before the clip (layers with one).
    pre: Option<Tensor>,
    dpre: Option<Tensor>,
    /// The gradient of the output.
    grad: Tensor,
    /// A second and later reader's contribution, and the sum.
    part: Option<Tensor>,
    acc: Option<Tensor>,
    /// A one-group convolution: its input's im2col matrix, and that matrix's gradient
    /// (when the input is a node's).
    cols: Option<Tensor>,
    dcols: Option<Tensor>,
}

/// A graph being trained (see the module docs).
#[derive(Debug)]
pub struct Trainer {
    graph: Graph,
    input_shape: Vec<usize>,
    shapes: Vec<Vec<usize>>,
    logits: usize,
    classes: usize,
    bufs: Vec<Bufs>,
    params: Vec<Param>,
    /// Per node: its weight's and bias's index in `params`.
    owned: Vec<[Option<usize>; 2]>,
    /// Per node: the (reader, operand) that writes its gradient first.
    first_writer: Vec<Option<(usize, usize)>>,
    x: Tensor,
    labels: Tensor,
    loss: Tensor,
    cfg: TrainConfig,
    lr: f32,
    steps: u32,
    shuffler: data::Shuffler,
    qat: Option<qat::Qat>,
}

/// The clip after node `layer`'s linear part (none: `Clip::NONE`).
fn clip_of(layer: &Layer) -> Clip {
    match layer {
        Layer::Conv { desc, .. } => Clip::from_activation(desc.activation),
        Layer::Linear { activation, .. } => Clip::from_activation(*activation),
        Layer::Add { clip, .. } | Layer::Map { clip, .. } => *clip,
        _ => Clip::NONE,
    }
}

/// The operands node `i` reads: `(source, operand slot)`.
fn reads(layer: &Layer, input: Src) -> Vec<(Src, usize)> {
    let mut r = vec![(input, 0)];
    if let Layer::Add { other, .. } = layer {
        r.push((Src::Node(*other), 1));
    }
    r
}

fn refuse(graph: &Graph, i: usize, why: &str) -> Error {
    let n = &graph.nodes[i];
    Error::invalid(
        OP,
        format!(
            "node {i} '{}' ({}): {why}",
            n.name,
            format!("{:?}", n.layer)
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("?")
        ),
    )
}

/// Checks every node can be trained; returns the logits node.
fn check_graph(graph: &Graph) -> Result<usize> {
    let last = graph
        .nodes
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::invalid(OP, "the graph has no nodes"))?;
    for (i, node) in graph.nodes.iter().enumerate() {
        match &node.layer {
            Layer::Conv { .. } | Layer::Linear { .. } | Layer::Pool(_) | Layer::Add { .. } => {}
            Layer::Map {
                f: UnaryOp::Affine { .. },
                ..
            } => {}
            Layer::Softmax if i == last && i > 0 => {}
            Layer::Softmax => {
                return Err(refuse(
                    graph,
                    i,
                    "a softmax trains only as the last node (the loss reads its input)",
                ))
            }
            _ => return Err(refuse(graph, i, "this layer has no backward pass here")),
        }
    }
    match (&graph.nodes[last].layer, graph.nodes[last].input) {
        (Layer::Softmax, Src::Node(j)) => Ok(j),
        (Layer::Softmax, Src::Input) => Err(refuse(graph, last, "the softmax reads the input")),
        _ => Ok(last),
    }
}

impl Trainer {
    /// He-normal initial weights for `graph` (`N(0, 2 / fan_in)`, fan-in = input
    /// channels of a group times the kernel's taps, or a linear's inputs) and zero
    /// biases, drawn from a generator seeded with `seed`: what `tools/lenet_mnist/train.py`
    /// starts from (its own generator, so not the same numbers).
    pub fn init_weights(graph: &Graph, sample: [usize; 3], seed: u64) -> Result<WeightFile> {
        let mut shape = vec![1];
        shape.extend(sample);
        infer_shapes(graph, &shape)?;
        let mut rng = data::Shuffler::new(seed);
        let mut w = WeightFile::default();
        for node in &graph.nodes {
            let Some((weight, bias, shape)) = node.layer.weight_spec() else {
                continue;
            };
            let fan_in: usize = shape[1..].iter().product();
            let sd = (2.0 / fan_in.max(1) as f64).sqrt();
            let n: usize = shape.iter().product();
            let values = (0..n).map(|_| (rng.normal() * sd) as f32).collect();
            w.insert(weight, &shape, values)?;
            if let Some(b) = bias {
                w.insert(b, &shape[..1], vec![0.0; shape[0]])?;
            }
        }
        Ok(w)
    }

    /// A trainer of `graph` from the initial `weights`, for samples of `sample` (`[H, W,
    /// C]`) in batches of `cfg.batch`. Refuses layers it cannot train, bad
    /// hyperparameters (learning rate, momentum, decay, batch, bit widths), and weights
    /// that do not fit the graph, each by name.
    pub fn new(
        ctx: &Context,
        graph: &Graph,
        weights: &WeightFile,
        sample: [usize; 3],
        cfg: TrainConfig,
    ) -> Result<Trainer> {
        let logits = check_graph(graph)?;
        check_config(&cfg)?;
        let mut input_shape = vec![cfg.batch];
        input_shape.extend(sample);
        let shapes = infer_shapes(graph, &input_shape)?;
        let classes = shapes[logits].iter().product::<usize>() / cfg.batch;
        if classes < 2 {
            return Err(Error::shape(
                OP,
                format!(
                    "the logits (node '{}') have shape {:?}: at least 2 classes are needed",
                    graph.nodes[logits].name, shapes[logits]
                ),
            ));
        }
        // The readers the backward pass runs: up to the logits (a branch that does not
        // lead to the loss gets no gradient).
        let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate().take(logits + 1) {
            for (src, slot) in reads(&node.layer, node.input) {
                if let Src::Node(j) = src {
                    readers[j].push((i, slot));
                }
            }
        }
        let mut bufs = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let z = || Tensor::zeros(ctx, &shapes[i], DType::F32);
            let clipped = clip_of(&node.layer) != Clip::NONE;
            let many = readers[i].len() > 1;
            let (mut cols, mut dcols) = (None, None);
            if let Layer::Conv { dims, desc, .. } = &node.layer {
                if dims.groups == 1 {
                    let in_shape = match node.input {
                        Src::Input => &input_shape,
                        Src::Node(j) => &shapes[j],
                    };
                    let cs = columns_shape(dims, desc, in_shape)?;
                    cols = Some(Tensor::zeros(ctx, &cs, DType::F32)?);
                    if node.input != Src::Input {
                        dcols = Some(Tensor::zeros(ctx, &cs, DType::F32)?);
                    }
                }
            }
            bufs.push(Bufs {
                cols,
                dcols,
                out: z()?,
                pre: clipped.then(z).transpose()?,
                dpre: clipped.then(z).transpose()?,
                grad: z()?,
                part: many.then(z).transpose()?,
                acc: many.then(z).transpose()?,
            });
        }
        // The first contribution processed: the highest reader, its first operand.
        let first_writer = readers
            .iter()
            .map(|r| {
                r.iter()
                    .copied()
                    .max_by_key(|&(i, slot)| (i, std::cmp::Reverse(slot)))
            })
            .collect();
        let (params, owned) = upload_params(ctx, graph, weights)?;
        let batch = cfg.batch;
        let mut t = Trainer {
            graph: graph.clone(),
            input_shape,
            shapes,
            logits,
            classes,
            bufs,
            params,
            owned,
            first_writer,
            x: Tensor::zeros(ctx, &[batch, sample[0], sample[1], sample[2]], DType::F32)?,
            labels: Tensor::zeros(ctx, &[batch], DType::U32)?,
            loss: Tensor::zeros(ctx, &[batch], DType::F32)?,
            lr: cfg.optimizer.lr(),
            steps: 0,
            shuffler: data::Shuffler::new(cfg.seed),
            qat: None,
            cfg,
        };
        if let Some(q) = t.cfg.qat.clone() {
            let (q, scales) = qat::Qat::new(ctx, &t, weights, &q)?;
            t.params.extend(scales);
            t.qat = Some(q);
        }
        Ok(t)
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.cfg.batch
    }

    /// Classes (the logits per sample).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The input batch `[B, H, W, C]` that [`Trainer::record_step`] reads: write the
    /// samples into it (`Tensor::write`), or copy them in on the GPU.
    pub fn input(&self) -> &Tensor {
        &self.x
    }

    /// The labels (`U32 [B]`) that [`Trainer::record_step`] reads.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The per-sample losses (`[B]`) of the last recorded step.
    pub fn loss(&self) -> &Tensor {
        &self.loss
    }

    /// The logits (`[B, classes]` as stored) of the last recorded forward pass.
    pub fn logits(&self) -> Result<Tensor> {
        self.bufs[self.logits]
            .out
            .reshape(&[self.cfg.batch, self.classes])
    }

    /// The tensor node `src`'s readers read: its fake-quantized copy under QAT.
    fn read_of(&self, src: Src) -> &Tensor {
        match src {
            Src::Input => self.qat.as_ref().and_then(|q| q.input()).unwrap_or(&self.x),
            Src::Node(j) => self
                .qat
                .as_ref()
                .and_then(|q| q.act(j))
                .unwrap_or(&self.bufs[j].out),
        }
    }

    /// Where node `j`'s readers put its gradient.
    fn grad_of(&self, j: usize) -> &Tensor {
        self.qat
            .as_ref()
            .and_then(|q| q.act_grad(j))
            .unwrap_or(&self.bufs[j].grad)
    }

    /// The weight node `i` computes with (its fake-quantized copy under QAT) and the
    /// tensor its gradient is written to (under QAT the fake-quantized weight's, taken
    /// back through the STE afterwards).
    fn weight_of(&self, i: usize) -> Option<(&Tensor, &Tensor)> {
        let p = &self.params[self.owned[i][0]?];
        let q = self.qat.as_ref();
        Some((
            q.and_then(|q| q.weight(i)).unwrap_or(&p.value),
            q.and_then(|q| q.weight_grad(i)).unwrap_or(&p.grad),
        ))
    }

    /// Records the forward pass of [`Trainer::input`] up to the logits. `training`
    /// updates the activation ranges of quantization-aware training (unless frozen).
    pub fn record_forward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        training: bool,
    ) -> Result<()> {
        if let Some(q) = &self.qat {
            q.record_input(ctx, encoder, &self.x, training)?;
        }
        for i in 0..=self.logits {
            if let Some(q) = &self.qat {
                q.record_weight(ctx, encoder, self, i)?;
            }
            self.record_node(ctx, encoder, i)?;
            if let Some(q) = &self.qat {
                q.record_act(ctx, encoder, self, i, training)?;
            }
        }
        Ok(())
    }

    fn record_node(&self, ctx: &Context, enc: &mut wgpu::CommandEncoder, i: usize) -> Result<()> {
        let node = &self.graph.nodes[i];
        let b = &self.bufs[i];
        let x = self.read_of(node.input);
        let z = b.pre.as_ref().unwrap_or(&b.out);
        let bias = self.owned[i][1].map(|p| &self.params[p].value);
        let batch = self.cfg.batch;
        match &node.layer {
            Layer::Conv { dims, desc, .. } => {
                let (w, _) = self.weight_of(i).expect("a convolution has a weight");
                let desc = ConvDesc {
                    activation: Activation::None,
                    ..*desc
                };
                match &b.cols {
                    // im2col, then a GEMM with the OIHW weights as [OC, C * KH * KW].
                    Some(cols) => {
                        im2col(ctx, enc, (dims, &desc), x, cols)?;
                        let [m, ckk] = [cols.shape()[0], cols.shape()[1]];
                        let oc = dims.out_channels;
                        let gd = GemmDesc {
                            trans_b: true,
                            ..GemmDesc::new(m, oc, ckk)
                        };
                        let (w2, z2) = (w.reshape(&[oc, ckk])?, z.reshape(&[m, oc])?);
                        gemm(ctx, enc, &gd, cols, &w2, bias, &z2)?;
                    }
                    None => conv2d_oihw(ctx, enc, (dims, &desc), x, (w, bias), z)?,
                }
            }
            Layer::Linear { n, k, .. } => {
                let (w, _) = self.weight_of(i).expect("a linear has a weight");
                let desc = GemmDesc {
                    trans_b: true,
                    ..GemmDesc::new(batch, *n, *k)
                };
                let (x2, z2) = (x.reshape(&[batch, *k])?, z.reshape(&[batch, *n])?);
                gemm(ctx, enc, &desc, &x2, w, bias, &z2)?;
            }
            Layer::Pool(d) => pool2d(ctx, enc, d, x, z)?,
            Layer::Add { other, .. } => {
                add(ctx, enc, x, self.read_of(Src::Node(*other)), Clip::NONE, z)?
            }
            Layer::Map { f, .. } => map(ctx, enc, *f, Clip::NONE, x, z)?,
            _ => unreachable!("check_graph refused it"),
        }
        if let Some(pre) = &b.pre {
            map(
                ctx,
                enc,
                UnaryOp::IDENTITY,
                clip_of(&node.layer),
                pre,
                &b.out,
            )?;
        }
        Ok(())
    }

    /// Records the gradient of node `j` from reader `(i, slot)`: `f` writes the
    /// contribution into the tensor it is given (the gradient itself for the first
    /// contribution, else a scratch tensor that is then added in).
    fn contribute(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        (j, reader): (Src, (usize, usize)),
        f: impl FnOnce(&mut wgpu::CommandEncoder, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let Src::Node(j) = j else {
            return Ok(());
        };
        let target = self.grad_of(j);
        if self.first_writer[j] == Some(reader) {
            return f(enc, target);
        }
        let b = &self.bufs[j];
        let (part, acc) = (
            b.part.as_ref().expect("a node read twice has a scratch"),
            b.acc.as_ref().expect("a node read twice has a sum"),
        );
        f(enc, part)?;
        add(ctx, enc, target, part, Clip::NONE, acc)?;
        enc.copy_buffer_to_buffer(acc.buffer(), 0, target.buffer(), 0, acc.size_bytes());
        Ok(())
    }

    /// Records the backward pass (after [`Trainer::record_forward`]): the loss against
    /// [`Trainer::labels`] and every parameter's gradient.
    pub fn record_backward(&self, ctx: &Context, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let (batch, k) = (self.cfg.batch, self.classes);
        for (j, b) in self.bufs.iter().enumerate() {
            if self.first_writer[j].is_none() && j != self.logits {
                enc.clear_buffer(self.grad_of(j).buffer(), 0, None);
                enc.clear_buffer(b.grad.buffer(), 0, None);
            }
        }
        let logits = self.bufs[self.logits].out.reshape(&[batch, k])?;
        let dlogits = self.bufs[self.logits].grad.reshape(&[batch, k])?;
        softmax_cross_entropy(ctx, enc, &logits, &self.labels, &dlogits, &self.loss)?;
        for i in (0..=self.logits).rev() {
            if let Some(q) = &self.qat {
                q.record_act_backward(ctx, enc, self, i)?;
            }
            self.backward_node(ctx, enc, i)?;
            if let Some(q) = &self.qat {
                q.record_weight_backward(ctx, enc, self, i)?;
            }
        }
        Ok(())
    }

    fn backward_node(&self, ctx: &Context, enc: &mut wgpu::CommandEncoder, i: usize) -> Result<()> {
        let node = &self.graph.nodes[i];
        let b = &self.bufs[i];
        let mut g = &b.grad;
        if let (Some(pre), Some(dpre)) = (&b.pre, &b.dpre) {
            clip_backward(ctx, enc, pre, g, clip_of(&node.layer), dpre)?;
            g = dpre;
        }
        let x = self.read_of(node.input);
        let batch = self.cfg.batch;
        let db = self.owned[i][1].map(|p| &self.params[p].grad);
        let me = |slot| (node.input, (i, slot));
        match &node.layer {
            Layer::Conv { dims, desc, .. } => {
                let (w, dw) = self.weight_of(i).expect("a weight");
                let geo = (dims, desc);
                let oc = dims.out_channels;
                let g2 = g.reshape(&[g.numel() / oc, oc])?;
                if let Some(db) = db {
                    column_sums(ctx, enc, &g2, db)?;
                }
                let Some(cols) = &b.cols else {
                    conv2d_backward_weight(ctx, enc, geo, x, g, dw)?;
                    return self.contribute(ctx, enc, me(0), |enc, dst| {
                        conv2d_backward_input(ctx, enc, geo, g, w, dst)
                    });
                };
                // dW = dy^T cols; dcols = dy W, then col2im.
                let [m, ckk] = [cols.shape()[0], cols.shape()[1]];
                let w2 = w.reshape(&[oc, ckk])?;
                let gd = GemmDesc {
                    trans_a: true,
                    ..GemmDesc::new(oc, ckk, m)
                };
                gemm(ctx, enc, &gd, &g2, cols, None, &dw.reshape(&[oc, ckk])?)?;
                if let Some(dcols) = &b.dcols {
                    self.contribute(ctx, enc, me(0), |enc, dst| {
                        gemm(ctx, enc, &GemmDesc::new(m, ckk, oc), &g2, &w2, None, dcols)?;
                        col2im(ctx, enc, geo, dcols, dst)
                    })?;
                }
            }
            Layer::Linear { n, k, .. } => {
                let (w, dw) = self.weight_of(i).expect("a weight");
                let (x2, g2) = (x.reshape(&[batch, *k])?, g.reshape(&[batch, *n])?);
                linear_backward(ctx, enc, (&x2, w, &g2), None, dw, db)?;
                self.contribute(ctx, enc, me(0), |enc, dst| {
                    let desc = GemmDesc::new(batch, *k, *n);
                    gemm(ctx, enc, &desc, &g2, w, None, &dst.reshape(&[batch, *k])?)
                })?;
            }
            Layer::Pool(d) => self.contribute(ctx, enc, me(0), |enc, dst| {
                pool2d_backward(ctx, enc, d, x, g, dst)
            })?,
            Layer::Add { other, .. } => {
                let copy = |enc: &mut wgpu::CommandEncoder, dst: &Tensor| {
                    enc.copy_buffer_to_buffer(g.buffer(), 0, dst.buffer(), 0, g.size_bytes());
                    Ok(())
                };
                self.contribute(ctx, enc, me(0), copy)?;
                self.contribute(ctx, enc, (Src::Node(*other), (i, 1)), copy)?;
            }
            Layer::Map {
                f: UnaryOp::Affine { scale, .. },
                ..
            } => self.contribute(ctx, enc, me(0), |enc, dst| {
                let f = UnaryOp::Affine {
                    scale: *scale,
                    shift: 0.0,
                };
                map(ctx, enc, f, Clip::NONE, g, dst)
            })?,
            _ => unreachable!("check_graph refused it"),
        }
        Ok(())
    }

    /// Records one optimizer step over every parameter (after the backward pass).
    pub fn record_update(&mut self, ctx: &Context, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.steps = self
            .steps
            .checked_add(1)
            .ok_or_else(|| Error::invalid(OP, "more than 2^32 steps"))?;
        for p in &self.params {
            match self.cfg.optimizer {
                Optimizer::Sgd(o) => {
                    let o = Sgd {
                        lr: self.lr,
                        weight_decay: if p.decay { o.weight_decay } else { 0.0 },
                        ..o
                    };
                    sgd_step(ctx, enc, &o, &p.value, &p.grad, &p.m)?;
                }
                Optimizer::Adam(o) => {
                    let o = Adam {
                        lr: self.lr,
                        weight_decay: if p.decay { o.weight_decay } else { 0.0 },
                        ..o
                    };
                    adam_step(ctx, enc, &o, self.steps, &p.value, &p.grad, (&p.m, &p.v))?;
                }
            }
        }
        if let Some(q) = &self.qat {
            q.record_after_update(ctx, enc, self)?;
        }
        Ok(())
    }

    /// Records one training step on [`Trainer::input`] and [`Trainer::labels`]: forward,
    /// loss, backward, optimizer update.
    pub fn record_step(&mut self, ctx: &Context, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.record_forward(ctx, enc, true)?;
        self.record_backward(ctx, enc)?;
        self.record_update(ctx, enc)
    }

    /// Checks the samples' shape against the trainer's.
    fn check_samples(&self, data: &Dataset) -> Result<()> {
        let want = self.input_shape[1..].to_vec();
        if data.sample_shape().as_slice() != want {
            return Err(Error::shape(
                OP,
                format!(
                    "the data's samples are {:?}; the trainer was built for {want:?}",
                    data.sample_shape()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the samples' shape and the labels against the classes.
    fn check_labels(&self, data: &Dataset) -> Result<()> {
        self.check_samples(data)?;
        if let Some(i) = data
            .labels()
            .iter()
            .position(|&l| l as usize >= self.classes)
        {
            return Err(Error::invalid(
                OP,
                format!(
                    "label {} of sample {i} is not below the {} classes of the logits",
                    data.labels()[i],
                    self.classes
                ),
            ));
        }
        Ok(())
    }

    /// Trains for the configured epochs on `data` (samples in a shuffled order, the last
    /// incomplete batch of each epoch skipped); `progress` is called after every step.
    /// Reads back the loss, the logits and every gradient after each step: a NaN or
    /// infinite value stops training with an error naming the step and the layer. Waits
    /// on the GPU: natively only; [`Trainer::fit_async`] is the async form.
    pub fn fit(
        &mut self,
        ctx: &Context,
        data: &Dataset,
        progress: impl FnMut(&Progress),
    ) -> Result<Vec<EpochStats>> {
        ctx.block("Trainer::fit", self.fit_async(ctx, data, progress))
    }

    /// [`Trainer::fit`] without blocking (the form a browser build uses).
    pub async fn fit_async(
        &mut self,
        ctx: &Context,
        data: &Dataset,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Vec<EpochStats>> {
        self.check_labels(data)?;
        let batch = self.cfg.batch;
        let steps = data.len() / batch;
        if steps == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} samples make no batch of {batch}: use a smaller batch",
                    data.len()
                ),
            ));
        }
        let mut stats = Vec::with_capacity(self.cfg.epochs);
        for epoch in 1..=self.cfg.epochs {
            if let Some((every, factor)) = self.cfg.lr_step {
                let drops = ((epoch - 1) / every) as i32;
                self.lr = self.cfg.optimizer.lr() * factor.powi(drops);
            }
            if let Some(q) = &mut self.qat {
                q.start_epoch(epoch);
                if !q.is_calibrated() {
                    self.calibrate_async(ctx, data).await?;
                }
            }
            let order = self.shuffler.epoch(data.len());
            let start = Instant::now();
            let (mut loss_sum, mut right) = (0f64, 0usize);
            for s in 0..steps {
                let (x, y) = data.gather(&order[s * batch..(s + 1) * batch]);
                self.x.write(ctx, &x)?;
                self.labels.write(ctx, &y)?;
                let mut enc = ctx.encoder("train step");
                self.record_step(ctx, &mut enc)?;
                ctx.submit(enc).await?;
                let (l, r) = self.check_step(ctx, &y, self.steps).await?;
                loss_sum += l;
                right += r;
                progress(&Progress {
                    epoch,
                    epochs: self.cfg.epochs,
                    step: s + 1,
                    steps,
                    loss: loss_sum / (s + 1) as f64,
                    accuracy: right as f64 / ((s + 1) * batch) as f64,
                });
            }
            let seconds = start.elapsed().as_secs_f64();
            stats.push(EpochStats {
                epoch,
                loss: loss_sum / steps as f64,
                accuracy: right as f64 / (steps * batch) as f64,
                seconds,
                samples_per_second: (steps * batch) as f64 / seconds,
            });
        }
        Ok(stats)
    }

    /// The step's mean loss and correct predictions; an error at a non-finite loss or
    /// gradient.
    async fn check_step(&self, ctx: &Context, labels: &[u32], step: u32) -> Result<(f64, usize)> {
        let loss = self.loss.read::<f32>(ctx).await?;
        let bad =
            |what: String| Error::invalid(OP, format!("step {step}: {what}; training stopped"));
        if let Some(b) = loss.iter().position(|l| !l.is_finite()) {
            return Err(bad(format!(
                "the loss of sample {b} of the batch is {} (the logits of '{}')",
                loss[b], self.graph.nodes[self.logits].name
            )));
        }
        for p in self.params.iter().rev() {
            let g = p.grad.read::<f32>(ctx).await?;
            if let Some(e) = g.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "the gradient of '{}' (layer '{}') holds {} at index {e}",
                    p.name, self.graph.nodes[p.node].name, g[e]
                )));
            }
        }
        let right = predictions(&self.logits()?.read::<f32>(ctx).await?, self.classes)
            .iter()
            .zip(labels)
            .filter(|(p, &l)| **p == l as usize)
            .count();
        Ok((
            loss.iter().map(|&l| f64::from(l)).sum::<f64>() / loss.len() as f64,
            right,
        ))
    }

    /// The predicted class of every sample of `data` (the forward pass in batches; the
    /// last batch padded with zeros, its padding ignored). Under QAT the fake
    /// quantization applies, with the ranges as they stand. Natively only;
    /// [`Trainer::predict_async`] is the async form.
    pub fn predict(&self, ctx: &Context, data: &Dataset) -> Result<Vec<usize>> {
        ctx.block("Trainer::predict", self.predict_async(ctx, data))
    }

    /// [`Trainer::predict`] without blocking (the form a browser build uses).
    pub async fn predict_async(&self, ctx: &Context, data: &Dataset) -> Result<Vec<usize>> {
        self.check_samples(data)?;
        let batch = self.cfg.batch;
        let mut out = Vec::with_capacity(data.len());
        for start in (0..data.len()).step_by(batch) {
            let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
            let (mut x, _) = data.gather(&idx);
            x.resize(batch * data.sample_len(), 0.0);
            self.x.write(ctx, &x)?;
            let mut enc = ctx.encoder("predict");
            self.record_forward(ctx, &mut enc, false)?;
            ctx.submit(enc).await?;
            let p = predictions(&self.logits()?.read::<f32>(ctx).await?, self.classes);
            out.extend_from_slice(&p[..idx.len()]);
        }
        Ok(out)
    }

    /// The fraction of `data` [`Trainer::predict`] classifies right (natively only;
    /// [`Trainer::accuracy_async`] is the async form).
    pub fn accuracy(&self, ctx: &Context, data: &Dataset) -> Result<f64> {
        ctx.block("Trainer::accuracy", self.accuracy_async(ctx, data))
    }

    /// [`Trainer::accuracy`] without blocking (the form a browser build uses).
    pub async fn accuracy_async(&self, ctx: &Context, data: &Dataset) -> Result<f64> {
        self.check_labels(data)?;
        let p = self.predict_async(ctx, data).await?;
        let right = p
            .iter()
            .zip(data.labels())
            .filter(|(p, &l)| **p == l as usize)
            .count();
        Ok(right as f64 / data.len() as f64)
    }

    /// The gradients of the last recorded backward pass, under the parameters' names
    /// (LSQ's scales as `NAME.scale`, `NODE.act_scale`). Natively only;
    /// [`Trainer::gradients_async`] is the async form.
    pub fn gradients(&self, ctx: &Context) -> Result<WeightFile> {
        ctx.block("Trainer::gradients", self.gradients_async(ctx))
    }

    /// [`Trainer::gradients`] without blocking (the form a browser build uses).
    pub async fn gradients_async(&self, ctx: &Context) -> Result<WeightFile> {
        let mut w = WeightFile::default();
        w.allow_nonfinite(true);
        for p in &self.params {
            w.insert(&p.name, p.grad.shape(), p.grad.read::<f32>(ctx).await?)?;
        }
        Ok(w)
    }

    /// The trained weights and biases (f32, under the graph's names): for
    /// [`crate::model::Model`] or post-training quantization. Natively only;
    /// [`Trainer::weights_async`] is the async form.
    pub fn weights(&self, ctx: &Context) -> Result<WeightFile> {
        ctx.block("Trainer::weights", self.weights_async(ctx))
    }

    /// [`Trainer::weights`] without blocking (the form a browser build uses).
    pub async fn weights_async(&self, ctx: &Context) -> Result<WeightFile> {
        let mut w = WeightFile::default();
        for p in self.params.iter().filter(|p| p.decay) {
            w.insert(&p.name, p.value.shape(), p.value.read::<f32>(ctx).await?)?;
        }
        Ok(w)
    }
}

/// The index of each row's largest value (the first on ties).
fn predictions(logits: &[f32], k: usize) -> Vec<usize> {
    logits
        .chunks_exact(k)
        .map(|r| {
            (0..k)
                .reduce(|a, b| if r[b] > r[a] { b } else { a })
                .unwrap_or(0)
        })
        .collect()
}

fn check_config(cfg: &TrainConfig) -> Result<()> {
    let bad = |what: String| Err(Error::invalid(OP, what));
    if cfg.batch == 0 || cfg.batch > 1 << 20 {
        return bad(format!("batch = {}: 1 to 2^20 samples", cfg.batch));
    }
    if cfg.epochs == 0 {
        return bad("epochs = 0: train for at least one".into());
    }
    let lr = cfg.optimizer.lr();
    if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
        return bad(format!("learning rate {lr}: a finite value in (0, 10]"));
    }
    match cfg.optimizer {
        Optimizer::Sgd(o) => {
            if !(0.0..1.0).contains(&o.momentum) {
                return bad(format!("momentum {}: in [0, 1)", o.momentum));
            }
            if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
                return bad(format!("weight decay {}: 0 or more", o.weight_decay));
            }
        }
        Optimizer::Adam(o) => {
            for (n, v) in [("beta1", o.beta1), ("beta2", o.beta2)] {
                if !(0.0..1.0).contains(&v) {
                    return bad(format!("{n} {v}: in [0, 1)"));
                }
            }
            if !(o.eps.is_finite() && o.eps > 0.0) {
                return bad(format!("eps {}: a finite value above 0", o.eps));
            }
            if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
                return bad(format!("weight decay {}: 0 or more", o.weight_decay));
            }
        }
    }
    if let Some((every, factor)) = cfg.lr_step {
        if every == 0 || !(factor > 0.0 && factor <= 1.0) {
            return bad(format!(
                "lr_step ({every}, {factor}): every 1 or more epochs, a factor in (0, 1]"
            ));
        }
    }
    if let Some(q) = &cfg.qat {
        q.check()?;
    }
    Ok(())
}

/// Every weight and bias of `graph` on the GPU with its gradient and optimizer state.
#[allow(clippy::type_complexity)]
fn upload_params(
    ctx: &Context,
    graph: &Graph,
    weights: &WeightFile,
) -> Result<(Vec<Param>, Vec<[Option<usize>; 2]>)> {
    let mut params = Vec::new();
    let mut owned = vec![[None, None]; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let Some((weight, bias, shape)) = node.layer.weight_spec() else {
            continue;
        };
        let specs = [
            Some((weight, shape.clone())),
            bias.map(|b| (b, vec![shape[0]])),
        ];
        for (slot, spec) in specs.into_iter().enumerate() {
            let Some((name, shape)) = spec else { continue };
            let v = weights.tensor(name, &shape)?;
            let z = || Tensor::zeros(ctx, &shape, DType::F32);
            owned[i][slot] = Some(params.len());
            params.push(Param {
                name: name.to_string(),
                node: i,
                value: Tensor::from_slice(ctx, &shape, v)?,
                grad: z()?,
                m: z()?,
                v: z()?,
                decay: true,
            });
        }
    }
    Ok((params, owned))
}
