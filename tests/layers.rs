//! The other CNN layers against the Rust reference: max/average/global pooling (padding,
//! stride, dilation, count_pad; f32 and f16), add/clip/softmax (f32 and f16 in any
//! combination), the INT8 residual add (bit-exact, i8/u8 mixes, odd row lengths, padding
//! bytes kept 0), BatchNorm folding and the NCHW->NHWC Linear weight reorder. Outputs are
//! poisoned first.

mod common;

use half::f16;
use rand::{RngExt, SeedableRng};
use wgpu_quant::ops::conv::{
    conv2d, fold_batch_norm, linear_weight_nchw_to_nhwc, ConvDesc, ConvDims, ConvWeight, Padding,
};
use wgpu_quant::ops::eltwise::{add, clip, qadd, softmax, Clip};
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::pool::{pool2d, PoolDesc, PoolKind};
use wgpu_quant::ops::quant::QTensor;
use wgpu_quant::quant::{Granularity, QType, QuantParams};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Tensor};

/// f16 storage rounds the output once (relative 2^-11); f32 sums differ from f64 by far
/// less.
const F32_BUDGET: f64 = 1e-6;
const F16_OUT: f64 = 4.9e-4;

fn upload(ctx: &Context, shape: &[usize], v: &[f32], as_f16: bool) -> (Tensor, Vec<f64>) {
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

fn poisoned(ctx: &Context, shape: &[usize], f16_out: bool) -> Tensor {
    let n: usize = shape.iter().product();
    if f16_out {
        Tensor::from_slice(ctx, shape, &vec![f16::NAN; n]).unwrap()
    } else {
        Tensor::from_slice(ctx, shape, &vec![f32::NAN; n]).unwrap()
    }
}

fn read(ctx: &Context, t: &Tensor) -> Vec<f32> {
    if t.dtype() == DType::F16 {
        let h = t.read_blocking::<f16>(ctx).unwrap();
        h.iter().map(|v| v.to_f32()).collect()
    } else {
        t.read_blocking::<f32>(ctx).unwrap()
    }
}

/// Checks `got` against `want` within `budget` (relative Frobenius), naming the worst
/// element.
fn check(what: &str, got: &[f32], want: &[f64], budget: f64) {
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

fn rand_vec(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
}

#[test]
fn pooling_sweep() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // (input NHWC, desc)
    let mut cases: Vec<([usize; 4], PoolDesc)> = vec![
        ([1, 7, 7, 5], PoolDesc::new(PoolKind::Max, 2, 2)),
        (
            [2, 13, 13, 3],
            PoolDesc::new(PoolKind::Max, 3, 2).padding(Padding::uniform(1)),
        ),
        (
            [1, 13, 13, 6],
            PoolDesc::new(PoolKind::Avg, 3, 1).padding(Padding::Same),
        ),
        ([1, 33, 33, 2], PoolDesc::new(PoolKind::Avg, 5, 3)),
        ([1, 7, 7, 9], PoolDesc::global_avg()),
        ([2, 1, 1, 7], PoolDesc::global_avg()),
        ([1, 28, 28, 10], PoolDesc::new(PoolKind::Max, 2, 2)),
    ];
    let mut count_pad = PoolDesc::new(PoolKind::Avg, 3, 2).padding(Padding::uniform(1));
    count_pad.count_pad = true;
    cases.push(([1, 7, 7, 3], count_pad));
    let mut dilated = PoolDesc::new(PoolKind::Max, 3, 1).padding(Padding::SameLower);
    dilated.dilation = [2, 2];
    cases.push(([1, 13, 13, 4], dilated));
    let mut global_max = PoolDesc::global_avg();
    global_max.kind = PoolKind::Max;
    cases.push(([1, 7, 13, 3], global_max));
    for (i, (xs, desc)) in cases.iter().enumerate() {
        for (x16, o16) in [(false, false), (true, true), (false, true)] {
            let xv = rand_vec(xs.iter().product(), &mut rng);
            let (x, x64) = upload(ctx, xs, &xv, x16);
            let oshape = desc.output_shape(xs).unwrap();
            let out = poisoned(ctx, &oshape, o16);
            let mut enc = ctx.encoder("pool test");
            pool2d(ctx, &mut enc, desc, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            // The geometry the reference uses comes from the conv rules independently.
            let kernel = desc.kernel.unwrap_or([xs[1], xs[2]]);
            let s = ConvDesc {
                stride: desc.stride,
                padding: desc.padding,
                dilation: desc.dilation,
                ..ConvDesc::default()
            }
            .shape(&ConvDims::new(1, xs[3], kernel, 1).unwrap(), xs)
            .unwrap();
            let want = reference::pool_f64(
                &x64,
                *xs,
                desc.kind == PoolKind::Max,
                kernel,
                desc.stride,
                desc.dilation,
                [s.pad[0], s.pad[1]],
                (s.out_h, s.out_w),
                desc.count_pad,
            );
            let budget = F32_BUDGET + if o16 { F16_OUT } else { 0.0 };
            check(
                &format!("case {i} {xs:?} {desc:?} f16 {x16}/{o16}"),
                &read(ctx, &out),
                &want,
                budget,
            );
        }
    }
}

#[test]
fn add_clip_softmax() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for shape in [vec![1usize], vec![3, 7], vec![2, 5, 5, 3], vec![1, 1001]] {
        let n: usize = shape.iter().product();
        for bits in 0..8u32 {
            let f = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
            let budget = F32_BUDGET + if f[2] { F16_OUT } else { 0.0 };
            let (a, a64) = upload(ctx, &shape, &rand_vec(n, &mut rng), f[0]);
            let (b, b64) = upload(ctx, &shape, &rand_vec(n, &mut rng), f[1]);
            for c in [
                Clip::NONE,
                Clip::RELU,
                Clip::RELU6,
                Clip { lo: -1.0, hi: 0.5 },
            ] {
                let out = poisoned(ctx, &shape, f[2]);
                let mut enc = ctx.encoder("add test");
                add(ctx, &mut enc, &a, &b, c, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want: Vec<f64> = a64
                    .iter()
                    .zip(&b64)
                    .map(|(x, y)| (x + y).max(f64::from(c.lo)).min(f64::from(c.hi)))
                    .collect();
                check(
                    &format!("add {shape:?} {f:?} {c:?}"),
                    &read(ctx, &out),
                    &want,
                    budget,
                );

                let out = poisoned(ctx, &shape, f[2]);
                let mut enc = ctx.encoder("clip test");
                clip(ctx, &mut enc, &a, c, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want: Vec<f64> = a64
                    .iter()
                    .map(|x| x.max(f64::from(c.lo)).min(f64::from(c.hi)))
                    .collect();
                check(
                    &format!("clip {shape:?} {f:?} {c:?}"),
                    &read(ctx, &out),
                    &want,
                    budget,
                );
            }
            let out = poisoned(ctx, &shape, f[2]);
            let mut enc = ctx.encoder("softmax test");
            softmax(ctx, &mut enc, &a, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = reference::softmax_f64(&a64, *shape.last().unwrap());
            // exp in f32 on the GPU: a few ulps per term.
            check(
                &format!("softmax {shape:?} {f:?}"),
                &read(ctx, &out),
                &want,
                1e-5 + if f[2] { F16_OUT } else { 0.0 },
            );
        }
    }
    // Errors name the problem.
    let a = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[3, 2], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let mut enc = ctx.encoder("errors");
    let e = add(ctx, &mut enc, &a, &b, Clip::NONE, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 2]") && e.contains("differ"), "{e}");
    let e = clip(ctx, &mut enc, &a, Clip::RELU, &a)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shares its buffer"), "{e}");
    let e = clip(ctx, &mut enc, &a, Clip { lo: 1.0, hi: 0.0 }, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    let i = Tensor::zeros(ctx, &[2, 3], DType::I32).unwrap();
    let e = softmax(ctx, &mut enc, &i, &out).unwrap_err().to_string();
    assert!(e.contains("i32"), "{e}");
}

fn qtensor(
    ctx: &Context,
    shape: &[usize],
    qt: QType,
    s: f32,
    z: i32,
    rng: &mut rand::rngs::StdRng,
) -> (QTensor, Vec<i32>) {
    let n: usize = shape.iter().product();
    let codes: Vec<i32> = (0..n)
        .map(|i| match i % 9 {
            0 => qt.qmin(),
            1 => qt.qmax(),
            _ => rng.random_range(qt.qmin()..=qt.qmax()),
        })
        .collect();
    let p = QuantParams::new(qt, Granularity::PerTensor, shape, vec![s], vec![z]).unwrap();
    (QTensor::from_codes(ctx, &p, &codes).unwrap(), codes)
}

#[test]
fn int8_add_is_bit_exact() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let combos = [
        (QType::I8, QType::I8, QType::I8),
        (QType::U8, QType::U8, QType::U8),
        (QType::U8, QType::I8, QType::U8),
        (QType::I8, QType::U8, QType::I8),
    ];
    for shape in [
        vec![1usize],
        vec![3, 7],
        vec![2, 5, 5, 3],
        vec![1, 7, 7, 40],
    ] {
        for (ci, &(ta, tb, to)) in combos.iter().enumerate() {
            let z = |t: QType, r: &mut rand::rngs::StdRng| {
                if t == QType::U8 {
                    r.random_range(0..=255)
                } else {
                    r.random_range(-20..=20)
                }
            };
            let (sa, za) = (rng.random_range(0.01f32..0.1), z(ta, &mut rng));
            let (sb, zb) = (rng.random_range(0.01f32..0.1), z(tb, &mut rng));
            let (so, zo) = (rng.random_range(0.02f32..0.2), z(to, &mut rng));
            let (a, ac) = qtensor(ctx, &shape, ta, sa, za, &mut rng);
            let (b, bc) = qtensor(ctx, &shape, tb, sb, zb, &mut rng);
            let op =
                QuantParams::new(to, Granularity::PerTensor, &shape, vec![so], vec![zo]).unwrap();
            let out = QTensor::new(ctx, &op).unwrap();
            out.data()
                .write(ctx, &vec![0xa5a5_a5a5u32; out.data().numel()])
                .unwrap();
            let c = [Clip::NONE, Clip::RELU, Clip::RELU6, Clip::NONE][ci];
            let mut enc = ctx.encoder("qadd test");
            qadd(ctx, &mut enc, &a, &b, c, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let got = out.read_codes_blocking(ctx).unwrap();
            for i in 0..got.len() {
                let want = reference::qadd(
                    (ac[i], sa, za),
                    (bc[i], sb, zb),
                    c,
                    (so, zo),
                    (to.qmin(), to.qmax()),
                );
                assert_eq!(got[i], want, "{shape:?} {ta}+{tb}->{to} element {i}");
            }
            let cols = *shape.last().unwrap();
            if !cols.is_multiple_of(4) {
                let words = out.data().read_blocking::<u32>(ctx).unwrap();
                let wpr = cols.div_ceil(4);
                for (row, chunk) in words.chunks(wpr).enumerate() {
                    assert_eq!(chunk[wpr - 1] >> (8 * (cols % 4)), 0, "row {row} padding");
                }
            }
        }
    }
    // Per-channel operands are refused with the reason.
    let p = QuantParams::new(
        QType::I8,
        Granularity::PerChannel { axis: 0 },
        &[2, 3],
        vec![0.1, 0.2],
        vec![0, 0],
    )
    .unwrap();
    let pc = QTensor::new(ctx, &p).unwrap();
    let (t, _) = qtensor(ctx, &[2, 3], QType::I8, 0.1, 0, &mut rng);
    let mut enc = ctx.encoder("errors");
    let e = qadd(ctx, &mut enc, &pc, &t, Clip::NONE, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("per tensor"), "{e}");
}

#[test]
fn batch_norm_folding_matches_conv_then_bn() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let dims = ConvDims::new(6, 5, [3, 3], 1).unwrap();
    let xs = [1, 9, 9, 5];
    let xv = rand_vec(xs.iter().product(), &mut rng);
    let wv = rand_vec(dims.oihw().iter().product(), &mut rng);
    let bias = rand_vec(6, &mut rng);
    let gamma = rand_vec(6, &mut rng);
    let beta = rand_vec(6, &mut rng);
    let mean = rand_vec(6, &mut rng);
    let var: Vec<f32> = (0..6).map(|_| rng.random_range(0.1f32..2.0)).collect();
    let eps = 1e-3f32;
    let mut folded_w = wv.clone();
    let folded_b =
        fold_batch_norm(&mut folded_w, Some(&bias), &gamma, &beta, &mean, &var, eps).unwrap();
    let desc = ConvDesc::default().padding(Padding::uniform(1));
    let shape = desc.shape(&dims, &xs).unwrap();
    let x = Tensor::from_slice(ctx, &xs, &xv).unwrap();
    let w = ConvWeight::from_oihw(ctx, dims, &folded_w, DType::F32).unwrap();
    let b = Tensor::from_slice(ctx, &[6], &folded_b).unwrap();
    let out = poisoned(ctx, &shape.output_shape(), false);
    let mut enc = ctx.encoder("bn");
    conv2d(ctx, &mut enc, &desc, &x, &w, Some(&b), &out).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    // conv then BN, in f64.
    let x64: Vec<f64> = xv.iter().map(|&v| f64::from(v)).collect();
    let w64: Vec<f64> = wv.iter().map(|&v| f64::from(v)).collect();
    let conv = reference::conv2d_f64(&x64, &w64, Some(&bias), Activation::None, &shape);
    let want: Vec<f64> = conv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let o = i % 6;
            f64::from(gamma[o]) * (v - f64::from(mean[o]))
                / (f64::from(var[o]) + f64::from(eps)).sqrt()
                + f64::from(beta[o])
        })
        .collect();
    check("conv + folded BN", &read(ctx, &out), &want, 1e-5);
    // Errors name the problem.
    let e = fold_batch_norm(&mut folded_w, None, &gamma[..5], &beta, &mean, &var, eps)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gamma has 5"), "{e}");
    let neg = [-1.0f32; 6];
    let e = fold_batch_norm(&mut folded_w, None, &gamma, &beta, &mean, &neg, eps)
        .unwrap_err()
        .to_string();
    assert!(e.contains("var[0]"), "{e}");
}

#[test]
fn linear_weight_reorder_matches_nchw_flatten() {
    let (c, h, w, out) = (3, 2, 5, 4);
    let k = c * h * w;
    let weight: Vec<f32> = (0..out * k).map(|i| i as f32 * 0.5 - 7.0).collect();
    let nchw: Vec<f32> = (0..k).map(|i| (i as f32).sin()).collect();
    let nhwc = wgpu_quant::ops::conv::nchw_to_nhwc(&nchw, [1, c, h, w]);
    let reordered = linear_weight_nchw_to_nhwc(&weight, out, [c, h, w]).unwrap();
    for o in 0..out {
        let a: f64 = (0..k)
            .map(|i| f64::from(weight[o * k + i]) * f64::from(nchw[i]))
            .sum();
        let b: f64 = (0..k)
            .map(|i| f64::from(reordered[o * k + i]) * f64::from(nhwc[i]))
            .sum();
        assert!((a - b).abs() < 1e-9, "output {o}: {a} vs {b}");
    }
    assert!(linear_weight_nchw_to_nhwc(&weight, out + 1, [c, h, w]).is_err());
}

#[test]
fn image_input_from_buffer_and_texture() {
    use wgpu_quant::ops::image::{
        image_to_tensor, image_to_tensor_reference, ImageDesc, ImageSource,
    };
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // (width, height, desc): downscale with a center crop, upscale, an exact resize.
    let cases = [
        (
            37usize,
            23usize,
            ImageDesc::center_crop(16, 13, 16).normalize([127.0; 3], [128.0; 3]),
        ),
        (5, 7, ImageDesc::center_crop(9, 9, 9)),
        (
            8,
            6,
            ImageDesc {
                resize: Some([6, 8]),
                ..ImageDesc::center_crop(6, 6, 8)
                    .normalize([123.7, 116.3, 103.5], [58.4, 57.1, 57.4])
            },
        ),
    ];
    for (w, h, desc) in cases {
        let rgba: Vec<[u8; 4]> = (0..w * h).map(|_| rng.random::<[u8; 4]>()).collect();
        let want = image_to_tensor_reference(&rgba, w, h, &desc);
        let want64: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        let words: Vec<u32> = rgba.iter().map(|p| u32::from_le_bytes(*p)).collect();
        let px = Tensor::from_slice(ctx, &[w * h], &words).unwrap();
        for f16_out in [false, true] {
            let out = poisoned(ctx, &desc.output_shape(), f16_out);
            let mut enc = ctx.encoder("image test");
            let src = ImageSource::Buffer {
                pixels: &px,
                width: w,
                height: h,
            };
            image_to_tensor(ctx, &mut enc, src, &desc, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let budget = 1e-6 + if f16_out { F16_OUT } else { 0.0 };
            check(
                &format!("buffer {w}x{h} {desc:?}"),
                &read(ctx, &out),
                &want64,
                budget,
            );
        }
        // The same pixels as a texture a renderer could have drawn.
        let tex = ctx.device().create_texture(&wgpu::TextureDescriptor {
            label: Some("frame"),
            size: wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let bytes: Vec<u8> = rgba.iter().flatten().copied().collect();
        ctx.queue().write_texture(
            tex.as_image_copy(),
            &bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * w as u32),
                rows_per_image: None,
            },
            tex.size(),
        );
        let out = poisoned(ctx, &desc.output_shape(), false);
        let mut enc = ctx.encoder("texture test");
        image_to_tensor(ctx, &mut enc, ImageSource::Texture(&tex), &desc, &out).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        // textureLoad returns unorm values; * 255 may differ from the byte by an ulp.
        check(&format!("texture {w}x{h}"), &read(ctx, &out), &want64, 1e-6);
    }
    // A crop larger than the resized image is refused.
    let px = Tensor::from_slice(ctx, &[4], &[0u32; 4]).unwrap();
    let out = Tensor::zeros(ctx, &[1, 3, 3, 3], DType::F32).unwrap();
    let mut enc = ctx.encoder("errors");
    let e = image_to_tensor(
        ctx,
        &mut enc,
        ImageSource::Buffer {
            pixels: &px,
            width: 2,
            height: 2,
        },
        &ImageDesc::center_crop(2, 3, 3),
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("larger than the resized"), "{e}");
}
