//! Weight-only GEMM/GEMV (int8 per channel, int4 per group, with and without zero points)
//! and the FP16 GEMM against an f64 reference on the same operands, with the error budget
//! of each arithmetic (see `wgpu_quant::ops::wgemm`), over odd shapes, f32 and f16
//! activations and outputs, every tile. Outputs are poisoned with NaN first. On adapters
//! without `SHADER_F16` (the GL backend on llvmpipe) the f16-arithmetic cases must fail
//! with a clear error while the f32-arithmetic path over f16 storage still runs.

mod common;

use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::ops::wgemm::{wgemm, HalfMath, WGemmDesc, Weights, TILES};
use wgpu_quant::plan::wgemm_rows as tile_for_rows;
use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
use wgpu_quant::reference;
use wgpu_quant::tuning::WeightType;
use wgpu_quant::{Context, DType, Tensor};

/// Budgets (relative Frobenius error) per arithmetic; f16 output adds F16_OUT.
const F32_BUDGET: f64 = 1e-5;
const F16_ACC_F32_BUDGET: f64 = 2e-3;
const F16_BUDGET: f64 = 2e-2;
const F16_OUT: f64 = 4.9e-4;

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 7, 33),
    (1, 67, 130),
    (1, 37, 320),
    (2, 9, 64),
    (3, 33, 257),
    (5, 17, 200),
    (8, 13, 129),
    (19, 70, 96),
];

fn schemes() -> Vec<QuantScheme> {
    vec![
        QuantScheme::symmetric(QType::I8).per_channel(0),
        QuantScheme::asymmetric(QType::I8),
        QuantScheme::asymmetric(QType::U8).per_channel(0),
        QuantScheme::symmetric(QType::I4).per_group(1, 32),
        QuantScheme::asymmetric(QType::I4).per_group(1, 64),
        QuantScheme::asymmetric(QType::U4).per_group(1, 128),
        QuantScheme::symmetric(QType::I4).per_group(1, 64),
        QuantScheme::asymmetric(QType::U4).per_channel(0),
    ]
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let (mut e, mut r) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        e += (f64::from(g) - w).powi(2);
        r += w * w;
    }
    if r == 0.0 {
        e.sqrt()
    } else {
        (e / r).sqrt()
    }
}

/// Uploads `x` as f32 or f16 and returns it with the values the GPU sees (as f64).
fn upload_x(ctx: &Context, shape: &[usize], x: &[f32], as_f16: bool) -> (Tensor, Vec<f64>) {
    if as_f16 {
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        (
            Tensor::from_slice(ctx, shape, &h).unwrap(),
            h.iter().map(|v| f64::from(v.to_f32())).collect(),
        )
    } else {
        (
            Tensor::from_slice(ctx, shape, x).unwrap(),
            x.iter().map(|&v| f64::from(v)).collect(),
        )
    }
}

fn poisoned_out(ctx: &Context, shape: &[usize], f16_out: bool) -> Tensor {
    let numel: usize = shape.iter().product();
    if f16_out {
        Tensor::from_slice(ctx, shape, &vec![f16::NAN; numel]).unwrap()
    } else {
        Tensor::from_slice(ctx, shape, &vec![f32::NAN; numel]).unwrap()
    }
}

fn read_out(ctx: &Context, t: &Tensor) -> Vec<f32> {
    if t.dtype() == DType::F16 {
        t.read_blocking::<f16>(ctx)
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect()
    } else {
        t.read_blocking::<f32>(ctx).unwrap()
    }
}

/// `wf` (`[n, k]`) quantized with `scheme`, on the GPU, and the dequantized weights the
/// reference uses (exactly, in f64).
fn quantized(
    ctx: &Context,
    scheme: &QuantScheme,
    (n, k): (usize, usize),
    wf: &[f32],
) -> (QTensor, Vec<f64>) {
    let params = QuantParams::from_data(scheme, &[n, k], wf).unwrap();
    let codes = params.quantize(wf).unwrap();
    let wq = QTensor::from_codes(ctx, &params, &codes).unwrap();
    let layout = params.layout();
    let wd = codes
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let s = layout.slot(i);
            f64::from(params.scales()[s]) * f64::from(q - params.zero_points()[s])
        })
        .collect();
    (wq, wd)
}

#[test]
fn weight_only_sweep() {
    weight_only_cases(common::ctx(), &[1]);
}

