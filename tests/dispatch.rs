//! The dispatcher: ops split over binding limits (on a device with a lowered
//! `max_storage_buffer_binding_size`), capability fallbacks (features and limits held
//! back with `Overrides`), the bind-group pool (nothing allocated after warm-up), and
//! autotuning with its JSON cache.

mod common;

use wgpu_quant::bench::random_f32;
use wgpu_quant::context::Overrides;
use wgpu_quant::ops::gemm::{gemm, Activation, GemmDesc, GemmKernel, TiledConfig};
use wgpu_quant::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::ops::wgemm::{wgemm, WGemmDesc, Weights};
use wgpu_quant::plan::tune::{Choice, ShapeClass, TuneCache, TuneOptions, Tuner, WeightKind};
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::{Context, DType, Error, RequestOptions, Tensor};

/// A context on the test adapter with `overrides` applied at device creation.
fn context_with(overrides: Overrides) -> Context {
    let caps = common::ctx().capabilities();
    let adapter = pollster::block_on(Context::adapters(wgpu::Backends::from(
        caps.adapter.backend,
    )))
    .into_iter()
    .find(|a| a.get_info().name == caps.adapter.name)
    .expect("the test adapter is listed");
    pollster::block_on(Context::from_adapter_with(&adapter, &overrides)).expect("device")
}

fn small_bindings(bytes: u64) -> Context {
    context_with(Overrides {
        max_storage_buffer_binding_size: Some(bytes),
        ..Default::default()
    })
}

/// Runs `desc` with bias and compares every entry with the f64 reference.
fn check_gemm(ctx: &Context, desc: &GemmDesc, seed: u64) -> f64 {
    let (ar, ac) = desc.stored_a();
    let (br, bc) = desc.stored_b();
    let a_h = random_f32(desc.batch * ar * ac, seed);
    let b_h = random_f32(desc.batch * br * bc, seed + 1);
    let bias_h = random_f32(desc.n, seed + 2);
    let a = Tensor::from_slice(ctx, &[desc.batch, ar, ac], &a_h).unwrap();
    let b = Tensor::from_slice(ctx, &[desc.batch, br, bc], &b_h).unwrap();
    let bias = Tensor::from_slice(ctx, &[desc.n], &bias_h).unwrap();
    let c = Tensor::from_slice(
        ctx,
        &[desc.batch, desc.m, desc.n],
        &vec![f32::NAN; desc.batch * desc.m * desc.n],
    )
    .unwrap();
    let mut enc = ctx.encoder("split gemm");
    gemm(ctx, &mut enc, desc, &a, &b, Some(&bias), &c).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let got = c.read_blocking::<f32>(ctx).unwrap();
    let strides = desc
        .resolve_strides(a.shape(), b.shape(), c.shape())
        .unwrap();
    let want: Vec<f32> = (0..got.len())
        .map(|idx| {
            let (bt, rem) = (idx / (desc.m * desc.n), idx % (desc.m * desc.n));
            wgpu_quant::reference::gemm_at(
                desc,
                strides,
                &a_h,
                &b_h,
                Some(&bias_h),
                bt,
                rem / desc.n,
                rem % desc.n,
            ) as f32
        })
        .collect();
    wgpu_quant::reference::rel_error(&got, &want)
}

#[test]
fn gemm_splits_operands_larger_than_a_binding() {
    // 16 KiB bindings: every operand below is larger, most by far.
    let ctx = small_bindings(16 << 10);
    assert_eq!(
        ctx.capabilities().limits.max_storage_buffer_binding_size,
        16 << 10
    );
    let cases = [
        // (m, n, k, trans_a, trans_b, batch)
        (1, 3000, 700, false, true, 1), // GEMV over a [N, K] weight: split along N
        (1, 700, 3000, false, false, 1), // GEMV over a [K, N] weight: split along K
        (97, 130, 61, false, false, 1),
        (70, 90, 257, true, false, 1),
        (33, 77, 300, false, true, 1),
        (65, 66, 129, true, true, 1),
        (19, 45, 200, false, false, 3), // batched: each entry alone
    ];
    for (m, n, k, ta, tb, batch) in cases {
        for act in [Activation::None, Activation::Relu] {
            let desc = GemmDesc::new(m, n, k)
                .transpose(ta, tb)
                .batch(batch)
                .alpha(0.5)
                .activation(act);
            let plan = wgpu_quant::plan::explain_gemm(&ctx, &desc).unwrap();
            assert!(plan.pieces > 1, "{desc:?} should be split: {plan:?}");
            let err = check_gemm(&ctx, &desc, 7 + m as u64);
            assert!(
                err < 1e-5,
                "{m}x{n}x{k} ta {ta} tb {tb} batch {batch} {act:?} in {} pieces: rel. error {err:.2e}",
                plan.pieces
            );
        }
    }
    // Every kernel family splits the same way.
    let desc = GemmDesc::new(40, 100, 150).activation(Activation::Relu6);
    for k in GemmKernel::all()
        .into_iter()
        .filter(|k| k.fits(ctx.capabilities()))
    {
        let err = check_gemm(&ctx, &desc.clone().kernel(k), 3);
        assert!(err < 1e-5, "{k:?}: rel. error {err:.2e}");
    }
}

