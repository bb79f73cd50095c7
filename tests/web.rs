//! The library in a browser: WebGPU through wgpu's web backend, in headless Chromium
//! (`wasm-bindgen-test`; the command is in the README, "In the browser"). Everything
//! here uses the async API a page uses (`Context::request`, `Context::submit`,
//! `Tensor::read`), and checks against the same CPU references as the native tests:
//! FP32 GEMM within its budget, W8A8 GEMM (accumulators, f32 and requantized i8 outputs)
//! and INT8 convolution bit for bit (with and without `dot4I8Packed` where the browser
//! has it), quantize/dequantize bit for bit,
//! LeNet end to end from the bytes of its weight file, calibration, post-training
//! quantization, training and QAT and the benchmark runner's suites through their async
//! forms, and errors that WebGPU reports asynchronously coming back as `Err`. Natively
//! this file compiles to nothing.
#![cfg(target_arch = "wasm32")]

use rand::{RngExt, SeedableRng};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use wgpu_quant::model::{lenet, Model, WeightFile};
use wgpu_quant::ops::conv::{qconv2d, ConvDesc, ConvDims, Padding, QConvWeight};
use wgpu_quant::ops::gemm::{gemm, Activation, GemmDesc};
use wgpu_quant::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use wgpu_quant::ops::quant::{dequantize, quantize};
use wgpu_quant::quant::{quantize_value, Granularity, QType, QuantParams};
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, Error, QTensor, RequestOptions, Tensor};

#[path = "../examples/common/mnist.rs"]
mod mnist;

wasm_bindgen_test_configure!(run_in_browser);

/// The FP32 GEMM budget of the native tests (relative RMS error against f64).
const F32_BUDGET: f64 = 1e-5;

