//! Criterion benchmark of the quantization kernels on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER): the benchmark runner's `quant` suite
//! (`wgpu_quant::bench::quant_cases`: quantize and dequantize i8 per tensor, u8 per
//! channel and i4 per group of 32, and dynamic i8 per-row quantization) on a 4096 x 1024
//! f32 tensor. Each case is checked bit for bit against the reference first. Each
//! iteration records, submits and waits, so the time includes submission. Throughput
//! counts the bytes read plus the bytes written (codes, f32 values), so criterion's B/s is
//! the effective bandwidth.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_quant::bench::quant_cases;
use wgpu_quant::{Context, RequestOptions};

const ROWS: usize = 4096;
const COLS: usize = 1024;

fn bench_quant(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    let mut group = cr.benchmark_group("quant");
    group.sample_size(10);
    for (op, dtype, granularity, scheme) in quant_cases() {
        let name = format!("{} {dtype} {granularity}", op.name());
        let case = op
            .prepare(&ctx, &scheme, ROWS, COLS)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(case.verified, "{name}: {case:?}");
        group.throughput(Throughput::Bytes(case.bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut enc = ctx.encoder("bench");
                case.record(&mut enc).unwrap();
                ctx.submit_and_wait(enc).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_quant);
criterion_main!(benches);