#[test]
fn unsplittable_ops_name_the_binding_limit() {
    let ctx = small_bindings(16 << 10);
    let (m, n, k) = (4, 64, 4096); // weight of 256 KiB
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[n, k],
        vec![0.1],
        vec![0],
    )
    .unwrap();
    let w = QTensor::from_codes(&ctx, &p, &vec![1; n * k]).unwrap();
    let x = Tensor::zeros(&ctx, &[m, k], DType::F32).unwrap();
    let y = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let mut enc = ctx.encoder("too big");
    let e = wgemm(
        &ctx,
        &mut enc,
        &WGemmDesc::default(),
        &x,
        Weights::Quantized(&w),
        None,
        &y,
    )
    .expect_err("the weight exceeds the binding limit");
    match e {
        Error::LimitExceeded {
            limit_name, limit, ..
        } => {
            assert_eq!(limit_name, "max_storage_buffer_binding_size");
            assert_eq!(limit, 16 << 10);
        }
        other => panic!("expected LimitExceeded, got {other}"),
    }
}

/// The W8A8, weight-only and FP32 GEMMs give the reference's results on a device with
/// the given features held back.
fn run_linear_ops(ctx: &Context) {
    let (m, n, k) = (5, 37, 70);
    let codes_a: Vec<i32> = (0..m * k).map(|i| (i * 37 % 255) as i32 - 127).collect();
    let codes_w: Vec<i32> = (0..n * k).map(|i| (i * 91 % 255) as i32 - 127).collect();
    let pa = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[m, k],
        vec![0.5],
        vec![3],
    )
    .unwrap();
    let pw = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[n, k],
        vec![0.25],
        vec![0],
    )
    .unwrap();
    let a = QTensor::from_codes(ctx, &pa, &codes_a).unwrap();
    let w = QTensor::from_codes(ctx, &pw, &codes_w).unwrap();
    let acc = Tensor::zeros(ctx, &[m, n], DType::I32).unwrap();
    let mut enc = ctx.encoder("w8a8");
    qgemm(
        ctx,
        &mut enc,
        &QGemmDesc::default(),
        &a,
        &w,
        None,
        QGemmOutput::I32(&acc),
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let want: Vec<i32> =
        wgpu_quant::reference::qgemm_i32(&codes_a, &[3; 5], &codes_w, &[0; 37], (m, n, k))
            .into_iter()
            .map(Option::unwrap)
            .collect();
    assert_eq!(acc.read_blocking::<i32>(ctx).unwrap(), want, "W8A8 int32");

    for ta in [false, true] {
        let desc = GemmDesc::new(33, 20, 17).transpose(ta, false);
        let err = check_gemm(ctx, &desc, 5);
        assert!(err < 1e-5, "FP32 GEMM {desc:?}: {err:.2e}");
    }
}