async fn ctx() -> Context {
    let ctx = Context::request(&RequestOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no WebGPU adapter in this browser: {e}. Chromium needs \
                 --enable-unsafe-webgpu (webdriver.json passes it)"
            )
        });
    let c = ctx.capabilities();
    console_log!(
        "adapter '{}' ({:?}): shader-f16 {}, subgroups {}, dot4I8Packed {}",
        c.adapter.name,
        c.adapter.backend,
        c.shader_f16,
        c.subgroups,
        c.packed_int8_dot
    );
    ctx
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn random(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Codes over the whole range, both ends included.
fn codes(n: usize, (lo, hi): (i32, i32), rng: &mut rand::rngs::StdRng) -> Vec<i32> {
    (0..n)
        .map(|i| match i % 13 {
            0 => lo,
            1 => hi,
            _ => rng.random_range(lo..=hi),
        })
        .collect()
}

/// Whether to run the INT8 kernels with `dot4I8Packed` (where the browser has it) and
/// without it.
fn packed_modes(ctx: &Context) -> Vec<bool> {
    if ctx.capabilities().packed_int8_dot {
        vec![true, false]
    } else {
        vec![false]
    }
}

#[wasm_bindgen_test]
async fn the_adapter_is_the_browsers_webgpu() {
    let ctx = ctx().await;
    assert_eq!(
        ctx.capabilities().adapter.backend,
        wgpu::Backend::BrowserWebGpu
    );
}

#[wasm_bindgen_test]
async fn fp32_gemm_meets_its_budget_on_odd_shapes() {
    let ctx = ctx().await;
    let mut rng = rng(1);
    for (m, n, k) in [(1, 7, 5), (7, 129, 31), (33, 70, 99), (64, 64, 64)] {
        for activation in [Activation::None, Activation::Relu] {
            let (a, b, bias) = (
                random(m * k, &mut rng),
                random(k * n, &mut rng),
                random(n, &mut rng),
            );
            let at = Tensor::from_slice(&ctx, &[m, k], &a).unwrap();
            let bt = Tensor::from_slice(&ctx, &[k, n], &b).unwrap();
            let biast = Tensor::from_slice(&ctx, &[n], &bias).unwrap();
            let ct = Tensor::from_slice(&ctx, &[m, n], &vec![f32::NAN; m * n]).unwrap();
            let desc = GemmDesc::new(m, n, k).activation(activation);
            let mut enc = ctx.encoder("web gemm");
            gemm(&ctx, &mut enc, &desc, &at, &bt, Some(&biast), &ct).unwrap();
            ctx.submit(enc).await.unwrap();
            let got = ct.read::<f32>(&ctx).await.unwrap();
            let strides = desc.resolve_strides(&[m, k], &[k, n], &[m, n]).unwrap();
            let want = reference::gemm(&desc, strides, &a, &b, Some(&bias));
            let e = reference::rel_error(&got, &want);
            assert!(
                e <= F32_BUDGET,
                "{m}x{n}x{k} {activation:?}: relative error {e:e} > {F32_BUDGET:e}"
            );
        }
    }
}

#[wasm_bindgen_test]
async fn w8a8_gemm_matches_the_reference_bit_for_bit() {
    let ctx = ctx().await;
    let mut rng = rng(2);
    for packed in packed_modes(&ctx) {
        for (m, n, k) in [(1, 7, 5), (3, 17, 33), (7, 129, 31), (33, 70, 99)] {
            // u8 activations with a zero point, per-channel i8 weights with zero points.
            let (za, sa) = (rng.random_range(0..=255), rng.random_range(1e-3f32..0.05));
            let ac = codes(m * k, (0, 255), &mut rng);
            let ap = QuantParams::new(
                QType::U8,
                Granularity::PerTensor,
                &[m, k],
                vec![sa],
                vec![za],
            )
            .unwrap();
            let sw: Vec<f32> = (0..n).map(|_| rng.random_range(1e-3f32..0.05)).collect();
            let zw: Vec<i32> = (0..n).map(|_| rng.random_range(-128..=127)).collect();
            let wc = codes(n * k, (-128, 127), &mut rng);
            let wp = QuantParams::new(
                QType::I8,
                Granularity::PerChannel { axis: 0 },
                &[n, k],
                sw.clone(),
                zw.clone(),
            )
            .unwrap();
            let bias = random(n, &mut rng);
            let a = QTensor::from_codes(&ctx, &ap, &ac).unwrap();
            let w = QTensor::from_codes(&ctx, &wp, &wc).unwrap();
            let biast = Tensor::from_slice(&ctx, &[n], &bias).unwrap();
            let acc = Tensor::from_slice(&ctx, &[m, n], &vec![i32::MIN; m * n]).unwrap();
            let out = Tensor::from_slice(&ctx, &[m, n], &vec![f32::NAN; m * n]).unwrap();
            let mut enc = ctx.encoder("web qgemm");
            let desc = QGemmDesc::default().packed_dot(packed);
            qgemm(&ctx, &mut enc, &desc, &a, &w, None, QGemmOutput::I32(&acc)).unwrap();
            let relu = desc.activation(Activation::Relu);
            qgemm(
                &ctx,
                &mut enc,
                &relu,
                &a,
                &w,
                Some(&biast),
                QGemmOutput::F32(&out),
            )
            .unwrap();
            // The requantized i8 output (what a static INT8 model passes between layers).
            let (so, zo) = (rng.random_range(0.01f32..0.05), rng.random_range(-20..=20));
            let op = QuantParams::new(
                QType::I8,
                Granularity::PerTensor,
                &[m, n],
                vec![so],
                vec![zo],
            )
            .unwrap();
            let oq = QTensor::new(&ctx, &op).unwrap();
            qgemm(
                &ctx,
                &mut enc,
                &relu,
                &a,
                &w,
                Some(&biast),
                QGemmOutput::Quantized(&oq),
            )
            .unwrap();
            ctx.submit(enc).await.unwrap();
            let want = reference::qgemm_i32(&ac, &vec![za; m], &wc, &zw, (m, n, k));
            let got_q = oq.read_codes(&ctx).await.unwrap();
            let got = acc.read::<i32>(&ctx).await.unwrap();
            let got_f = out.read::<f32>(&ctx).await.unwrap();
            for i in 0..m * n {
                let r = want[i].expect("the test shapes fit i32");
                assert_eq!(got[i], r, "{m}x{n}x{k} packed={packed}: accumulator {i}");
                let (row, col) = (i / n, i % n);
                let f = reference::qgemm_dequant(r, sa, sw[col], Some(bias[col]), Activation::Relu);
                assert_eq!(
                    got_f[i].to_bits(),
                    f.to_bits(),
                    "{m}x{n}x{k} packed={packed}: output ({row}, {col}) {} vs {f}",
                    got_f[i]
                );
                let q = quantize_value(f, so, zo, -128, 127);
                assert_eq!(
                    got_q[i], q,
                    "{m}x{n}x{k} packed={packed}: requantized output ({row}, {col}) of {f:e}"
                );
            }
        }
    }
}

#[wasm_bindgen_test]
async fn int8_convolution_matches_the_reference_bit_for_bit() {
    let ctx = ctx().await;
    let mut rng = rng(3);
    // (input NHWC, out channels, kernel, stride, padding, groups)
    let geometries = [
        ([1, 7, 7, 5], 6, 3, 1, Padding::Explicit([1; 4]), 1),
        ([2, 13, 13, 6], 7, 5, 2, Padding::Same, 1),
        ([1, 13, 13, 7], 7, 3, 1, Padding::Explicit([1; 4]), 7),
        ([1, 9, 9, 6], 9, 3, 2, Padding::Valid, 3),
        ([1, 13, 13, 9], 17, 1, 1, Padding::Valid, 1),
    ];
    for packed in packed_modes(&ctx) {
        for (xs, oc, k, stride, pad, groups) in geometries {
            let dims = ConvDims::new(oc, xs[3], [k, k], groups).unwrap();
            let desc = ConvDesc::default()
                .stride(stride)
                .padding(pad)
                .packed_dot(packed);
            let shape = desc.shape(&dims, &xs).unwrap();
            let (za, sa) = (rng.random_range(0..=255), rng.random_range(1e-3f32..0.05));
            let xc = codes(xs.iter().product(), (0, 255), &mut rng);
            let xp = QuantParams::new(QType::U8, Granularity::PerTensor, &xs, vec![sa], vec![za])
                .unwrap();
            let sw: Vec<f32> = (0..oc).map(|_| rng.random_range(1e-3f32..0.05)).collect();
            let wc = codes(dims.oihw().iter().product(), (-127, 127), &mut rng);
            let wp = QuantParams::new(
                QType::I8,
                Granularity::PerChannel { axis: 0 },
                &dims.oihw(),
                sw.clone(),
                vec![0; oc],
            )
            .unwrap();
            let x = QTensor::from_codes(&ctx, &xp, &xc).unwrap();
            let w = QConvWeight::from_codes(&ctx, dims, &wc, &wp).unwrap();
            let oshape = shape.output_shape();
            let n_out: usize = oshape.iter().product();
            let acc = Tensor::from_slice(&ctx, &oshape, &vec![i32::MIN; n_out]).unwrap();
            let out = Tensor::from_slice(&ctx, &oshape, &vec![f32::NAN; n_out]).unwrap();
            let mut enc = ctx.encoder("web qconv");
            qconv2d(&ctx, &mut enc, &desc, &x, &w, None, QGemmOutput::I32(&acc)).unwrap();
            let relu6 = desc.activation(Activation::Relu6);
            qconv2d(&ctx, &mut enc, &relu6, &x, &w, None, QGemmOutput::F32(&out)).unwrap();
            ctx.submit(enc).await.unwrap();
            let want = reference::qconv2d_i32(&xc, za, &wc, &vec![0; oc], &shape);
            let got = acc.read::<i32>(&ctx).await.unwrap();
            let got_f = out.read::<f32>(&ctx).await.unwrap();
            for i in 0..n_out {
                let r = want[i].expect("the test geometries fit i32");
                assert_eq!(
                    got[i], r,
                    "{xs:?} oc {oc} k {k} packed={packed}: accumulator {i}"
                );
                let f = reference::qgemm_dequant(r, sa, sw[i % oc], None, Activation::Relu6);
                assert_eq!(
                    got_f[i].to_bits(),
                    f.to_bits(),
                    "{xs:?} oc {oc} k {k} packed={packed}: output {i} {} vs {f}",
                    got_f[i]
                );
            }
        }
    }
}

#[wasm_bindgen_test]
async fn quantize_and_dequantize_match_the_host_bit_for_bit() {
    let ctx = ctx().await;
    let mut rng = rng(4);
    let shape = [5, 37];
    let x: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    let per_tensor = QuantParams::new(
        QType::U8,
        Granularity::PerTensor,
        &shape,
        vec![0.021],
        vec![131],
    )
    .unwrap();
    let per_channel = QuantParams::new(
        QType::I8,
        Granularity::PerChannel { axis: 0 },
        &shape,
        vec![0.01, 0.02, 0.013, 0.03, 0.007],
        vec![0; 5],
    )
    .unwrap();
    for params in [per_tensor, per_channel] {
        let xt = Tensor::from_slice(&ctx, &shape, &x).unwrap();
        let q = QTensor::new(&ctx, &params).unwrap();
        let back = Tensor::from_slice(&ctx, &shape, &vec![f32::NAN; x.len()]).unwrap();
        let mut enc = ctx.encoder("web quantize");
        quantize(&ctx, &mut enc, &xt, &q).unwrap();
        dequantize(&ctx, &mut enc, &q, &back).unwrap();
        ctx.submit(enc).await.unwrap();
        let want = params.quantize(&x).unwrap();
        assert_eq!(
            q.read_codes(&ctx).await.unwrap(),
            want,
            "{:?}",
            params.qtype()
        );
        let want_back = params.dequantize(&want).unwrap();
        let got_back = back.read::<f32>(&ctx).await.unwrap();
        for (i, (g, w)) in got_back.iter().zip(&want_back).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{:?}: value {i}", params.qtype());
        }
    }
}

