//! Convolution against the Rust reference (`reference::conv2d_f64`, `qconv2d_i32`) over a
//! sweep of odd geometries: kernels 1/3/5/7/11, stride 1/2, padding none/1/SAME/
//! SAME_LOWER/asymmetric, dilation 1/2, H=W=1, 7, 13, 33, channel counts that are not
//! multiples of 4, groups (word-aligned or not), depthwise with multiplier 1 and 2, and
//! the pointwise fast path against the implicit GEMM. INT8 must match bit for bit
//! (i32 accumulators, f32/f16 dequantized and requantized i8/u8 outputs); floats must meet
//! the budgets of `wgpu_quant::ops::conv`. Outputs are poisoned first.

mod common;

use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::ops::conv::{
    conv2d, qconv2d, ConvDesc, ConvDims, ConvShape, ConvWeight, Padding, QConvWeight, TILES,
};
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::qgemm::{self, QGemmOutput};
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::ops::wgemm::HalfMath;
use wgpu_quant::quant::{quantize_value, Granularity, QType, QuantParams};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Tensor};

const F32_BUDGET: f64 = 1e-5;
const F16_ACC_F32_BUDGET: f64 = 2e-3;
const F16_BUDGET: f64 = 2e-2;
const F16_OUT: f64 = 4.9e-4;

/// One geometry: input `[b, h, w, c]`, `oc` outputs, a `k x k` kernel (or `kh x kw`).
#[derive(Debug, Clone, Copy)]
struct Geo {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    oc: usize,
    k: [usize; 2],
    stride: usize,
    pad: Padding,
    dil: usize,
    groups: usize,
}

const fn geo(
    (b, h, w, c): (usize, usize, usize, usize),
    oc: usize,
    k: usize,
    stride: usize,
    pad: Padding,
    dil: usize,
    groups: usize,
) -> Geo {
    Geo {
        b,
        h,
        w,
        c,
        oc,
        k: [k, k],
        stride,
        pad,
        dil,
        groups,
    }
}

const P1: Padding = Padding::Explicit([1; 4]);
const V: Padding = Padding::Valid;

fn geometries() -> Vec<Geo> {
    vec![
        geo((1, 1, 1, 3), 5, 1, 1, V, 1, 1),  // H=W=1, pointwise
        geo((1, 1, 1, 5), 3, 3, 1, P1, 1, 1), // H=W=1, 3x3 all padding
        geo((2, 7, 7, 5), 6, 3, 1, P1, 1, 1), // batch 2
        geo((1, 13, 13, 6), 7, 5, 2, Padding::Same, 1, 1), // 5x5/2 SAME
        geo((1, 7, 7, 3), 9, 7, 1, Padding::Same, 1, 1), // 7x7 SAME on 7x7
        geo((1, 33, 33, 3), 8, 11, 2, Padding::uniform(5), 1, 1), // 11x11/2
        geo((1, 13, 13, 7), 5, 3, 1, P1, 2, 1), // dilation 2
        geo((1, 13, 13, 6), 9, 3, 2, Padding::SameLower, 2, 3), // groups 3 (2 ch each)
        geo((2, 7, 7, 8), 8, 3, 1, P1, 1, 2), // groups 2 (aligned)
        geo(
            (1, 13, 13, 10),
            6,
            3,
            1,
            Padding::Explicit([0, 1, 2, 1]),
            1,
            2,
        ), // 5 ch/group
        geo((1, 13, 13, 7), 7, 3, 1, P1, 1, 7), // depthwise
        geo((1, 33, 33, 5), 5, 5, 2, Padding::Same, 1, 5), // depthwise 5x5/2
        geo((1, 7, 7, 3), 6, 3, 2, P1, 1, 3), // depthwise, multiplier 2
        geo((1, 13, 13, 6), 6, 3, 1, P1, 2, 6), // depthwise dilated
        geo((1, 13, 13, 9), 17, 1, 1, V, 1, 1), // pointwise
        geo((1, 13, 13, 6), 10, 1, 2, V, 1, 1), // 1x1 stride 2
        geo((1, 33, 33, 4), 16, 3, 1, P1, 1, 1), // 33x33
        Geo {
            k: [1, 7],
            ..geo(
                (1, 7, 13, 5),
                6,
                1,
                1,
                Padding::Explicit([0, 3, 0, 3]),
                1,
                1,
            )
        }, // 1x7, asymmetric image
    ]
}

