//! The peer benchmark of issue #25: Burn's wgpu matmul (CubeCL kernels, autotuned at run
//! time) on the shapes `wgpu-quant bench` measures, in f32, f16 and q8 (Burn's
//! per-tensor symmetric 8-bit weights), on the same adapter and in the same sitting.
//!
//! `peer-burn --shapes 1x4096x4096,3136x64x576 --ours ours.json` times Burn and, given
//! the JSON records of `wgpu-quant bench --json ours.json` on the same shapes, prints one
//! table with both sides and the ratios (run.sh in this folder does both).
//!
//! A shape `MxNxK` is `x [M, K] @ w [K, N]`, the same product as the runner's linear
//! `x [M, K] * W[N, K]^T`. Each time is the median of `--runs` runs after `--warmup`
//! untimed ones (autotuning happens there), measured on the host around the call and a
//! device sync, like the runner's submit-and-wait clock. Each of Burn's products is then
//! checked on sampled outputs against a host sum (as the runner checks its own before
//! timing); a wrong one is reported on stderr and left out of the table.

use std::time::Instant;

use burn::tensor::quantization::QuantScheme;
use burn::tensor::{DType, Device, DeviceKind, Distribution, Tensor};

struct Args {
    shapes: Vec<[usize; 3]>,
    dtypes: Vec<String>,
    runs: usize,
    warmup: usize,
    device: DeviceKind,
    ours: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        shapes: Vec::new(),
        dtypes: vec!["f32".into(), "f16".into(), "q8".into()],
        runs: 5,
        warmup: 3,
        device: DeviceKind::Cpu,
        ours: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--shapes" => {
                for s in value()?.split(',') {
                    let d: Vec<usize> = s
                        .split('x')
                        .map(|v| v.parse().map_err(|_| format!("bad shape '{s}'")))
                        .collect::<Result<_, _>>()?;
                    let [m, n, k] = d[..] else {
                        return Err(format!("shape '{s}' is not MxNxK"));
                    };
                    a.shapes.push([m, n, k]);
                }
            }
            "--dtypes" => a.dtypes = value()?.split(',').map(str::to_string).collect(),
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--device" => {
                a.device = match value()?.as_str() {
                    "cpu" => DeviceKind::Cpu,
                    "discrete" => DeviceKind::DiscreteGpu(0),
                    "integrated" => DeviceKind::IntegratedGpu(0),
                    "default" => DeviceKind::DefaultDevice,
                    d => {
                        return Err(format!(
                            "--device {d}: cpu, discrete, integrated or default"
                        ))
                    }
                }
            }
            "--ours" => a.ours = Some(value()?),
            f => return Err(format!("unknown flag {f}")),
        }
    }
    if a.shapes.is_empty() {
        return Err("--shapes MxNxK[,...] is required".into());
    }
    Ok(a)
}

/// Median milliseconds of `f` (one matmul, then a device sync).
fn time(device: &Device, a: &Args, f: &dyn Fn() -> Tensor<2>) -> Result<f64, String> {
    let run = || -> Result<f64, String> {
        let t0 = Instant::now();
        let out = f();
        device.sync().map_err(|e| format!("{e:?}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(out);
        Ok(ms)
    };
    for _ in 0..a.warmup {
        run()?;
    }
    let mut v: Vec<f64> = (0..a.runs.max(1))
        .map(|_| run())
        .collect::<Result<_, _>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// The values of `t` (named `what` in errors) as f32 on the host.
fn host(t: Tensor<2>, what: &str) -> Result<Vec<f32>, String> {
    t.try_into_data()
        .map_err(|e| format!("{what} could not be computed or read: {e}"))?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("reading back: {e:?}"))
}

/// Checks Burn's product against the f64 sum over the f32 operands on 97 sampled
/// outputs: the relative error `||got - ref|| / ||ref||` must stay within `tol`. A time
/// whose result is wrong (a product that did not run, say) is not reported.
fn verify(op: &Operands, out: Tensor<2>, tol: f64) -> Result<(), String> {
    let ([m, n, k], xv, wv) = (op.shape, &op.xv, &op.wv);
    let got = host(out, "the product")?;
    if got.len() != m * n {
        return Err(format!(
            "result has {} values, expected {}",
            got.len(),
            m * n
        ));
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for s in 0..97usize {
        let (i, j) = ((s * 7919) % m, (s * 104_729) % n);
        let r: f64 = (0..k)
            .map(|t| xv[i * k + t] as f64 * wv[t * n + j] as f64)
            .sum();
        num += (got[i * n + j] as f64 - r).powi(2);
        den += r * r;
    }
    let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
    if rel <= tol {
        Ok(())
    } else {
        Err(format!(
            "wrong result: relative error {rel:.2e} over the bound {tol:.0e}, not timed"
        ))
    }
}

/// The operands of one shape, shared by every dtype, and their values on the host.
struct Operands {
    shape: [usize; 3],
    x: Tensor<2>,
    w: Tensor<2>,
    xv: Vec<f32>,
    wv: Vec<f32>,
}

impl Operands {
    fn new(device: &Device, shape: [usize; 3]) -> Result<Operands, String> {
        let [m, n, k] = shape;
        let x = Tensor::<2>::random([m, k], Distribution::Uniform(-1.0, 1.0), device);
        let w = Tensor::<2>::random([k, n], Distribution::Uniform(-1.0, 1.0), device);
        let (xv, wv) = (host(x.clone(), "x")?, host(w.clone(), "the weight")?);
        Ok(Operands {
            shape,
            x,
            w,
            xv,
            wv,
        })
    }
}

/// Burn's median for `dtype` on `op`, verified, or why it did not run.
fn burn_ms(device: &Device, a: &Args, op: &Operands, dtype: &str) -> Result<f64, String> {
    let (x, w) = (&op.x, &op.w);
    // Bounds: f32 rounding; f16 operands (and Burn's f16 accumulation); 8-bit weights
    // (per-tensor steps of 1/127 on uniform weights give about 0.5 %).
    match dtype {
        "f32" => {
            let ms = time(device, a, &|| x.clone().matmul(w.clone()))?;
            verify(op, x.clone().matmul(w.clone()), 1e-4)?;
            Ok(ms)
        }
        "f16" => {
            let (xh, wh) = (x.clone().cast(DType::F16), w.clone().cast(DType::F16));
            let ms = time(device, a, &|| xh.clone().matmul(wh.clone()))?;
            verify(op, xh.clone().matmul(wh.clone()), 2e-2)?;
            Ok(ms)
        }
        "q8" => {
            // Burn panics on what its quantized matmul does not support: report it.
            let wq = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                w.clone().quantize_dynamic(&QuantScheme::default())
            }))
            .map_err(|_| "quantize_dynamic panicked".to_string())?;
            let ms = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                time(device, a, &|| x.clone().matmul(wq.clone()))
            }))
            .map_err(|_| "q8 matmul not supported here (panicked)".to_string())??;
            verify(op, x.clone().matmul(wq.clone()), 3e-2)?;
            Ok(ms)
        }
        d => Err(format!("unknown dtype {d} (f32, f16, q8)")),
    }
}

