//! The `train` suite: the backward kernels of training (`crate::ops::train`) and both
//! routes of a convolution's gradients (direct sums, and im2col with GEMMs as the
//! trainer runs one-group convolutions), each checked against its f64 reference before
//! it is timed.

use super::cases::{rel, sample_indices, Bound, Prepared, Record};
use super::{random_f32, Shape};
use crate::context::Context;
use crate::desc::conv::{ConvDesc, ConvDims, Padding};
use crate::desc::gemm::GemmDesc;
use crate::desc::pool::{PoolDesc, PoolKind};
use crate::error::{Error, Result};
use crate::ops::gemm::gemm;
use crate::ops::train::{
    col2im, columns_shape, conv2d_backward_input, conv2d_backward_weight, fake_quant_params,
    fake_quantize, fake_quantize_backward, im2col, pool2d_backward, softmax_cross_entropy,
    FakeQuant,
};
use crate::tensor::{DType, Tensor};

/// A kernel of the `train` suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOp {
    /// A convolution's input gradient by direct sums.
    ConvInputDirect,
    /// Its weight gradient by direct sums.
    ConvWeightDirect,
    /// The input gradient as `dy W` and col2im (one group).
    ConvInputGemm,
    /// The weight gradient as im2col and `dy^T cols` (one group).
    ConvWeightGemm,
    /// Max pooling's input gradient.
    MaxPoolBackward,
    /// The softmax cross-entropy and its gradient.
    SoftmaxCrossEntropy,
    /// Fake quantization per channel (8 bits).
    FakeQuantize,
    /// Its straight-through backward.
    FakeQuantizeBackward,
}

impl TrainOp {
    /// The record's `op`.
    pub fn name(self) -> &'static str {
        match self {
            TrainOp::ConvInputDirect => "conv_dx",
            TrainOp::ConvWeightDirect => "conv_dw",
            TrainOp::ConvInputGemm => "conv_dx_gemm",
            TrainOp::ConvWeightGemm => "conv_dw_gemm",
            TrainOp::MaxPoolBackward => "maxpool_dx",
            TrainOp::SoftmaxCrossEntropy => "softmax_xent",
            TrainOp::FakeQuantize => "fake_quant",
            TrainOp::FakeQuantizeBackward => "fake_quant_ste",
        }
    }
}

/// One case: a kernel on a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCase {
    /// The case's name.
    pub name: &'static str,
    /// The kernel.
    pub op: TrainOp,
    /// Its shape (a convolution's, `[rows, cols]` for the others).
    pub shape: Shape,
}

fn conv(n: usize, hw: usize, c: usize, oc: usize, k: usize, pad: usize, groups: usize) -> Shape {
    Shape::Conv {
        n,
        h: hw,
        w: hw,
        c,
        oc,
        kh: k,
        kw: k,
        stride: 1,
        pad,
        groups,
    }
}