#[test]
fn fallbacks_without_subgroups_packed_dot_or_f16() {
    let ctx = context_with(Overrides {
        disable_features: wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16,
        disable_packed_int8_dot: true,
        ..Default::default()
    });
    let caps = ctx.capabilities();
    assert!(!caps.subgroups && !caps.shader_f16 && !caps.packed_int8_dot);
    assert!(!ctx.device().features().contains(wgpu::Features::SUBGROUP));
    // The plan never picks the subgroup kernel here, and the linear ops still run.
    for m in [1, 5, 64, 300] {
        let k = wgpu_quant::plan::gemm_kernel(&ctx, &GemmDesc::new(m, 256, 256));
        assert!(!matches!(k, GemmKernel::Subgroup(_)), "m {m}: {k:?}");
    }
    run_linear_ops(&ctx);
    // Pinning the packed dot product without it is an error, not a wrong result.
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerTensor,
        &[2, 8],
        vec![1.0],
        vec![0],
    )
    .unwrap();
    let q = QTensor::from_codes(&ctx, &p, &[1; 16]).unwrap();
    let out = Tensor::zeros(&ctx, &[2, 2], DType::I32).unwrap();
    let mut enc = ctx.encoder("pinned");
    let e = qgemm(
        &ctx,
        &mut enc,
        &QGemmDesc::default().packed_dot(true),
        &q,
        &q,
        None,
        QGemmOutput::I32(&out),
    )
    .expect_err("no packed dot");
    assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
    // f16 storage still works without f16 arithmetic (the FP16 GEMM with f32 math).
    let (m, n, k) = (3, 9, 40);
    let wh: Vec<half::f16> = random_f32(n * k, 4)
        .into_iter()
        .map(half::f16::from_f32)
        .collect();
    let x_h = random_f32(m * k, 5);
    let wt = Tensor::from_slice(&ctx, &[n, k], &wh).unwrap();
    let x = Tensor::from_slice(&ctx, &[m, k], &x_h).unwrap();
    let y = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let mut enc = ctx.encoder("fp16 gemm");
    wgemm(
        &ctx,
        &mut enc,
        &WGemmDesc::default(),
        &x,
        Weights::F16(&wt),
        None,
        &y,
    )
    .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let w64: Vec<f64> = wh.iter().map(|v| f64::from(v.to_f32())).collect();
    let x64: Vec<f64> = x_h.iter().map(|&v| f64::from(v)).collect();
    let want: Vec<f32> =
        wgpu_quant::reference::linear_f64(&x64, &w64, None, Activation::None, (m, n, k))
            .into_iter()
            .map(|v| v as f32)
            .collect();
    let err = wgpu_quant::reference::rel_error(&y.read_blocking::<f32>(&ctx).unwrap(), &want);
    assert!(err < 1e-5, "FP16 GEMM without SHADER_F16: {err:.2e}");
}

#[test]
fn fallbacks_under_small_workgroup_limits() {
    // 32 invocations and 4 KiB of workgroup memory: the 256-invocation tiled kernels and
    // the 64-wide row tiles do not fit; the plan shrinks or replaces them.
    let ctx = context_with(Overrides {
        max_compute_invocations_per_workgroup: Some(32),
        max_compute_workgroup_storage_size: Some(4096),
        ..Default::default()
    });
    let caps = ctx.capabilities().clone();
    assert_eq!(caps.limits.max_compute_invocations_per_workgroup, 32);
    for (m, n) in [(1, 256), (8, 64), (300, 300), (1024, 1024)] {
        let desc = GemmDesc::new(m, n, 128);
        let k = wgpu_quant::plan::gemm_kernel(&ctx, &desc);
        assert!(k.fits(&caps), "{m}x{n}: {k:?} does not fit");
        // And as a GPU would plan it (the tiled family is the GPU default).
        let mut gpu = caps.clone();
        gpu.adapter.device_type = wgpu::DeviceType::DiscreteGpu;
        let k = wgpu_quant::plan::default_gemm_kernel(&gpu, &desc);
        assert!(k.fits(&gpu), "GPU plan {m}x{n}: {k:?} does not fit");
        let t = wgpu_quant::plan::default_qgemm_config(&caps, m, n);
        assert!(t.wg <= 32, "{t:?}");
        let t = wgpu_quant::plan::default_wgemm_config(&caps, m);
        assert!(t.wg <= 32, "{t:?}");
    }
    // A pinned kernel over the limits is an error naming it.
    let big = GemmKernel::Tiled(GemmKernel::TILED[1]);
    let a = Tensor::zeros(&ctx, &[8, 8], DType::F32).unwrap();
    let c = Tensor::zeros(&ctx, &[8, 8], DType::F32).unwrap();
    let mut enc = ctx.encoder("pinned");
    let e = gemm(
        &ctx,
        &mut enc,
        &GemmDesc::new(8, 8, 8).kernel(big),
        &a,
        &a,
        None,
        &c,
    )
    .expect_err("over the invocation limit");
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit_name: "max_compute_invocations_per_workgroup",
                ..
            }
        ),
        "{e}"
    );
    run_linear_ops(&ctx);
}

