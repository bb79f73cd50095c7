//! Bad input comes back as an `Err` naming the op and the numbers, never a panic.

mod common;

use wgpu_quant::ops::gemm::{gemm, GemmDesc, GemmKernel, SubgroupConfig};
use wgpu_quant::{Context, DType, Error, Tensor};

fn f32s(ctx: &Context, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_slice(ctx, shape, &vec![1.0f32; n]).unwrap()
}

fn record(
    ctx: &Context,
    desc: &GemmDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Error {
    let mut enc = ctx.encoder("errors");
    gemm(ctx, &mut enc, desc, a, b, bias, c).expect_err("expected an error")
}

/// A device on the same adapter as the shared test context, created by "an engine" with
/// its own features and limits, and wrapped with `Context::new`.
fn engine_context(features: wgpu::Features, limits: impl FnOnce(&mut wgpu::Limits)) -> Context {
    let adapter = common::test_adapter();
    let mut l = adapter.limits();
    limits(&mut l);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: features,
        required_limits: l,
        ..Default::default()
    }))
    .expect("engine device");
    Context::new(device, queue)
}

#[test]
fn shape_mismatch_names_operand_and_shapes() {
    let ctx = common::ctx();
    let a = f32s(ctx, &[4, 5]);
    let b = f32s(ctx, &[6, 3]);
    let c = f32s(ctx, &[4, 3]);
    let e = record(ctx, &GemmDesc::new(4, 3, 6), &a, &b, None, &c);
    let msg = e.to_string();
    assert!(matches!(e, Error::Shape { op: "gemm", .. }), "{e:?}");
    assert!(
        msg.contains("A has shape [4, 5]") && msg.contains("[.., 4, 6]"),
        "{msg}"
    );

    let e = record(
        ctx,
        &GemmDesc::new(4, 3, 5).transpose(false, true),
        &a,
        &f32s(ctx, &[5, 3]),
        None,
        &c,
    );
    assert!(e.to_string().contains("B has shape [5, 3]"), "{e}");

    let e = record(
        ctx,
        &GemmDesc::new(4, 3, 5).batch(2),
        &f32s(ctx, &[3, 4, 5]),
        &f32s(ctx, &[5, 3]),
        None,
        &f32s(ctx, &[2, 4, 3]),
    );
    assert!(
        e.to_string().contains("hold 3 matrices, the batch is 2"),
        "{e}"
    );

    let e = record(ctx, &GemmDesc::new(0, 3, 5), &a, &b, None, &c);
    assert!(e.to_string().contains("at least 1"), "{e}");

    let bias = f32s(ctx, &[4]);
    let e = record(
        ctx,
        &GemmDesc::new(4, 3, 5),
        &a,
        &f32s(ctx, &[5, 3]),
        Some(&bias),
        &c,
    );
    assert!(
        e.to_string().contains("bias has shape [4]") && e.to_string().contains("n = 3"),
        "{e}"
    );

    let e = record(
        ctx,
        &GemmDesc::new(4, 3, 5).batch_strides(20, 0, 12).batch(2),
        &a,
        &f32s(ctx, &[5, 3]),
        None,
        &f32s(ctx, &[2, 4, 3]),
    );
    assert!(e.to_string().contains("needs 40"), "{e}");
}

#[test]
fn dtype_mismatch_names_operand() {
    let ctx = common::ctx();
    let a = Tensor::from_slice(ctx, &[2, 2], &[1i32, 2, 3, 4]).unwrap();
    let b = f32s(ctx, &[2, 2]);
    let c = f32s(ctx, &[2, 2]);
    let e = record(ctx, &GemmDesc::new(2, 2, 2), &a, &b, None, &c);
    assert!(
        matches!(
            e,
            Error::DType {
                operand: "A",
                expected: DType::F32,
                got: DType::I32,
                ..
            }
        ),
        "{e:?}"
    );
    let e = b
        .read_blocking::<u8>(ctx)
        .expect_err("dtype mismatch on read");
    assert!(e.to_string().contains("must be f32, got u8"), "{e}");
}

#[test]
fn output_aliasing_an_input_is_refused() {
    let ctx = common::ctx();
    let a = f32s(ctx, &[3, 3]);
    let b = f32s(ctx, &[3, 3]);
    let e = record(ctx, &GemmDesc::new(3, 3, 3), &a, &b, None, &a);
    assert!(e.to_string().contains("C shares its buffer with A"), "{e}");
}

#[test]
fn bad_tensor_construction() {
    let ctx = common::ctx();
    let e = Tensor::from_slice(ctx, &[2, 3], &[1.0f32; 5]).unwrap_err();
    assert!(
        e.to_string().contains("holds 6 elements, data has 5"),
        "{e}"
    );
    let e = Tensor::zeros(ctx, &[usize::MAX, 2], DType::F32).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let huge = ctx.capabilities().limits.max_buffer_size as usize;
    let e = Tensor::zeros(ctx, &[huge], DType::F32).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit_name: "max_buffer_size",
                ..
            }
        ),
        "{e:?}"
    );
    let t = f32s(ctx, &[4]);
    let e = t.write(ctx, &[1.0f32; 3]).unwrap_err();
    assert!(e.to_string().contains("data has 3"), "{e}");
}

