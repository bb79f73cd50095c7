//! Criterion benchmark of the convolution layers of ResNet-50 and EfficientNet-Lite0
//! (`wgpu_quant::bench::CONV_LAYERS`: batch 1, 224x224 input) in FP32, FP16 and INT8, on
//! the adapter the environment selects (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER), every
//! precision of a layer in one run:
//!
//! - `fp32`: f32 NHWC activations and weights (`ops::conv::conv2d`; a pointwise layer runs
//!   the plan's FP32 GEMM);
//! - `fp16`: f16 activations, weights and output, the plan's arithmetic;
//! - `w8a8`: i8 activations (per tensor) times i8 weights (per output channel), int32
//!   accumulation, requantized i8 output (`ops::conv::qconv2d`): a static INT8 network's
//!   steady state.
//!
//! The cases are the benchmark runner's (`wgpu_quant::bench::ConvData`): each is checked
//! before it is timed (INT8 bit for bit, the floats within their budgets). Each
//! iteration records, submits and waits for one layer. Throughput is reported as
//! elements = 2 * MACs (read "elem/s" as FLOP/s or OP/s).
//!
//! `WGPU_QUANT_BENCH_LAYERS=r50.conv3x3_64,eff.dw3x3_32` restricts the layers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_quant::bench::{CaseOptions, ConvData, ConvLayer, Precision, CONV_LAYERS};
use wgpu_quant::{Context, RequestOptions};

fn layers() -> Vec<ConvLayer> {
    match std::env::var("WGPU_QUANT_BENCH_LAYERS") {
        Ok(s) => {
            let names: Vec<&str> = s.split(',').map(str::trim).collect();
            CONV_LAYERS
                .iter()
                .filter(|l| names.contains(&l.name))
                .copied()
                .collect()
        }
        Err(_) => CONV_LAYERS.to_vec(),
    }
}

fn bench_conv(cr: &mut Criterion) {
    let ctx = Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter: apt-get install mesa-vulkan-drivers");
    eprintln!("adapter: {}", ctx.capabilities().adapter.name);
    for layer in layers() {
        let data = ConvData::new(layer).expect("layer");
        let mut group = cr.benchmark_group(format!("conv {}", layer.name));
        group.sample_size(10);
        group.throughput(Throughput::Elements(2 * data.shape.macs()));
        for p in Precision::ALL.into_iter().filter(|p| p.has_conv()) {
            let case = data
                .prepare(&ctx, p, &CaseOptions::default())
                .unwrap_or_else(|e| panic!("{} {}: {e}", layer.name, p.name()));
            assert!(case.verified, "{} {}: {case:?}", layer.name, p.name());
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

criterion_group!(benches, bench_conv);
criterion_main!(benches);
