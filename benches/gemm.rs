//! Criterion benchmark of FP32 GEMM and GEMV on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER). Each iteration records, submits and waits
//! for one GEMM, so the time includes submission; `wgpu-quant bench` reports GPU
//! timestamps instead. Results are verified once before timing.
//!
//! Throughput is reported as elements = 2*M*N*K, so criterion's "elem/s" reads as FLOP/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_quant::bench::{gemm_case, random_f32};
use wgpu_quant::ops::gemm::{gemm, GemmDesc};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

fn bench_gemm(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    let mut group = cr.benchmark_group("fp32");
    group.sample_size(10);
    let shapes = [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (1, 4096, 4096),
    ];
    for (m, n, k) in shapes {
        let desc = GemmDesc::new(m, n, k);
        let check = gemm_case(&ctx, &desc, 1024, 0, 0).expect("verify");
        assert!(
            check.verified,
            "{m}x{n}x{k}: rel. error {}",
            check.rel_error
        );
        let a = Tensor::from_slice(&ctx, &[m, k], &random_f32(m * k, 1)).unwrap();
        let b = Tensor::from_slice(&ctx, &[k, n], &random_f32(k * n, 2)).unwrap();
        let c = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
        group.throughput(Throughput::Elements(desc.flops() as u64));
        if m * n * k >= 1 << 30 {
            group
                .sample_size(10)
                .measurement_time(std::time::Duration::from_secs(30));
        }
        group.bench_function(format!("gemm {m}x{n}x{k}"), |bencher| {
            bencher.iter(|| {
                let mut enc = ctx.encoder("bench");
                gemm(&ctx, &mut enc, &desc, &a, &b, None, &c).unwrap();
                ctx.submit_and_wait(enc).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
