//! Criterion benchmark of the convolution layers of ResNet-50 and EfficientNet-Lite0
//! (batch 1, 224x224 input) in FP32, FP16 and INT8, on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER), every precision of a layer in one run:
//!
//! - `fp32`: f32 NHWC activations and weights (`ops::conv::conv2d`; a pointwise layer runs
//!   the plan's FP32 GEMM);
//! - `fp16`: f16 activations, weights and output, the plan's arithmetic;
//! - `int8`: i8 activations (per tensor) times i8 weights (per output channel), int32
//!   accumulation, requantized i8 output (`ops::conv::qconv2d`): a static INT8 network's
//!   steady state.
//!
//! Each case is verified first on 64 sampled outputs against an f64 reference (FP32 1e-5,
//! FP16 2e-3 relative; INT8 5e-2, the quantization error of 8-bit inputs, weights and
//! output). Each iteration records, submits and waits for one layer. Throughput is
//! reported as elements = 2 * MACs (read "elem/s" as FLOP/s or OP/s).
//!
//! `WGPU_QUANT_BENCH_LAYERS=r50.conv3x3_64,eff.dw3x3_32` restricts the layers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::bench::random_f32;
use wgpu_quant::ops::conv::{
    conv2d, qconv2d, ConvDesc, ConvDims, ConvShape, ConvWeight, Padding, QConvWeight,
};
use wgpu_quant::ops::qgemm::QGemmOutput;
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::quant::{Granularity, QType, QuantParams, QuantScheme};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

/// (name, input H = W, C, OC, kernel, stride, padding, groups)
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const LAYERS: [Layer; 10] = [
    ("r50.conv1_7x7s2", 224, 3, 64, 7, 2, 3, 1),
    ("r50.conv3x3_64", 56, 64, 64, 3, 1, 1, 1),
    ("r50.conv1x1_256to64", 56, 256, 64, 1, 1, 0, 1),
    ("r50.conv3x3_512", 7, 512, 512, 3, 1, 1, 1),
    ("eff.stem_3x3s2", 224, 3, 32, 3, 2, 1, 1),
    ("eff.dw3x3_32", 112, 32, 32, 3, 1, 1, 32),
    ("eff.pw_32to16", 112, 32, 16, 1, 1, 0, 1),
    ("eff.pw_24to144", 56, 24, 144, 1, 1, 0, 1),
    ("eff.dw5x5s2_144", 56, 144, 144, 5, 2, 2, 144),
    ("eff.head_320to1280", 7, 320, 1280, 1, 1, 0, 1),
];

fn layers() -> Vec<Layer> {
    match std::env::var("WGPU_QUANT_BENCH_LAYERS") {
        Ok(s) => {
            let names: Vec<&str> = s.split(',').map(str::trim).collect();
            LAYERS
                .iter()
                .filter(|l| names.contains(&l.0))
                .copied()
                .collect()
        }
        Err(_) => LAYERS.to_vec(),
    }
}

/// Output `flat` (NHWC) of the convolution in f64.
fn conv_at(x: &[f64], w: &[f64], s: &ConvShape, flat: usize) -> f64 {
    let [oc_n, cg, kh, kw] = s.dims.oihw();
    let c_n = s.dims.in_channels;
    let (row, oc) = (flat / oc_n, flat % oc_n);
    let (b, oy, ox) = (
        row / (s.out_h * s.out_w),
        row / s.out_w % s.out_h,
        row % s.out_w,
    );
    let g = oc / (oc_n / s.dims.groups);
    let mut acc = 0f64;
    for ky in 0..kh {
        let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pad[0] as isize;
        for kx in 0..kw {
            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.pad[1] as isize;
            if iy < 0 || ix < 0 || iy >= s.in_h as isize || ix >= s.in_w as isize {
                continue;
            }
            let pix = (b * s.in_h + iy as usize) * s.in_w + ix as usize;
            for c in 0..cg {
                acc += x[pix * c_n + g * cg + c] * w[((oc * cg + c) * kh + ky) * kw + kx];
            }
        }
    }
    acc
}

fn samples(total: usize) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    (0..64).map(|_| rng.random_range(0..total)).collect()
}

fn verify(name: &str, got: &[f32], idx: &[usize], want: &[f64], budget: f64) {
    let (mut e, mut r) = (0f64, 0f64);
    for (&i, &w) in idx.iter().zip(want) {
        e += (f64::from(got[i]) - w).powi(2);
        r += w * w;
    }
    let rel = (e / r.max(1e-30)).sqrt();
    assert!(
        rel <= budget,
        "{name}: sampled rel. error {rel:.3e} > {budget:.1e}"
    );
}

