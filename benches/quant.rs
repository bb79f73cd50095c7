//! Criterion benchmark of the quantization kernels on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER): quantize, dequantize and dynamic
//! quantization of a 4096 x 1024 f32 tensor. Each iteration records, submits and waits,
//! so the time includes submission. Throughput counts the bytes read plus the bytes
//! written (codes, f32 values), so criterion's B/s is the effective bandwidth. Results
//! are checked against the reference once before timing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_quant::bench::random_f32;
use wgpu_quant::ops::quant::{dequantize, dynamic_quantize, quantize, DynamicQuant, QTensor};
use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

const ROWS: usize = 4096;
const COLS: usize = 1024;

fn bench_quant(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    let shape = [ROWS, COLS];
    let n = ROWS * COLS;
    let host = random_f32(n, 3);
    let x = Tensor::from_slice(&ctx, &shape, &host).unwrap();
    let out = Tensor::zeros(&ctx, &shape, DType::F32).unwrap();
    let mut group = cr.benchmark_group("quant");
    group.sample_size(10);
    for (name, scheme) in [
        ("i8 per-tensor", QuantScheme::symmetric(QType::I8)),
        (
            "u8 per-channel",
            QuantScheme::asymmetric(QType::U8).per_channel(0),
        ),
        (
            "i4 per-group 32",
            QuantScheme::symmetric(QType::I4).per_group(1, 32),
        ),
    ] {
        let params = QuantParams::from_data(&scheme, &shape, &host).unwrap();
        let q = QTensor::new(&ctx, &params).unwrap();
        let mut enc = ctx.encoder("check");
        quantize(&ctx, &mut enc, &x, &q).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        assert_eq!(
            q.read_codes_blocking(&ctx).unwrap(),
            params.quantize(&host).unwrap(),
            "{name}"
        );
        let code_bytes = q.data().size_bytes();
        group.throughput(Throughput::Bytes(4 * n as u64 + code_bytes));
        group.bench_function(format!("quantize {name}"), |b| {
            b.iter(|| {
                let mut enc = ctx.encoder("bench");
                quantize(&ctx, &mut enc, &x, &q).unwrap();
                ctx.submit_and_wait(enc).unwrap();
            })
        });
        group.bench_function(format!("dequantize {name}"), |b| {
            b.iter(|| {
                let mut enc = ctx.encoder("bench");
                dequantize(&ctx, &mut enc, &q, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
            })
        });
    }
    let spec = DynamicQuant::per_row_i8();
    let q = QTensor::for_dynamic(&ctx, &spec, &shape).unwrap();
    group.throughput(Throughput::Bytes(8 * n as u64 + q.data().size_bytes()));
    group.bench_function("dynamic i8 per-row (2 reads)", |b| {
        b.iter(|| {
            let mut enc = ctx.encoder("bench");
            dynamic_quantize(&ctx, &mut enc, &x, &spec, &q).unwrap();
            ctx.submit_and_wait(enc).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_quant);
criterion_main!(benches);