/// The weight-only sweep with parallel split-K: slices cut parameter groups and end
/// mid-group; K shorter than the slices asked for.
#[test]
fn weight_only_split_k() {
    // A context of its own, so that the count below is this test's alone.
    let ctx = common::context_with(Default::default());
    let cases = weight_only_cases(&ctx, &[2, 3, 5, 16]);
    let split = ctx.stats().split_k_runs;
    // Every shape but 1x1x1 (one weight word) splits.
    assert!(
        split as usize >= cases - 2 * schemes().len(),
        "{split} of {cases} cases ran split"
    );
}

/// Runs the weight-only sweep with tiles split `splits[i]` ways (rotating), the
/// activations read from their storage binding and from a uniform copy in turn (f32 and
/// f16 each way); returns the case count.
fn weight_only_cases(ctx: &Context, splits: &[u32]) -> usize {
    weight_only_cases_with(ctx, &SHAPES, |idx| {
        WGemmDesc::default()
            .config(TILES[idx % TILES.len()].split_k(splits[(idx / 2) % splits.len()]))
            .uniform_x((idx / 2) % 2 == 1)
    })
}

/// Every scheme of [`schemes`] on `shapes`, f32 and f16 activations, with the options
/// `desc(idx)` (to which each case adds its activation) against the f64 reference on the
/// dequantized weights; returns the number of cases.
fn weight_only_cases_with(
    ctx: &Context,
    shapes: &[(usize, usize, usize)],
    desc_for: impl Fn(usize) -> WGemmDesc,
) -> usize {
    let acts = [Activation::None, Activation::Relu, Activation::Relu6];
    let mut failures = Vec::new();
    let mut idx = 0usize;
    for &(m, n, k) in shapes {
        for scheme in schemes() {
            for x_f16 in [false, true] {
                idx += 1;
                let out_f16 = idx.is_multiple_of(3);
                let base = desc_for(idx);
                let act = acts[idx % 3];
                let with_bias = idx % 2 == 1;
                let mut rng = rand::rngs::StdRng::seed_from_u64(idx as u64);
                let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (wq, wd) = quantized(ctx, &scheme, (n, k), &wf);
                let x_shape = if m > 2 { vec![1, m, k] } else { vec![m, k] };
                let (x, xd) = upload_x(ctx, &x_shape, &xf, x_f16);
                let mut out_shape = x_shape.clone();
                *out_shape.last_mut().unwrap() = n;
                let out = poisoned_out(ctx, &out_shape, out_f16);
                let b = with_bias.then(|| Tensor::from_slice(ctx, &[n], &bias).unwrap());
                let mut enc = ctx.encoder("wgemm test");
                let desc = base.activation(act);
                wgemm(
                    ctx,
                    &mut enc,
                    &desc,
                    &x,
                    Weights::Quantized(&wq),
                    b.as_ref(),
                    &out,
                )
                .unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let got = read_out(ctx, &out);
                let want =
                    reference::linear_f64(&xd, &wd, with_bias.then_some(&bias[..]), act, (m, n, k));
                let budget = F32_BUDGET + if out_f16 { F16_OUT } else { 0.0 };
                let err = rel_err(&got, &want);
                if err > budget {
                    failures.push(format!(
                        "{m}x{n}x{k} {scheme:?} x_f16 {x_f16} out_f16 {out_f16} {base:?} {act:?} bias {with_bias}: rel. error {err:.3e} > {budget:.1e}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    idx
}

/// Quantized weights on the FP32-kernel route (dequantized into an f32 scratch, then an
/// FP32 register or subgroup kernel), pinned on every such kernel the adapter runs: every
/// scheme, odd shapes, within the f32 budget.
#[test]
fn weight_only_on_the_fp32_route() {
    use wgpu_quant::ops::gemm::GemmKernel;
    let ctx = common::ctx();
    let mut kernels: Vec<GemmKernel> = GemmKernel::REGISTER.map(GemmKernel::Register).to_vec();
    if ctx.capabilities().subgroups && ctx.capabilities().subgroup_size.0 >= 8 {
        kernels.extend(GemmKernel::SUBGROUP.map(GemmKernel::Subgroup));
    }
    let shapes = [(1, 7, 33), (5, 17, 200), (19, 70, 96), (130, 37, 72)];
    let cases = weight_only_cases_with(ctx, &shapes, |idx| {
        WGemmDesc::default().fp32_kernel(kernels[idx % kernels.len()])
    });
    assert_eq!(cases, shapes.len() * schemes().len() * 2);
}

/// The weight-only GEMM as the plan runs it, with nothing pinned: on CPU adapters with
/// subgroups from `plan::DEQUANT_MIN_M` rows and a K above `plan::CPU_ROWS_MAX_K` the
/// FP32-kernel route on the dequantized weight, otherwise (and on GPUs and CPU adapters
/// without subgroups) the row kernel; every scheme within the f32 budget either way.
#[test]
fn weight_only_default_plan() {
    let ctx = common::ctx();
    let min_m = wgpu_quant::plan::DEQUANT_MIN_M;
    let kmax = wgpu_quant::plan::CPU_ROWS_MAX_K;
    let shapes = [
        (min_m, 33, 96),
        (min_m + 3, 9, 40),
        (min_m - 1, 20, 64),
        (min_m + 5, 24, kmax),
        (min_m + 1, 10, kmax + 1),
    ];
    weight_only_cases_with(ctx, &shapes, |_| WGemmDesc::default());
    for &(m, n, k) in &shapes {
        for wtype in [WeightType::I8, WeightType::I4] {
            let family = wgpu_quant::plan::explain_wgemm(ctx, m, n, k, wtype).family;
            let routed = family.contains("dequantized weight");
            assert_eq!(
                routed,
                ctx.capabilities().is_cpu()
                    && ctx.capabilities().subgroups
                    && m >= min_m
                    && k > kmax,
                "{m}x{n}x{k} {wtype:?}: {family}"
            );
        }
    }
}

#[test]
fn fp16_gemm_sweep() {
    fp16_cases(common::ctx(), &[1]);
}

/// The FP16 GEMM as the plan runs it, with no tile pinned: on CPU adapters through the
/// FP32 register and subgroup kernels with f16 storage (`plan::half_gemm_kernel`: vec4 and
/// scalar loads, split-K for GEMVs, f32 output direct or converted to f16), elsewhere the
/// row kernel. f32 and f16 activations (rank 2 and 3), bias and activations, odd shapes.
#[test]
fn fp16_gemm_default_plan() {
    let ctx = common::ctx();
    let caps = ctx.capabilities();
    let mut failures = Vec::new();
    let mut routed = 0;
    let shapes: Vec<(usize, usize, usize)> = SHAPES
        .iter()
        .chain(&[(33, 65, 96), (9, 64, 28), (40, 5, 1024), (2, 300, 12)])
        .copied()
        .collect();
    for (idx, &(m, n, k)) in shapes.iter().enumerate() {
        for (x_f16, out_f16, rank3) in [
            (true, true, false),
            (false, false, true),
            (true, false, false),
            (false, true, true),
        ] {
            let act = [Activation::None, Activation::Relu, Activation::Relu6][idx % 3];
            let mut rng = rand::rngs::StdRng::seed_from_u64(11 * idx as u64 + u64::from(out_f16));
            let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let (w, wd) = upload_x(ctx, &[n, k], &wf, true);
            let (x, xd) = upload_x(ctx, &[m, k], &xf, x_f16);
            let (x, out_shape) = if rank3 && m % 3 == 0 {
                (x.reshape(&[3, m / 3, k]).unwrap(), vec![3, m / 3, n])
            } else {
                (x, vec![m, n])
            };
            let out = poisoned_out(ctx, &out_shape, out_f16);
            let b = Tensor::from_slice(ctx, &[n], &bias).unwrap();
            let desc = WGemmDesc::default().activation(act);
            let plan = wgpu_quant::plan::explain_wgemm(ctx, m, n, k, WeightType::F16);
            routed += usize::from(plan.family.contains("f16 storage"));
            let mut enc = ctx.encoder("fp16 default plan");
            wgemm(ctx, &mut enc, &desc, &x, Weights::F16(&w), Some(&b), &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = read_out(ctx, &out);
            let want = reference::linear_f64(&xd, &wd, Some(&bias), act, (m, n, k));
            let budget = F32_BUDGET + if out_f16 { F16_OUT } else { 0.0 };
            let err = rel_err(&got, &want);
            if err > budget || got.iter().any(|v| v.is_nan()) {
                failures.push(format!(
                    "{m}x{n}x{k} x_f16 {x_f16} out_f16 {out_f16} ({}): rel. error {err:.3e} > {budget:.1e}",
                    plan.family
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // CPU adapters take the f16-storage route (no tuning cache here), except up to
    // HALF_ROWS_MAX_M rows where they have subgroups, HALF_ROWS_MAX_M_NO_SUBGROUPS where
    // they have none, and for a K of at most CPU_ROWS_MAX_K.
    if caps.is_cpu() {
        let max_m = if caps.subgroups {
            wgpu_quant::plan::HALF_ROWS_MAX_M
        } else {
            wgpu_quant::plan::HALF_ROWS_MAX_M_NO_SUBGROUPS
        };
        let want = shapes
            .iter()
            .filter(|&&(m, _, k)| k > wgpu_quant::plan::CPU_ROWS_MAX_K && m > max_m)
            .count();
        assert!(
            want >= 6,
            "the shapes must exercise both routes: {want} routed"
        );
        assert_eq!(
            routed,
            want * 4,
            "{want} shapes should take the f16-storage route on {}",
            caps.adapter.name
        );
    } else {
        assert_eq!(routed, 0);
    }
}

/// The FP16 GEMM sweep with parallel split-K (odd K cuts f16 pairs across rows).
#[test]
fn fp16_gemm_split_k() {
    let ctx = common::context_with(Default::default());
    let ran = fp16_cases(&ctx, &[2, 3, 7, 16]);
    let split = ctx.stats().split_k_runs;
    // Every run but 1x1x1 (one word) splits.
    assert!(
        split as usize + 6 >= ran,
        "{split} of {ran} runs were split"
    );
}

/// Runs the FP16 sweep with tiles split `splits[i]` ways (rotating); returns the runs.
fn fp16_cases(ctx: &Context, splits: &[u32]) -> usize {
    let has_f16 = ctx.capabilities().shader_f16;
    let mut failures = Vec::new();
    let mut ran = [0usize; 3];
    let mut idx = 0usize;
    for &(m, n, k) in SHAPES.iter().chain(&[(4, 40, 1024)]) {
        for (mi, math) in [HalfMath::F32, HalfMath::F16AccF32, HalfMath::F16]
            .into_iter()
            .enumerate()
        {
            for out_f16 in [false, true] {
                idx += 1;
                let config = TILES[idx % TILES.len()].split_k(splits[(idx / 2) % splits.len()]);
                let act = [Activation::None, Activation::Relu][idx % 2];
                let mut rng = rand::rngs::StdRng::seed_from_u64(7 * idx as u64);
                let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (w, wd) = upload_x(ctx, &[n, k], &wf, true);
                let (x, xd) = upload_x(ctx, &[m, k], &xf, true);
                let out = poisoned_out(ctx, &[m, n], out_f16);
                let b = Tensor::from_slice(ctx, &[n], &bias).unwrap();
                let desc = WGemmDesc::default()
                    .activation(act)
                    .config(config)
                    .math(math)
                    .uniform_x((idx / 3) % 2 == 1);
                let mut enc = ctx.encoder("fp16 test");
                let r = wgemm(ctx, &mut enc, &desc, &x, Weights::F16(&w), Some(&b), &out);
                if math != HalfMath::F32 && !has_f16 {
                    let msg = r
                        .expect_err("f16 arithmetic without SHADER_F16 must fail")
                        .to_string();
                    assert!(msg.contains("SHADER_F16"), "{msg}");
                    continue;
                }
                r.unwrap();
                ctx.submit_and_wait(enc).unwrap();
                ran[mi] += 1;
                let got = read_out(ctx, &out);
                let want = reference::linear_f64(&xd, &wd, Some(&bias), act, (m, n, k));
                let budget = [F32_BUDGET, F16_ACC_F32_BUDGET, F16_BUDGET][mi]
                    + if out_f16 { F16_OUT } else { 0.0 };
                let err = rel_err(&got, &want);
                if err > budget {
                    failures.push(format!(
                        "{m}x{n}x{k} {math:?} out_f16 {out_f16} {config:?}: rel. error {err:.3e} > {budget:.1e}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran[0] > 0,
        "the f32-arithmetic FP16 path must run everywhere"
    );
    if has_f16 {
        assert!(
            ran[1] > 0 && ran[2] > 0,
            "f16 arithmetic must run where SHADER_F16 is present"
        );
    }
    eprintln!("fp16 cases run (f32 / f16 acc f32 / f16): {ran:?}, SHADER_F16: {has_f16}");
    ran.iter().sum()
}

/// The row kernel gives the same bits whether it reads the activations from their storage
/// binding or from a uniform copy: every weight encoding, f32 and f16 activations and
/// outputs, split-K, odd shapes up to the 64 KiB block exactly. The plan's default takes
/// the copy on CPU adapters where it fits; pinning it where it cannot (X over the block,
/// or a buffer without `COPY_SRC`) is refused with the numbers, and the default then reads
/// the storage binding.
#[test]
fn uniform_x_matches_the_storage_binding() {
    let ctx = common::ctx();
    let block = wgpu_quant::plan::X_UNIFORM_BYTES as usize;
    // (m, n, k, x f16): odd sizes, and X exactly the block (f32 and f16).
    let shapes = [
        (1, 37, 301, true),
        (3, 20, 129, false),
        (8, 9, 1000, true),
        (1, 5, block / 4, false),
        (2, 6, block / 4, true),
    ];
    let mut cases = 0;
    for (si, &(m, n, k, x_f16)) in shapes.iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(100 + si as u64);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        let (x, _) = upload_x(ctx, &[m, k], &xf, x_f16);
        let (wh, _) = upload_x(ctx, &[n, k], &wf, true);
        let mut codes = Vec::new();
        for scheme in [
            QuantScheme::asymmetric(QType::U8).per_channel(0),
            QuantScheme::symmetric(QType::I4).per_group(1, 32),
        ] {
            if k % 32 != 0 && matches!(scheme.qtype, QType::I4) {
                continue;
            }
            codes.push(quantized(ctx, &scheme, (n, k), &wf).0);
        }
        let mut weights: Vec<Weights> = codes.iter().map(Weights::Quantized).collect();
        weights.push(Weights::F16(&wh));
        for (wi, w) in weights.iter().enumerate() {
            for split in [1u32, 3] {
                let out_f16 = (wi + split as usize) % 2 == 1;
                let run = |desc: WGemmDesc| {
                    let out = poisoned_out(ctx, &[m, n], out_f16);
                    let mut enc = ctx.encoder("uniform x");
                    wgemm(ctx, &mut enc, &desc, &x, *w, None, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    read_out(ctx, &out)
                };
                let base = WGemmDesc::default()
                    .config(TILES[(si + wi) % TILES.len()].split_k(split))
                    .math(HalfMath::F32);
                let stored = run(base.uniform_x(false));
                let uniform = run(base.uniform_x(true));
                assert!(stored.iter().all(|v| v.is_finite()), "{m}x{n}x{k}");
                let same = stored
                    .iter()
                    .zip(&uniform)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{m}x{n}x{k} x_f16 {x_f16} weights {wi} split {split}");
                cases += 1;
            }
        }
    }
    assert!(cases >= 20, "{cases} cases");
    // The default takes the copy on CPU adapters (explain names it).
    let (m, n, k) = (2, 33, 96);
    let xf: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let wf: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
    let scheme = QuantScheme::symmetric(QType::I8).per_channel(0);
    let (wq, wd) = quantized(ctx, &scheme, (n, k), &wf);
    let xd: Vec<f64> = xf.iter().map(|&v| f64::from(v)).collect();
    let family = wgpu_quant::plan::explain_wgemm(ctx, m, n, k, WeightType::I8).family;
    assert_eq!(
        family.contains("uniform x"),
        ctx.capabilities().is_cpu(),
        "{family}"
    );
    // Pinned where it cannot: X one f32 past the block, and a buffer without COPY_SRC.
    let big = block / 4 + 1;
    let (xb, _) = upload_x(ctx, &[1, big], &vec![1.0; big], false);
    let (wb, _) = upload_x(ctx, &[2, big], &vec![1.0; 2 * big], true);
    let out = Tensor::zeros(ctx, &[1, 2], DType::F32).unwrap();
    let pinned = WGemmDesc::default().uniform_x(true);
    let mut enc = ctx.encoder("uniform x refused");
    let e = wgemm(ctx, &mut enc, &pinned, &xb, Weights::F16(&wb), None, &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("uniform_x") && e.contains(&format!("{}", 4 * big)),
        "{e}"
    );
    let bare = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("x without COPY_SRC"),
        size: (m * k * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue()
        .write_buffer(&bare, 0, bytemuck::cast_slice(&xf));
    let xn = Tensor::from_buffer(bare, &[m, k], DType::F32).unwrap();
    let out = poisoned_out(ctx, &[m, n], false);
    let mut enc = ctx.encoder("uniform x without COPY_SRC");
    let e = wgemm(
        ctx,
        &mut enc,
        &pinned,
        &xn,
        Weights::Quantized(&wq),
        None,
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("COPY_SRC"), "{e}");
    // Unpinned, the same X is read from its storage binding, and right.
    let mut enc = ctx.encoder("default without COPY_SRC");
    let desc = WGemmDesc::default();
    wgemm(
        ctx,
        &mut enc,
        &desc,
        &xn,
        Weights::Quantized(&wq),
        None,
        &out,
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let want = reference::linear_f64(&xd, &wd, None, Activation::None, (m, n, k));
    let err = rel_err(&read_out(ctx, &out), &want);
    assert!(err <= F32_BUDGET, "rel. error {err:.3e}");
}

/// The GEMV configurations read every weight word once: one invocation covers all M
/// rows for M up to 8.
#[test]
fn gemv_tiles_cover_all_rows() {
    for m in 1..=8 {
        assert!(tile_for_rows(m).tm as usize >= m, "m = {m}");
    }
}

#[test]
fn wgemm_errors_name_the_problem() {
    let ctx = common::ctx();
    let wf = vec![0.5f32; 6 * 40];
    let p = |scheme: QuantScheme| QuantParams::from_data(&scheme, &[6, 40], &wf).unwrap();
    let q = |scheme| {
        let params = p(scheme);
        QTensor::from_codes(ctx, &params, &params.quantize(&wf).unwrap()).unwrap()
    };
    let w_g12 = q(QuantScheme::symmetric(QType::I4).per_group(1, 12));
    let w_axis1 = q(QuantScheme::symmetric(QType::I8).per_channel(1));
    let w16 = q(QuantScheme::symmetric(QType::I16));
    let w8 = q(QuantScheme::symmetric(QType::I8).per_channel(0));
    let x = Tensor::zeros(ctx, &[3, 40], DType::F32).unwrap();
    let x_bad = Tensor::zeros(ctx, &[3, 41], DType::F32).unwrap();
    let x_i32 = Tensor::zeros(ctx, &[3, 40], DType::I32).unwrap();
    let out = Tensor::zeros(ctx, &[3, 6], DType::F32).unwrap();
    let out_bad = Tensor::zeros(ctx, &[3, 7], DType::F32).unwrap();
    let wh = Tensor::zeros(ctx, &[6, 40], DType::F16).unwrap();
    let d = WGemmDesc::default();
    let mut enc = ctx.encoder("errors");
    let check = |r: wgpu_quant::Result<()>, needle: &str| {
        let msg = r.expect_err(needle).to_string();
        assert!(msg.contains(needle), "'{msg}' should mention '{needle}'");
    };
    check(
        wgemm(
            ctx,
            &mut enc,
            &d,
            &x,
            Weights::Quantized(&w_g12),
            None,
            &out,
        ),
        "multiple of 8",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &d,
            &x,
            Weights::Quantized(&w_axis1),
            None,
            &out,
        ),
        "PerChannel { axis: 1 }",
    );
    check(
        wgemm(ctx, &mut enc, &d, &x, Weights::Quantized(&w16), None, &out),
        "i16 codes",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &d,
            &x_bad,
            Weights::Quantized(&w8),
            None,
            &out,
        ),
        "K = 40",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &d,
            &x_i32,
            Weights::Quantized(&w8),
            None,
            &out,
        ),
        "x must be f32",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &d,
            &x,
            Weights::Quantized(&w8),
            None,
            &out_bad,
        ),
        "gives [3, 6]",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &d.math(HalfMath::F16),
            &x,
            Weights::Quantized(&w8),
            None,
            &out,
        ),
        "dequantized in f32",
    );
    // Pinning the FP32-kernel route where it does not apply: with a row tile too.
    let sg = wgpu_quant::ops::gemm::GemmKernel::REGISTER[0];
    let pinned = d.fp32_kernel(wgpu_quant::ops::gemm::GemmKernel::Register(sg));
    check(
        wgemm(
            ctx,
            &mut enc,
            &pinned.config(TILES[0]),
            &x,
            Weights::Quantized(&w8),
            None,
            &out,
        ),
        "pins the FP32-kernel route",
    );
    check(
        wgemm(
            ctx,
            &mut enc,
            &pinned.config(TILES[0]),
            &x,
            Weights::F16(&wh),
            None,
            &out,
        ),
        "no row tile",
    );
    let tiled = d.fp32_kernel(wgpu_quant::ops::gemm::GemmKernel::Tiled(
        wgpu_quant::ops::gemm::GemmKernel::TILED[0],
    ));
    check(
        wgemm(ctx, &mut enc, &tiled, &x, Weights::F16(&wh), None, &out),
        "register or subgroup",
    );
    if ctx.capabilities().shader_f16 {
        check(
            wgemm(
                ctx,
                &mut enc,
                &d.math(HalfMath::F16),
                &x,
                Weights::F16(&wh),
                None,
                &out,
            ),
            "needs f16 activations",
        );
    }
    check(
        wgemm(ctx, &mut enc, &d, &x, Weights::F16(&out), None, &out),
        "weight must be f16",
    );
}

/// Operands over `max_storage_buffer_binding_size` run in pieces of rows and output
/// columns (x, weights, scales, bias and output bound as aligned windows, the output
/// keeping its row pitch), within the same error budgets.
/// An f16 output that fits one binding while the f32 scratch of the FP16 route would
/// not (64 x 800: 100 KiB in f16, 200 KiB in f32, under a 128 KiB limit): the plan keeps
/// the row kernel and the result stays right; pinning the route is refused.
#[test]
fn fp16_route_needs_its_scratch_within_a_binding() {
    let (m, n, k) = (64usize, 800usize, 64usize);
    let ctx = common::small_bindings(128 << 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let (w, wd) = upload_x(&ctx, &[n, k], &wf, true);
    let (x, xd) = upload_x(&ctx, &[m, k], &xf, true);
    let out = poisoned_out(&ctx, &[m, n], true);
    let mut enc = ctx.encoder("fp16 scratch limit");
    wgemm(
        &ctx,
        &mut enc,
        &WGemmDesc::default(),
        &x,
        Weights::F16(&w),
        None,
        &out,
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let want = reference::linear_f64(&xd, &wd, None, Activation::None, (m, n, k));
    let err = rel_err(&read_out(&ctx, &out), &want);
    assert!(err <= F32_BUDGET + F16_OUT, "rel. error {err:.3e}");
    let pinned = WGemmDesc::default().fp32_kernel(wgpu_quant::ops::gemm::GemmKernel::Register(
        wgpu_quant::ops::gemm::GemmKernel::REGISTER[0],
    ));
    let mut enc = ctx.encoder("fp16 scratch limit, pinned");
    let e = wgemm(&ctx, &mut enc, &pinned, &x, Weights::F16(&w), None, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32 scratch"), "{e}");
}

#[test]
fn splits_operands_over_the_binding_limit() {
    // (binding limit, m, n, k): at 128 KiB x (f32), every weight and the output exceed a
    // binding; at 512 KiB with odd K the f16 weight rows start mid-word.
    let cases = [
        (128usize << 10, 200usize, 1000usize, 320usize),
        (512 << 10, 300, 900, 301),
    ];
    let mut failures = Vec::new();
    for (ci, &(limit, m, n, k)) in cases.iter().enumerate() {
        let ctx = common::small_bindings(limit as u64);
        let has_f16 = ctx.capabilities().shader_f16;
        let mut rng = rand::rngs::StdRng::seed_from_u64(ci as u64);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let b = Tensor::from_slice(&ctx, &[n], &bias).unwrap();
        let mut run = |what: String,
                       weights: Weights,
                       wd: &[f64],
                       x_f16: bool,
                       out_f16: bool,
                       math: HalfMath,
                       budget: f64| {
            let (x, xd) = upload_x(&ctx, &[m, k], &xf, x_f16);
            let out = poisoned_out(&ctx, &[m, n], out_f16);
            let desc = WGemmDesc::default().activation(Activation::Relu).math(math);
            let before = ctx.stats().split_dispatches;
            let mut enc = ctx.encoder("split wgemm");
            wgemm(&ctx, &mut enc, &desc, &x, weights, Some(&b), &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let pieces = ctx.stats().split_dispatches - before;
            let want = reference::linear_f64(&xd, wd, Some(&bias), Activation::Relu, (m, n, k));
            let budget = budget + if out_f16 { F16_OUT } else { 0.0 };
            let err = rel_err(&read_out(&ctx, &out), &want);
            if err > budget || pieces < 2 {
                failures.push(format!(
                    "{m}x{n}x{k} at {limit} B {what} x_f16 {x_f16} out_f16 {out_f16}: rel. error {err:.3e} (budget {budget:.1e}), {pieces} pieces"
                ));
            }
        };
        let mut schemes = vec![
            QuantScheme::symmetric(QType::I8).per_channel(0),
            QuantScheme::asymmetric(QType::U8).per_channel(0),
        ];
        if k % 64 == 0 {
            schemes.push(QuantScheme::asymmetric(QType::I4).per_group(1, 64));
            schemes.push(QuantScheme::asymmetric(QType::U4).per_channel(0));
        }
        for (si, scheme) in schemes.iter().enumerate() {
            let (wq, wd) = quantized(&ctx, scheme, (n, k), &wf);
            run(
                format!("{scheme:?}"),
                Weights::Quantized(&wq),
                &wd,
                si % 2 == 1,
                si / 2 == 1,
                HalfMath::Auto,
                F32_BUDGET,
            );
        }
        let (w, wd) = upload_x(&ctx, &[n, k], &wf, true);
        run(
            "f16 weights".into(),
            Weights::F16(&w),
            &wd,
            true,
            false,
            HalfMath::F32,
            F32_BUDGET,
        );
        if has_f16 {
            run(
                "f16 weights".into(),
                Weights::F16(&w),
                &wd,
                true,
                true,
                HalfMath::F16AccF32,
                F16_ACC_F32_BUDGET,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The FP16 GEMM on cooperative matrices (tensor cores) against the f64 reference, on
/// adapters that list 16x16x16 f16 matrices with f32 sums: every block, whole or with K
/// split (the slices' sums added by the reduce pass), K a multiple of 8
/// (eight-half loads) or not (half by half, rows starting mid-word), M and N not multiples
/// of any block, f32 and f16 outputs, bias and activations; the plan's default takes it
/// from `COOP_MIN_M` rows. Elsewhere pinning it is an error naming what is missing, and
/// the test says that the numeric cases did not run and why.
#[test]
fn cooperative_fp16_matches_the_reference() {
    use wgpu_quant::ops::wgemm::CoopTile;
    let ctx = common::ctx();
    let caps = ctx.capabilities();
    let w_shape = (5, 16);
    let (w, _) = upload_x(ctx, &[w_shape.0, w_shape.1], &[0.5; 80], true);
    let (x, _) = upload_x(ctx, &[20, 16], &[0.25; 320], true);
    let out = poisoned_out(ctx, &[20, 5], false);
    if !wgpu_quant::plan::coop_capable(caps) {
        let mut enc = ctx.encoder("coop refused");
        let desc = WGemmDesc::default().cooperative(true);
        let msg = wgemm(ctx, &mut enc, &desc, &x, Weights::F16(&w), None, &out)
            .expect_err("pinning cooperative matrices must fail where the adapter has none")
            .to_string();
        assert!(
            msg.contains("cooperative") && msg.contains("16x16x16"),
            "{msg}"
        );
        eprintln!(
            "cooperative-matrix cases not run: {} (coop_f16 {}, subgroups {:?}, {:?}) has no \
             16x16x16 f16 cooperative matrices with f32 sums and 32-wide subgroups",
            caps.adapter.name, caps.coop_f16, caps.subgroup_size, caps.adapter.device_type
        );
        return;
    }
    let shapes = [
        (9, 1, 1),
        (16, 16, 16),
        (17, 33, 40),
        (33, 130, 264),
        (64, 128, 32),
        (100, 257, 129),
        (129, 300, 1000),
        (300, 70, 8),
        (1, 5, 16),
        (257, 129, 77),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for (idx, &(m, n, k)) in shapes.iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(31 * idx as u64);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let xf: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let (w, wd) = upload_x(ctx, &[n, k], &wf, true);
        let (x, xd) = upload_x(ctx, &[m, k], &xf, true);
        let b = Tensor::from_slice(ctx, &[n], &bias).unwrap();
        // Every block, with K whole or split (odd slices, a slice count K cannot fill).
        let tiles = CoopTile::TILES.map(|t| Some(t.split_k([1, 2, 5][(idx + t.wm as usize) % 3])));
        for (ti, tile) in tiles.into_iter().chain([None]).enumerate() {
            let out_f16 = (idx + ti) % 2 == 1;
            let act = [Activation::None, Activation::Relu, Activation::Relu6][(idx + ti) % 3];
            let with_bias = (idx + ti) % 4 != 3;
            let mut desc = WGemmDesc::default().activation(act);
            desc = match tile {
                Some(t) => desc.coop_tile(t),
                None if m >= wgpu_quant::plan::COOP_MIN_M => desc,
                None => continue,
            };
            let out = poisoned_out(ctx, &[m, n], out_f16);
            let mut enc = ctx.encoder("coop test");
            let bias_t = with_bias.then_some(&b);
            wgemm(ctx, &mut enc, &desc, &x, Weights::F16(&w), bias_t, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            runs += 1;
            let got = read_out(ctx, &out);
            let bias_ref = with_bias.then_some(&bias[..]);
            let want = reference::linear_f64(&xd, &wd, bias_ref, act, (m, n, k));
            let budget = F16_ACC_F32_BUDGET + if out_f16 { F16_OUT } else { 0.0 };
            let err = rel_err(&got, &want);
            if err > budget || got.iter().any(|v| v.is_nan()) {
                failures.push(format!(
                    "{m}x{n}x{k} {tile:?} out_f16 {out_f16} {act:?} bias {with_bias}: rel. \
                     error {err:.3e} > {budget:.1e}"
                ));
            }
        }
        if m >= wgpu_quant::plan::COOP_MIN_M {
            let plan = wgpu_quant::plan::explain_wgemm(ctx, m, n, k, WeightType::F16);
            assert!(
                matches!(plan.choice, wgpu_quant::tuning::Choice::Coop(_)),
                "{m}x{n}x{k}: the default plan should take cooperative matrices: {plan:?}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("cooperative-matrix cases run: {runs}");
}
