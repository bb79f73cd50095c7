//! Criterion benchmark of one linear layer `[M, K] x [N, K]^T` in every precision
//! (`wgpu_quant::bench::Precision`: fp32, fp16, w8a8, w8a8+q, w8a16, w4a16), on the
//! adapter the environment selects (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER), in one run.
//!
//! The cases are the benchmark runner's (`wgpu_quant::bench::LinearData`), so criterion
//! and `wgpu-quant bench` time the same verified work: each is checked against its
//! reference before it is timed (bit for bit for W8A8, within the plan's budget for the
//! float paths). Each iteration records, submits and waits for one layer, so times
//! include submission. Throughput is reported as elements = 2*M*N*K (read "elem/s" as
//! FLOP/s or OP/s).
//!
//! `WGPU_QUANT_BENCH_SHAPES=1x4096x4096,128x3072x768` restricts the shapes.

#[path = "common/shapes.rs"]
mod shapes;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_quant::bench::{CaseOptions, LinearData, Precision};
use wgpu_quant::{Context, RequestOptions};

const SHAPES: [(usize, usize, usize); 5] = [
    (1, 4096, 4096),
    (1, 11008, 4096),
    (128, 3072, 768),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
];

fn shapes() -> Vec<(usize, usize, usize)> {
    shapes::shapes(&SHAPES)
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
        let data = LinearData::new(m, n, k);
        for p in Precision::ALL {
            let case = data
                .prepare(&ctx, p, &CaseOptions::default())
                .unwrap_or_else(|e| panic!("{} {m}x{n}x{k}: {e}", p.name()));
            assert!(case.verified, "{} {m}x{n}x{k}: {case:?}", p.name());
            group.bench_function(p.name(), |b| {
                b.iter(|| {
                    let mut enc = ctx.encoder("bench");
                    case.record(&mut enc).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_linear);
criterion_main!(benches);
