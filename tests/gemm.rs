//! FP32 GEMM against the f64 reference: every kernel the library has, over the odd-shape
//! sweep, every transpose combination, batches with broadcast and explicit strides, and the
//! fused epilogue. Outputs are poisoned with NaN before each run, so an element a kernel
//! forgets to write fails the comparison.

mod common;

use wgpu_quant::bench::random_f32;
use wgpu_quant::ops::gemm::{gemm, Activation, GemmDesc, GemmKernel};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Tensor};

/// ||C - ref|| / ||ref|| budget for FP32 GEMM (issue #2).
const BUDGET: f64 = 1e-5;
const SIZES: [usize; 8] = [1, 3, 7, 17, 33, 129, 255, 257];

struct Case {
    desc: GemmDesc,
    /// Shapes of A and B as uploaded (rank 2 means broadcast when batch > 1).
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
    c_shape: Vec<usize>,
    bias: bool,
}

impl Case {
    fn dense(desc: GemmDesc, bias: bool) -> Case {
        let (ar, ac) = desc.stored_a();
        let (br, bc) = desc.stored_b();
        let lead = |r, c| {
            if desc.batch == 1 {
                vec![r, c]
            } else {
                vec![desc.batch, r, c]
            }
        };
        Case {
            a_shape: lead(ar, ac),
            b_shape: lead(br, bc),
            c_shape: lead(desc.m, desc.n),
            desc,
            bias,
        }
    }
}

fn run(ctx: &Context, case: &Case, seed: u64) -> Result<(), String> {
    let desc = &case.desc;
    let na: usize = case.a_shape.iter().product();
    let nb: usize = case.b_shape.iter().product();
    let nc: usize = case.c_shape.iter().product();
    let a_host = random_f32(na, seed);
    let b_host = random_f32(nb, seed ^ 0x9e37_79b9);
    let bias_host = random_f32(desc.n, seed ^ 0x5151);
    let e = |e: wgpu_quant::Error| e.to_string();
    let a = Tensor::from_slice(ctx, &case.a_shape, &a_host).map_err(e)?;
    let b = Tensor::from_slice(ctx, &case.b_shape, &b_host).map_err(e)?;
    let c = Tensor::from_slice(ctx, &case.c_shape, &vec![f32::NAN; nc]).map_err(e)?;
    let bias = if case.bias {
        Some(Tensor::from_slice(ctx, &[desc.n], &bias_host).map_err(e)?)
    } else {
        None
    };
    let strides = desc
        .resolve_strides(&case.a_shape, &case.b_shape, &case.c_shape)
        .map_err(e)?;
    let mut enc = ctx.encoder("test");
    gemm(ctx, &mut enc, desc, &a, &b, bias.as_ref(), &c).map_err(e)?;
    ctx.queue().submit([enc.finish()]);
    let got = c.read_blocking::<f32>(ctx).map_err(e)?;
    let want = reference::gemm(
        desc,
        strides,
        &a_host,
        &b_host,
        case.bias.then_some(&bias_host[..]),
    );
    // Compare the matrices only (explicit strides may leave gaps between them).
    let (mut g, mut w, mut idx) = (Vec::new(), Vec::new(), Vec::new());
    for bt in 0..desc.batch {
        for i in 0..desc.m * desc.n {
            let at = bt * strides[2] + i;
            g.push(got[at]);
            w.push(want[at]);
            idx.push(at);
        }
    }
    let err = reference::rel_error(&g, &w);
    if err < BUDGET {
        return Ok(());
    }
    let worst = reference::worst_index(&g, &w);
    let at = idx[worst];
    let (bt, rem) = (at / strides[2].max(1), at % strides[2].max(desc.m * desc.n));
    Err(format!(
        "{desc:?}: rel. error {err:.3e} > {BUDGET:.0e}; worst at batch {bt} row {} col {}: got {}, expected {}",
        rem / desc.n,
        rem % desc.n,
        g[worst],
        w[worst]
    ))
}