/// LeNet's forward pass in f64 on the CPU, from the same weights.
fn lenet_f64(w: &WeightFile, x: &[f32], batch: usize) -> Vec<f64> {
    let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let mut hw = 28;
    for (name, c, oc) in [("conv1", 1, 10), ("conv2", 10, 20)] {
        let dims = ConvDims::new(oc, c, [5, 5], 1).unwrap();
        let desc = ConvDesc::default();
        let shape = desc.shape(&dims, &[batch, hw, hw, c]).unwrap();
        let wt: Vec<f64> = w
            .tensor(&format!("{name}.weight"), &dims.oihw())
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let b = w.tensor(&format!("{name}.bias"), &[oc]).unwrap();
        h = reference::conv2d_f64(&h, &wt, Some(b), Activation::Relu, &shape);
        let conv = hw - 4;
        hw = conv / 2;
        h = reference::pool_f64(
            &h,
            [batch, conv, conv, oc],
            true,
            [2, 2],
            [2, 2],
            [1, 1],
            [0, 0],
            (hw, hw),
            false,
        );
    }
    for (name, n, k, act) in [
        ("fc1", 50, 320, Activation::Relu),
        ("fc2", 10, 50, Activation::None),
    ] {
        let wt: Vec<f64> = w
            .tensor(&format!("{name}.weight"), &[n, k])
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let b = w.tensor(&format!("{name}.bias"), &[n]).unwrap();
        h = reference::linear_f64(&h, &wt, Some(b), act, (batch, n, k));
    }
    reference::softmax_f64(&h, 10)
}