impl Geo {
    fn dims(&self) -> ConvDims {
        ConvDims::new(self.oc, self.c, self.k, self.groups).unwrap()
    }
    fn desc(&self) -> ConvDesc {
        ConvDesc::default()
            .stride(self.stride)
            .padding(self.pad)
            .dilation(self.dil)
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.b, self.h, self.w, self.c]
    }
    fn shape(&self) -> ConvShape {
        self.desc().shape(&self.dims(), &self.x_shape()).unwrap()
    }
}

fn rel_err(got: &[f32], want: &[f64]) -> (f64, usize) {
    let (mut e, mut r, mut worst, mut wi) = (0f64, 0f64, 0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !g.is_finite() {
            return (f64::INFINITY, i);
        }
        let d = (f64::from(g) - w).abs();
        if d > worst {
            worst = d;
            wi = i;
        }
        e += d * d;
        r += w * w;
    }
    (if r == 0.0 { e.sqrt() } else { (e / r).sqrt() }, wi)
}

fn upload(ctx: &Context, shape: &[usize], v: &[f32], as_f16: bool) -> (Tensor, Vec<f64>) {
    if as_f16 {
        let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        (
            Tensor::from_slice(ctx, shape, &h).unwrap(),
            h.iter().map(|x| f64::from(x.to_f32())).collect(),
        )
    } else {
        (
            Tensor::from_slice(ctx, shape, v).unwrap(),
            v.iter().map(|&x| f64::from(x)).collect(),
        )
    }
}

fn poisoned(ctx: &Context, shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    match dtype {
        DType::F16 => Tensor::from_slice(ctx, shape, &vec![f16::NAN; n]).unwrap(),
        DType::I32 => Tensor::from_slice(ctx, shape, &vec![i32::MIN + 7; n]).unwrap(),
        _ => Tensor::from_slice(ctx, shape, &vec![f32::NAN; n]).unwrap(),
    }
}

fn read_f32(ctx: &Context, t: &Tensor) -> Vec<f32> {
    if t.dtype() == DType::F16 {
        let h = t.read_blocking::<f16>(ctx).unwrap();
        h.iter().map(|v| v.to_f32()).collect()
    } else {
        t.read_blocking::<f32>(ctx).unwrap()
    }
}

