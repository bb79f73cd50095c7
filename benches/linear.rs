//! Criterion benchmark of one linear layer `[M, K] x [N, K]^T` in every precision, on the
//! adapter the environment selects (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER), in one run:
//!
//! - `fp32`: the FP32 GEMM (`ops::gemm`, B stored `[K, N]`, its fastest layout);
//! - `fp16`: f16 activations and weights (`ops::wgemm`, the plan's arithmetic);
//! - `w8a8`: i8 activations (per row) times i8 weights (per channel), f32 out
//!   (`ops::qgemm`); `w8a8+q` adds the dynamic quantization of f32 activations;
//! - `w8a16`: f16 activations, i8 per-channel weights (`ops::wgemm`);
//! - `w4a16`: f16 activations, i4 weights with one scale per group of 128.
//!
//! Each case is verified first on 64 sampled outputs against an f64 reference. Each
//! iteration records, submits and waits for one layer, so times include submission.
//! Throughput is reported as elements = 2*M*N*K (read "elem/s" as FLOP/s or OP/s).
//!
//! `WGPU_QUANT_BENCH_SHAPES=1x4096x4096,128x3072x768` restricts the shapes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::bench::random_f32;
use wgpu_quant::ops::gemm::{gemm, GemmDesc};
use wgpu_quant::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use wgpu_quant::ops::quant::{dynamic_quantize, DynamicQuant, QTensor};
use wgpu_quant::ops::wgemm::{wgemm, WGemmDesc, Weights};
use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

const SHAPES: [(usize, usize, usize); 5] = [
    (1, 4096, 4096),
    (1, 11008, 4096),
    (128, 3072, 768),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
];

fn shapes() -> Vec<(usize, usize, usize)> {
    match std::env::var("WGPU_QUANT_BENCH_SHAPES") {
        Ok(s) => s
            .split(',')
            .map(|t| {
                let v: Vec<usize> = t
                    .split('x')
                    .map(|d| d.trim().parse().expect("MxNxK"))
                    .collect();
                (v[0], v[1], v[2])
            })
            .collect(),
        Err(_) => SHAPES.to_vec(),
    }
}

/// Checks 64 sampled outputs against `want(i, j)` within `budget` (relative to the
/// sampled reference's norm).
fn verify(
    name: &str,
    got: &[f32],
    n: usize,
    m: usize,
    budget: f64,
    want: impl Fn(usize, usize) -> f64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let (mut e, mut r) = (0f64, 0f64);
    for _ in 0..64 {
        let (i, j) = (rng.random_range(0..m), rng.random_range(0..n));
        let w = want(i, j);
        e += (f64::from(got[i * n + j]) - w).powi(2);
        r += w * w;
    }
    let rel = (e / r.max(1e-30)).sqrt();
    assert!(
        rel <= budget,
        "{name}: sampled rel. error {rel:.3e} > {budget:.1e}"
    );
}

