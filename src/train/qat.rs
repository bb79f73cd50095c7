//! Quantization-aware training: fake quantization of every weight (symmetric, per output
//! channel) and of the activations the integer kernels exchange (asymmetric, per
//! tensor), the straight-through estimator, LSQ's learned step sizes, ranges initialised
//! by the calibration observers and then tracked with a moving average until frozen,
//! and the conversion of the trained graph to a [`QModel`].
//!
//! Which activations: the model input and every node's output up to the logits, except
//! the logits themselves (the classifier reads them in f32, as post-training
//! quantization leaves them) and max pooling's (the maximum of codes is a code of the
//! same grid: it shares its input's parameters, so nothing is quantized twice).

use std::cell::Cell;

use super::{Param, Trainer, OP};
use crate::calib::{Observer, ObserverKind};
use crate::context::Context;
use crate::desc::pool::PoolKind;
use crate::error::{Error, Result};
use crate::model::{Layer, QModel, Src, WeightFile};
use crate::ops::train::{
    fake_quantize, fake_quantize_backward, lsq_scale_grad, observe_range, scales_to_params,
    FakeQuant, RangeObserver,
};
use crate::quant::{Granularity, QType, QuantParams, QuantScheme};
use crate::tensor::{DType, Tensor};

/// How quantization-aware training quantizes.
#[derive(Debug, Clone, PartialEq)]
pub struct QatConfig {
    /// Bits of the weights' codes, 2 to 8: symmetric per output channel in
    /// `-(2^(b-1) - 1)..=2^(b-1) - 1` (-7..=7 at 4 bits), stored as INT8 after conversion.
    pub weight_bits: u32,
    /// Bits of the activations' codes, 2 to 8: asymmetric per tensor in `0..=2^b - 1`,
    /// stored as UINT8 after conversion.
    pub act_bits: u32,
    /// Learned step sizes (LSQ, Esser et al. 2020): every scale but the model input's
    /// (the data's range, fixed by calibration) is a parameter trained with the weights,
    /// its gradient scaled by `1 / sqrt(elements * qmax)` (elements of one channel, or of
    /// one sample's activation); weight scales start at LSQ's `2 mean|w| / sqrt(qmax)`
    /// per channel, activation scales at the calibrated ones, and zero points stay where
    /// calibration put them. Off: weight scales follow each channel's largest magnitude
    /// at every step and activation ranges their moving average.
    pub lsq: bool,
    /// The moving average's weight on the old range, in [0, 1) (PyTorch's
    /// `MovingAverageMinMaxObserver` uses 0.99).
    pub ema_decay: f32,
    /// Activation ranges are tracked during the first `freeze_after` epochs and frozen
    /// after (0: frozen from the start, at the calibrated ranges).
    pub freeze_after: usize,
    /// The observer that sets the initial activation ranges on calibration samples.
    pub observer: ObserverKind,
    /// Calibration samples per class (the first of each class in the training data).
    pub calibration_per_class: usize,
}

