//! Criterion benchmark of the requantized W8A8 output: the default rounding (the f32
//! dequantized value quantized with the output's scale) against ONNX's
//! (`QGemmDesc::onnx_requant`: the f64 arithmetic of `onnx.reference`, emulated in
//! 64-bit integers), on the same GEMM in one run, on the adapter the environment selects.
//! Both are checked bit for bit against their CPU references before they are timed.
//!
//! `cargo bench --bench requant`; `WGPU_QUANT_BENCH_SHAPES=MxNxK,...` picks the shapes.

#[path = "common/shapes.rs"]
mod shapes;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngExt, SeedableRng};
use wgpu_quant::desc::gemm::Activation;
use wgpu_quant::desc::qgemm::QGemmDesc;
use wgpu_quant::ops::qgemm::{qgemm, QGemmOutput};
use wgpu_quant::quant::{quantize_value, Granularity, QType, QuantParams};
use wgpu_quant::reference::{qgemm_dequant, qgemm_i32, requant_onnx};
use wgpu_quant::{Context, QTensor, RequestOptions, Tensor};

const SHAPES: [(usize, usize, usize); 3] = [(1, 4096, 4096), (128, 3072, 768), (3136, 64, 576)];

fn shapes() -> Vec<(usize, usize, usize)> {
    shapes::shapes(&SHAPES)
}

fn bench_requant(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (m, n, k) in shapes() {
        let a: Vec<i32> = (0..m * k).map(|_| rng.random_range(0..=255)).collect();
        let w: Vec<i32> = (0..n * k).map(|_| rng.random_range(-127..=127)).collect();
        let sw: Vec<f32> = (0..n).map(|_| rng.random_range(0.002f32..0.01)).collect();
        let (sa, za, sy, zy) = (0.02f32, 118, 0.5f32, 3);
        let ap = QuantParams::new(
            QType::U8,
            Granularity::PerTensor,
            &[m, k],
            vec![sa],
            vec![za],
        )
        .unwrap();
        let wp = QuantParams::new(
            QType::I8,
            Granularity::PerChannel { axis: 0 },
            &[n, k],
            sw.clone(),
            vec![0; n],
        )
        .unwrap();
        let yp = QuantParams::new(
            QType::U8,
            Granularity::PerTensor,
            &[m, n],
            vec![sy],
            vec![zy],
        )
        .unwrap();
        let aq = QTensor::from_codes(&ctx, &ap, &a).unwrap();
        let wq = QTensor::from_codes(&ctx, &wp, &w).unwrap();
        let ibias: Vec<i32> = (0..n).map(|_| rng.random_range(-5000..5000)).collect();
        let fbias: Vec<f32> = ibias
            .iter()
            .zip(&sw)
            .map(|(&b, &s)| b as f32 * sa * s)
            .collect();
        let ib = Tensor::from_slice(&ctx, &[n], &ibias).unwrap();
        let fb = Tensor::from_slice(&ctx, &[n], &fbias).unwrap();
        let acc = qgemm_i32(&a, &vec![za; m], &w, &vec![0; n], (m, n, k));
        let mut group = cr.benchmark_group(format!("requantized w8a8 {m}x{n}x{k}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        for onnx in [false, true] {
            let y = QTensor::new(&ctx, &yp).unwrap();
            let desc = QGemmDesc::default().onnx_requant(onnx);
            let bias = if onnx { &ib } else { &fb };
            let record = |enc: &mut wgpu::CommandEncoder| {
                qgemm(
                    &ctx,
                    enc,
                    &desc,
                    &aq,
                    &wq,
                    Some(bias),
                    QGemmOutput::Quantized(&y),
                )
                .unwrap()
            };
            let mut enc = ctx.encoder("verify");
            record(&mut enc);
            ctx.submit_and_wait(enc).unwrap();
            let got = y.read_codes_blocking(&ctx).unwrap();
            for (e, r) in acc.iter().enumerate() {
                let (j, r) = (e % n, r.expect("exact"));
                let want = if onnx {
                    requant_onnx(r + ibias[j], sa, sw[j], sy, zy, 0, 255)
                } else {
                    let v = qgemm_dequant(r, sa, sw[j], Some(fbias[j]), Activation::None);
                    quantize_value(v, sy, zy, 0, 255)
                };
                assert_eq!(got[e], want, "{m}x{n}x{k} onnx={onnx}: element {e}");
            }
            group.bench_function(
                if onnx {
                    "onnx rounding"
                } else {
                    "default rounding"
                },
                |b| {
                    b.iter(|| {
                        let mut enc = ctx.encoder("bench");
                        record(&mut enc);
                        ctx.submit_and_wait(enc).unwrap();
                    })
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_requant);
criterion_main!(benches);