/// The suite's cases: LeNet's second convolution at batch 50 and a 3x3 layer of a
/// mobile network at batch 8 (every route), a depthwise 3x3 (direct), LeNet's first
/// max pooling, a 1000-class loss over 256 samples, fake quantization of a 1024x1024
/// weight (`quick`: the LeNet and depthwise convolutions, the pooling and the loss).
pub fn train_cases(quick: bool) -> Vec<TrainCase> {
    use TrainOp::*;
    let lenet = conv(50, 12, 10, 20, 5, 0, 1);
    let mobile = conv(8, 28, 32, 32, 3, 1, 1);
    let dw = conv(8, 28, 32, 32, 3, 1, 32);
    let mut v = Vec::new();
    let convs: &[(&'static str, Shape)] = if quick {
        &[("lenet.conv2", lenet)]
    } else {
        &[("lenet.conv2", lenet), ("mobile.conv3x3_32", mobile)]
    };
    for (name, shape) in convs {
        for op in [
            ConvInputDirect,
            ConvWeightDirect,
            ConvInputGemm,
            ConvWeightGemm,
        ] {
            v.push(TrainCase {
                name,
                op,
                shape: shape.clone(),
            });
        }
    }
    for op in [ConvInputDirect, ConvWeightDirect] {
        v.push(TrainCase {
            name: "mobile.dw3x3_32",
            op,
            shape: dw.clone(),
        });
    }
    v.push(TrainCase {
        name: "lenet.pool1",
        op: MaxPoolBackward,
        shape: Shape::Conv {
            n: 50,
            h: 24,
            w: 24,
            c: 10,
            oc: 10,
            kh: 2,
            kw: 2,
            stride: 2,
            pad: 0,
            groups: 1,
        },
    });
    v.push(TrainCase {
        name: "imagenet.loss",
        op: SoftmaxCrossEntropy,
        shape: Shape::Tensor {
            rows: 256,
            cols: 1000,
        },
    });
    if !quick {
        for op in [FakeQuantize, FakeQuantizeBackward] {
            v.push(TrainCase {
                name: "weight.1024x1024",
                op,
                shape: Shape::Tensor {
                    rows: 1024,
                    cols: 1024,
                },
            });
        }
    }
    v
}

/// The output and what it must equal.
type Check = (Tensor, Vec<f64>);

impl TrainCase {
    /// Uploads the case's data, runs it once and compares it with the f64 reference:
    /// sums within 1e-5 (relative L2 over up to `samples` outputs), fake quantization bit
    /// for bit. Waits for the GPU; in a browser use [`TrainCase::prepare_async`].
    pub fn prepare<'a>(&self, ctx: &'a Context, samples: usize) -> Result<Prepared<'a>> {
        ctx.block("TrainCase::prepare", self.prepare_async(ctx, samples))
    }

    /// [`TrainCase::prepare`] for a browser: the check's run is awaited.
    pub async fn prepare_async<'a>(
        &self,
        ctx: &'a Context,
        samples: usize,
    ) -> Result<Prepared<'a>> {
        let (rec, (out, want), ops, bytes, exact) = match &self.shape {
            Shape::Conv { .. } => self.conv_case(ctx)?,
            &Shape::Tensor { rows, cols } => self.tensor_case(ctx, rows, cols)?,
            Shape::Gemm { .. } | Shape::Probe { .. } => {
                return Err(Error::invalid(
                    "TrainCase::prepare",
                    format!("{}: not a training case's shape", self.name),
                ))
            }
        };
        let mut enc = ctx.encoder("bench check");
        rec(&mut enc)?;
        ctx.submit(enc).await?;
        let got = out.read::<f32>(ctx).await?;
        let idx = sample_indices(got.len(), samples.max(1));
        let err = rel(
            idx.iter().map(|&i| f64::from(got[i])),
            idx.iter().map(|&i| want[i]),
        );
        let budget = if exact { 0.0 } else { 1e-5 };
        Ok(Prepared {
            kernel: "-".into(),
            rel_error: err,
            budget,
            checked: idx.len(),
            verified: err <= budget,
            ops,
            bytes,
            bound: if exact { Bound::Bandwidth } else { Bound::Fp32 },
            record: rec,
        })
    }

    #[allow(clippy::type_complexity)]
    fn conv_case<'a>(&self, ctx: &'a Context) -> Result<(Record<'a>, Check, f64, f64, bool)> {
        let &Shape::Conv {
            n,
            h,
            w,
            c,
            oc,
            kh,
            kw,
            stride,
            pad,
            groups,
        } = &self.shape
        else {
            unreachable!("a convolution case")
        };
        let up = |v: &[f32], s: &[usize]| Tensor::from_slice(ctx, s, v);
        let xs = [n, h, w, c];
        if self.op == TrainOp::MaxPoolBackward {
            let st = stride;
            let d = PoolDesc::new(PoolKind::Max, kh, st);
            let os = d.output_shape(&xs)?;
            let x = random_f32(xs.iter().product(), 11);
            let dy = random_f32(os.iter().product(), 12);
            let want = crate::reference::max_pool_grad_f64(&x, &dy, &xs, &os, kh, st);
            let (xt, dyt) = (up(&x, &xs)?, up(&dy, &os)?);
            let dx = Tensor::zeros(ctx, &xs, DType::F32)?;
            let out = dx.clone();
            let rec: Record<'a> =
                Box::new(move |enc| pool2d_backward(ctx, enc, &d, &xt, &dyt, &dx));
            let bytes = 4.0 * (2 * x.len() + dy.len()) as f64;
            return Ok((rec, (out, want), (x.len() * kh * kw) as f64, bytes, false));
        }
        let dims = ConvDims::new(oc, c, [kh, kw], groups)?;
        let desc = ConvDesc::default()
            .stride(stride)
            .padding(Padding::uniform(pad));
        let cs = desc.shape(&dims, &xs)?;
        let os = [n, cs.out_h, cs.out_w, oc];
        let x = random_f32(xs.iter().product(), 13);
        let wv = random_f32(dims.oihw().iter().product(), 14);
        let dy = random_f32(os.iter().product(), 15);
        let (want_dx, want_dw) = crate::reference::train::conv2d_grads_f64(&x, &wv, &dy, &cs);
        let (xt, wt, dyt) = (up(&x, &xs)?, up(&wv, &dims.oihw())?, up(&dy, &os)?);
        let macs = (cs.rows() * oc * (c / groups) * kh * kw) as f64;
        let bytes = 4.0 * (x.len() + wv.len() + dy.len()) as f64;
        let g = (dims, desc);
        let (rec, out, want): (Record<'a>, Tensor, Vec<f64>) = match self.op {
            TrainOp::ConvInputDirect => {
                let dx = Tensor::zeros(ctx, &xs, DType::F32)?;
                let o = dx.clone();
                let r = move |e: &mut wgpu::CommandEncoder| {
                    conv2d_backward_input(ctx, e, (&g.0, &g.1), &dyt, &wt, &dx)
                };
                (Box::new(r), o, want_dx)
            }
            TrainOp::ConvWeightDirect => {
                let dw = Tensor::zeros(ctx, &dims.oihw(), DType::F32)?;
                let o = dw.clone();
                let r = move |e: &mut wgpu::CommandEncoder| {
                    conv2d_backward_weight(ctx, e, (&g.0, &g.1), &xt, &dyt, &dw)
                };
                (Box::new(r), o, want_dw)
            }
            TrainOp::ConvInputGemm => {
                let [m, ckk] = columns_shape(&dims, &desc, &xs)?;
                let dcols = Tensor::zeros(ctx, &[m, ckk], DType::F32)?;
                let dx = Tensor::zeros(ctx, &xs, DType::F32)?;
                let (w2, dy2) = (wt.reshape(&[oc, ckk])?, dyt.reshape(&[m, oc])?);
                let o = dx.clone();
                let r = move |e: &mut wgpu::CommandEncoder| {
                    gemm(ctx, e, &GemmDesc::new(m, ckk, oc), &dy2, &w2, None, &dcols)?;
                    col2im(ctx, e, (&g.0, &g.1), &dcols, &dx)
                };
                (Box::new(r), o, want_dx)
            }
            _ => {
                let [m, ckk] = columns_shape(&dims, &desc, &xs)?;
                let cols = Tensor::zeros(ctx, &[m, ckk], DType::F32)?;
                let dw = Tensor::zeros(ctx, &[oc, ckk], DType::F32)?;
                let dy2 = dyt.reshape(&[m, oc])?;
                let o = dw.clone();
                let gd = GemmDesc {
                    trans_a: true,
                    ..GemmDesc::new(oc, ckk, m)
                };
                let r = move |e: &mut wgpu::CommandEncoder| {
                    im2col(ctx, e, (&g.0, &g.1), &xt, &cols)?;
                    gemm(ctx, e, &gd, &dy2, &cols, None, &dw)
                };
                (Box::new(r), o, want_dw)
            }
        };
        Ok((rec, (out, want), 2.0 * macs, bytes, false))
    }

    #[allow(clippy::type_complexity)]
    fn tensor_case<'a>(
        &self,
        ctx: &'a Context,
        rows: usize,
        cols: usize,
    ) -> Result<(Record<'a>, Check, f64, f64, bool)> {
        let n = rows * cols;
        let x = random_f32(n, 16);
        let xt = Tensor::from_slice(ctx, &[rows, cols], &x)?;
        let out = Tensor::zeros(ctx, &[rows, cols], DType::F32)?;
        let o = out.clone();
        if self.op == TrainOp::SoftmaxCrossEntropy {
            let labels: Vec<u32> = (0..rows).map(|r| ((r * 7919) % cols) as u32).collect();
            let lt = Tensor::from_slice(ctx, &[rows], &labels)?;
            let loss = Tensor::zeros(ctx, &[rows], DType::F32)?;
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let (_, want) = crate::reference::train::softmax_cross_entropy(&x64, cols, &labels);
            let rec: Record<'a> =
                Box::new(move |e| softmax_cross_entropy(ctx, e, &xt, &lt, &out, &loss));
            return Ok((rec, (o, want), 3.0 * n as f64, 8.0 * n as f64, false));
        }
        // Per-row 8-bit symmetric fake quantization, scales from each row's range.
        let scales: Vec<f32> = x
            .chunks(cols)
            .map(|r| r.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6) / 127.0)
            .collect();
        let zps = vec![0; rows];
        let qp = fake_quant_params(ctx, &scales, &zps)?;
        let fq = FakeQuant {
            channels: rows,
            inner: cols,
            qmin: -127,
            qmax: 127,
        };
        let (want, inside) =
            crate::reference::train::fake_quant(&x, (&scales, &zps), cols, (-127, 127));
        if self.op == TrainOp::FakeQuantize {
            let want = want.into_iter().map(f64::from).collect();
            let rec: Record<'a> = Box::new(move |e| fake_quantize(ctx, e, &fq, &xt, &qp, &out));
            return Ok((rec, (o, want), n as f64, 8.0 * n as f64, true));
        }
        let dy = random_f32(n, 17);
        let want = dy
            .iter()
            .zip(&inside)
            .map(|(&g, &i)| if i { f64::from(g) } else { 0.0 })
            .collect();
        let dyt = Tensor::from_slice(ctx, &[rows, cols], &dy)?;
        let rec: Record<'a> =
            Box::new(move |e| fake_quantize_backward(ctx, e, &fq, (&xt, &qp), &dyt, &out));
        Ok((rec, (o, want), n as f64, 12.0 * n as f64, true))
    }
}