#[wasm_bindgen_test]
async fn lenet_runs_end_to_end_from_the_bytes_of_its_weights() {
    let ctx = ctx().await;
    let bytes = include_bytes!("../examples/data/mnist/lenet.safetensors");
    let w = WeightFile::from_bytes(bytes, "lenet.safetensors").unwrap();
    let batch = 6;
    let mut rng = rng(5);
    // Digit-like inputs: mostly dark, a few bright strokes.
    let x: Vec<f32> = (0..batch * 28 * 28)
        .map(|_| {
            if rng.random_range(0..5) == 0 {
                rng.random_range(0.5f32..1.0)
            } else {
                0.0
            }
        })
        .collect();
    let shape = [batch, 28, 28, 1];
    let model = Model::new(&ctx, &lenet(), &w, DType::F32, &shape).unwrap();
    let xt = Tensor::from_slice(&ctx, &shape, &x).unwrap();
    let mut enc = ctx.encoder("web lenet");
    let y = model.forward(&ctx, &mut enc, &xt).unwrap().clone();
    ctx.submit(enc).await.unwrap();
    let got = y.read::<f32>(&ctx).await.unwrap();
    let want: Vec<f32> = lenet_f64(&w, &x, batch).iter().map(|&v| v as f32).collect();
    let e = reference::rel_error(&got, &want);
    assert!(e <= 1e-4, "LeNet probabilities: relative error {e:e}");
    for (i, (g, r)) in got.chunks(10).zip(want.chunks(10)).enumerate() {
        let top = |p: &[f32]| (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(top(g), top(r), "image {i}: {g:?} vs {r:?}");
    }
}

#[wasm_bindgen_test]
async fn errors_webgpu_reports_later_come_back_as_err() {
    let ctx = ctx().await;
    let a = Tensor::from_slice(&ctx, &[4, 4], &[1.0f32; 16]).unwrap();
    let b = Tensor::from_slice(&ctx, &[4, 4], &[1.0f32; 16]).unwrap();
    let c = Tensor::zeros(&ctx, &[4, 4], DType::F32).unwrap();
    a.buffer().destroy();
    let mut enc = ctx.encoder("web destroyed operand");
    // Recording succeeds (WebGPU answers error scopes asynchronously); submitting or
    // reading must return the error.
    let recorded = gemm(&ctx, &mut enc, &GemmDesc::new(4, 4, 4), &a, &b, None, &c);
    let result = match recorded {
        Err(e) => Err(e),
        Ok(()) => ctx.submit(enc).await,
    };
    let e = result.expect_err("a destroyed operand must give an error");
    assert!(
        matches!(e, Error::InvalidArgument { .. } | Error::Validation { .. }),
        "{e:?}"
    );
    // The context stays usable.
    let mut enc = ctx.encoder("web after the error");
    gemm(&ctx, &mut enc, &GemmDesc::new(4, 4, 4), &b, &b, None, &c).unwrap();
    ctx.submit(enc).await.unwrap();
    assert_eq!(c.read::<f32>(&ctx).await.unwrap(), vec![4.0f32; 16]);
}

#[wasm_bindgen_test]
async fn blocking_conveniences_say_they_run_natively() {
    let ctx = ctx().await;
    let x = Tensor::from_slice(&ctx, &[2, 3], &[0.5f32; 6]).unwrap();
    let view = wgpu_quant::ops::quant::ChannelView::new("min_max", Granularity::PerTensor, &[2, 3])
        .unwrap();
    let e = wgpu_quant::ops::quant::min_max(&ctx, &x, &view).unwrap_err();
    assert!(matches!(e, Error::Blocking { op: "min_max", .. }), "{e:?}");
}

/// Every shader variant the library can compile passes the browser's own WGSL compiler
/// (Chromium's Tint is stricter than naga in places: a literal just above `f32::MAX`
/// that naga rounds is an error there). Variants that need a feature the adapter lacks
/// (f16, subgroups) are counted and left out.
#[wasm_bindgen_test]
async fn every_shader_variant_compiles_in_the_browser() {
    let ctx = ctx().await;
    let caps = ctx.capabilities().clone();
    let mut variants = wgpu_quant::ops::all_variants();
    variants.extend(wgpu_quant::bench::peak_variants());
    let (mut failures, mut compiled, mut skipped) = (Vec::new(), 0, 0);
    for v in &variants {
        let src = v.source();
        if (src.contains("enable f16;") && !caps.shader_f16)
            || (src.contains("enable subgroups;") && !caps.subgroups)
        {
            skipped += 1;
            continue;
        }
        let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let _module = ctx
            .device()
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("web shader check"),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        if let Some(e) = scope.pop().await {
            failures.push(format!("{} [{}]: {e}", v.file.file_name(), v.tag()));
        }
        compiled += 1;
    }
    console_log!("{compiled} shader variants compiled, {skipped} need features the adapter lacks");
    assert!(compiled > 0);
    assert!(
        failures.is_empty(),
        "{} of {compiled} variants failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The benchmark runner's linear cases run in a page: checked before timing
/// (`LinearData::prepare_async`) and timed by awaited submissions (`time_async`).
#[wasm_bindgen_test]
async fn benchmark_cases_are_verified_then_timed() {
    use wgpu_quant::bench::{CaseOptions, LinearData, Precision};
    let ctx = ctx().await;
    let data = LinearData::new(5, 33, 70);
    for p in [
        Precision::Fp32,
        Precision::W8A8,
        Precision::W8A16,
        Precision::W4A16,
    ] {
        let prep = data
            .prepare_async(&ctx, p, &CaseOptions::default())
            .await
            .unwrap();
        assert!(
            prep.verified,
            "{}: relative error {:e} over a budget of {:e}",
            p.name(),
            prep.rel_error,
            prep.budget
        );
        let t = prep
            .time_async(&ctx, 1, 2)
            .await
            .unwrap()
            .expect("verified");
        assert_eq!(t.ms.len(), 2);
        assert!(
            t.ms.iter().all(|ms| ms.is_finite() && *ms >= 0.0),
            "{:?}",
            t.ms
        );
    }
}

/// Image preprocessing (resize, center crop, normalize) on the GPU against the CPU
/// reference in the kernel's f32 arithmetic, within the native tests' budget; the log
/// says how many values differ in their last bits (an INT8 model quantizes these).
#[wasm_bindgen_test]
async fn image_preprocessing_matches_the_reference() {
    use wgpu_quant::ops::image::{
        image_to_tensor, image_to_tensor_reference, ImageDesc, ImageSource,
    };
    let ctx = ctx().await;
    let mut rng = rng(6);
    let (w, h) = (451, 300);
    let rgba: Vec<[u8; 4]> = (0..w * h).map(|_| rng.random::<[u8; 4]>()).collect();
    let desc = ImageDesc::center_crop(224, 224, 224).normalize([127.0; 3], [128.0; 3]);
    let want = image_to_tensor_reference(&rgba, w, h, &desc);
    let words: Vec<u32> = rgba.iter().map(|p| u32::from_le_bytes(*p)).collect();
    let px = Tensor::from_slice(&ctx, &[w * h], &words).unwrap();
    let out = Tensor::zeros(&ctx, &desc.output_shape(), DType::F32).unwrap();
    let mut enc = ctx.encoder("web image");
    let src = ImageSource::Buffer {
        pixels: &px,
        width: w,
        height: h,
    };
    image_to_tensor(&ctx, &mut enc, src, &desc, &out).unwrap();
    ctx.submit(enc).await.unwrap();
    let got = out.read::<f32>(&ctx).await.unwrap();
    let differing = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count();
    let e = reference::rel_error(&got, &want);
    console_log!(
        "image preprocessing: {differing} of {} values differ from the reference in their last bits; relative error {e:e}",
        got.len()
    );
    assert!(e <= 1e-6, "relative error {e:e}");
}

/// Scopes whose answers came are dropped as new ops record (an engine that never reads
/// through the context does not pile them up), and an error among them is kept until
/// the next `submit`.
#[wasm_bindgen_test]
async fn answered_scopes_are_pruned_and_their_errors_kept() {
    let ctx = ctx().await;
    let a = Tensor::from_slice(&ctx, &[4, 4], &[1.0f32; 16]).unwrap();
    let b = Tensor::from_slice(&ctx, &[4, 4], &[1.0f32; 16]).unwrap();
    let c = Tensor::zeros(&ctx, &[4, 4], DType::F32).unwrap();
    let gone = Tensor::from_slice(&ctx, &[4, 4], &[1.0f32; 16]).unwrap();
    gone.buffer().destroy();
    let desc = GemmDesc::new(4, 4, 4);
    // Writing into a destroyed buffer: WebGPU reports it on the queue, asynchronously.
    let recorded = gone.write(&ctx, &[2.0f32; 16]);
    // Let the browser answer that scope (awaiting a later scope yields to the page).
    let probe = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
    assert!(probe.pop().await.is_none());
    // Many more recordings, each of which prunes the answered scopes (the browser answers
    // while the page awaits the probes below).
    for i in 0..200 {
        if i % 20 == 0 {
            let probe = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
            assert!(probe.pop().await.is_none());
        }
        let mut enc = ctx.encoder("web prune: more ops");
        gemm(&ctx, &mut enc, &desc, &a, &b, None, &c).unwrap();
        ctx.queue().submit([enc.finish()]);
    }
    let pending = ctx.stats().pending_error_scopes;
    assert!(
        pending < 100,
        "{pending} error scopes pending after 200 recordings: answered ones are not dropped"
    );
    let e = match recorded {
        Err(e) => e,
        Ok(()) => ctx
            .submit(ctx.encoder("web prune: submit"))
            .await
            .expect_err("the destroyed operand's error must still come back"),
    };
    assert!(
        matches!(e, Error::InvalidArgument { .. } | Error::Validation { .. }),
        "{e:?}"
    );
    ctx.check_errors().await.unwrap();
    assert_eq!(ctx.stats().pending_error_scopes, 0);
}

/// Observers in a page: per-channel min/max and histograms computed on the GPU equal the
/// host's exactly; an observer fed two batches holds their combined range; a batch with
/// a NaN is refused naming the value and its index (read back asynchronously).
#[wasm_bindgen_test]
async fn calibration_statistics_match_the_host() {
    use wgpu_quant::calib::{Observer, ObserverKind};
    use wgpu_quant::ops::quant::{
        hist_bin, hist_inv, histogram_async, min_max_async, ChannelView, HIST_BINS,
    };
    let ctx = ctx().await;
    let mut rng = rng(7);
    let (rows, ch) = (37, 5);
    // Channel c spans about [-(c + 1), c + 1].
    let host: Vec<f32> = random(rows * ch, &mut rng)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (i % ch + 1) as f32)
        .collect();
    let x = Tensor::from_slice(&ctx, &[rows, ch], &host).unwrap();
    let view =
        ChannelView::new("min_max", Granularity::PerChannel { axis: 1 }, &[rows, ch]).unwrap();
    let mm = min_max_async(&ctx, &x, &view).await.unwrap();
    assert_eq!(mm.nonfinite, 0);
    let mut ranges = Vec::new();
    for c in 0..ch {
        let col: Vec<f32> = host.iter().skip(c).step_by(ch).copied().collect();
        let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(
            (mm.min[c].to_bits(), mm.max[c].to_bits()),
            (lo.to_bits(), hi.to_bits())
        );
        ranges.push(lo.abs().max(hi.abs()));
    }
    let (counts, bad) = histogram_async(&ctx, &x, &view, &ranges).await.unwrap();
    assert_eq!(bad, 0);
    let mut want = vec![0u32; ch * HIST_BINS];
    for (i, &v) in host.iter().enumerate() {
        let c = i % ch;
        want[c * HIST_BINS + hist_bin(v, ranges[c], hist_inv(ranges[c]))] += 1;
    }
    assert_eq!(counts, want);

    // Two batches through an observer: the range of both.
    let second: Vec<f32> = random(64, &mut rng).iter().map(|v| v * 3.0).collect();
    let mut obs = Observer::new(ObserverKind::MinMax, Granularity::PerTensor).unwrap();
    obs.observe_async(&ctx, &x).await.unwrap();
    let t2 = Tensor::from_slice(&ctx, &[64], &second).unwrap();
    obs.observe_async(&ctx, &t2).await.unwrap();
    let all = host.iter().chain(&second);
    let lo = all.clone().copied().fold(f32::INFINITY, f32::min);
    let hi = all.copied().fold(f32::NEG_INFINITY, f32::max);
    let (omin, omax) = obs.min_max();
    assert_eq!((omin, omax), (&[lo][..], &[hi][..]));
    assert_eq!(obs.batches(), 2);

    // A NaN is refused, with its index.
    let mut with_nan = second.clone();
    with_nan[9] = f32::NAN;
    let t3 = Tensor::from_slice(&ctx, &[64], &with_nan).unwrap();
    let e = obs.observe_async(&ctx, &t3).await.unwrap_err();
    assert!(e.to_string().contains("at index 9"), "{e}");
}

/// Post-training quantization in a page: LeNet calibrated on 200 MNIST training digits
/// with `QModel::calibrate_async` (static INT8, bias correction, which reads activations
/// back) classifies 500 test digits within a point of the FP32 model, as natively.
#[wasm_bindgen_test]
async fn lenet_calibrated_in_the_browser_stays_within_a_point_of_fp32() {
    use wgpu_quant::calib::ObserverKind;
    use wgpu_quant::model::{QMode, QModel};
    let ctx = ctx().await;
    let (train, test) = mnist::parse(
        include_bytes!("../examples/data/mnist/mnist_5k.csv.gz"),
        "mnist_5k.csv.gz",
    )
    .unwrap();
    let w = WeightFile::from_bytes(
        include_bytes!("../examples/data/mnist/lenet.safetensors"),
        "lenet.safetensors",
    )
    .unwrap();
    let batch = 100;
    let shape = [batch, 28, 28, 1];
    // Every class in every calibration batch (the training digits come 400 per class).
    let calibration: Vec<Tensor> = (0..2)
        .map(|b| {
            let x: Vec<f32> = (0..batch)
                .flat_map(|j| train.batch(b + j * 40, 1).to_vec())
                .collect();
            Tensor::from_slice(&ctx, &shape, &x).unwrap()
        })
        .collect();
    let q = QModel::calibrate_async(
        &ctx,
        &lenet(),
        &w,
        &shape,
        &calibration,
        ObserverKind::Percentile { percentile: 99.99 },
        QMode::Static,
    )
    .await
    .unwrap();
    let fp32 = Model::new(&ctx, &lenet(), &w, DType::F32, &shape).unwrap();
    let (mut right_fp32, mut right_int8) = (0usize, 0usize);
    // The test digits come 100 per class: every fifth is 500 of all classes.
    let picks: Vec<usize> = (0..test.len()).step_by(2).collect();
    for chunk in picks.chunks(batch) {
        let x: Vec<f32> = chunk
            .iter()
            .flat_map(|&i| test.batch(i, 1).to_vec())
            .collect();
        let xt = Tensor::from_slice(&ctx, &shape, &x).unwrap();
        let mut enc = ctx.encoder("web lenet ptq");
        let yf = fp32.forward(&ctx, &mut enc, &xt).unwrap().clone();
        let yq = q.forward(&ctx, &mut enc, &xt).unwrap().clone();
        ctx.submit(enc).await.unwrap();
        let top = |p: &[f32]| (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        for (right, y) in [(&mut right_fp32, yf), (&mut right_int8, yq)] {
            let p = y.read::<f32>(&ctx).await.unwrap();
            *right += p
                .chunks_exact(10)
                .zip(chunk)
                .filter(|(r, &i)| top(r) == test.labels[i])
                .count();
        }
    }
    console_log!(
        "LeNet on {} test digits: FP32 {right_fp32}, INT8 {right_int8}",
        picks.len()
    );
    assert_eq!(picks.len(), 500);
    assert!(right_fp32 >= 475, "FP32: {right_fp32}/500");
    assert!(
        right_fp32.abs_diff(right_int8) <= 5,
        "INT8 {right_int8}/500 against FP32 {right_fp32}/500"
    );
}

const BLOB: [usize; 3] = [9, 9, 2];

/// A small trainable network: a strided convolution, two linears, the softmax.
fn small_net() -> wgpu_quant::model::Graph {
    use wgpu_quant::model::{Graph, Layer};
    let mut g = Graph::default();
    g.push(
        "conv",
        Layer::conv(
            "conv.weight",
            Some("conv.bias"),
            ConvDims::new(4, 2, [3, 3], 1).unwrap(),
            ConvDesc::default()
                .stride(2)
                .padding(Padding::uniform(1))
                .activation(Activation::Relu),
        ),
    );
    g.push(
        "fc1",
        Layer::linear("fc1.weight", Some("fc1.bias"), 16, 100).activation(Activation::Relu),
    );
    let logits = g.push("fc2", Layer::linear("fc2.weight", Some("fc2.bias"), 3, 16));
    g.push_from("prob", Layer::Softmax, wgpu_quant::model::Src::Node(logits));
    g
}

/// Three classes: a bright 3x3 patch in one of three places of a noisy 9x9x2 image.
fn blobs(n: usize, seed: u64) -> wgpu_quant::train::Dataset {
    let mut rng = rng(seed);
    let mut x = Vec::with_capacity(n * 162);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 3) as u32;
        for p in 0..162 {
            let (yy, xx) = (p / 18, p / 2 % 9);
            let hot = match c {
                0 => yy < 3 && xx < 3,
                1 => yy > 5 && xx > 5,
                _ => (3..6).contains(&yy) && (3..6).contains(&xx),
            };
            x.push(rng.random_range(-0.9f32..0.9) + if hot { 2.0 } else { 0.0 });
        }
        labels.push(c);
    }
    wgpu_quant::train::Dataset::new(x, labels, BLOB).unwrap()
}

/// Training in a page with the async forms: the same seed gives the same weights bit for
/// bit, the loss falls, held-out samples are classified; the gradients are finite; QAT
/// at 8 bits converts to the integer kernels, whose probabilities equal the fake-quant
/// forward pass's within 1e-3 (the native bound).
#[wasm_bindgen_test]
async fn training_and_qat_run_in_the_browser() {
    use wgpu_quant::ops::train::Sgd;
    use wgpu_quant::train::{Optimizer, QatConfig, TrainConfig, Trainer};
    let ctx = ctx().await;
    let (data, test) = (blobs(60, 3), blobs(30, 4));
    let g = small_net();
    let init = Trainer::init_weights(&g, BLOB, 1).unwrap();
    let cfg = |epochs, qat| TrainConfig {
        batch: 10,
        epochs,
        optimizer: Optimizer::Sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
        }),
        lr_step: None,
        seed: 5,
        qat,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut t = Trainer::new(&ctx, &g, &init, BLOB, cfg(4, None)).unwrap();
        let mut steps = 0;
        let stats = t.fit_async(&ctx, &data, |_| steps += 1).await.unwrap();
        assert_eq!(steps, 4 * 6);
        assert!(stats.last().unwrap().loss < stats[0].loss, "{stats:?}");
        let acc = t.accuracy_async(&ctx, &test).await.unwrap();
        assert!(acc >= 0.9, "held-out accuracy {acc}");
        assert_eq!(
            t.predict_async(&ctx, &test).await.unwrap().len(),
            test.len()
        );
        let grads = t.gradients_async(&ctx).await.unwrap();
        let gw = grads.tensor("conv.weight", &[4, 2, 3, 3]).unwrap();
        assert!(gw.iter().all(|v| v.is_finite()) && gw.iter().any(|&v| v != 0.0));
        runs.push(t.weights_async(&ctx).await.unwrap().to_bytes("w").unwrap());
    }
    assert!(
        runs[0] == runs[1],
        "the same seed trained different weights"
    );

    let trained = WeightFile::from_bytes(&runs[0], "trained").unwrap();
    let mut q = QatConfig::new(8, 8);
    q.calibration_per_class = 5;
    q.freeze_after = 1;
    let mut t = Trainer::new(&ctx, &g, &trained, BLOB, cfg(2, Some(q))).unwrap();
    t.fit_async(&ctx, &data, |_| {}).await.unwrap();
    let n = test.len();
    let qm = t.to_qmodel_async(&ctx, &[n, 9, 9, 2]).await.unwrap();
    let (x, _) = test.gather(&(0..n).collect::<Vec<_>>());
    let xt = Tensor::from_slice(&ctx, &[n, 9, 9, 2], &x).unwrap();
    let mut enc = ctx.encoder("web int8");
    let y = qm.forward(&ctx, &mut enc, &xt).unwrap().clone();
    ctx.submit(enc).await.unwrap();
    let int_probs = y.read::<f32>(&ctx).await.unwrap();
    let mut fq_probs = Vec::new();
    for chunk in x.chunks(10 * 162) {
        t.input().write(&ctx, chunk).unwrap();
        let mut enc = ctx.encoder("web fake quant");
        t.record_forward(&ctx, &mut enc, false).unwrap();
        ctx.submit(enc).await.unwrap();
        for r in t
            .logits()
            .unwrap()
            .read::<f32>(&ctx)
            .await
            .unwrap()
            .chunks(3)
        {
            let m = r.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
            let z: f32 = e.iter().sum();
            fq_probs.extend(e.iter().map(|v| v / z));
        }
    }
    assert_eq!(fq_probs.len(), int_probs.len());
    let worst = fq_probs
        .iter()
        .zip(&int_probs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-3, "probabilities differ by {worst}");
}

