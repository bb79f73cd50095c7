//! Float operands for the layer tests: upload (optionally as f16) with the values the
//! reference sees, poisoned outputs, readback, and the relative-error check.

use half::f16;
use rand::RngExt;
use wgpu_quant::{Context, DType, Tensor};

/// f16 storage rounds the output once (relative 2^-11); f32 sums differ from f64 by far
/// less.
pub const F32_BUDGET: f64 = 1e-6;
pub const F16_OUT: f64 = 4.9e-4;

pub fn upload(ctx: &Context, shape: &[usize], v: &[f32], as_f16: bool) -> (Tensor, Vec<f64>) {
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

pub fn poisoned(ctx: &Context, shape: &[usize], f16_out: bool) -> Tensor {
    let n: usize = shape.iter().product();
    if f16_out {
        Tensor::from_slice(ctx, shape, &vec![f16::NAN; n]).unwrap()
    } else {
        Tensor::from_slice(ctx, shape, &vec![f32::NAN; n]).unwrap()
    }
}

pub fn read(ctx: &Context, t: &Tensor) -> Vec<f32> {
    if t.dtype() == DType::F16 {
        let h = t.read_blocking::<f16>(ctx).unwrap();
        h.iter().map(|v| v.to_f32()).collect()
    } else {
        t.read_blocking::<f32>(ctx).unwrap()
    }
}

/// Checks `got` against `want` within `budget` (relative Frobenius), naming the worst
/// element.
pub fn check(what: &str, got: &[f32], want: &[f64], budget: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut e, mut r, mut worst, mut wi) = (0f64, 0f64, -1f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = if g.is_finite() {
            (f64::from(g) - w).abs()
        } else {
            f64::INFINITY
        };
        if d > worst {
            worst = d;
            wi = i;
        }
        e += d * d;
        r += w * w;
    }
    let rel = if r == 0.0 { e.sqrt() } else { (e / r).sqrt() };
    assert!(
        rel <= budget,
        "{what}: relative error {rel:.3e} > {budget:.1e}; worst at {wi}: got {} want {}",
        got[wi],
        want[wi]
    );
}

pub fn rand_vec(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
}