#[test]
fn operand_over_binding_limit_is_refused() {
    // An engine whose device grants only 1 MiB per storage binding. Ops split their
    // operands into windows that fit (tests/dispatch.rs), but never inside one softmax
    // row: a row of 1.2 MB must be refused with the limit and the operand named.
    let ctx = engine_context(wgpu::Features::empty(), |l| {
        l.max_storage_buffer_binding_size = 1 << 20;
    });
    let x = f32s(&ctx, &[2, 300_000]); // rows of 1.2 MB
    let y = f32s(&ctx, &[2, 300_000]);
    let mut enc = ctx.encoder("errors");
    let e = wgpu_quant::ops::eltwise::softmax(&ctx, &mut enc, &x, &y).expect_err("too large");
    match &e {
        Error::LimitExceeded {
            limit_name,
            limit,
            needed,
            ..
        } => {
            assert_eq!(*limit_name, "max_storage_buffer_binding_size");
            assert_eq!(*limit, 1 << 20);
            assert!(*needed >= 1_200_000, "{e}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("operand x, whose smallest piece (rows: 1,"),
        "{e}"
    );
}

#[test]
fn kernel_needing_a_missing_feature_is_refused() {
    // An engine device created without SUBGROUP: the subgroup kernel must be refused, and
    // the plan must not choose it.
    let ctx = engine_context(wgpu::Features::empty(), |_| {});
    assert!(!ctx.capabilities().subgroups);
    let a = f32s(&ctx, &[16, 8]);
    let b = f32s(&ctx, &[8, 8]);
    let c = f32s(&ctx, &[16, 8]);
    let pinned = GemmDesc::new(16, 8, 8).kernel(GemmKernel::Subgroup(SubgroupConfig {
        wg: 64,
        tm: 16,
        tn4: 1,
    }));
    let e = record(&ctx, &pinned, &a, &b, None, &c);
    assert!(
        matches!(e, Error::MissingFeature { op: "gemm", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("SUBGROUP"), "{e}");
    // Auto plan on the same device works.
    let mut enc = ctx.encoder("auto");
    gemm(&ctx, &mut enc, &GemmDesc::new(16, 8, 8), &a, &b, None, &c).unwrap();
    ctx.queue().submit([enc.finish()]);
    assert_eq!(c.read_blocking::<f32>(&ctx).unwrap(), vec![8.0; 128]);
}

#[test]
fn invalid_kernel_config_is_refused() {
    let ctx = common::ctx();
    let a = f32s(ctx, &[8, 8]);
    let b = f32s(ctx, &[8, 8]);
    let c = f32s(ctx, &[8, 8]);
    let bad = GemmDesc::new(8, 8, 8).kernel(GemmKernel::Subgroup(SubgroupConfig {
        wg: 64,
        tm: 12,
        tn4: 1,
    }));
    let e = record(ctx, &bad, &a, &b, None, &c);
    assert!(e.to_string().contains("multiple of 8"), "{e}");
    let too_big =
        GemmDesc::new(8, 8, 8).kernel(GemmKernel::Tiled(wgpu_quant::ops::gemm::TiledConfig {
            wg_x: 64,
            wg_y: 64,
            tm: 4,
            tn: 4,
            bk: 8,
        }));
    let e = record(ctx, &too_big, &a, &b, None, &c);
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit_name: "max_compute_invocations_per_workgroup",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn destroyed_shared_device_gives_an_error_not_a_panic() {
    // A borrowed device: wgpu-quant does not take over the engine's device-lost callback,
    // so it learns of the loss from the failing call itself.
    let ctx = engine_context(wgpu::Features::empty(), |_| {});
    let t = f32s(&ctx, &[4]);
    ctx.device().destroy();
    let e = t
        .read_blocking::<f32>(&ctx)
        .expect_err("reading from a destroyed device");
    // Known from the device itself (it can no longer make a buffer), not from wgpu's
    // wording.
    assert!(matches!(e, Error::DeviceLost(_)), "{e:?}");
    let e = Tensor::from_slice(&ctx, &[2], &[1.0f32, 2.0]).expect_err("upload after destroy");
    assert!(matches!(e, Error::DeviceLost(_)), "{e:?}");
}

#[test]
fn destroyed_owned_device_reports_device_lost() {
    let name = common::ctx().capabilities().adapter.name.clone();
    let backend = common::ctx().capabilities().adapter.backend;
    let adapter = pollster::block_on(Context::adapters(wgpu::Backends::from(backend)))
        .into_iter()
        .find(|a| a.get_info().name == name)
        .unwrap();
    let ctx = pollster::block_on(Context::from_adapter(&adapter)).unwrap();
    let t = f32s(&ctx, &[4]);
    ctx.device().destroy();
    let _ = ctx.wait_idle();
    let e = t
        .read_blocking::<f32>(&ctx)
        .expect_err("reading from a destroyed device");
    assert!(matches!(e, Error::DeviceLost(_)), "{e:?}");
}

#[test]
fn unknown_backend_name_is_an_error() {
    let e = wgpu_quant::context::parse_backends("vulcan").unwrap_err();
    assert!(e.to_string().contains("unknown backend 'vulcan'"), "{e}");
}

/// The async API a browser build uses works natively too: `submit` resolves after the
/// GPU finished, `read`/`read_codes` return the results, `check_errors` is `Ok` on a
/// healthy context, and a destroyed operand is an `Err` (natively from the op itself).
#[test]
fn the_async_api_runs_natively() {
    let ctx = common::ctx();
    let a = Tensor::from_slice(ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = Tensor::from_slice(ctx, &[3, 1], &[1.0f32, 1.0, 1.0]).unwrap();
    let c = Tensor::zeros(ctx, &[2, 1], DType::F32).unwrap();
    let mut enc = ctx.encoder("async");
    gemm(ctx, &mut enc, &GemmDesc::new(2, 1, 3), &a, &b, None, &c).unwrap();
    pollster::block_on(async {
        ctx.submit(enc).await.unwrap();
        assert_eq!(c.read::<f32>(ctx).await.unwrap(), vec![6.0, 15.0]);
        ctx.check_errors().await.unwrap();
    });
    let p = wgpu_quant::quant::QuantParams::new(
        wgpu_quant::quant::QType::I8,
        wgpu_quant::quant::Granularity::PerTensor,
        &[5],
        vec![0.5],
        vec![0],
    )
    .unwrap();
    let q = wgpu_quant::QTensor::from_codes(ctx, &p, &[-128, -1, 0, 1, 127]).unwrap();
    let (codes, params) =
        pollster::block_on(async { (q.read_codes(ctx).await, q.read_params(ctx).await) });
    assert_eq!(codes.unwrap(), vec![-128, -1, 0, 1, 127]);
    assert_eq!(params.unwrap(), p);
    let gone = f32s(ctx, &[3, 1]);
    gone.buffer().destroy();
    let mut enc = ctx.encoder("async destroyed");
    let e = gemm(ctx, &mut enc, &GemmDesc::new(2, 1, 3), &a, &gone, None, &c).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    pollster::block_on(ctx.check_errors()).unwrap();
}

/// An engine's own device: `Context::with_adapter` reads the adapter's cooperative-matrix
/// list, so tensor cores are on exactly where the device has the feature and the adapter
/// lists 16x16x16 f16 with f32 sums (as `Context::request` decides); `Context::new` on the
/// same device cannot know the list and keeps them off. The FP16 GEMM then pins them or
/// refuses with the reason.
#[test]
fn cooperative_matrices_on_an_engine_device_need_its_adapter() {
    let adapter = common::test_adapter();
    let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    let has = adapter.features().contains(coop);
    let wanted = wgpu_quant::context::wanted_features() | coop;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: adapter.features() & wanted,
        required_limits: adapter.limits(),
        // SAFETY: wgpu's token for experimental features, used here for cooperative
        // matrices only.
        experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
        ..Default::default()
    }))
    .expect("engine device");
    let listed = adapter.cooperative_matrix_properties().iter().any(|c| {
        (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    });
    let with = Context::with_adapter(device.clone(), queue.clone(), &adapter);
    let plain = Context::new(device, queue);
    assert_eq!(with.capabilities().coop_f16, has && listed);
    assert_eq!(
        with.capabilities().coop_f16,
        common::ctx().capabilities().coop_f16,
        "Context::request and Context::with_adapter should agree"
    );
    assert!(!plain.capabilities().coop_f16);
    // Pinning the cooperative kernel on the plain context is an error with the reason.
    use half::f16;
    use wgpu_quant::ops::wgemm::{wgemm, WGemmDesc, Weights};
    let x = Tensor::from_slice(&plain, &[16, 16], &vec![f16::ONE; 256]).unwrap();
    let w = Tensor::from_slice(&plain, &[16, 16], &vec![f16::ONE; 256]).unwrap();
    let y = Tensor::zeros(&plain, &[16, 16], DType::F32).unwrap();
    let mut enc = plain.encoder("coop");
    let desc = WGemmDesc::default().cooperative(true);
    let msg = wgemm(&plain, &mut enc, &desc, &x, Weights::F16(&w), None, &y)
        .expect_err("no cooperative matrices through Context::new")
        .to_string();
    assert!(msg.contains("not listed"), "{msg}");
}