/// The benchmark runner's other suites in a page: convolutions (FP32, FP16, W8A8), the
/// quantization kernels, training kernels, an FP32 GEMM case and the peak probes are
/// each verified before they are timed.
#[wasm_bindgen_test]
async fn every_benchmark_suite_is_verified_in_the_browser() {
    use wgpu_quant::bench::{
        gemm_case_async, probe_async, quant_cases, train_cases, CaseOptions, ConvData, Precision,
        Probe,
    };
    let ctx = ctx().await;
    let check = |what: String, p: &wgpu_quant::bench::Prepared<'_>| {
        assert!(
            p.verified,
            "{what}: relative error {:e} over a budget of {:e}",
            p.rel_error, p.budget
        );
    };
    let conv = ConvData::from_desc(
        &ConvDesc::default().stride(2).padding(Padding::uniform(1)),
        ConvDims::new(12, 8, [3, 3], 1).unwrap(),
        [2, 11, 9, 8],
    )
    .unwrap();
    for p in [Precision::Fp32, Precision::Fp16, Precision::W8A8] {
        let prep = conv
            .prepare_async(&ctx, p, &CaseOptions::default())
            .await
            .unwrap();
        check(format!("conv {}", p.name()), &prep);
        let t = prep
            .time_async(&ctx, 0, 1)
            .await
            .unwrap()
            .expect("verified");
        assert_eq!(t.ms.len(), 1);
    }
    for (op, dtype, gran, scheme) in quant_cases() {
        let prep = op.prepare_async(&ctx, &scheme, 9, 64).await.unwrap();
        check(format!("{} {dtype} {gran}", op.name()), &prep);
    }
    let cases = train_cases(true);
    assert!(!cases.is_empty());
    for case in &cases {
        let prep = case.prepare_async(&ctx, 64).await.unwrap();
        check(case.name.to_string(), &prep);
    }
    let g = gemm_case_async(&ctx, &GemmDesc::new(33, 17, 29), 128, 0, 2)
        .await
        .unwrap();
    assert!(g.verified, "gemm: relative error {:e}", g.rel_error);
    assert_eq!(g.timings.expect("verified").ms.len(), 2);
    for (probe, size) in [
        (Probe::Bandwidth, 1 << 20),
        (Probe::Fp32Fma, 16),
        (Probe::Int8Dot, 16),
    ] {
        match probe_async(&ctx, probe, size, 2).await.unwrap() {
            Some(r) => assert!(r.verified && r.rate().is_some(), "{probe:?}: {r:?}"),
            None => assert!(probe.unsupported(&ctx).is_some(), "{probe:?} did not run"),
        }
    }
}

