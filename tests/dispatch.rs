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
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::tuning::{
    Choice, ShapeClass, TuneCache, TuneOptions, Tuner, WeightKind, WeightType,
};
use wgpu_quant::{Context, DType, Error, RequestOptions, Tensor};

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
    let ctx = common::small_bindings(16 << 10);
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

/// Runs `f` (which records one op on its context, submits and reads the output back as
/// words) on the test context and on a device with 64 KiB bindings and 256-byte offset
/// alignment, where the op must run in pieces, and compares the results bit for bit:
/// the pieces run the same kernel as the whole op, so the outputs must be identical.
fn same_in_pieces(
    what: &str,
    min_pieces: u64,
    f: &dyn Fn(&Context) -> wgpu_quant::Result<Vec<u32>>,
    small: &Context,
    failures: &mut Vec<String>,
) {
    let whole = match f(common::ctx()) {
        Ok(v) => v,
        Err(e) => return failures.push(format!("{what}, whole: {e}")),
    };
    let before = small.stats().split_dispatches;
    let split = match f(small) {
        Ok(v) => v,
        Err(e) => return failures.push(format!("{what}, in pieces: {e}")),
    };
    let pieces = small.stats().split_dispatches - before;
    if pieces < min_pieces {
        failures.push(format!(
            "{what}: {pieces} pieces, expected at least {min_pieces}"
        ));
    }
    if let Some(i) = (0..whole.len()).find(|&i| whole[i] != split[i]) {
        failures.push(format!(
            "{what}: word {i} of {} differs: {:#010x} whole, {:#010x} in pieces",
            whole.len(),
            whole[i],
            split[i]
        ));
    }
}

fn words(ctx: &Context, t: &Tensor) -> wgpu_quant::Result<Vec<u32>> {
    let raw = Tensor::from_buffer(
        t.buffer().clone(),
        &[t.buffer().size() as usize / 4],
        DType::U32,
    )?;
    raw.read_blocking::<u32>(ctx)
}

fn upload(ctx: &Context, shape: &[usize], seed: u64, f16: bool) -> wgpu_quant::Result<Tensor> {
    let v = random_f32(shape.iter().product(), seed);
    if f16 {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        Tensor::from_slice(ctx, shape, &h)
    } else {
        Tensor::from_slice(ctx, shape, &v)
    }
}

fn quantized(
    ctx: &Context,
    shape: &[usize],
    qtype: QType,
    g: Granularity,
    seed: u64,
) -> wgpu_quant::Result<QTensor> {
    let x = random_f32(shape.iter().product(), seed);
    let scheme = wgpu_quant::quant::QuantScheme::asymmetric(qtype).with_granularity(g);
    let p = QuantParams::from_data(&scheme, shape, &x)?;
    QTensor::from_codes(ctx, &p, &p.quantize(&x)?)
}