fn bench_linear(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    for (m, n, k) in shapes() {
        let mut group = cr.benchmark_group(format!("linear {m}x{n}x{k}"));
        group.sample_size(10);
        if m * n * k >= 1 << 30 {
            group.measurement_time(std::time::Duration::from_secs(40));
        }
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let xf = random_f32(m * k, 1);
        let wf = random_f32(n * k, 2);
        let dot = |x: &[f64], w: &[f64], i: usize, j: usize| -> f64 {
            (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum()
        };
        let x64: Vec<f64> = xf.iter().map(|&v| f64::from(v)).collect();
        let w64: Vec<f64> = wf.iter().map(|&v| f64::from(v)).collect();
        let xh: Vec<f16> = xf.iter().map(|&v| f16::from_f32(v)).collect();
        let xh64: Vec<f64> = xh.iter().map(|v| f64::from(v.to_f32())).collect();
        let x32 = Tensor::from_slice(&ctx, &[m, k], &xf).unwrap();
        let x16 = Tensor::from_slice(&ctx, &[m, k], &xh).unwrap();
        let y = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
        let run = |f: &dyn Fn(&mut wgpu::CommandEncoder)| {
            let mut enc = ctx.encoder("bench");
            f(&mut enc);
            ctx.submit_and_wait(enc).unwrap();
        };

        // FP32: B as [K, N]. Weights over the binding limit (11008x4096 f32 is 180 MB,
        // lavapipe binds at most 128 MiB) run as several GEMMs over column chunks in one
        // submission, each with its own [K, n_c] weight and [M, n_c] output.
        let limit = ctx.capabilities().limits.max_storage_buffer_binding_size as usize;
        let chunks = (k * n * 4).div_ceil(limit).max(1);
        let nc = n.div_ceil(chunks);
        let parts: Vec<(usize, usize, Tensor, Tensor)> = (0..n)
            .step_by(nc)
            .map(|c0| {
                let w = nc.min(n - c0);
                let wt: Vec<f32> = (0..k * w).map(|i| wf[(c0 + i % w) * k + i / w]).collect();
                (
                    c0,
                    w,
                    Tensor::from_slice(&ctx, &[k, w], &wt).unwrap(),
                    Tensor::zeros(&ctx, &[m, w], DType::F32).unwrap(),
                )
            })
            .collect();
        if parts.len() > 1 {
            eprintln!(
                "fp32 {m}x{n}x{k}: {} column chunks (binding limit {limit} bytes)",
                parts.len()
            );
        }
        let fp32 = |enc: &mut wgpu::CommandEncoder| {
            for (_, w, b, c) in &parts {
                gemm(&ctx, enc, &GemmDesc::new(m, *w, k), &x32, b, None, c).unwrap();
            }
        };
        run(&fp32);
        let mut full = vec![0f32; m * n];
        for (c0, w, _, c) in &parts {
            let part = c.read_blocking::<f32>(&ctx).unwrap();
            for i in 0..m {
                full[i * n + c0..i * n + c0 + w].copy_from_slice(&part[i * w..(i + 1) * w]);
            }
        }
        verify("fp32", &full, n, m, 1e-5, |i, j| dot(&x64, &w64, i, j));
        group.bench_function("fp32", |b| b.iter(|| run(&fp32)));

        // FP16.
        let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
        let wh64: Vec<f64> = wh.iter().map(|v| f64::from(v.to_f32())).collect();
        let w16 = Tensor::from_slice(&ctx, &[n, k], &wh).unwrap();
        let fp16 = |enc: &mut wgpu::CommandEncoder| {
            wgemm(
                &ctx,
                enc,
                &WGemmDesc::default(),
                &x16,
                Weights::F16(&w16),
                None,
                &y,
            )
            .unwrap()
        };
        run(&fp16);
        verify(
            "fp16",
            &y.read_blocking(&ctx).unwrap(),
            n,
            m,
            2e-3,
            |i, j| dot(&xh64, &wh64, i, j),
        );
        group.bench_function("fp16", |b| b.iter(|| run(&fp16)));

        // W8A8: per-row i8 activations (quantized once, outside the loop) x per-channel i8.
        let w8p = QuantParams::from_data(
            &QuantScheme::symmetric(QType::I8).per_channel(0),
            &[n, k],
            &wf,
        )
        .unwrap();
        let w8 = QTensor::from_codes(&ctx, &w8p, &w8p.quantize(&wf).unwrap()).unwrap();
        let w8d = w8p.dequantize(&w8p.quantize(&wf).unwrap()).unwrap();
        let w8d: Vec<f64> = w8d.iter().map(|&v| f64::from(v)).collect();
        let spec = DynamicQuant::per_row_i8();
        let xq = QTensor::for_dynamic(&ctx, &spec, &[m, k]).unwrap();
        run(&|enc| dynamic_quantize(&ctx, enc, &x32, &spec, &xq).unwrap());
        let w8a8 = |enc: &mut wgpu::CommandEncoder| {
            qgemm(
                &ctx,
                enc,
                &QGemmDesc::default(),
                &xq,
                &w8,
                None,
                QGemmOutput::F32(&y),
            )
            .unwrap()
        };
        run(&w8a8);
        // Against the float layer: the budget is the quantization error (~1%).
        verify(
            "w8a8",
            &y.read_blocking(&ctx).unwrap(),
            n,
            m,
            3e-2,
            |i, j| dot(&x64, &w64, i, j),
        );
        group.bench_function("w8a8", |b| b.iter(|| run(&w8a8)));
        let w8a8q = |enc: &mut wgpu::CommandEncoder| {
            dynamic_quantize(&ctx, enc, &x32, &spec, &xq).unwrap();
            w8a8(enc);
        };
        group.bench_function("w8a8+q", |b| b.iter(|| run(&w8a8q)));

        // W8A16.
        let w8a16 = |enc: &mut wgpu::CommandEncoder| {
            wgemm(
                &ctx,
                enc,
                &WGemmDesc::default(),
                &x16,
                Weights::Quantized(&w8),
                None,
                &y,
            )
            .unwrap()
        };
        run(&w8a16);
        verify(
            "w8a16",
            &y.read_blocking(&ctx).unwrap(),
            n,
            m,
            1e-5,
            |i, j| dot(&xh64, &w8d, i, j),
        );
        group.bench_function("w8a16", |b| b.iter(|| run(&w8a16)));

        // W4A16, groups of 128.
        let w4p = QuantParams::from_data(
            &QuantScheme::symmetric(QType::I4).per_group(1, 128),
            &[n, k],
            &wf,
        )
        .unwrap();
        let w4c = w4p.quantize(&wf).unwrap();
        let w4 = QTensor::from_codes(&ctx, &w4p, &w4c).unwrap();
        let w4d: Vec<f64> = w4p
            .dequantize(&w4c)
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let w4a16 = |enc: &mut wgpu::CommandEncoder| {
            wgemm(
                &ctx,
                enc,
                &WGemmDesc::default(),
                &x16,
                Weights::Quantized(&w4),
                None,
                &y,
            )
            .unwrap()
        };
        run(&w4a16);
        verify(
            "w4a16",
            &y.read_blocking(&ctx).unwrap(),
            n,
            m,
            1e-5,
            |i, j| dot(&xh64, &w4d, i, j),
        );
        group.bench_function("w4a16", |b| b.iter(|| run(&w4a16)));
        group.finish();
    }
}

criterion_group!(benches, bench_linear);
criterion_main!(benches);