fn bench_conv(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    for (name, hw, c, oc, k, stride, pad, groups) in layers() {
        let dims = ConvDims::new(oc, c, [k, k], groups).unwrap();
        let desc = ConvDesc::default()
            .stride(stride)
            .padding(Padding::uniform(pad));
        let xs = [1, hw, hw, c];
        let shape = desc.shape(&dims, &xs).unwrap();
        let oshape = shape.output_shape();
        let mut group = cr.benchmark_group(format!("conv {name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(2 * shape.macs()));
        let xf = random_f32(xs.iter().product(), 1);
        let wf: Vec<f32> = random_f32(dims.oihw().iter().product(), 2)
            .iter()
            .map(|v| v * 0.2)
            .collect();
        let x64: Vec<f64> = xf.iter().map(|&v| f64::from(v)).collect();
        let w64: Vec<f64> = wf.iter().map(|&v| f64::from(v)).collect();
        let idx = samples(oshape.iter().product());
        let want: Vec<f64> = idx
            .iter()
            .map(|&i| conv_at(&x64, &w64, &shape, i))
            .collect();
        let run = |f: &dyn Fn(&mut wgpu::CommandEncoder)| {
            let mut enc = ctx.encoder("bench");
            f(&mut enc);
            ctx.submit_and_wait(enc).unwrap();
        };

        // FP32.
        let x32 = Tensor::from_slice(&ctx, &xs, &xf).unwrap();
        let w32 = ConvWeight::from_oihw(&ctx, dims, &wf, DType::F32).unwrap();
        let y32 = Tensor::zeros(&ctx, &oshape, DType::F32).unwrap();
        let fp32 = |enc: &mut wgpu::CommandEncoder| {
            conv2d(&ctx, enc, &desc, &x32, &w32, None, &y32).unwrap()
        };
        run(&fp32);
        verify("fp32", &y32.read_blocking(&ctx).unwrap(), &idx, &want, 1e-5);
        group.bench_function("fp32", |b| b.iter(|| run(&fp32)));

        // FP16 (the reference sees the f16-rounded operands).
        let xh: Vec<f16> = xf.iter().map(|&v| f16::from_f32(v)).collect();
        let xh64: Vec<f64> = xh.iter().map(|v| f64::from(v.to_f32())).collect();
        let wh64: Vec<f64> = wf
            .iter()
            .map(|&v| f64::from(f16::from_f32(v).to_f32()))
            .collect();
        let x16 = Tensor::from_slice(&ctx, &xs, &xh).unwrap();
        let w16 = ConvWeight::from_oihw(&ctx, dims, &wf, DType::F16).unwrap();
        let y16 = Tensor::zeros(&ctx, &oshape, DType::F16).unwrap();
        let fp16 = |enc: &mut wgpu::CommandEncoder| {
            conv2d(&ctx, enc, &desc, &x16, &w16, None, &y16).unwrap()
        };
        run(&fp16);
        let got: Vec<f32> = y16
            .read_blocking::<f16>(&ctx)
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect();
        let want16: Vec<f64> = idx
            .iter()
            .map(|&i| conv_at(&xh64, &wh64, &shape, i))
            .collect();
        verify("fp16", &got, &idx, &want16, 2e-3 + 4.9e-4);
        group.bench_function("fp16", |b| b.iter(|| run(&fp16)));

        // INT8: static per-tensor activations, per-channel weights, i8 output whose scale
        // covers the sampled outputs' range.
        let xp = QuantParams::from_data(&QuantScheme::symmetric(QType::I8), &xs, &xf).unwrap();
        let xq = QTensor::from_codes(&ctx, &xp, &xp.quantize(&xf).unwrap()).unwrap();
        let wq = QConvWeight::quantize(
            &ctx,
            dims,
            &wf,
            &QuantScheme::symmetric(QType::I8).per_channel(0),
        )
        .unwrap();
        let amax = want.iter().fold(0f64, |m, v| m.max(v.abs())) * 1.5;
        let so = (amax / 127.0) as f32;
        let op = QuantParams::new(
            QType::I8,
            Granularity::PerTensor,
            &oshape,
            vec![so],
            vec![0],
        )
        .unwrap();
        let yq = QTensor::new(&ctx, &op).unwrap();
        let int8 = |enc: &mut wgpu::CommandEncoder| {
            qconv2d(
                &ctx,
                enc,
                &desc,
                &xq,
                &wq,
                None,
                QGemmOutput::Quantized(&yq),
            )
            .unwrap()
        };
        run(&int8);
        let got: Vec<f32> = yq
            .read_codes_blocking(&ctx)
            .unwrap()
            .iter()
            .map(|&q| q as f32 * so)
            .collect();
        verify("int8", &got, &idx, &want, 5e-2);
        group.bench_function("int8", |b| b.iter(|| run(&int8)));
        group.finish();
    }
}

criterion_group!(benches, bench_conv);
criterion_main!(benches);