#[test]
fn every_op_splits_operands_over_the_binding_limit() {
    use wgpu_quant::ops::conv::{
        conv2d, qconv2d, ConvDesc, ConvDims, ConvWeight, Padding, QConvWeight,
    };
    use wgpu_quant::ops::eltwise::{add, channel_affine, clip, layer_norm, qadd, softmax, Clip};
    use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
    use wgpu_quant::ops::pool::{pool2d, PoolDesc, PoolKind};
    use wgpu_quant::ops::quant::{
        dequantize, dynamic_quantize, min_max, quantize, ChannelView, DynamicQuant,
    };
    use wgpu_quant::ops::wgemm::HalfMath;
    use wgpu_quant::quant::QuantScheme;

    let small = common::context_with(Overrides {
        max_storage_buffer_binding_size: Some(64 << 10),
        min_storage_buffer_offset_alignment: Some(256),
        ..Default::default()
    });
    assert_eq!(
        small
            .capabilities()
            .limits
            .min_storage_buffer_offset_alignment,
        256
    );
    let mut failures = Vec::new();
    let run = |ctx: &Context, enc: wgpu::CommandEncoder, out: &Tensor| {
        ctx.submit_and_wait(enc)?;
        words(ctx, out)
    };

    // Convolutions over a batch of 6 images of 20x20 (x and output over 64 KiB): FP32
    // implicit GEMM, depthwise, f16 storage, and INT8 (implicit GEMM and depthwise).
    for (name, dims, f16) in [
        (
            "conv2d 3x3",
            ConvDims::new(16, 8, [3, 3], 1).unwrap(),
            false,
        ),
        (
            "conv2d 3x3 groups 2",
            ConvDims::new(16, 8, [3, 3], 2).unwrap(),
            false,
        ),
        (
            "conv2d depthwise",
            ConvDims::new(16, 16, [3, 3], 16).unwrap(),
            false,
        ),
        ("conv2d f16", ConvDims::new(16, 8, [3, 3], 1).unwrap(), true),
    ] {
        let f = |ctx: &Context| {
            let c = dims.in_channels;
            let x = upload(ctx, &[6, 20, 20, c], 1, f16)?;
            let w = ConvWeight::from_oihw(
                ctx,
                dims,
                &random_f32(dims.oihw().iter().product(), 2),
                if f16 { DType::F16 } else { DType::F32 },
            )?;
            let bias = upload(ctx, &[16], 3, false)?;
            let out = Tensor::zeros(
                ctx,
                &[6, 20, 20, 16],
                if f16 { DType::F16 } else { DType::F32 },
            )?;
            let desc = ConvDesc::default()
                .padding(Padding::uniform(1))
                .math(HalfMath::F32)
                .activation(Activation::Relu);
            let mut enc = ctx.encoder(name);
            conv2d(ctx, &mut enc, &desc, &x, &w, Some(&bias), &out)?;
            run(ctx, enc, &out)
        };
        same_in_pieces(name, 2, &f, &small, &mut failures);
    }
    for (name, dims) in [
        ("qconv2d 3x3", ConvDims::new(16, 8, [3, 3], 1).unwrap()),
        (
            "qconv2d depthwise",
            ConvDims::new(16, 16, [3, 3], 16).unwrap(),
        ),
    ] {
        let f = |ctx: &Context| {
            let x = quantized(
                ctx,
                &[6, 20, 20, dims.in_channels],
                QType::U8,
                Granularity::PerTensor,
                4,
            )?;
            let w = QConvWeight::quantize(
                ctx,
                dims,
                &random_f32(dims.oihw().iter().product(), 5),
                &QuantScheme::symmetric(QType::I8).per_channel(0),
            )?;
            let out = Tensor::zeros(ctx, &[6, 20, 20, 16], DType::I32)?;
            let desc = ConvDesc::default().padding(Padding::uniform(1));
            let mut enc = ctx.encoder(name);
            qconv2d(ctx, &mut enc, &desc, &x, &w, None, QGemmOutput::I32(&out))?;
            run(ctx, enc, &out)
        };
        same_in_pieces(name, 2, &f, &small, &mut failures);
    }
    for (name, kind, f16) in [
        ("max pool", PoolKind::Max, false),
        ("avg pool f16", PoolKind::Avg, true),
    ] {
        let f = |ctx: &Context| {
            let x = upload(ctx, &[6, 20, 20, 16], 6, f16)?;
            let desc = PoolDesc::new(kind, 3, 2).padding(Padding::uniform(1));
            let out = Tensor::zeros(ctx, &desc.output_shape(x.shape())?, x.dtype())?;
            let mut enc = ctx.encoder(name);
            pool2d(ctx, &mut enc, &desc, &x, &out)?;
            run(ctx, enc, &out)
        };
        same_in_pieces(name, 2, &f, &small, &mut failures);
    }

    // Elementwise ops over 40 000 elements (160 KB in f32), softmax over 300 rows.
    for (name, f16) in [("add", false), ("add f16", true)] {
        let f = |ctx: &Context| {
            let a = upload(ctx, &[40_000], 7, f16)?;
            let b = upload(ctx, &[40_000], 8, false)?;
            let out = Tensor::zeros(ctx, &[40_000], a.dtype())?;
            let mut enc = ctx.encoder(name);
            add(ctx, &mut enc, &a, &b, Clip::RELU6, &out)?;
            run(ctx, enc, &out)
        };
        same_in_pieces(name, 2, &f, &small, &mut failures);
    }
    let f = |ctx: &Context| {
        let x = upload(ctx, &[40_001], 9, false)?;
        let out = Tensor::zeros(ctx, &[40_001], DType::F16)?;
        let mut enc = ctx.encoder("clip");
        clip(ctx, &mut enc, &x, Clip::RELU, &out)?;
        run(ctx, enc, &out)
    };
    same_in_pieces("clip to f16", 2, &f, &small, &mut failures);
    let f = |ctx: &Context| {
        let x = upload(ctx, &[300, 101], 10, false)?;
        let out = Tensor::zeros(ctx, &[300, 101], DType::F32)?;
        let mut enc = ctx.encoder("softmax");
        softmax(ctx, &mut enc, &x, &out)?;
        run(ctx, enc, &out)
    };
    same_in_pieces("softmax", 2, &f, &small, &mut failures);
    let f = |ctx: &Context| {
        let x = upload(ctx, &[300, 101], 13, false)?;
        let g = upload(ctx, &[101], 14, false)?;
        let out = Tensor::zeros(ctx, &[300, 101], DType::F32)?;
        let mut enc = ctx.encoder("layer norm");
        layer_norm(ctx, &mut enc, &x, Some(&g), Some(&g), 1e-5, &out)?;
        run(ctx, enc, &out)
    };
    same_in_pieces("layer norm", 2, &f, &small, &mut failures);
    // 101 channels: the pieces start inside a row, so the channel of each element comes
    // from its index in the whole tensor.
    let f = |ctx: &Context| {
        let x = upload(ctx, &[400, 101], 15, false)?;
        let (sc, sh) = (
            upload(ctx, &[101], 16, false)?,
            upload(ctx, &[101], 17, false)?,
        );
        let out = Tensor::zeros(ctx, &[400, 101], DType::F32)?;
        let mut enc = ctx.encoder("channel affine");
        channel_affine(ctx, &mut enc, &x, &sc, &sh, &out)?;
        run(ctx, enc, &out)
    };
    same_in_pieces("channel affine", 2, &f, &small, &mut failures);
    let f = |ctx: &Context| {
        let a = quantized(ctx, &[300, 301], QType::U8, Granularity::PerTensor, 11)?;
        let b = quantized(ctx, &[300, 301], QType::I8, Granularity::PerTensor, 12)?;
        let p = QuantParams::new(
            QType::I8,
            Granularity::PerTensor,
            &[300, 301],
            vec![0.02],
            vec![3],
        )?;
        let out = QTensor::new(ctx, &p)?;
        let mut enc = ctx.encoder("qadd");
        qadd(ctx, &mut enc, &a, &b, Clip::NONE, &out)?;
        run(ctx, enc, out.data())
    };
    same_in_pieces("qadd", 2, &f, &small, &mut failures);

    // Quantize and dequantize at every granularity (scales and zero points bound as
    // windows that move with the rows), dynamic quantization and its statistics.
    for (name, shape, qtype, g) in [
        (
            "per tensor",
            vec![400, 101],
            QType::I8,
            Granularity::PerTensor,
        ),
        ("per row", vec![400, 101], QType::U8, Granularity::PerRow),
        (
            "per channel, last axis",
            vec![400, 101],
            QType::I8,
            Granularity::PerChannel { axis: 1 },
        ),
        (
            "per channel, axis 0",
            vec![300, 2, 100],
            QType::I8,
            Granularity::PerChannel { axis: 0 },
        ),
        (
            "per channel, axis 1 of 3",
            vec![30, 10, 128],
            QType::U8,
            Granularity::PerChannel { axis: 1 },
        ),
        (
            "i4 per group",
            vec![300, 128],
            QType::I4,
            Granularity::PerGroup {
                axis: 1,
                group_size: 32,
            },
        ),
    ] {
        let fq = |ctx: &Context| {
            let x = upload(ctx, &shape, 13, false)?;
            let q = quantized(ctx, &shape, qtype, g, 13)?;
            let mut enc = ctx.encoder("quantize");
            quantize(ctx, &mut enc, &x, &q)?;
            run(ctx, enc, q.data())
        };
        same_in_pieces(&format!("quantize {name}"), 2, &fq, &small, &mut failures);
        for f16 in [false, true] {
            let fd = |ctx: &Context| {
                let q = quantized(ctx, &shape, qtype, g, 14)?;
                let out = Tensor::zeros(ctx, &shape, if f16 { DType::F16 } else { DType::F32 })?;
                let mut enc = ctx.encoder("dequantize");
                dequantize(ctx, &mut enc, &q, &out)?;
                run(ctx, enc, &out)
            };
            same_in_pieces(
                &format!("dequantize {name} f16 {f16}"),
                2,
                &fd,
                &small,
                &mut failures,
            );
        }
    }
    for (name, spec) in [
        ("onnx", DynamicQuant::onnx()),
        ("per row", DynamicQuant::per_row_i8()),
    ] {
        let f = |ctx: &Context| {
            let x = upload(ctx, &[300, 101], 15, false)?;
            let q = QTensor::for_dynamic(ctx, &spec, &[300, 101])?;
            let mut enc = ctx.encoder("dynamic");
            dynamic_quantize(ctx, &mut enc, &x, &spec, &q)?;
            let mut v = run(ctx, enc, q.data())?;
            v.extend(words(ctx, q.scales())?);
            v.extend(words(ctx, q.zero_points())?);
            Ok(v)
        };
        same_in_pieces(
            &format!("dynamic_quantize {name}"),
            2,
            &f,
            &small,
            &mut failures,
        );
    }
    let f = |ctx: &Context| {
        let x = upload(ctx, &[300, 101], 16, false)?;
        let view = ChannelView {
            outer: 1,
            channels: 1,
            inner: 300 * 101,
        };
        let mm = min_max(ctx, &x, &view)?;
        let view = ChannelView {
            outer: 300,
            channels: 101,
            inner: 1,
        };
        let mc = min_max(ctx, &x, &view)?;
        Ok(mm
            .min
            .iter()
            .chain(&mm.max)
            .chain(&mc.min)
            .chain(&mc.max)
            .map(|v| v.to_bits())
            .collect())
    };
    same_in_pieces("min_max", 2, &f, &small, &mut failures);

    // Image to tensor: a 100x100 f32 crop (120 KB) in pieces of rows.
    let f = |ctx: &Context| {
        let (w, h) = (64usize, 48usize);
        let px: Vec<u32> = (0..w * h)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761))
            .collect();
        let pixels = Tensor::from_slice(ctx, &[w * h], &px)?;
        let desc =
            ImageDesc::center_crop(120, 100, 100).normalize([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]);
        let out = Tensor::zeros(ctx, &desc.output_shape(), DType::F32)?;
        let mut enc = ctx.encoder("image");
        image_to_tensor(
            ctx,
            &mut enc,
            ImageSource::Buffer {
                pixels: &pixels,
                width: w,
                height: h,
            },
            &desc,
            &out,
        )?;
        run(ctx, enc, &out)
    };
    same_in_pieces("image_to_tensor", 2, &f, &small, &mut failures);

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ops_refuse_a_piece_larger_than_a_binding() {
    // One weight row is 4 KiB, but a piece of output columns must start at a 256-byte
    // aligned offset of the f32 output, so it takes at least 64 rows: 256 KiB.
    let ctx = common::small_bindings(16 << 10);
    let (m, n, k) = (4, 64, 4096);
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
    assert!(e.to_string().contains("operand weight"), "{e}");
    match e {
        Error::LimitExceeded {
            limit_name,
            limit,
            needed,
            ..
        } => {
            assert_eq!(limit_name, "max_storage_buffer_binding_size");
            assert_eq!(limit, 16 << 10);
            assert!(needed > limit);
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
    let ctx = common::context_with(Overrides {
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
    let ctx = common::context_with(Overrides {
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
        let t = wgpu_quant::plan::default_qgemm_config(&caps, m, n, 128);
        assert!(t.wg <= 32, "{t:?}");
        let t = wgpu_quant::plan::default_wgemm_config(&caps, m, n, 128, WeightType::I8);
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

/// The split-K heuristic: GEMV-like shapes split until the workgroups reach the
/// device's target (256 on GPUs; 4 per core, FP32 only, on CPU adapters), never with
/// short K or many output tiles; the GPU's plan runs correctly here; the plans report
/// the slices.
#[test]
fn split_k_heuristic_follows_the_device() {
    use wgpu_quant::ops::gemm::RegConfig;
    use wgpu_quant::plan::{self, default_split_k, split_k_target, SPLIT_K_MAX, SPLIT_K_TARGET};
    let ctx = common::ctx();
    // The rule is checked on this adapter's capabilities seen as a CPU adapter and as a
    // GPU, whatever the adapter is (lavapipe in CI, a GPU where one is lent).
    let mut caps = ctx.capabilities().clone();
    caps.adapter.device_type = wgpu::DeviceType::Cpu;
    let mut gpu = caps.clone();
    gpu.adapter.device_type = wgpu::DeviceType::DiscreteGpu;
    // The rule itself. CPU adapters aim at 4 workgroups per core of this machine.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(split_k_target(&caps), 4 * cores);
    assert_eq!(split_k_target(&gpu), SPLIT_K_TARGET);
    assert_eq!(default_split_k(&caps, 4 * cores, 1 << 20), 1);
    // One workgroup: as many slices as the target wants, each at least
    // SPLIT_K_MIN_SLICE_CPU long (4 of K = 4096).
    let one_wg = 1u32 << (4 * cores).min(16).min(4).ilog2();
    assert_eq!(default_split_k(&caps, 1, 4096), one_wg);
    assert_eq!(default_split_k(&gpu, 16, 4096), 16);
    assert_eq!(default_split_k(&gpu, 8, 1 << 20), SPLIT_K_MAX);
    assert_eq!(
        default_split_k(&gpu, 100, 4096),
        2,
        "256 / 100 rounds down to 2"
    );
    assert_eq!(default_split_k(&gpu, SPLIT_K_TARGET, 1 << 20), 1);
    assert_eq!(default_split_k(&gpu, 16, 700), 2, "slices of at least 256");
    assert_eq!(default_split_k(&gpu, 16, 511), 1);
    // Per op, as a GPU plans a 4096x4096 GEMV (16 FP32 tiles of 256 columns, 8 W8A8
    // and weight-only tiles of 512).
    let gemv = GemmDesc::new(1, 4096, 4096);
    let k = plan::default_gemm_kernel(&gpu, &gemv);
    assert_eq!(
        k,
        GemmKernel::Register(RegConfig::new(64, 1, 1, 4).split_k(16))
    );
    assert_eq!(plan::default_qgemm_config(&gpu, 1, 4096, 4096).split_k, 16);
    assert_eq!(
        plan::default_wgemm_config(&gpu, 1, 4096, 4096, WeightType::I8).split_k,
        16
    );
    // The CPU plans of the same GEMV, by the CPU target.
    let want = RegConfig::new(64, 1, 1, 4).split_k(default_split_k(&caps, 16, 4096));
    assert_eq!(
        plan::default_gemm_kernel(&caps, &gemv),
        GemmKernel::Register(want)
    );
    // The row kernels split on GPUs only (on lavapipe 2 slices lost 4-9 %).
    assert_eq!(plan::default_qgemm_config(&caps, 1, 768, 768).split_k, 1);
    assert_eq!(
        plan::default_wgemm_config(&caps, 1, 768, 768, WeightType::I8).split_k,
        1
    );
    assert_eq!(plan::default_qgemm_config(&gpu, 1, 768, 768).split_k, 2);
    // Enough tiles already, or too short a K, or not GEMV-like: no split.
    assert_eq!(
        plan::default_qgemm_config(&gpu, 1, 1 << 17, 4096).split_k,
        1
    );
    assert_eq!(
        plan::default_wgemm_config(&gpu, 4, 4096, 300, WeightType::I8).split_k,
        1
    );
    assert!(!matches!(
        plan::default_gemm_kernel(&gpu, &GemmDesc::new(64, 4096, 4096)),
        GemmKernel::Register(RegConfig { split_k: 2.., .. })
    ));
    // The GPU's plan, run here, matches the reference, and the plan reports its slices.
    let desc = GemmDesc::new(3, 1000, 2999).kernel(plan::default_gemm_kernel(
        &gpu,
        &GemmDesc::new(3, 1000, 2999),
    ));
    let own = common::context_with(Overrides::default());
    let err = check_gemm(&own, &desc, 77);
    assert!(err < 1e-5, "{desc:?}: rel. error {err:.2e}");
    assert_eq!(own.stats().split_k_runs, 1, "{desc:?} must run split");
    assert_eq!(plan::explain_gemm(ctx, &desc).unwrap().split_k, 8);
    // The plan reports the slices of what runs here (none for the subgroup kernel).
    let here = GemmDesc::new(3, 1000, 2999);
    let kernel = plan::gemm_kernel(ctx, &here);
    let want = plan::split::slices(plan::split::gemm_split_k(ctx.capabilities(), kernel, &here));
    assert_eq!(plan::explain_gemm(ctx, &here).unwrap().split_k, want);
}

/// The pool lets go of a tensor's buffer with the tensor's last clone: transient
/// outputs made and dropped every frame leave no pooled bind groups behind (and so no
/// buffers kept alive), while persistent tensors keep theirs.
#[test]
fn the_pool_releases_dropped_tensors() {
    let ctx = common::context_with(Overrides::default());
    let (m, n, k) = (3, 40, 50);
    let x = Tensor::from_slice(&ctx, &[m, k], &random_f32(m * k, 1)).unwrap();
    let b = Tensor::from_slice(&ctx, &[k, n], &random_f32(k * n, 2)).unwrap();
    let persistent = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let run = |out: &Tensor| {
        let mut enc = ctx.encoder("pool");
        gemm(&ctx, &mut enc, &GemmDesc::new(m, n, k), &x, &b, None, out).unwrap();
        ctx.queue().submit([enc.finish()]);
    };
    run(&persistent);
    let base = ctx.stats().pooled_bind_groups;
    assert!(base >= 1, "the GEMM's bind group is pooled");
    for i in 0..20 {
        let out = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
        run(&out);
        assert!(
            ctx.stats().pooled_bind_groups > base,
            "frame {i}: pooled while alive"
        );
        // A clone (and a reshaped view) keeps the entry; the last one releases it.
        let view = out.reshape(&[m * n]).unwrap();
        drop(out);
        assert!(
            ctx.stats().pooled_bind_groups > base,
            "frame {i}: a view is alive"
        );
        drop(view);
        assert_eq!(ctx.stats().pooled_bind_groups, base, "frame {i}: released");
    }
    // The persistent output's entry survived, so its next run reuses it.
    let reuses = ctx.stats().bind_group_reuses;
    run(&persistent);
    assert_eq!(ctx.stats().bind_group_reuses, reuses + 1);
    ctx.wait_idle().unwrap();
    let got = persistent.read_blocking::<f32>(&ctx).unwrap();
    assert!(got.iter().all(|v| v.is_finite()));
}

#[test]
fn a_frame_allocates_nothing_after_warm_up() {
    let ctx = common::context_with(Overrides::default());
    let (m, n, k) = (4, 48, 96);
    let x = Tensor::from_slice(&ctx, &[m, k], &random_f32(m * k, 1)).unwrap();
    let b = Tensor::from_slice(&ctx, &[k, n], &random_f32(k * n, 2)).unwrap();
    let h = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let y = Tensor::zeros(&ctx, &[m, n], DType::F32).unwrap();
    let layer =
        wgpu_quant::model::QLinear::from_f32(&ctx, &random_f32(n * n, 3), n, n, None).unwrap();
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
    let ctx = common::context_with(Overrides::default());
    let mut cache = TuneCache::new();
    let opts = TuneOptions {
        warmup: 0,
        runs: 2,
        margin: 0.03,
    };
    let desc = GemmDesc::new(24, 40, 64);
    let (g, q, w, h) = {
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
        // FP16: on CPU adapters the f16-storage route on the FP32 kernels is the default
        // and its kernels are candidates beside the row tiles.
        let h = tuner.wgemm(20, 40, 64, WeightKind::F16).unwrap();
        let routed = wgpu_quant::plan::half_gemm_kernel(ctx.capabilities(), 20, 40, 64);
        assert_eq!(h.default, routed.map_or(h.default, Choice::Gemm), "{h:?}");
        // Codes with many rows: on CPU adapters the dequantizing route on the FP32
        // kernels is the default, verified like every candidate.
        let min = wgpu_quant::plan::DEQUANT_MIN_M;
        let w8 = tuner.wgemm(min, 40, 64, WeightKind::I8).unwrap();
        let routed = wgpu_quant::plan::dequant_gemm_kernel(ctx.capabilities(), min, 40, 64);
        let caps = ctx.capabilities();
        assert_eq!(routed.is_some(), caps.is_cpu() && caps.subgroups);
        assert_eq!(
            w8.default,
            routed.map_or(w8.default, Choice::Gemm),
            "{w8:?}"
        );
        assert!(w8.verified >= 2 && w8.rejected.is_empty(), "{w8:?}");
        (g, q, w, h)
    };
    // Convolutions: FP32 and INT8 implicit GEMMs (odd sizes, two groups); depthwise and
    // FP32 1x1 have no implicit-GEMM tile and are refused with the reason.
    use wgpu_quant::ops::conv::{ConvDesc, ConvDims, Padding};
    use wgpu_quant::tuning::ConvKind;
    let cdesc = ConvDesc::default().stride(2).padding(Padding::uniform(1));
    let cdims = ConvDims::new(12, 6, [3, 3], 2).unwrap();
    let (cf, cq) = {
        let mut tuner = Tuner::new(&ctx, &mut cache, opts);
        let cf = tuner
            .conv(&cdesc, cdims, [2, 9, 11, 6], ConvKind::F32)
            .unwrap();
        let cq = tuner
            .conv(&cdesc, cdims, [2, 9, 11, 6], ConvKind::W8A8)
            .unwrap();
        let dw = ConvDims::new(6, 6, [3, 3], 6).unwrap();
        let e = tuner
            .conv(&cdesc, dw, [1, 9, 9, 6], ConvKind::F32)
            .unwrap_err();
        assert!(e.to_string().contains("depthwise"), "{e}");
        (cf, cq)
    };
    let cshape = cdesc.shape(&cdims, &[2, 9, 11, 6]).unwrap();
    for t in [&g, &q, &w, &h, &cf, &cq] {
        assert!(t.verified >= 2, "{t:?}");
        assert!(t.median_ms <= t.default_ms, "{t:?}");
        assert!(t.median_ms > 0.0 && t.default_ms.is_finite());
    }
    assert_eq!(cache.len(), 7);
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
    assert_eq!(plan.class, ShapeClass::gemm(&desc));
    let plan = wgpu_quant::plan::explain_qgemm(&ctx, 3, 40, 72);
    assert_eq!(plan.choice, q.choice);
    let plan = wgpu_quant::plan::explain_wgemm(&ctx, 20, 40, 64, WeightType::F16);
    assert_eq!(plan.choice, h.choice, "{plan:?}");
    for (kind, t) in [(ConvKind::F32, &cf), (ConvKind::W8A8, &cq)] {
        let plan = wgpu_quant::plan::explain_conv(&ctx, &cshape, kind);
        assert_eq!(plan.source, wgpu_quant::plan::Source::Tuned, "{kind:?}");
        assert_eq!(plan.choice, t.choice, "{kind:?}");
    }
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

/// The plan's f16 arithmetic applies only to f16 activations. On a GPU with
/// `SHADER_F16`, `HalfMath::Auto` on f32 activations is f32 (the H100 run of `tune` found
/// the weight-only GEMM asking f32 inputs for f16 products and failing); an explicit
/// choice is kept.
#[test]
fn auto_half_math_gives_f16_products_only_to_f16_activations() {
    use wgpu_quant::ops::wgemm::HalfMath;
    use wgpu_quant::plan::{half_math, resolve_half_math};
    let mut gpu = common::ctx().capabilities().clone();
    gpu.adapter.device_type = wgpu::DeviceType::DiscreteGpu;
    gpu.shader_f16 = true;
    assert_eq!(half_math(&gpu), HalfMath::F16AccF32);
    assert_eq!(
        resolve_half_math(&gpu, HalfMath::Auto, true),
        HalfMath::F16AccF32
    );
    assert_eq!(
        resolve_half_math(&gpu, HalfMath::Auto, false),
        HalfMath::F32
    );
    assert_eq!(resolve_half_math(&gpu, HalfMath::F16, false), HalfMath::F16);
    let mut cpu = gpu.clone();
    cpu.adapter.device_type = wgpu::DeviceType::Cpu;
    assert_eq!(resolve_half_math(&cpu, HalfMath::Auto, true), HalfMath::F32);
    let mut no_f16 = gpu;
    no_f16.shader_f16 = false;
    assert_eq!(
        resolve_half_math(&no_f16, HalfMath::Auto, true),
        HalfMath::F32
    );
}

/// Plans that learn: with `tuning::learn`, the first GEMM of a shape class is tuned
/// there and then (once, with no recursion into the tuner's own plans), installed and
/// saved; later GEMMs of the class reuse it, a new context loading the file starts
/// tuned, `stop_learning` turns it off, and a damaged file is an error naming it.
#[test]
fn plans_learn_on_first_use_and_persist() {
    use wgpu_quant::plan::{explain_gemm, Source};
    use wgpu_quant::tuning::{learn, stop_learning};
    let path = std::env::temp_dir().join(format!("wgpu-quant-learn-{}.json", std::process::id()));
    std::fs::remove_file(&path).ok();
    let run = |ctx: &Context, desc: &GemmDesc| {
        let a =
            Tensor::from_slice(ctx, &[desc.m, desc.k], &random_f32(desc.m * desc.k, 1)).unwrap();
        let b =
            Tensor::from_slice(ctx, &[desc.k, desc.n], &random_f32(desc.k * desc.n, 2)).unwrap();
        let c = Tensor::zeros(ctx, &[desc.m, desc.n], DType::F32).unwrap();
        let mut enc = ctx.encoder("learned gemm");
        gemm(ctx, &mut enc, desc, &a, &b, None, &c).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let got = c.read_blocking::<f32>(ctx).unwrap();
        let (a, b) = (
            random_f32(desc.m * desc.k, 1),
            random_f32(desc.k * desc.n, 2),
        );
        let want = wgpu_quant::reference::gemm(desc, [0, 0, 0], &a, &b, None);
        let err = wgpu_quant::reference::rel_error(&got, &want);
        assert!(err < 1e-5, "learned GEMM rel. error {err:.2e}");
    };
    let desc = GemmDesc::new(20, 36, 52);
    let ctx = common::context_with(Overrides::default());
    learn(&ctx, &path).unwrap();
    // Planning a class, even to explain it, learns it.
    let tiny = GemmDesc::new(1, 1, 1);
    assert_eq!(explain_gemm(&ctx, &tiny).unwrap().source, Source::Tuned);
    let before = ctx.stats().plans_learned;
    assert_eq!(before, 1);
    run(&ctx, &desc);
    run(&ctx, &desc);
    let s = ctx.stats();
    assert_eq!(s.plans_learned, before + 1, "{s:?}");
    assert_eq!(s.learn_failures, 0, "{s:?}");
    assert_eq!(explain_gemm(&ctx, &desc).unwrap().source, Source::Tuned);
    let saved = TuneCache::load(&path).unwrap();
    assert_eq!(saved.len() as u64, before + 1);
    // A new context starts with what the file holds.
    let ctx2 = common::context_with(Overrides::default());
    learn(&ctx2, &path).unwrap();
    assert_eq!(explain_gemm(&ctx2, &desc).unwrap().source, Source::Tuned);
    run(&ctx2, &desc);
    assert_eq!(ctx2.stats().plans_learned, 0);
    // Stopped: a new class keeps the heuristic.
    stop_learning(&ctx2);
    let other = GemmDesc::new(3, 200, 64);
    run(&ctx2, &other);
    assert_eq!(ctx2.stats().plans_learned, 0);
    assert_eq!(
        explain_gemm(&ctx2, &other).unwrap().source,
        Source::Heuristic
    );
    // A damaged file is refused with its name.
    std::fs::write(&path, "{ not json").unwrap();
    let e = learn(&ctx2, &path).unwrap_err().to_string();
    assert!(e.contains("wgpu-quant-learn"), "{e}");
    std::fs::remove_file(&path).ok();
}