/// Our runner's medians by (m, n, k, dtype) from its `--json` records.
fn ours(path: &str) -> Result<Vec<([usize; 3], String, f64, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let recs = v
        .get("records")
        .and_then(|r| r.as_array())
        .or_else(|| v.as_array())
        .ok_or(format!("{path}: no records"))?;
    let mut out = Vec::new();
    for r in recs {
        let (Some(s), Some(ms)) = (r.get("shape"), r.get("median_ms").and_then(|x| x.as_f64()))
        else {
            continue;
        };
        let dim = |key: &str| s.get(key).and_then(|x| x.as_u64()).map(|x| x as usize);
        let (Some(m), Some(n), Some(k)) = (dim("m"), dim("n"), dim("k")) else {
            continue;
        };
        let dtype = r
            .get("dtype")
            .and_then(|x| x.as_str())
            .unwrap_or("?")
            .to_string();
        let kernel = r
            .get("kernel")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        out.push(([m, n, k], dtype, ms, kernel));
    }
    Ok(out)
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("peer-burn: {e}");
            std::process::exit(2);
        }
    };
    let device = Device::wgpu(a.device.clone());
    let ours = match a.ours.as_deref().map(ours).transpose() {
        Ok(o) => o.unwrap_or_default(),
        Err(e) => {
            eprintln!("peer-burn: {e}");
            std::process::exit(2);
        }
    };
    let find = |shape: [usize; 3], dtype: &str| {
        ours.iter()
            .find(|(s, d, _, _)| *s == shape && d == dtype)
            .map(|(_, _, ms, kernel)| (*ms, kernel.clone()))
    };
    println!(
        "Burn 0.22.1 (wgpu, autotune), median of {} runs after {} warm-up",
        a.runs, a.warmup
    );
    println!();
    println!("| M x N x K | ours FP32 | Burn f32 | ratio | ours FP16 | Burn f16 | ratio | ours W8A8 | ours W8A16 | Burn q8 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &shape in &a.shapes {
        let mut burn = std::collections::BTreeMap::new();
        let op = Operands::new(&device, shape);
        for d in &a.dtypes {
            let r = op
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|op| burn_ms(&device, &a, op, d));
            if let Err(e) = &r {
                eprintln!("{shape:?} {d}: {e}");
            }
            burn.insert(d.clone(), r.ok());
        }
        let b = |d: &str| burn.get(d).copied().flatten();
        let o = |d: &str| find(shape, d).map(|x| x.0);
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        // A ratio above 1: ours is faster.
        let ratio = |ours: Option<f64>, burn: Option<f64>| match (ours, burn) {
            (Some(o), Some(b)) => format!("{:.2}", b / o),
            _ => "-".to_string(),
        };
        println!(
            "| {}x{}x{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            shape[0],
            shape[1],
            shape[2],
            cell(o("fp32")),
            cell(b("f32")),
            ratio(o("fp32"), b("f32")),
            cell(o("fp16")),
            cell(b("f16")),
            ratio(o("fp16"), b("f16")),
            cell(o("w8a8")),
            cell(o("w8a16")),
            cell(b("q8")),
        );
    }
    println!();
    println!("ms per product; ratio = Burn / ours (above 1: wgpu-quant is faster).");
}