/// Runs one float case; returns its relative error or a failure message.
#[allow(clippy::too_many_arguments)]
fn float_case(
    ctx: &Context,
    g: &Geo,
    f16s: [bool; 3],
    math: HalfMath,
    cfg: Option<wgpu_quant::ops::RowTile>,
    activation: Activation,
    with_bias: bool,
    no_pointwise: bool,
    seed: u64,
) -> Result<f64, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dims = g.dims();
    let shape = g.shape();
    let xs: Vec<f32> = (0..g.x_shape().iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let ws: Vec<f32> = (0..dims.oihw().iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let bias_host: Vec<f32> = (0..g.oc).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let (x, x64) = upload(ctx, &g.x_shape(), &xs, f16s[0]);
    let wdt = if f16s[1] { DType::F16 } else { DType::F32 };
    let w = ConvWeight::from_oihw(ctx, dims, &ws, wdt).unwrap();
    let w64: Vec<f64> = ws
        .iter()
        .map(|&v| {
            if f16s[1] {
                f64::from(f16::from_f32(v).to_f32())
            } else {
                f64::from(v)
            }
        })
        .collect();
    let bias = with_bias.then(|| Tensor::from_slice(ctx, &[g.oc], &bias_host).unwrap());
    let odt = if f16s[2] { DType::F16 } else { DType::F32 };
    let out = poisoned(ctx, &shape.output_shape(), odt);
    let mut desc = g.desc().activation(activation).math(math);
    desc.config = cfg;
    desc.no_pointwise = no_pointwise;
    let mut enc = ctx.encoder("conv test");
    conv2d(ctx, &mut enc, &desc, &x, &w, bias.as_ref(), &out).map_err(|e| e.to_string())?;
    ctx.submit_and_wait(enc).unwrap();
    let got = read_f32(ctx, &out);
    let want = reference::conv2d_f64(
        &x64,
        &w64,
        with_bias.then_some(bias_host.as_slice()),
        activation,
        &shape,
    );
    let budget = match math {
        HalfMath::F16 => F16_BUDGET,
        HalfMath::F16AccF32 => F16_ACC_F32_BUDGET,
        _ => F32_BUDGET,
    } + if f16s[2] { F16_OUT } else { 0.0 };
    let (err, wi) = rel_err(&got, &want);
    if err > budget {
        return Err(format!(
            "relative error {err:.3e} > budget {budget:.1e}; worst at {wi}: got {} want {}",
            got[wi], want[wi]
        ));
    }
    Ok(err)
}

#[test]
fn float_conv_sweep() {
    let ctx = common::ctx();
    let caps = ctx.capabilities();
    let mut failures = Vec::new();
    let mut ran = 0;
    let acts = [Activation::None, Activation::Relu, Activation::Relu6];
    for (gi, g) in geometries().iter().enumerate() {
        let combos: [([bool; 3], HalfMath); 5] = [
            ([false; 3], HalfMath::F32),
            ([true; 3], HalfMath::F32),
            ([false, true, false], HalfMath::F32),
            ([true, true, false], HalfMath::F16AccF32),
            ([true, true, true], HalfMath::F16),
        ];
        for (ci, &(f16s, math)) in combos.iter().enumerate() {
            let i = gi * 5 + ci;
            let cfg = (i % 3 != 0).then_some(TILES[i % TILES.len()]);
            let wants_f16 = math != HalfMath::F32;
            let r = float_case(
                ctx,
                g,
                f16s,
                math,
                cfg,
                acts[i % 3],
                i % 2 == 0,
                i % 4 == 1,
                i as u64,
            );
            match r {
                Err(e) if wants_f16 && !caps.shader_f16 => {
                    assert!(e.contains("SHADER_F16"), "case {i}: {e}");
                }
                Err(e) => failures.push(format!("case {i} {g:?} {f16s:?} {math:?} {cfg:?}: {e}")),
                Ok(_) => ran += 1,
            }
        }
    }
    eprintln!("float conv: {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn float_conv_every_tile_and_path() {
    let ctx = common::ctx();
    // A grouped, dilated, strided layer and a pointwise one, on every tile, with the
    // pointwise fast path on and off.
    let gs = [
        geo((1, 13, 13, 6), 9, 3, 2, Padding::SameLower, 2, 3),
        geo((1, 13, 13, 9), 17, 1, 1, V, 1, 1),
    ];
    for g in gs {
        for (t, cfg) in TILES.iter().enumerate() {
            for no_pw in [false, true] {
                let r = float_case(
                    ctx,
                    &g,
                    [false; 3],
                    HalfMath::F32,
                    Some(*cfg),
                    Activation::Relu,
                    true,
                    no_pw,
                    t as u64,
                );
                assert!(r.is_ok(), "{g:?} {cfg:?} no_pointwise={no_pw}: {r:?}");
            }
        }
        let r = float_case(
            ctx,
            &g,
            [false; 3],
            HalfMath::F32,
            None,
            Activation::None,
            false,
            false,
            9,
        );
        assert!(r.is_ok(), "{g:?} plan's choice: {r:?}");
    }
}

/// An INT8 operand spec: type, zero point, per-channel (weights only).
#[derive(Debug, Clone, Copy)]
struct QSpec {
    qtype: QType,
    zero_point: bool,
    per_channel: bool,
}

const fn qs(qtype: QType, zero_point: bool, per_channel: bool) -> QSpec {
    QSpec {
        qtype,
        zero_point,
        per_channel,
    }
}

fn random_codes(n: usize, (lo, hi): (i32, i32), rng: &mut rand::rngs::StdRng) -> Vec<i32> {
    (0..n)
        .map(|i| match i % 13 {
            0 => lo,
            1 => hi,
            _ => rng.random_range(lo..=hi),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    I32,
    F32,
    F16,
    Q(QType),
}

#[allow(clippy::too_many_arguments)]
fn q8_case(
    ctx: &Context,
    g: &Geo,
    a: QSpec,
    w: QSpec,
    out: Out,
    activation: Activation,
    with_bias: bool,
    cfg: Option<wgpu_quant::ops::RowTile>,
    packed: bool,
    no_pointwise: bool,
    seed: u64,
) -> Result<(), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dims = g.dims();
    let shape = g.shape();
    let oc = g.oc;
    // Activations: one scale and zero point.
    let arange = (a.qtype.qmin(), a.qtype.qmax());
    let sa = rng.random_range(1e-3f32..0.05);
    let za = if a.zero_point {
        rng.random_range(arange.0..=arange.1)
    } else {
        0
    };
    let xshape = g.x_shape();
    let acodes = random_codes(xshape.iter().product(), arange, &mut rng);
    let ap =
        QuantParams::new(a.qtype, Granularity::PerTensor, &xshape, vec![sa], vec![za]).unwrap();
    let xq = QTensor::from_codes(ctx, &ap, &acodes).unwrap();
    // Weights: per tensor or per output channel.
    let wrange = (w.qtype.qmin(), w.qtype.qmax());
    let slots = if w.per_channel { oc } else { 1 };
    let sw: Vec<f32> = (0..slots)
        .map(|_| rng.random_range(1e-3f32..0.05))
        .collect();
    let zw: Vec<i32> = (0..slots)
        .map(|_| {
            if w.zero_point {
                rng.random_range(wrange.0..=wrange.1)
            } else {
                0
            }
        })
        .collect();
    let wcodes = random_codes(dims.oihw().iter().product(), wrange, &mut rng);
    let gran = if w.per_channel {
        Granularity::PerChannel { axis: 0 }
    } else {
        Granularity::PerTensor
    };
    let wp = QuantParams::new(w.qtype, gran, &dims.oihw(), sw.clone(), zw.clone()).unwrap();
    let wq = QConvWeight::from_codes(ctx, dims, &wcodes, &wp).unwrap();
    let bias_host: Vec<f32> = (0..oc).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let bias = with_bias.then(|| Tensor::from_slice(ctx, &[oc], &bias_host).unwrap());

    let oshape = shape.output_shape();
    let zw_oc: Vec<i32> = (0..oc)
        .map(|o| zw[if w.per_channel { o } else { 0 }])
        .collect();
    let sw_oc: Vec<f32> = (0..oc)
        .map(|o| sw[if w.per_channel { o } else { 0 }])
        .collect();
    let r = reference::qconv2d_i32(&acodes, za, &wcodes, &zw_oc, &shape);
    let deq = |i: usize| -> f32 {
        let o = i % oc;
        reference::qgemm_dequant(
            r[i].expect("the sweep stays inside int32"),
            sa,
            sw_oc[o],
            with_bias.then(|| bias_host[o]),
            activation,
        )
    };
    // The i32 output is the raw accumulator: no bias, no activation.
    let activation = if out == Out::I32 {
        Activation::None
    } else {
        activation
    };
    let mut desc = g.desc().activation(activation).packed_dot(packed);
    desc.config = cfg;
    desc.no_pointwise = no_pointwise;
    let mut enc = ctx.encoder("qconv test");
    let mismatch = |i: usize, got: String, want: String| -> Result<(), String> {
        Err(format!(
            "output[{i}] (channel {}): got {got}, want {want}",
            i % oc
        ))
    };
    match out {
        Out::I32 | Out::F32 | Out::F16 => {
            let dt = match out {
                Out::I32 => DType::I32,
                Out::F32 => DType::F32,
                _ => DType::F16,
            };
            let t = poisoned(ctx, &oshape, dt);
            let o = match out {
                Out::I32 => QGemmOutput::I32(&t),
                Out::F32 => QGemmOutput::F32(&t),
                _ => QGemmOutput::F16(&t),
            };
            let b = if out == Out::I32 { None } else { bias.as_ref() };
            qconv2d(ctx, &mut enc, &desc, &xq, &wq, b, o).map_err(|e| e.to_string())?;
            ctx.submit_and_wait(enc).unwrap();
            match out {
                Out::I32 => {
                    let got = t.read_blocking::<i32>(ctx).unwrap();
                    for (i, &v) in got.iter().enumerate() {
                        if Some(v) != r[i] {
                            return mismatch(i, v.to_string(), format!("{:?}", r[i]));
                        }
                    }
                }
                Out::F32 => {
                    let got = t.read_blocking::<f32>(ctx).unwrap();
                    for (i, &v) in got.iter().enumerate() {
                        if v.to_bits() != deq(i).to_bits() {
                            return mismatch(i, v.to_string(), deq(i).to_string());
                        }
                    }
                }
                _ => {
                    let got = t.read_blocking::<f16>(ctx).unwrap();
                    for (i, &v) in got.iter().enumerate() {
                        let want = f16::from_f32(deq(i));
                        if v.to_bits() != want.to_bits() {
                            return mismatch(i, v.to_string(), want.to_string());
                        }
                    }
                }
            }
        }
        Out::Q(qt) => {
            let so = rng.random_range(0.01f32..0.1);
            let zo = if qt == QType::U8 { 100 } else { -3 };
            let op =
                QuantParams::new(qt, Granularity::PerTensor, &oshape, vec![so], vec![zo]).unwrap();
            let oq = QTensor::new(ctx, &op).unwrap();
            // Poison every word, padding bytes included.
            oq.data()
                .write(ctx, &vec![0xa5a5_a5a5u32; oq.data().numel()])
                .unwrap();
            qconv2d(
                ctx,
                &mut enc,
                &desc,
                &xq,
                &wq,
                bias.as_ref(),
                QGemmOutput::Quantized(&oq),
            )
            .map_err(|e| e.to_string())?;
            ctx.submit_and_wait(enc).unwrap();
            let got = oq.read_codes_blocking(ctx).unwrap();
            for (i, &v) in got.iter().enumerate() {
                let want = quantize_value(deq(i), so, zo, qt.qmin(), qt.qmax());
                if v != want {
                    return mismatch(i, v.to_string(), want.to_string());
                }
            }
            // The raw-0 padding of each row's last word.
            let words = oq.data().read_blocking::<u32>(ctx).unwrap();
            let wpr = oc.div_ceil(4);
            if !oc.is_multiple_of(4) {
                for (row, chunk) in words.chunks(wpr).enumerate() {
                    let last = chunk[wpr - 1] >> (8 * (oc % 4));
                    if last != 0 {
                        return Err(format!("row {row}: padding bytes {last:#x}, want 0"));
                    }
                }
            }
        }
    }
    Ok(())
}

const A_SPECS: [QSpec; 4] = [
    qs(QType::I8, false, false),
    qs(QType::U8, true, false),
    qs(QType::I8, true, false),
    qs(QType::U8, false, false),
];
const W_SPECS: [QSpec; 4] = [
    qs(QType::I8, false, true),
    qs(QType::I8, true, false),
    qs(QType::U8, true, true),
    qs(QType::I8, false, false),
];
const OUTS: [Out; 5] = [
    Out::F32,
    Out::I32,
    Out::Q(QType::I8),
    Out::F16,
    Out::Q(QType::U8),
];

#[test]
fn int8_conv_bit_exact_sweep() {
    let ctx = common::ctx();
    let packed_ok = ctx.capabilities().packed_int8_dot;
    let acts = [Activation::None, Activation::Relu, Activation::Relu6];
    let mut failures = Vec::new();
    let mut ran = 0;
    for (gi, g) in geometries().iter().enumerate() {
        for v in 0..4 {
            let i = gi * 4 + v;
            let a = A_SPECS[(gi + v) % 4];
            let w = W_SPECS[(gi + 3 * v) % 4];
            let out = OUTS[i % OUTS.len()];
            let cfg = (i % 3 != 0).then_some(qgemm::TILES[i % qgemm::TILES.len()]);
            let packed = packed_ok && i % 2 == 0;
            let r = q8_case(
                ctx,
                g,
                a,
                w,
                out,
                acts[i % 3],
                i % 2 == 1,
                cfg,
                packed,
                v == 3,
                i as u64,
            );
            match r {
                Ok(()) => ran += 1,
                Err(e) => failures.push(format!(
                    "case {i} {g:?} A {a:?} W {w:?} {out:?} {cfg:?} packed={packed}: {e}"
                )),
            }
        }
    }
    eprintln!("int8 conv: {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn int8_conv_every_output_tile_and_path() {
    let ctx = common::ctx();
    let packed_ok = ctx.capabilities().packed_int8_dot;
    // Unaligned groups (5 channels each) with u8 zero points on both sides, a depthwise
    // layer with multiplier 2, and a pointwise layer through both paths.
    let gs = [
        geo(
            (1, 13, 13, 10),
            6,
            3,
            1,
            Padding::Explicit([0, 1, 2, 1]),
            1,
            2,
        ),
        geo((1, 7, 7, 3), 6, 3, 2, P1, 1, 3),
        geo((1, 13, 13, 9), 17, 1, 1, V, 1, 1),
    ];
    let a = qs(QType::U8, true, false);
    let w = qs(QType::U8, true, true);
    for g in gs {
        for (t, cfg) in qgemm::TILES.iter().enumerate() {
            for out in OUTS {
                for packed in [false, true] {
                    if packed && !packed_ok {
                        continue;
                    }
                    let r = q8_case(
                        ctx,
                        &g,
                        a,
                        w,
                        out,
                        Activation::Relu6,
                        true,
                        Some(*cfg),
                        packed,
                        t % 2 == 1,
                        t as u64,
                    );
                    assert!(r.is_ok(), "{g:?} {cfg:?} {out:?} packed={packed}: {r:?}");
                }
            }
        }
    }
}

// BatchNorm folding and the NCHW -> NHWC Linear weight reorder (helpers of ops::conv).

mod conv_weights {
    use super::common;
    use common::float::{check, poisoned, rand_vec, read};
    use rand::{RngExt, SeedableRng};
    use wgpu_quant::ops::conv::{
        conv2d, fold_batch_norm, linear_weight_nchw_to_nhwc, ConvDesc, ConvDims, ConvWeight,
        Padding,
    };
    use wgpu_quant::ops::gemm::Activation;
    use wgpu_quant::reference;
    use wgpu_quant::{DType, Tensor};

    #[test]
    fn batch_norm_folding_matches_conv_then_bn() {
        let ctx = common::ctx();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let dims = ConvDims::new(6, 5, [3, 3], 1).unwrap();
        let xs = [1, 9, 9, 5];
        let xv = rand_vec(xs.iter().product(), &mut rng);
        let wv = rand_vec(dims.oihw().iter().product(), &mut rng);
        let bias = rand_vec(6, &mut rng);
        let gamma = rand_vec(6, &mut rng);
        let beta = rand_vec(6, &mut rng);
        let mean = rand_vec(6, &mut rng);
        let var: Vec<f32> = (0..6).map(|_| rng.random_range(0.1f32..2.0)).collect();
        let eps = 1e-3f32;
        let mut folded_w = wv.clone();
        let folded_b =
            fold_batch_norm(&mut folded_w, Some(&bias), &gamma, &beta, &mean, &var, eps).unwrap();
        let desc = ConvDesc::default().padding(Padding::uniform(1));
        let shape = desc.shape(&dims, &xs).unwrap();
        let x = Tensor::from_slice(ctx, &xs, &xv).unwrap();
        let w = ConvWeight::from_oihw(ctx, dims, &folded_w, DType::F32).unwrap();
        let b = Tensor::from_slice(ctx, &[6], &folded_b).unwrap();
        let out = poisoned(ctx, &shape.output_shape(), false);
        let mut enc = ctx.encoder("bn");
        conv2d(ctx, &mut enc, &desc, &x, &w, Some(&b), &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        // conv then BN, in f64.
        let x64: Vec<f64> = xv.iter().map(|&v| f64::from(v)).collect();
        let w64: Vec<f64> = wv.iter().map(|&v| f64::from(v)).collect();
        let conv = reference::conv2d_f64(&x64, &w64, Some(&bias), Activation::None, &shape);
        let want: Vec<f64> = conv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let o = i % 6;
                f64::from(gamma[o]) * (v - f64::from(mean[o]))
                    / (f64::from(var[o]) + f64::from(eps)).sqrt()
                    + f64::from(beta[o])
            })
            .collect();
        check("conv + folded BN", &read(ctx, &out), &want, 1e-5);
        // Errors name the problem.
        let e = fold_batch_norm(&mut folded_w, None, &gamma[..5], &beta, &mean, &var, eps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gamma has 5"), "{e}");
        let neg = [-1.0f32; 6];
        let e = fold_batch_norm(&mut folded_w, None, &gamma, &beta, &mean, &neg, eps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("var[0]"), "{e}");
    }

    #[test]
    fn linear_weight_reorder_matches_nchw_flatten() {
        let (c, h, w, out) = (3, 2, 5, 4);
        let k = c * h * w;
        let weight: Vec<f32> = (0..out * k).map(|i| i as f32 * 0.5 - 7.0).collect();
        let nchw: Vec<f32> = (0..k).map(|i| (i as f32).sin()).collect();
        let nhwc = wgpu_quant::ops::conv::nchw_to_nhwc(&nchw, [1, c, h, w]);
        let reordered = linear_weight_nchw_to_nhwc(&weight, out, [c, h, w]).unwrap();
        for o in 0..out {
            let a: f64 = (0..k)
                .map(|i| f64::from(weight[o * k + i]) * f64::from(nchw[i]))
                .sum();
            let b: f64 = (0..k)
                .map(|i| f64::from(reordered[o * k + i]) * f64::from(nhwc[i]))
                .sum();
            assert!((a - b).abs() < 1e-9, "output {o}: {a} vs {b}");
        }
        assert!(linear_weight_nchw_to_nhwc(&weight, out + 1, [c, h, w]).is_err());
    }
}
