//! Plans that learn: `tuning::learn` tunes each new shape class on its first use,
//! installs the winner and saves it, so the second use (and the next process) runs the
//! tuned plan with nothing to pay. This prints what the first and second use of three
//! layers cost (wall clock of record + submit + wait) and what the plan chose.
//!
//! ```text
//! cargo run --release --example learn            # learns into a fresh temporary file
//! cargo run --release --example learn -- plans.json
//! ```

use std::time::Instant;

use wgpu_quant::ops::gemm::{gemm, GemmDesc};
use wgpu_quant::ops::wgemm::{wgemm, WGemmDesc, Weights};
use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
use wgpu_quant::tuning::WeightType;
use wgpu_quant::{plan, Context, DType, QTensor, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let p =
                std::env::temp_dir().join(format!("wgpu-quant-learn-{}.json", std::process::id()));
            std::fs::remove_file(&p).ok();
            p
        });
    let ctx = Context::request_blocking(&Default::default())?;
    println!("adapter: {}", ctx.capabilities().adapter.name);
    wgpu_quant::tuning::learn(&ctx, &path)?;

    let (m, n, k) = (128, 768, 768);
    let x = Tensor::from_slice(&ctx, &[m, k], &ramp(m * k))?;
    let w = ramp(n * k);
    // FP32 linear layer: weight [K, N].
    let b = Tensor::from_slice(&ctx, &[k, n], &w)?;
    let y = Tensor::zeros(&ctx, &[m, n], DType::F32)?;
    let desc = GemmDesc::new(m, n, k);
    // W8A16: int8 per-channel weights, f16 activations.
    let scheme = QuantScheme::symmetric(QType::I8).per_channel(0);
    let params = QuantParams::from_data(&scheme, &[n, k], &w)?;
    let wq = QTensor::from_codes(&ctx, &params, &params.quantize(&w)?)?;
    let xh: Vec<half::f16> = ramp(m * k).into_iter().map(half::f16::from_f32).collect();
    let x16 = Tensor::from_slice(&ctx, &[m, k], &xh)?;
    let wh: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
    let w16 = Tensor::from_slice(&ctx, &[n, k], &wh)?;

    // The weight-only and FP16 layers: f16 activations times `weights`.
    let linear = |enc: &mut wgpu::CommandEncoder, weights: Weights| {
        wgemm(&ctx, enc, &WGemmDesc::default(), &x16, weights, None, &y)
    };
    type Record<'a> = Box<dyn Fn(&mut wgpu::CommandEncoder) -> wgpu_quant::Result<()> + 'a>;
    let layers: Vec<(&str, Record)> = vec![
        (
            "FP32  128x768x768",
            Box::new(|enc| gemm(&ctx, enc, &desc, &x, &b, None, &y)),
        ),
        (
            "W8A16 128x768x768",
            Box::new(|enc| linear(enc, Weights::Quantized(&wq))),
        ),
        (
            "FP16  128x768x768",
            Box::new(|enc| linear(enc, Weights::F16(&w16))),
        ),
    ];
    for (name, record) in &layers {
        let learned = ctx.stats().plans_learned;
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let mut enc = ctx.encoder(name);
            record(&mut enc)?;
            ctx.submit_and_wait(enc)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let how = if ctx.stats().plans_learned > learned {
            "tuned it"
        } else {
            "compiled"
        };
        println!(
            "{name}: first use {:8.1} ms ({how}), second {:6.1} ms, third {:6.1} ms",
            times[0], times[1], times[2]
        );
    }
    let plans = [
        plan::explain_gemm(&ctx, &desc)?,
        plan::explain_wgemm(&ctx, m, n, k, WeightType::I8),
        plan::explain_wgemm(&ctx, m, n, k, WeightType::F16),
    ];
    for p in plans {
        println!("  {}: {} ({:?})", p.class, p.choice.label(), p.source);
    }
    let s = ctx.stats();
    println!(
        "learned {} classes ({} failures) into {}",
        s.plans_learned,
        s.learn_failures,
        path.display()
    );
    Ok(())
}

/// A deterministic ramp in [-1, 1).
fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.5) - 1.0)
        .collect()
}