#[test]
fn a_frame_allocates_nothing_after_warm_up() {
    let ctx = context_with(Overrides::default());
    let (m, n, k) = (4, 48, 96);
    let x = Tensor::from_slice(&ctx, &[m, k], &random_f32(m * k, 1)).unwrap();
    let b = Tensor::from_slice(&ctx, &[k, n], &random_f32(k * n, 2)).unwrap();
    let h = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let y = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let layer =
        wgpu_quant::ops::qgemm::QLinear::from_f32(&ctx, &random_f32(n * n, 3), n, n, None).unwrap();
    let frame = |ctx: &Context| {
        let mut enc = ctx.encoder("frame");
        gemm(ctx, &mut enc, &GemmDesc::new(m, n, k), &x, &b, None, &h).unwrap();
        layer.forward(ctx, &mut enc, &h, &y).unwrap();
        ctx.queue().submit([enc.finish()]);
    };
    frame(&ctx);
    let warm = ctx.stats();
    assert!(warm.bind_groups_created >= 3, "{warm:?}");
    for _ in 0..3 {
        frame(&ctx);
    }
    ctx.wait_idle().unwrap();
    let after = ctx.stats();
    assert_eq!(after.tensors_allocated, warm.tensors_allocated, "{after:?}");
    assert_eq!(
        after.bind_groups_created, warm.bind_groups_created,
        "{after:?}"
    );
    assert_eq!(after.uniform_buffers_created, warm.uniform_buffers_created);
    assert_eq!(after.scratch_buffers_created, warm.scratch_buffers_created);
    assert_eq!(after.kernels, warm.kernels);
    assert!(
        after.bind_group_reuses >= warm.bind_group_reuses + 9,
        "{after:?}"
    );
    // Pooling off: every recording makes its bind group again, same results.
    ctx.set_pool_capacity(0);
    ctx.clear_pool();
    frame(&ctx);
    let off = ctx.stats();
    assert!(off.bind_groups_created >= after.bind_groups_created + 3);
    assert_eq!(off.pooled_bind_groups, 0);
}

#[test]
fn tuning_verifies_times_and_round_trips_through_json() {
    let ctx = context_with(Overrides::default());
    let mut cache = TuneCache::new();
    let opts = TuneOptions {
        warmup: 0,
        runs: 2,
        margin: 0.03,
    };
    let desc = GemmDesc::new(24, 40, 64);
    let (g, q, w) = {
        let mut tuner = Tuner::new(&ctx, &mut cache, opts);
        // An invalid candidate (tm must be a multiple of 4) is rejected, never chosen.
        let bad = GemmKernel::Tiled(TiledConfig {
            wg_x: 8,
            wg_y: 8,
            tm: 3,
            tn: 4,
            bk: 8,
        });
        let g = tuner.gemm_with(&desc, &[bad]).unwrap();
        assert!(
            g.rejected.iter().any(|r| r.contains("tm")),
            "{:?}",
            g.rejected
        );
        assert_ne!(g.choice, Choice::Gemm(bad));
        let q = tuner.qgemm(3, 40, 72).unwrap();
        let w = tuner.wgemm(2, 40, 64, WeightKind::I4).unwrap();
        (g, q, w)
    };
    for t in [&g, &q, &w] {
        assert!(t.verified >= 2, "{t:?}");
        assert!(t.median_ms <= t.default_ms, "{t:?}");
        assert!(t.median_ms > 0.0 && t.default_ms.is_finite());
    }
    assert_eq!(cache.len(), 3);
    // JSON round trip, then installed: the plan reports the tuned source and choice.
    let path = std::env::temp_dir().join(format!("wgpu-quant-tune-{}.json", std::process::id()));
    cache.save(&path).unwrap();
    let loaded = TuneCache::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded, cache);
    ctx.set_tuning(Some(loaded));
    let plan = wgpu_quant::plan::explain_gemm(&ctx, &desc).unwrap();
    assert_eq!(plan.source, wgpu_quant::plan::Source::Tuned);
    assert_eq!(plan.choice, g.choice);
    assert_eq!(plan.class, ShapeClass::gemm(&desc).0);
    let plan = wgpu_quant::plan::explain_qgemm(&ctx, 3, 40, 72);
    assert_eq!(plan.choice, q.choice);
    // Entries of another adapter are ignored.
    let mut other = cache.clone();
    other.adapters[0]
        .adapter
        .driver_info
        .push_str(" (another driver)");
    ctx.set_tuning(Some(other));
    let plan = wgpu_quant::plan::explain_gemm(&ctx, &desc).unwrap();
    assert_eq!(plan.source, wgpu_quant::plan::Source::Heuristic);
    // A damaged file is an error naming it.
    let e = TuneCache::from_json("{\"version\": 1}", "cache.json").unwrap_err();
    assert!(e.to_string().contains("cache.json"), "{e}");
    let e = TuneCache::from_json("{\"version\": 99, \"adapters\": []}", "c.json").unwrap_err();
    assert!(e.to_string().contains("version 99"), "{e}");
}

#[test]
fn request_options_carry_overrides() {
    let ctx = Context::request_blocking(&RequestOptions {
        overrides: Overrides {
            max_storage_buffer_binding_size: Some(1 << 20),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        ctx.device().limits().max_storage_buffer_binding_size,
        1 << 20
    );
    assert_eq!(
        ctx.capabilities().limits.max_storage_buffer_binding_size,
        1 << 20
    );
}