impl QatConfig {
    /// `weight_bits` and `act_bits`, with min-max calibration on 50 samples per class, a
    /// moving average of 0.99 frozen after 2 epochs, no LSQ.
    pub fn new(weight_bits: u32, act_bits: u32) -> QatConfig {
        QatConfig {
            weight_bits,
            act_bits,
            lsq: false,
            ema_decay: 0.99,
            freeze_after: 2,
            observer: ObserverKind::MinMax,
            calibration_per_class: 50,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        for (what, b) in [
            ("weight_bits", self.weight_bits),
            ("act_bits", self.act_bits),
        ] {
            if !(2..=8).contains(&b) {
                return Err(Error::invalid(
                    OP,
                    format!("{what} = {b}: quantization-aware training takes 2 to 8 bits"),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::invalid(
                OP,
                format!("ema_decay = {}: in [0, 1)", self.ema_decay),
            ));
        }
        if self.calibration_per_class == 0 {
            return Err(Error::invalid(
                OP,
                "calibration_per_class = 0: at least one sample per class",
            ));
        }
        Ok(())
    }

    fn weight_codes(&self) -> (i32, i32) {
        let q = (1 << (self.weight_bits - 1)) - 1;
        (-q, q)
    }

    fn act_codes(&self) -> (i32, i32) {
        (0, (1 << self.act_bits) - 1)
    }
}

/// One fake quantizer: its parameters, range state, output and gradients.
#[derive(Debug)]
struct Quantizer {
    fq: FakeQuant,
    qp: Tensor,
    state: Tensor,
    /// The fake-quantized values and their gradient.
    out: Tensor,
    dout: Tensor,
    /// LSQ: the index of the scale parameter.
    scale: Option<usize>,
    /// LSQ's gradient scale.
    grad_scale: f32,
}

impl Quantizer {
    fn new(
        ctx: &Context,
        shape: &[usize],
        (channels, inner): (usize, usize),
        codes: (i32, i32),
    ) -> Result<Quantizer> {
        let z = || Tensor::zeros(ctx, shape, DType::F32);
        let per_channel = channels * inner;
        Ok(Quantizer {
            fq: FakeQuant {
                channels,
                inner,
                qmin: codes.0,
                qmax: codes.1,
            },
            qp: Tensor::zeros(ctx, &[3 * channels], DType::U32)?,
            state: Tensor::zeros(ctx, &[2 * channels], DType::F32)?,
            out: z()?,
            dout: z()?,
            scale: None,
            grad_scale: 1.0 / ((per_channel / channels) as f32 * codes.1 as f32).sqrt(),
        })
    }

    /// The parameters as the host reads them: `(scales, inverse scales, zero points)`.
    async fn read(&self, ctx: &Context) -> Result<(Vec<f32>, Vec<f32>, Vec<i32>)> {
        let w = self.qp.read::<u32>(ctx).await?;
        let f =
            |k: usize| -> Vec<f32> { w.chunks_exact(3).map(|c| f32::from_bits(c[k])).collect() };
        Ok((f(0), f(1), f(2).into_iter().map(|z| z as i32).collect()))
    }
}

/// The fake quantization state of a [`Trainer`].
#[derive(Debug)]
pub(crate) struct Qat {
    cfg: QatConfig,
    input: Quantizer,
    /// Per node: its output's quantizer (None: not quantized, or max pooling's shared).
    acts: Vec<Option<Quantizer>>,
    /// Per node with a weight: the weight's quantizer.
    weights: Vec<Option<Quantizer>>,
    frozen: Cell<bool>,
    calibrating: Cell<bool>,
    calibrated: Cell<bool>,
}

/// The UINT8 parameters a quantizer of an activation of `shape` stands at.
async fn act_params(ctx: &Context, qz: &Quantizer, shape: &[usize]) -> Result<QuantParams> {
    let (s, _, z) = qz.read(ctx).await?;
    QuantParams::new(QType::U8, Granularity::PerTensor, shape, s, z)?
        .with_code_range(qz.fq.qmin, qz.fq.qmax)
}

/// Whether node `i`'s output gets its own quantizer.
fn quantized(t: &Trainer, i: usize) -> bool {
    i < t.logits && !matches!(t.graph.nodes[i].layer, Layer::Pool(d) if d.kind == PoolKind::Max)
}

impl Qat {
    /// The quantizers of `t`, and LSQ's scale parameters (to append to `t`'s).
    /// `weights_in` are the initial weights `t` was made from (LSQ's initial scales are
    /// computed from them on the host, so that making a trainer does not wait on the GPU).
    pub(crate) fn new(
        ctx: &Context,
        t: &Trainer,
        weights_in: &WeightFile,
        cfg: &QatConfig,
    ) -> Result<(Qat, Vec<Param>)> {
        let (ac, wc) = (cfg.act_codes(), cfg.weight_codes());
        let per_tensor = |shape: &[usize]| (1, shape.iter().product::<usize>() / shape[0]);
        let input = Quantizer::new(ctx, &t.input_shape, per_tensor(&t.input_shape), ac)?;
        let mut acts = Vec::new();
        let mut weights = Vec::new();
        for (i, shape) in t.shapes.iter().enumerate() {
            acts.push(match quantized(t, i) {
                true => Some(Quantizer::new(ctx, shape, per_tensor(shape), ac)?),
                false => None,
            });
            weights.push(match t.owned[i][0] {
                Some(p) => {
                    let ws = t.params[p].value.shape().to_vec();
                    let inner = ws[1..].iter().product();
                    let mut q = Quantizer::new(ctx, &ws, (ws[0], inner), wc)?;
                    // Batch-independent: the elements of one channel.
                    q.grad_scale = 1.0 / (inner as f32 * wc.1 as f32).sqrt();
                    Some(q)
                }
                None => None,
            });
        }
        let mut q = Qat {
            cfg: cfg.clone(),
            input,
            acts,
            weights,
            frozen: Cell::new(cfg.freeze_after == 0),
            calibrating: Cell::new(false),
            calibrated: Cell::new(false),
        };
        // Weight scales from the initial weights (LSQ starts from them too).
        let mut enc = ctx.encoder("qat weights");
        for (i, w) in q.weights.iter().enumerate() {
            if let (Some(w), Some(p)) = (w, t.owned[i][0]) {
                let obs = RangeObserver {
                    symmetric: true,
                    decay: 0.0,
                    first: true,
                };
                observe_range(
                    ctx,
                    &mut enc,
                    &w.fq,
                    obs,
                    &t.params[p].value,
                    (&w.state, &w.qp),
                )?;
            }
        }
        ctx.enqueue(enc)?;
        let mut extra = Vec::new();
        if cfg.lsq {
            let base = t.params.len();
            let mut k = 0;
            let mut push = |name: String, node: usize, qz: &mut Quantizer| -> Result<()> {
                let c = qz.fq.channels;
                qz.scale = Some(base + k);
                k += 1;
                let z = || Tensor::zeros(ctx, &[c], DType::F32);
                extra.push(Param {
                    name,
                    node,
                    value: z()?,
                    grad: z()?,
                    m: z()?,
                    v: z()?,
                    decay: false,
                });
                Ok(())
            };
            for (i, a) in q.acts.iter_mut().enumerate() {
                if let Some(a) = a {
                    push(format!("{}.act_scale", t.graph.nodes[i].name), i, a)?;
                }
            }
            for (i, w) in q.weights.iter_mut().enumerate() {
                if let (Some(w), Some(p)) = (w, t.owned[i][0]) {
                    push(format!("{}.scale", t.params[p].name), i, w)?;
                }
            }
            // The weight scales' initial values, LSQ's: 2 mean|w| / sqrt(qmax) per channel
            // (at 2 bits a scale from the largest magnitude would round most weights to 0).
            for (i, w) in q.weights.iter().enumerate() {
                let (Some(w), Some(p)) = (w, t.owned[i][0]) else {
                    continue;
                };
                let values = weights_in.tensor(&t.params[p].name, t.params[p].value.shape())?;
                let root = (w.fq.qmax as f64).sqrt();
                let s: Vec<f32> = values
                    .chunks(w.fq.inner)
                    .map(|c| {
                        let mean =
                            c.iter().map(|v| f64::from(v.abs())).sum::<f64>() / c.len() as f64;
                        ((2.0 * mean / root) as f32).max(crate::ops::train::MIN_SCALE)
                    })
                    .collect();
                let k = w.scale.expect("LSQ scales were made") - base;
                extra[k].value.write(ctx, &s)?;
                // The parameters the first forward pass reads.
                let mut enc = ctx.encoder("lsq init");
                scales_to_params(ctx, &mut enc, &extra[k].value, &w.qp)?;
                ctx.enqueue(enc)?;
            }
        }
        Ok((q, extra))
    }

    /// The fake-quantized input (None while calibrating: the input itself).
    pub(crate) fn input(&self) -> Option<&Tensor> {
        (!self.calibrating.get()).then_some(&self.input.out)
    }

    /// Node `j`'s fake-quantized output (None: readers read the output itself).
    pub(crate) fn act(&self, j: usize) -> Option<&Tensor> {
        if self.calibrating.get() {
            return None;
        }
        self.acts[j].as_ref().map(|q| &q.out)
    }

    pub(crate) fn act_grad(&self, j: usize) -> Option<&Tensor> {
        self.acts[j].as_ref().map(|q| &q.dout)
    }

    pub(crate) fn weight(&self, i: usize) -> Option<&Tensor> {
        self.weights[i].as_ref().map(|q| &q.out)
    }

    pub(crate) fn weight_grad(&self, i: usize) -> Option<&Tensor> {
        self.weights[i].as_ref().map(|q| &q.dout)
    }

    pub(crate) fn is_calibrated(&self) -> bool {
        self.calibrated.get()
    }

    pub(crate) fn start_epoch(&mut self, epoch: usize) {
        self.frozen.set(epoch > self.cfg.freeze_after);
    }

    fn ready(&self) -> Result<()> {
        if !self.calibrated.get() && !self.calibrating.get() {
            return Err(Error::invalid(
                OP,
                "quantization-aware training: the activation ranges are not set; call \
                 Trainer::calibrate first (Trainer::fit does)",
            ));
        }
        Ok(())
    }

    /// Observes (while tracking) and fake-quantizes one activation.
    fn record_quantizer(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        q: &Quantizer,
        x: &Tensor,
        training: bool,
    ) -> Result<()> {
        if self.calibrating.get() {
            return Ok(());
        }
        if training && !self.frozen.get() && !self.cfg.lsq {
            let obs = RangeObserver {
                symmetric: false,
                decay: self.cfg.ema_decay,
                first: false,
            };
            observe_range(ctx, enc, &q.fq, obs, x, (&q.state, &q.qp))?;
        }
        fake_quantize(ctx, enc, &q.fq, x, &q.qp, &q.out)
    }

    pub(crate) fn record_input(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        x: &Tensor,
        training: bool,
    ) -> Result<()> {
        self.ready()?;
        self.record_quantizer(ctx, enc, &self.input, x, training)
    }

    pub(crate) fn record_act(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
        i: usize,
        training: bool,
    ) -> Result<()> {
        match &self.acts[i] {
            Some(q) => self.record_quantizer(ctx, enc, q, &t.bufs[i].out, training),
            None => Ok(()),
        }
    }

    pub(crate) fn record_weight(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
        i: usize,
    ) -> Result<()> {
        let (Some(q), Some(p)) = (&self.weights[i], t.owned[i][0]) else {
            return Ok(());
        };
        let w = &t.params[p].value;
        if !self.cfg.lsq {
            let obs = RangeObserver {
                symmetric: true,
                decay: 0.0,
                first: true,
            };
            observe_range(ctx, enc, &q.fq, obs, w, (&q.state, &q.qp))?;
        }
        fake_quantize(ctx, enc, &q.fq, w, &q.qp, &q.out)
    }

    /// The STE (and LSQ's scale gradient) of a quantizer of `x`.
    fn backward(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
        q: &Quantizer,
        x: &Tensor,
        dx: &Tensor,
    ) -> Result<()> {
        fake_quantize_backward(ctx, enc, &q.fq, (x, &q.qp), &q.dout, dx)?;
        if let Some(s) = q.scale {
            let ds = &t.params[s].grad;
            lsq_scale_grad(ctx, enc, &q.fq, (x, &q.qp), &q.dout, q.grad_scale, ds)?;
        }
        Ok(())
    }

    pub(crate) fn record_act_backward(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
        i: usize,
    ) -> Result<()> {
        match &self.acts[i] {
            Some(q) => self.backward(ctx, enc, t, q, &t.bufs[i].out, &t.bufs[i].grad),
            None => Ok(()),
        }
    }

    pub(crate) fn record_weight_backward(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
        i: usize,
    ) -> Result<()> {
        let (Some(q), Some(p)) = (&self.weights[i], t.owned[i][0]) else {
            return Ok(());
        };
        let w = &t.params[p];
        self.backward(ctx, enc, t, q, &w.value, &w.grad)
    }

    pub(crate) fn record_after_update(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        t: &Trainer,
    ) -> Result<()> {
        let all = std::iter::once(&self.input)
            .chain(self.acts.iter().flatten())
            .chain(self.weights.iter().flatten());
        for q in all {
            if let Some(s) = q.scale {
                scales_to_params(ctx, enc, &t.params[s].value, &q.qp)?;
            }
        }
        Ok(())
    }
}

impl Trainer {
    /// Sets the initial activation ranges of quantization-aware training: the first
    /// [`QatConfig::calibration_per_class`] samples of each class of `data` run through
    /// the network (weights fake-quantized, activations not), a
    /// [`QatConfig::observer`] watches the input and every quantized activation, and its
    /// parameters become each quantizer's (the moving average starts from their range).
    /// [`Trainer::fit`] calls it when it has not been called. An error on a trainer
    /// without [`super::TrainConfig::qat`].
    pub fn calibrate(&mut self, ctx: &Context, data: &super::Dataset) -> Result<()> {
        ctx.block("Trainer::calibrate", self.calibrate_async(ctx, data))
    }

    /// [`Trainer::calibrate`] without blocking (the form a browser build uses).
    pub async fn calibrate_async(&mut self, ctx: &Context, data: &super::Dataset) -> Result<()> {
        self.check_labels(data)?;
        let Some(q) = &self.qat else {
            return Err(Error::invalid(
                OP,
                "calibrate: the trainer has no quantization-aware training (TrainConfig::qat)",
            ));
        };
        let idx = data.first_of_each_class(q.cfg.calibration_per_class);
        let batch = self.cfg.batch;
        let scheme = QuantScheme::asymmetric(QType::U8).with_bits(q.cfg.act_bits)?;
        let new_obs = || Observer::new(q.cfg.observer, Granularity::PerTensor);
        let mut obs_in = new_obs()?;
        let mut obs: Vec<Option<Observer>> = q
            .acts
            .iter()
            .map(|a| a.as_ref().map(|_| new_obs()).transpose())
            .collect::<Result<_>>()?;
        q.calibrating.set(true);
        let run = async {
            for start in (0..idx.len()).step_by(batch) {
                // The last batch filled up from the start (ranges see no padding).
                let pick: Vec<usize> = (start..start + batch).map(|k| idx[k % idx.len()]).collect();
                let (x, _) = data.gather(&pick);
                self.x.write(ctx, &x)?;
                let mut enc = ctx.encoder("qat calibration");
                self.record_forward(ctx, &mut enc, false)?;
                ctx.submit(enc).await?;
                obs_in.observe_async(ctx, &self.x).await?;
                for (i, o) in obs.iter_mut().enumerate() {
                    if let Some(o) = o {
                        o.observe_async(ctx, &self.bufs[i].out).await?;
                    }
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        q.calibrating.set(false);
        run?;
        let set = |qz: &Quantizer, o: &Observer| -> Result<f32> {
            let p = o.compute_params(&scheme, qz.out.shape())?;
            let (s, z) = (p.scales()[0], p.zero_points()[0]);
            qz.qp.write(
                ctx,
                &[s.to_bits(), (1.0f32 / s).to_bits(), (z as f32).to_bits()],
            )?;
            let (lo, hi) = ((qz.fq.qmin - z) as f32 * s, (qz.fq.qmax - z) as f32 * s);
            qz.state.write(ctx, &[lo, hi])?;
            Ok(s)
        };
        set(&q.input, &obs_in)?;
        for (a, o) in q.acts.iter().zip(&obs) {
            if let (Some(a), Some(o)) = (a, o) {
                let s = set(a, o)?;
                if let Some(p) = a.scale {
                    self.params[p].value.write(ctx, &[s])?;
                }
            }
        }
        q.calibrated.set(true);
        Ok(())
    }

    /// The trained fake-quant graph as a static [`QModel`] on the integer kernels, for
    /// inputs of `input_shape` (`[N, H, W, C]`): the weights as INT8 codes in the
    /// restricted range of [`QatConfig::weight_bits`] with the learned per-channel
    /// scales, every quantized activation as UINT8 codes in `0..=2^act_bits - 1` with its
    /// scale and zero point, the biases in f32 (added to the dequantized accumulator
    /// before the output is quantized, as the fake-quant forward pass adds them), the
    /// logits in f32. The integer model computes what the fake-quant forward pass
    /// computes, except where an f32 rounding differs (the float sums' order, a product
    /// by the inverse scale against a division): such a difference moves a value across
    /// a rounding boundary now and then, and a code there by one step.
    pub fn to_qmodel(&self, ctx: &Context, input_shape: &[usize]) -> Result<QModel> {
        ctx.block("Trainer::to_qmodel", self.to_qmodel_async(ctx, input_shape))
    }

    /// [`Trainer::to_qmodel`] without blocking (the form a browser build uses).
    pub async fn to_qmodel_async(&self, ctx: &Context, input_shape: &[usize]) -> Result<QModel> {
        let q = self.qat.as_ref().ok_or_else(|| {
            Error::invalid(
                OP,
                "to_qmodel: the trainer has no quantization-aware training (TrainConfig::qat)",
            )
        })?;
        q.ready()?;
        // The weight parameters of the weights as they stand (the last step updated
        // them after its forward pass observed them).
        let mut enc = ctx.encoder("qat conversion");
        for i in 0..self.graph.nodes.len() {
            q.record_weight(ctx, &mut enc, self, i)?;
        }
        ctx.submit(enc).await?;
        let shapes = crate::model::infer_shapes(&self.graph, input_shape)?;
        let input = act_params(ctx, &q.input, input_shape).await?;
        let mut acts: Vec<Option<QuantParams>> = vec![None; self.graph.nodes.len()];
        for i in 0..self.logits {
            acts[i] = match (&q.acts[i], self.graph.nodes[i].input) {
                (Some(a), _) => Some(act_params(ctx, a, &shapes[i]).await?),
                // Max pooling: its input's parameters.
                (None, src) => {
                    let from = match src {
                        Src::Input => Some(&input),
                        Src::Node(j) => acts[j].as_ref(),
                    };
                    let p = from.ok_or_else(|| {
                        Error::invalid(OP, format!("node {i} pools an unquantized output"))
                    })?;
                    Some(
                        QuantParams::new(
                            QType::U8,
                            Granularity::PerTensor,
                            &shapes[i],
                            p.scales().to_vec(),
                            p.zero_points().to_vec(),
                        )?
                        .with_code_range(p.qmin(), p.qmax())?,
                    )
                }
            };
        }
        let mut weights = std::collections::BTreeMap::new();
        let mut biases = std::collections::BTreeMap::new();
        for (i, wq) in q.weights.iter().enumerate() {
            let (Some(wq), Some(p)) = (wq, self.owned[i][0]) else {
                continue;
            };
            let w = &self.params[p];
            let (s, inv, _) = wq.read(ctx).await?;
            let values = w.value.read::<f32>(ctx).await?;
            let inner = wq.fq.inner;
            let (lo, hi) = (wq.fq.qmin, wq.fq.qmax);
            let codes: Vec<i32> = values
                .iter()
                .enumerate()
                .map(|(e, &v)| ((v * inv[e / inner]).round_ties_even() as i32).clamp(lo, hi))
                .collect();
            let zeros = vec![0; s.len()];
            let wp = QuantParams::new(
                QType::I8,
                Granularity::PerChannel { axis: 0 },
                w.value.shape(),
                s.clone(),
                zeros,
            )?
            .with_code_range(lo, hi)?;
            weights.insert(w.name.clone(), (wp, codes));
            if let Some(b) = self.owned[i][1] {
                let bv = self.params[b].value.read::<f32>(ctx).await?;
                biases.insert(self.params[b].name.clone(), bv);
            }
        }
        QModel::from_parts(
            ctx,
            &self.graph,
            input_shape,
            (weights, Default::default()),
            biases,
            acts,
            input,
        )
    }
}