fn sweep_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = Vec::new();
    for &v in &SIZES {
        shapes.push((v, 33, 17));
        shapes.push((17, v, 33));
        shapes.push((33, 17, v));
        // K a multiple of 4: a transposed B takes the K-vector loads (four K values per
        // load), with A bound as vec4s too when it is not transposed.
        shapes.push((v, 9, 4 * v));
    }
    shapes.push((1, 1, 1));
    shapes.push((1, 1, 4));
    shapes.sort();
    shapes.dedup();
    shapes
}

fn sweep_kernel(kernel: GemmKernel) {
    let ctx = common::ctx();
    assert!(
        kernel.supported(ctx.capabilities()),
        "kernel {kernel:?} is not supported on {}; the test list must only hold runnable kernels",
        ctx.capabilities().adapter.name
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for (m, n, k) in sweep_shapes() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let desc = GemmDesc::new(m, n, k).transpose(ta, tb).kernel(kernel);
            count += 1;
            if let Err(e) = run(
                ctx,
                &Case::dense(desc, false),
                (m * 1000 + n * 10 + k) as u64,
            ) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{kernel:?}: {} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The kernels the sweep covers: every configuration the plan can choose that runs here.
fn kernels() -> Vec<GemmKernel> {
    GemmKernel::all()
        .into_iter()
        .filter(|k| k.supported(common::ctx().capabilities()))
        .collect()
}

#[test]
fn sweep_tiled_kernels() {
    for k in kernels() {
        if matches!(k, GemmKernel::Tiled(_)) {
            sweep_kernel(k);
        }
    }
}

#[test]
fn sweep_register_kernels() {
    for k in kernels() {
        if matches!(k, GemmKernel::Register(_)) {
            sweep_kernel(k);
        }
    }
}

#[test]
fn sweep_subgroup_kernels() {
    let ks: Vec<_> = kernels()
        .into_iter()
        .filter(|k| matches!(k, GemmKernel::Subgroup(_)))
        .collect();
    if common::ctx().capabilities().subgroups && common::ctx().capabilities().subgroup_size.0 >= 8 {
        assert!(!ks.is_empty(), "subgroup kernels must run on this adapter");
    } else {
        eprintln!(
            "adapter without subgroups of 8+: subgroup kernels are not runnable here \
             (their refusal is tested in tests/errors.rs)"
        );
    }
    for k in ks {
        sweep_kernel(k);
    }
}

#[test]
fn auto_plan_on_larger_odd_shapes() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    for (m, n, k) in [
        (129, 257, 255),
        (255, 129, 257),
        (257, 255, 129),
        (1, 1031, 517),
        (5, 263, 300),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let desc = GemmDesc::new(m, n, k).transpose(ta, tb);
            if let Err(e) = run(ctx, &Case::dense(desc, true), 7) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn epilogue_alpha_bias_activations_on_every_kernel() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    for kernel in kernels() {
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            // alpha large enough that ReLU6 saturates for some entries.
            let desc = GemmDesc::new(19, 37, 23)
                .alpha(if act == Activation::Relu6 { 4.0 } else { -0.75 })
                .activation(act)
                .kernel(kernel);
            if let Err(e) = run(ctx, &Case::dense(desc, true), 11) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn batched_dense_broadcast_and_strided() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    for kernel in kernels() {
        // K = 12 with a transposed B takes the K-vector loads; the strided case's gap of
        // 4 keeps them (with A as vec4s), a gap of 3 does not.
        for (ta, tb, k, gap) in [
            (false, false, 9, 3),
            (true, true, 9, 3),
            (false, true, 9, 3),
            (false, true, 12, 4),
            (true, true, 12, 4),
            (false, true, 12, 3),
        ] {
            // Dense batch of 3.
            let desc = GemmDesc::new(13, 21, k)
                .batch(3)
                .transpose(ta, tb)
                .kernel(kernel);
            if let Err(e) = run(ctx, &Case::dense(desc.clone(), true), 3) {
                failures.push(e);
            }
            // A broadcast across the batch (rank-2 A): shared weights.
            let mut case = Case::dense(desc.clone(), false);
            let (ar, ac) = desc.stored_a();
            case.a_shape = vec![ar, ac];
            if let Err(e) = run(ctx, &case, 4) {
                failures.push(e);
            }
            // Explicit strides with gaps between matrices.
            let (br, bc) = desc.stored_b();
            let (sa, sb, sc) = (ar * ac + gap, br * bc + gap, 13 * 21 + 7);
            let strided = Case {
                desc: desc.clone().batch_strides(sa, sb, sc),
                a_shape: vec![2 * sa + ar * ac],
                b_shape: vec![2 * sb + br * bc],
                c_shape: vec![2 * sc + 13 * 21],
                bias: true,
            };
            if let Err(e) = run(ctx, &strided, 5) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn results_stay_on_gpu_and_chain() {
    // C of one GEMM feeds the next without a readback in between: (A*B)*D.
    let ctx = common::ctx();
    let (m, k, n, p) = (17, 33, 7, 5);
    let a_h = random_f32(m * k, 21);
    let b_h = random_f32(k * n, 22);
    let d_h = random_f32(n * p, 23);
    let a = Tensor::from_slice(ctx, &[m, k], &a_h).unwrap();
    let b = Tensor::from_slice(ctx, &[k, n], &b_h).unwrap();
    let d = Tensor::from_slice(ctx, &[n, p], &d_h).unwrap();
    let ab = Tensor::zeros(ctx, &[m, n], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[m, p], DType::F32).unwrap();
    let mut enc = ctx.encoder("chain");
    gemm(ctx, &mut enc, &GemmDesc::new(m, n, k), &a, &b, None, &ab).unwrap();
    gemm(ctx, &mut enc, &GemmDesc::new(m, p, n), &ab, &d, None, &out).unwrap();
    ctx.queue().submit([enc.finish()]);
    let got = out.read_blocking::<f32>(ctx).unwrap();
    let ab_ref = reference::gemm(&GemmDesc::new(m, n, k), [0, 0, 0], &a_h, &b_h, None);
    let want = reference::gemm(&GemmDesc::new(m, p, n), [0, 0, 0], &ab_ref, &d_h, None);
    let err = reference::rel_error(&got, &want);
    assert!(err < BUDGET, "chained GEMM rel. error {err:.3e}");
}

/// Register kernels with parallel split-K over odd K (slices of uneven length, a last
/// slice shorter than the rest, K shorter than the slice count), every transpose, batches
/// with broadcast and gaps, and the epilogue (which the reduce pass applies).
#[test]
fn split_k_matches_the_reference() {
    use wgpu_quant::ops::gemm::RegConfig;
    use wgpu_quant::plan::split::{gemm_split_k, slices};
    let effective_split_k = |ctx: &wgpu_quant::Context, kernel, desc: &GemmDesc| {
        slices(gemm_split_k(ctx.capabilities(), kernel, desc))
    };
    let ctx = common::ctx();
    let mut failures = Vec::new();
    let mut split_runs = 0;
    let configs = [
        RegConfig::new(64, 1, 1, 4).split_k(2),
        RegConfig::new(64, 2, 1, 4).split_k(5),
        RegConfig::new(32, 2, 2, 4).split_k(16),
        RegConfig::new(64, 8, 1, 4).split_k(3),
        RegConfig::new(64, 4, 2, 2).split_k(7),
    ];
    for cfg in configs {
        let kernel = GemmKernel::Register(cfg);
        for (m, n, k) in [
            (1, 33, 1031),
            (3, 257, 517),
            (7, 17, 3),
            (1, 1, 1),
            (9, 65, 255),
            (2, 33, 1032),
            (5, 9, 260),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let desc = GemmDesc::new(m, n, k)
                    .transpose(ta, tb)
                    .alpha(-0.75)
                    .activation(Activation::Relu)
                    .kernel(kernel);
                if effective_split_k(ctx, kernel, &desc) > 1 {
                    split_runs += 1;
                }
                if let Err(e) = run(ctx, &Case::dense(desc, true), (m + n + k) as u64) {
                    failures.push(e);
                }
            }
        }
        // Batched: dense, A broadcast, and explicit strides with gaps.
        let desc = GemmDesc::new(5, 37, 301).batch(3).kernel(kernel);
        assert!(
            effective_split_k(ctx, kernel, &desc) > 1,
            "{desc:?} must split"
        );
        if let Err(e) = run(ctx, &Case::dense(desc.clone(), true), 3) {
            failures.push(e);
        }
        let mut case = Case::dense(desc.clone(), false);
        case.a_shape = vec![5, 301];
        if let Err(e) = run(ctx, &case, 4) {
            failures.push(e);
        }
        let (sa, sb, sc) = (5 * 301 + 5, 301 * 37 + 3, 5 * 37 + 7);
        let strided = Case {
            desc: desc.batch_strides(sa, sb, sc),
            a_shape: vec![2 * sa + 5 * 301],
            b_shape: vec![2 * sb + 301 * 37],
            c_shape: vec![2 * sc + 5 * 37],
            bias: true,
        };
        if let Err(e) = run(ctx, &strided, 5) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every configuration splits the longer reductions (K = 1031, 517, 255).
    assert!(split_runs >= 5 * 3 * 4, "only {split_runs} runs were split");
}

/// Two split-K GEMMs recorded back to back share the scratch of their partial sums; the
/// second must see its own slices, not the first's.
#[test]
fn split_k_gemms_chain_through_shared_scratch() {
    use wgpu_quant::ops::gemm::RegConfig;
    let ctx = common::ctx();
    let kernel = GemmKernel::Register(RegConfig::new(64, 1, 1, 4).split_k(4));
    let (m, k, n, p) = (1, 1000, 256, 256);
    let a_h = random_f32(m * k, 31);
    let b_h = random_f32(k * n, 32);
    let d_h = random_f32(n * p, 33);
    let a = Tensor::from_slice(ctx, &[m, k], &a_h).unwrap();
    let b = Tensor::from_slice(ctx, &[k, n], &b_h).unwrap();
    let d = Tensor::from_slice(ctx, &[n, p], &d_h).unwrap();
    let ab = Tensor::zeros(ctx, &[m, n], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[m, p], DType::F32).unwrap();
    let mut enc = ctx.encoder("chain");
    let d1 = GemmDesc::new(m, n, k).kernel(kernel);
    let d2 = GemmDesc::new(m, p, n).kernel(kernel);
    gemm(ctx, &mut enc, &d1, &a, &b, None, &ab).unwrap();
    gemm(ctx, &mut enc, &d2, &ab, &d, None, &out).unwrap();
    ctx.queue().submit([enc.finish()]);
    let got = out.read_blocking::<f32>(ctx).unwrap();
    let ab_ref = reference::gemm(&GemmDesc::new(m, n, k), [0, 0, 0], &a_h, &b_h, None);
    let want = reference::gemm(&GemmDesc::new(m, p, n), [0, 0, 0], &ab_ref, &d_h, None);
    let err = reference::rel_error(&got, &want);
    assert!(err < BUDGET, "chained split-K GEMM rel. error {err:.3e}");
}

/// The register and subgroup kernels at every narrowed workgroup size (what the plan
/// picks for narrow outputs, `GemmKernel::fit`), over outputs narrower and wider than
/// one workgroup, every transpose, odd M and K.
#[test]
fn narrowed_kernels_on_narrow_outputs() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    let mut count = 0;
    for kernel in GemmKernel::narrowed()
        .into_iter()
        .filter(|k| k.fits(ctx.capabilities()))
    {
        for (m, n, k) in [
            (1, 3, 33),
            (17, 64, 9),
            (5, 65, 17),
            (33, 129, 3),
            (3, 8, 1),
            (9, 5, 36),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let desc = GemmDesc::new(m, n, k).transpose(ta, tb).kernel(kernel);
                count += 1;
                if let Err(e) = run(ctx, &Case::dense(desc, true), (m * 100 + n + k) as u64) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(count > 0, "no narrowed kernel runs here");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