/// The tuner in a page: W8A8 and FP32 GEMM candidates verified and timed through the async
/// forms, the result in the cache under this adapter, and the cache carried as JSON (what
/// a page keeps in `localStorage`) and installed for the plan.
#[wasm_bindgen_test]
async fn the_tuner_runs_in_the_browser() {
    use wgpu_quant::tuning::{AdapterKey, ShapeClass, TuneCache, TuneOptions, Tuner};
    let ctx = ctx().await;
    let mut cache = TuneCache::default();
    let opts = TuneOptions {
        warmup: 0,
        runs: 1,
        margin: 0.03,
    };
    let (m, n, k) = (5, 33, 70);
    let q = Tuner::new(&ctx, &mut cache, opts)
        .qgemm_async(m, n, k)
        .await
        .unwrap();
    assert!(q.verified >= 1 && q.median_ms.is_finite(), "{q:?}");
    let desc = GemmDesc::new(17, 24, 40);
    let g = Tuner::new(&ctx, &mut cache, opts)
        .gemm_async(&desc)
        .await
        .unwrap();
    assert!(g.verified >= 1 && g.median_ms.is_finite(), "{g:?}");
    let json = cache.to_json();
    let back = TuneCache::from_json(&json, "localStorage").unwrap();
    let key = AdapterKey::of(&ctx.capabilities().adapter);
    assert_eq!(
        back.get(&key, &ShapeClass::qgemm(m, n, k))
            .map(|t| t.choice),
        Some(q.choice)
    );
    assert_eq!(
        back.get(&key, &ShapeClass::gemm(&desc)).map(|t| t.choice),
        Some(g.choice)
    );
    // Installed, the plan runs the tuned FP32 kernel.
    ctx.set_tuning(Some(back));
    assert_eq!(
        wgpu_quant::tuning::Choice::Gemm(wgpu_quant::plan::gemm_kernel(&ctx, &desc)),
        g.choice
    );
}
