//! The model API (`wgpu_quant::model`): a small graph of every layer kind against the
//! f64 reference layer by layer, the errors that name a missing or mis-shaped weight, the
//! same graph quantized (static and dynamic INT8) against its FP32 twin, bias correction
//! layer by layer, the real EfficientNet-Lite0 on the bundled photos in FP32, FP16 and
//! INT8, and LeNet on the real MNIST test digits in every precision.

#[path = "../examples/common/mnist.rs"]
mod mnist;

use half::f16;
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::model::{
    efficientnet_lite0, lenet, Graph, Layer, Model, PtqOptions, QMode, QModel, Src, WeightFile,
};
use wgpu_quant::ops::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::ops::eltwise::Clip;
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::ops::pool::PoolDesc;
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

fn ctx() -> Context {
    Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

/// The largest `|a - b|` over the pairs.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn read_f32(ctx: &Context, t: &Tensor) -> Vec<f32> {
    match t.dtype() {
        DType::F16 => t
            .read_blocking::<f16>(ctx)
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect(),
        _ => t.read_blocking::<f32>(ctx).unwrap(),
    }
}

/// conv 5->8 k3 s2 SAME ReLU6, depthwise 8 k3 ReLU6, 1x1 8->8, + the depthwise output,
/// global average pool, linear 8->3 ReLU, softmax, on a [1, 9, 7, 5] input.
fn small_graph() -> (Graph, WeightFile, Vec<(ConvDims, ConvDesc)>) {
    let mut w = WeightFile::default();
    let mut g = Graph::default();
    let convs = [
        (
            "c1",
            ConvDims::new(8, 5, [3, 3], 1).unwrap(),
            2,
            Activation::Relu6,
        ),
        (
            "dw",
            ConvDims::new(8, 8, [3, 3], 8).unwrap(),
            1,
            Activation::Relu6,
        ),
        (
            "pw",
            ConvDims::new(8, 8, [1, 1], 1).unwrap(),
            1,
            Activation::None,
        ),
    ];
    let mut geo = Vec::new();
    for (i, (name, dims, stride, act)) in convs.iter().enumerate() {
        let n: usize = dims.oihw().iter().product();
        let vals = wgpu_quant::bench::random_f32(n, 10 + i as u64)
            .iter()
            .map(|v| v * 0.5)
            .collect();
        w.insert(&format!("{name}.weight"), &dims.oihw(), vals)
            .unwrap();
        w.insert(
            &format!("{name}.bias"),
            &[dims.out_channels],
            wgpu_quant::bench::random_f32(dims.out_channels, 20 + i as u64),
        )
        .unwrap();
        let desc = ConvDesc::default()
            .stride(*stride)
            .padding(Padding::Same)
            .activation(*act);
        g.push(
            name,
            Layer::conv(
                &format!("{name}.weight"),
                Some(&format!("{name}.bias")),
                *dims,
                desc,
            ),
        );
        geo.push((*dims, desc));
    }
    g.push_from(
        "add",
        Layer::Add {
            other: 1,
            clip: Clip::NONE,
        },
        Src::Node(2),
    );
    g.push("pool", Layer::Pool(PoolDesc::global_avg()));
    w.insert("fc.weight", &[3, 8], wgpu_quant::bench::random_f32(24, 30))
        .unwrap();
    w.insert("fc.bias", &[3], vec![0.1, -0.2, 0.3]).unwrap();
    g.push(
        "fc",
        Layer::linear("fc.weight", Some("fc.bias"), 3, 8).activation(Activation::Relu),
    );
    g.push("prob", Layer::Softmax);
    (g, w, geo)
}

#[test]
fn a_graph_of_every_layer_matches_the_reference() {
    let ctx = ctx();
    let (g, w, geo) = small_graph();
    let xs = [1, 9, 7, 5];
    let xf = wgpu_quant::bench::random_f32(xs.iter().product(), 5);
    // The f64 reference, layer by layer, on the operands each precision sees.
    let reference_of = |round: &dyn Fn(f32) -> f32| -> Vec<Vec<f64>> {
        let r = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| f64::from(round(x))).collect() };
        let mut outs: Vec<Vec<f64>> = Vec::new();
        let mut x = r(&xf);
        let mut shape = xs.to_vec();
        for (i, (dims, desc)) in geo.iter().enumerate() {
            let name = ["c1", "dw", "pw"][i];
            let s = desc.shape(dims, &shape).unwrap();
            let wv = r(w.tensor(&format!("{name}.weight"), &dims.oihw()).unwrap());
            let b = w
                .tensor(&format!("{name}.bias"), &[dims.out_channels])
                .unwrap();
            x = reference::conv2d_f64(&x, &wv, Some(b), desc.activation, &s);
            shape = s.output_shape();
            outs.push(x.clone());
        }
        let add: Vec<f64> = outs[2].iter().zip(&outs[1]).map(|(a, b)| a + b).collect();
        let c = 8;
        let pix = add.len() / c;
        let pool: Vec<f64> = (0..c)
            .map(|ch| (0..pix).map(|p| add[p * c + ch]).sum::<f64>() / pix as f64)
            .collect();
        let fcw = r(w.tensor("fc.weight", &[3, 8]).unwrap());
        let fc = reference::linear_f64(
            &pool,
            &fcw,
            Some(w.tensor("fc.bias", &[3]).unwrap()),
            Activation::Relu,
            (1, 3, 8),
        );
        let prob = reference::softmax_f64(&fc, 3);
        outs.extend([add, pool, fc, prob]);
        outs
    };
    for (dtype, budget) in [(DType::F32, 1e-5), (DType::F16, 2e-2)] {
        let model = Model::new(&ctx, &g, &w, dtype, &xs).unwrap();
        let x = match dtype {
            DType::F16 => {
                let h: Vec<f16> = xf.iter().map(|&v| f16::from_f32(v)).collect();
                Tensor::from_slice(&ctx, &xs, &h).unwrap()
            }
            _ => Tensor::from_slice(&ctx, &xs, &xf).unwrap(),
        };
        let mut enc = ctx.encoder("model");
        let y = model.forward(&ctx, &mut enc, &x).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let round = |v: f32| {
            if dtype == DType::F16 {
                f16::from_f32(v).to_f32()
            } else {
                v
            }
        };
        let want = reference_of(&round);
        for (i, node) in g.nodes.iter().enumerate() {
            let got = read_f32(&ctx, model.output(&node.name).unwrap());
            assert_eq!(got.len(), want[i].len(), "{dtype:?} {}", node.name);
            let wf: Vec<f32> = want[i].iter().map(|&v| v as f32).collect();
            let e = reference::rel_error(&got, &wf);
            assert!(
                e <= budget,
                "{dtype:?} node {} ({}): rel. error {e:.2e} > {budget:e}\n got {got:?}\nwant {wf:?}",
                i,
                node.name
            );
        }
        let p = read_f32(&ctx, &y);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3, "{p:?}");
    }
}

#[test]
fn missing_and_misshaped_weights_are_named() {
    let ctx = ctx();
    let (g, w, _) = small_graph();
    let xs = [1, 9, 7, 5];
    // Missing.
    let mut w2 = WeightFile::default();
    for name in w.names().filter(|n| *n != "dw.bias") {
        let s = w.shape(name).unwrap().to_vec();
        w2.insert(name, &s, w.tensor(name, &s).unwrap().to_vec())
            .unwrap();
    }
    let e = Model::new(&ctx, &g, &w2, DType::F32, &xs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'dw.bias' is missing"), "{e}");
    // Mis-shaped.
    w2.insert("dw.bias", &[7], vec![0.0; 7]).unwrap();
    let e = Model::new(&ctx, &g, &w2, DType::F32, &xs)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'dw.bias'") && e.contains("[7]") && e.contains("[8]"),
        "{e}"
    );
    // An input the first convolution cannot take.
    let e = Model::new(&ctx, &g, &w, DType::F32, &[1, 9, 7, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("c1"), "{e}");
    // A forward pass on the wrong input.
    let m = Model::new(&ctx, &g, &w, DType::F32, &xs).unwrap();
    let x = Tensor::zeros(&ctx, &xs, DType::F16).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = m.forward(&ctx, &mut enc, &x).unwrap_err().to_string();
    assert!(e.contains("F16") && e.contains("F32"), "{e}");
    // A node reading a later node, and an add of mismatched shapes.
    let mut bad = g.clone();
    bad.nodes[0].input = Src::Node(3);
    let e = Model::new(&ctx, &bad, &w, DType::F32, &xs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not before it"), "{e}");
    let mut bad = g.clone();
    bad.nodes[3].layer = Layer::Add {
        other: 0,
        clip: Clip::NONE,
    };
    bad.nodes[3].input = Src::Input;
    let e = Model::new(&ctx, &bad, &w, DType::F32, &xs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("adds"), "{e}");
    // INT8 is not a float model's dtype.
    let e = Model::new(&ctx, &g, &w, DType::I32, &xs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("F32 or F16"), "{e}");
    // A file that is not safetensors.
    let e = WeightFile::from_bytes(b"not a safetensors file", "junk.bin").unwrap_err();
    assert!(e.to_string().contains("junk.bin"), "{e}");
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data");

/// `examples/data/{path}` resized so its shorter side is `shorter`, center-cropped to
/// 224x224 and scaled as `(x - 127) / 128` on the GPU, in `dtype`.
fn input(ctx: &Context, path: &str, shorter: usize, dtype: DType) -> Tensor {
    let img = image::open(format!("{DATA}/{path}")).unwrap().to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
    let px = Tensor::from_slice(ctx, &[h * w], &px).unwrap();
    let x = Tensor::zeros(ctx, &[1, 224, 224, 3], dtype).unwrap();
    let desc = ImageDesc::center_crop(shorter, 224, 224).normalize([127.0; 3], [128.0; 3]);
    let mut enc = ctx.encoder("input");
    let src = ImageSource::Buffer {
        pixels: &px,
        width: w,
        height: h,
    };
    image_to_tensor(ctx, &mut enc, src, &desc, &x).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    x
}

/// Top-5 class indices and the probabilities of `photos/{path}` through `model`.
fn classify(ctx: &Context, model: &Model, path: &str) -> (Vec<usize>, Vec<f32>) {
    let x = input(ctx, &format!("photos/{path}"), 224, model.dtype());
    let mut enc = ctx.encoder("classify");
    let y = model.forward(ctx, &mut enc, &x).unwrap().clone();
    ctx.submit_and_wait(enc).unwrap();
    let p = read_f32(ctx, &y);
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    (idx[..5].to_vec(), p)
}

#[test]
fn efficientnet_lite0_classifies_the_bundled_photos() {
    let ctx = ctx();
    let w = WeightFile::load(format!(
        "{DATA}/efficientnet_lite0/efficientnet_lite0.safetensors"
    ))
    .unwrap();
    assert_eq!(w.parameters(), 4_631_000);
    let g = efficientnet_lite0(&w).unwrap();
    let labels: Vec<String> =
        std::fs::read_to_string(format!("{DATA}/efficientnet_lite0/imagenet_labels.txt"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
    assert_eq!(labels.len(), 1000);
    let fp32 = Model::new(&ctx, &g, &w, DType::F32, &[1, 224, 224, 3]).unwrap();
    let fp16 = Model::new(&ctx, &g, &w, DType::F16, &[1, 224, 224, 3]).unwrap();
    // Weights in the model's dtype, biases in f32.
    let biases: usize = w
        .names()
        .filter(|n| n.ends_with(".bias"))
        .map(|n| w.shape(n).unwrap().iter().product::<usize>())
        .sum();
    assert_eq!(fp32.weight_bytes(), 4 * 4_631_000);
    assert_eq!(
        fp16.weight_bytes() as usize,
        2 * (4_631_000 - biases) + 4 * biases
    );
    // ImageNet classes 281..=285 are the domestic cats; 967 espresso, 968 cup.
    for (photo, allowed) in [
        ("chelsea.png", &[281usize, 282, 283, 284, 285][..]),
        ("coffee.png", &[967, 968][..]),
    ] {
        let (top32, p32) = classify(&ctx, &fp32, photo);
        let (top16, p16) = classify(&ctx, &fp16, photo);
        let name = |i: usize| labels[i].clone();
        assert!(
            allowed.contains(&top32[0]),
            "{photo}: FP32 top-1 is {} ({:.3})",
            name(top32[0]),
            p32[top32[0]]
        );
        assert_eq!(top16[0], top32[0], "{photo}: FP16 top-1 {}", name(top16[0]));
        assert!((p32.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        let worst = max_abs_diff(&p32, &p16);
        assert!(
            worst < 0.02,
            "{photo}: FP16 probabilities differ by {worst}"
        );
    }
}

#[test]
fn int8_models_follow_the_float_graph() {
    let ctx = ctx();
    let (g, w, _) = small_graph();
    let xs = [1, 9, 7, 5];
    let n = xs.iter().product();
    let batches: Vec<Tensor> = (0..4)
        .map(|i| Tensor::from_slice(&ctx, &xs, &wgpu_quant::bench::random_f32(n, 40 + i)).unwrap())
        .collect();
    let fp32 = Model::new(&ctx, &g, &w, DType::F32, &xs).unwrap();
    let run_f = |x: &Tensor| {
        let mut enc = ctx.encoder("fp32");
        let y = fp32.forward(&ctx, &mut enc, x).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        y.read_blocking::<f32>(&ctx).unwrap()
    };
    // Weights: 1 byte per value, an f32 scale and an i32 zero point per output channel,
    // f32 biases.
    let values: usize = ["c1", "dw", "pw", "fc"]
        .iter()
        .map(|l| {
            w.shape(&format!("{l}.weight"))
                .unwrap()
                .iter()
                .product::<usize>()
        })
        .sum();
    let channels = 8 + 8 + 8 + 3;
    for mode in [QMode::Static, QMode::Dynamic] {
        for obs in ObserverKind::standard() {
            let q = QModel::calibrate(&ctx, &g, &w, &xs, &batches, obs, mode).unwrap();
            assert_eq!(
                q.weight_bytes() as usize,
                values + 8 * channels + 4 * channels
            );
            for x in &batches {
                let want = run_f(x);
                let mut enc = ctx.encoder("int8");
                let y = q.forward(&ctx, &mut enc, x).unwrap().clone();
                ctx.submit_and_wait(enc).unwrap();
                let got = y.read_blocking::<f32>(&ctx).unwrap();
                // Probabilities of 3 classes: within a few 8-bit steps of FP32.
                let worst = max_abs_diff(&got, &want);
                assert!(worst < 0.03, "{mode:?} {}: {got:?} vs {want:?}", obs.name());
            }
            if mode == QMode::Dynamic {
                break; // no observer involved
            }
        }
    }
    // Save and load: the same codes and parameters give the same outputs, bit for bit.
    let dir = std::env::temp_dir().join(format!("wgpu-quant-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for mode in [QMode::Static, QMode::Dynamic] {
        let q = QModel::calibrate(&ctx, &g, &w, &xs, &batches, ObserverKind::Mse, mode).unwrap();
        let path = dir.join(format!("{mode:?}.safetensors"));
        let size = q.save(&path).unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let back = QModel::load(&ctx, &g, &path, &xs).unwrap();
        assert_eq!((back.mode(), back.weight_bytes()), (mode, q.weight_bytes()));
        let mut enc = ctx.encoder("saved and loaded");
        let a = q.forward(&ctx, &mut enc, &batches[1]).unwrap().clone();
        let b = back.forward(&ctx, &mut enc, &batches[1]).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let (a, b) = (
            a.read_blocking::<f32>(&ctx).unwrap(),
            b.read_blocking::<f32>(&ctx).unwrap(),
        );
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{mode:?}"
        );
        if mode == QMode::Static {
            // Files written before activation zero points were typed hold them as I32
            // (u8 activations) and have no CRC: they load into the same model.
            let legacy = dir.join("legacy.safetensors");
            write_legacy(&path, &legacy);
            let old = QModel::load(&ctx, &g, &legacy, &xs).unwrap();
            let mut enc = ctx.encoder("legacy");
            let c = old.forward(&ctx, &mut enc, &batches[1]).unwrap().clone();
            ctx.submit_and_wait(enc).unwrap();
            assert_eq!(c.read_blocking::<f32>(&ctx).unwrap(), a, "legacy file");
        }
        // A graph whose layer disagrees with the file is refused, naming the tensor.
        let mut other = g.clone();
        assert_eq!(other.nodes[5].name, "fc");
        other.nodes[5].layer = match other.nodes[5].layer.clone() {
            Layer::Linear {
                weight, bias, k, ..
            } => Layer::Linear {
                weight,
                bias,
                n: 2,
                k,
                activation: Activation::Relu,
            },
            l => l,
        };
        let e = QModel::load(&ctx, &other, &path, &xs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'fc.weight'") && e.contains("[2, 8]"), "{e}");
    }
    // A float weight file is not an INT8 model.
    let fp = dir.join("float.safetensors");
    std::fs::write(
        &fp,
        std::fs::read(format!(
            "{DATA}/efficientnet_lite0/efficientnet_lite0.safetensors"
        ))
        .unwrap(),
    )
    .unwrap();
    let e = QModel::load(&ctx, &g, &fp, &xs).unwrap_err().to_string();
    assert!(e.contains("not a wgpu-quant INT8 model"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    // Static quantization needs calibration data; the input must be the calibrated one.
    let e = QModel::calibrate(&ctx, &g, &w, &xs, &[], ObserverKind::MinMax, QMode::Static)
        .unwrap_err()
        .to_string();
    assert!(e.contains("calibration"), "{e}");
    let q = QModel::calibrate(
        &ctx,
        &g,
        &w,
        &xs,
        &batches,
        ObserverKind::MinMax,
        QMode::Static,
    )
    .unwrap();
    let x = Tensor::zeros(&ctx, &[1, 9, 7, 6], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = q.forward(&ctx, &mut enc, &x).unwrap_err().to_string();
    assert!(e.contains("[1, 9, 7, 6]"), "{e}");
}

/// A 224x224 f32 input of `path` (in `examples/data`), the shorter side resized to
/// `shorter`.
/// Bias correction: rounding the weights shifts each output channel's mean by
/// `sum((W_q - W) * E[x])`; with the correction, INT8's mean error per channel over the
/// calibration batches is gone. Checked on one layer of each kind with weights whose
/// rounding error is large (an outlier per channel sets the scale) and inputs with a
/// large mean: a strided 3x3 convolution with padding and a bias, a padded depthwise
/// convolution without a bias, and a linear without a bias; static and dynamic.
#[test]
fn bias_correction_removes_the_mean_shift_of_rounded_weights() {
    let ctx = ctx();
    let xs = [2, 9, 7, 4];
    let n: usize = xs.iter().product();
    // Inputs in [1, 3]: a mean of 2 makes the weight rounding shift the outputs.
    let batches: Vec<Tensor> = (0..4)
        .map(|i| {
            let v: Vec<f32> = wgpu_quant::bench::random_f32(n, 50 + i)
                .iter()
                .map(|v| 2.0 + v)
                .collect();
            Tensor::from_slice(&ctx, &xs, &v).unwrap()
        })
        .collect();
    let outlier_weights = |shape: &[usize], seed: u64| -> Vec<f32> {
        let n: usize = shape.iter().product();
        let per = n / shape[0];
        let mut v = wgpu_quant::bench::random_f32(n, seed);
        for c in 0..shape[0] {
            v[c * per] = 9.0; // the scale is 9 / 127: a rounding error up to 0.035
        }
        v
    };
    let same = ConvDesc::default().padding(Padding::Same);
    let layers = [
        (
            "strided conv with a bias",
            ConvDims::new(8, 4, [3, 3], 1).unwrap(),
            same.stride(2),
            true,
        ),
        (
            "depthwise conv without a bias",
            ConvDims::new(4, 4, [3, 3], 4).unwrap(),
            same,
            false,
        ),
    ];
    let mut graphs = Vec::new();
    for (what, dims, desc, with_bias) in layers {
        let mut w = WeightFile::default();
        w.insert("l.weight", &dims.oihw(), outlier_weights(&dims.oihw(), 60))
            .unwrap();
        let bias = with_bias.then(|| {
            w.insert("l.bias", &[dims.out_channels], vec![0.5; dims.out_channels])
                .unwrap();
            "l.bias"
        });
        let mut g = Graph::default();
        g.push("l", Layer::conv("l.weight", bias, dims, desc));
        graphs.push((what, g, w, dims.out_channels));
    }
    let mut w = WeightFile::default();
    w.insert("l.weight", &[5, 252], outlier_weights(&[5, 252], 61))
        .unwrap();
    let mut g = Graph::default();
    g.push("l", Layer::linear("l.weight", None, 5, 252));
    graphs.push(("linear without a bias", g, w, 5));

    let dir = std::env::temp_dir().join(format!("wgpu-quant-bc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (what, g, w, channels) in &graphs {
        let fp32 = Model::new(&ctx, g, w, DType::F32, &xs).unwrap();
        // Per output channel: the mean of INT8 - FP32 over every batch and position.
        let mean_error = |q: &QModel| -> Vec<f64> {
            let mut e = vec![0f64; *channels];
            let mut count = 0usize;
            for x in &batches {
                let mut enc = ctx.encoder("both");
                let yf = fp32.forward(&ctx, &mut enc, x).unwrap().clone();
                let yq = q.forward(&ctx, &mut enc, x).unwrap().clone();
                ctx.submit_and_wait(enc).unwrap();
                let (yf, yq) = (read_f32(&ctx, &yf), read_f32(&ctx, &yq));
                for (i, (a, b)) in yq.iter().zip(&yf).enumerate() {
                    e[i % channels] += f64::from(a - b);
                }
                count += yf.len() / channels;
            }
            e.iter().map(|v| v / count as f64).collect()
        };
        let worst = |e: &[f64]| e.iter().fold(0f64, |m, v| m.max(v.abs()));
        for mode in [QMode::Static, QMode::Dynamic] {
            let opts = PtqOptions::new(ObserverKind::MinMax, mode);
            let plain =
                QModel::calibrate_with(&ctx, g, w, &xs, &batches, &opts.bias_correction(false))
                    .unwrap();
            let corrected = QModel::calibrate_with(&ctx, g, w, &xs, &batches, &opts).unwrap();
            let (before, after) = (worst(&mean_error(&plain)), worst(&mean_error(&corrected)));
            // Without the correction the rounding shifts some channel by a clear amount;
            // with it, what is left is the activations' rounding, which averages out.
            assert!(
                before > 0.05,
                "{what} {mode:?}: shift {before} too small to test"
            );
            assert!(
                after < 0.05 * before,
                "{what} {mode:?}: mean error {after} after correction, {before} before"
            );
            // A layer without a bias gets one, which is saved and loaded with the model.
            let path = dir.join(format!("{mode:?}.safetensors"));
            corrected.save(&path).unwrap();
            let back = QModel::load(&ctx, g, &path, &xs).unwrap();
            assert_eq!(back.weight_bytes(), corrected.weight_bytes());
            assert_eq!(
                corrected.weight_bytes(),
                plain.weight_bytes()
                    + if w.shape("l.bias").is_none() {
                        4 * *channels as u64
                    } else {
                        0
                    },
                "{what}: the correction adds one f32 per channel only where no bias was"
            );
            let mut enc = ctx.encoder("saved and loaded");
            let a = corrected
                .forward(&ctx, &mut enc, &batches[0])
                .unwrap()
                .clone();
            let b = back.forward(&ctx, &mut enc, &batches[0]).unwrap().clone();
            ctx.submit_and_wait(enc).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                read_f32(&ctx, t).iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(&a), bits(&b), "{what} {mode:?}: saved and loaded");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// EfficientNet-Lite0 in static and dynamic INT8 (min-max, bias correction, calibrated
/// on the 5 calibration images at 2 scales): at least 3.5x smaller in memory and as a
/// file, and FP32's top-1 and top-5 on each bundled photo.
#[test]
fn efficientnet_lite0_in_int8_is_smaller_and_agrees_with_fp32_on_the_photos() {
    let ctx = ctx();
    let w = WeightFile::load(format!(
        "{DATA}/efficientnet_lite0/efficientnet_lite0.safetensors"
    ))
    .unwrap();
    let g = efficientnet_lite0(&w).unwrap();
    let shape = [1, 224, 224, 3];
    let fp32 = Model::new(&ctx, &g, &w, DType::F32, &shape).unwrap();
    // Calibration on other images than the photos classified.
    let mut batches = Vec::new();
    for f in [
        "astronaut.png",
        "camera.png",
        "coins.png",
        "hubble_deep_field.jpg",
        "retina.jpg",
    ] {
        for shorter in [224, 256] {
            batches.push(input(
                &ctx,
                &format!("calibration/{f}"),
                shorter,
                DType::F32,
            ));
        }
    }
    let top = |y: &Tensor| -> (usize, Vec<f32>) {
        let p = y.read_blocking::<f32>(&ctx).unwrap();
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        (best, p)
    };
    for mode in [QMode::Static, QMode::Dynamic] {
        let q =
            QModel::calibrate(&ctx, &g, &w, &shape, &batches, ObserverKind::MinMax, mode).unwrap();
        let ratio = fp32.weight_bytes() as f64 / q.weight_bytes() as f64;
        assert!(
            ratio >= 3.5,
            "{mode:?}: INT8 weights only {ratio:.2}x smaller"
        );
        // Saved, the INT8 model is as much smaller than the FP32 weights file.
        let path = std::env::temp_dir().join(format!(
            "wq-eff-{}-{mode:?}.safetensors",
            std::process::id()
        ));
        let saved = q.save(&path).unwrap();
        let fp32_file = std::fs::metadata(format!(
            "{DATA}/efficientnet_lite0/efficientnet_lite0.safetensors"
        ))
        .unwrap()
        .len();
        assert!(
            fp32_file as f64 / saved as f64 >= 3.5,
            "{saved} vs {fp32_file}"
        );
        std::fs::remove_file(&path).ok();
        // (photo, plausible FP32 classes, whether FP32 is confident enough for the
        // per-class probability budget of 0.05: the rocket's top-1 is only 25%, and its
        // diffuse probabilities move further, up to 0.063 in static INT8).
        for (photo, allowed, confident) in [
            ("chelsea.png", &[281usize, 282, 283, 284, 285][..], true),
            ("coffee.png", &[967][..], true),
            // missile, projectile, space shuttle
            ("rocket.jpg", &[657, 744, 812][..], false),
        ] {
            let x = input(&ctx, &format!("photos/{photo}"), 224, DType::F32);
            let mut enc = ctx.encoder("both");
            let yf = fp32.forward(&ctx, &mut enc, &x).unwrap().clone();
            let yq = q.forward(&ctx, &mut enc, &x).unwrap().clone();
            ctx.submit_and_wait(enc).unwrap();
            let ((tf, pf), (tq, pq)) = (top(&yf), top(&yq));
            assert!(allowed.contains(&tf), "{photo}: FP32 top-1 {tf}");
            // INT8's top-1 is FP32's, also on the cat, where FP32's two leading classes
            // are only 6.6 points apart (without bias correction INT8 swaps them).
            assert_eq!(
                tq, tf,
                "{mode:?} {photo}: INT8 top-1 {tq} ({}), FP32 {tf} ({})",
                pq[tq], pf[tf]
            );
            // On every photo: FP32's five leading classes stay INT8's five leading ones,
            // and the KL divergence of INT8 from FP32 is small.
            let top5 = |p: &[f32]| {
                let mut idx: Vec<usize> = (0..p.len()).collect();
                idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let mut t = idx[..5].to_vec();
                t.sort_unstable();
                t
            };
            assert_eq!(top5(&pq), top5(&pf), "{mode:?} {photo}: top-5 classes");
            let kl: f64 = pf
                .iter()
                .zip(&pq)
                .filter(|(a, _)| **a > 0.0)
                .map(|(&a, &b)| f64::from(a) * (f64::from(a).ln() - f64::from(b.max(1e-12)).ln()))
                .sum();
            assert!(kl < 0.05, "{mode:?} {photo}: KL(FP32 || INT8) = {kl}");
            let worst = max_abs_diff(&pf, &pq);
            assert!(
                !confident || worst < 0.05,
                "{mode:?} {photo}: probabilities differ by {worst}"
            );
        }
    }
}

/// LeNet on the 1,000 MNIST test digits: FP32 on the GPU classifies them as the numpy
/// trainer did (its accuracy is in the weights' metadata); FP16 within 0.2 points; INT8
/// static with every observer and dynamic within 1 point of FP32 (the bound),
/// and the best observer within 0.5 points (its target); INT8 weights 3.5x smaller.
#[test]
fn lenet_on_mnist_int8_stays_within_a_point_of_fp32() {
    let ctx = ctx();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/mnist");
    let (train, test) = mnist::load(&format!("{dir}/mnist_5k.csv.gz")).unwrap();
    assert_eq!((train.len(), test.len()), (4000, 1000));
    let w = WeightFile::load(format!("{dir}/lenet.safetensors")).unwrap();
    let g = lenet();
    let batch = 100;
    let shape = [batch, 28, 28, 1];
    // Calibration on training digits only, every class in every batch.
    let calibration: Vec<Tensor> = (0..5)
        .map(|b| {
            let x: Vec<f32> = (0..batch)
                .flat_map(|j| train.batch(b + j * 40, 1).to_vec())
                .collect();
            Tensor::from_slice(&ctx, &shape, &x).unwrap()
        })
        .collect();
    let correct = |forward: &dyn Fn(&mut wgpu::CommandEncoder, &Tensor) -> Tensor, dtype| {
        let mut right = 0;
        for start in (0..test.len()).step_by(batch) {
            let x = test.batch(start, batch);
            let x = match dtype {
                DType::F16 => {
                    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                    Tensor::from_slice(&ctx, &shape, &h).unwrap()
                }
                _ => Tensor::from_slice(&ctx, &shape, x).unwrap(),
            };
            let mut enc = ctx.encoder("lenet");
            let y = forward(&mut enc, &x);
            ctx.submit_and_wait(enc).unwrap();
            let p = read_f32(&ctx, &y);
            right += p
                .chunks_exact(10)
                .zip(&test.labels[start..start + batch])
                .filter(|(r, &l)| (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])) == Some(l))
                .count();
        }
        right
    };
    let float = |dtype| {
        let m = Model::new(&ctx, &g, &w, dtype, &shape).unwrap();
        let right = correct(
            &|enc: &mut wgpu::CommandEncoder, x: &Tensor| m.forward(&ctx, enc, x).unwrap().clone(),
            dtype,
        );
        (right, m.weight_bytes())
    };
    let (fp32, fp32_bytes) = float(DType::F32);
    let numpy: f64 = w
        .metadata("test_accuracy_numpy")
        .expect("the trainer records its test accuracy")
        .parse()
        .unwrap();
    let numpy = (numpy * 1000.0).round() as i64;
    assert!(
        (fp32 as i64 - numpy).abs() <= 1,
        "FP32 on the GPU: {fp32}/1000 right; the numpy trainer: {numpy}/1000"
    );
    let (fp16, _) = float(DType::F16);
    assert!(
        fp32.abs_diff(fp16) <= 2,
        "FP16 {fp16}/1000 vs FP32 {fp32}/1000"
    );
    let runs: Vec<(String, QModel)> = ObserverKind::standard()
        .into_iter()
        .map(|o| (format!("static {}", o.name()), o, QMode::Static))
        .chain([("dynamic".into(), ObserverKind::MinMax, QMode::Dynamic)])
        .map(|(name, obs, mode)| {
            let q = QModel::calibrate(&ctx, &g, &w, &shape, &calibration, obs, mode).unwrap();
            (name, q)
        })
        .collect();
    let mut best = 0;
    for (name, q) in &runs {
        let right = correct(
            &|enc: &mut wgpu::CommandEncoder, x: &Tensor| q.forward(&ctx, enc, x).unwrap().clone(),
            DType::F32,
        );
        // 1 point of 1,000 digits is 10.
        assert!(
            fp32.abs_diff(right) <= 10,
            "INT8 {name}: {right}/1000 right, FP32 {fp32}/1000"
        );
        let ratio = fp32_bytes as f64 / q.weight_bytes() as f64;
        assert!(
            ratio >= 3.5,
            "INT8 {name}: weights only {ratio:.2}x smaller"
        );
        best = best.max(right);
    }
    assert!(
        best + 5 >= fp32,
        "the best INT8 observer: {best}/1000, FP32 {fp32}/1000 (target: at most 0.5 points lower)"
    );
}

/// A static INT8 linear reading 8-bit codes whose rows are not whole words (a 6-channel
/// convolution flattened into 54 inputs) requantizes them in its own shape: the result
/// matches FP32 within the 8-bit steps, as when the rows pack evenly.
#[test]
fn static_int8_flattens_rows_that_are_not_whole_words() {
    let ctx = ctx();
    let xs = [2, 5, 5, 3];
    let dims = ConvDims::new(6, 3, [3, 3], 1).unwrap();
    let mut w = WeightFile::default();
    w.insert(
        "c.weight",
        &dims.oihw(),
        wgpu_quant::bench::random_f32(162, 70),
    )
    .unwrap();
    w.insert(
        "fc.weight",
        &[4, 54],
        wgpu_quant::bench::random_f32(216, 71),
    )
    .unwrap();
    let mut g = Graph::default();
    g.push(
        "c",
        Layer::conv(
            "c.weight",
            None,
            dims,
            ConvDesc::default().activation(Activation::Relu),
        ),
    );
    g.push("fc", Layer::linear("fc.weight", None, 4, 54));
    let batches: Vec<Tensor> = (0..3)
        .map(|i| {
            Tensor::from_slice(&ctx, &xs, &wgpu_quant::bench::random_f32(150, 80 + i)).unwrap()
        })
        .collect();
    let fp32 = Model::new(&ctx, &g, &w, DType::F32, &xs).unwrap();
    let opts = PtqOptions::new(ObserverKind::MinMax, QMode::Static);
    let q = QModel::calibrate_with(&ctx, &g, &w, &xs, &batches, &opts).unwrap();
    for x in &batches {
        let mut enc = ctx.encoder("both");
        let yf = fp32.forward(&ctx, &mut enc, x).unwrap().clone();
        let yq = q.forward(&ctx, &mut enc, x).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let (yf, yq) = (read_f32(&ctx, &yf), read_f32(&ctx, &yq));
        let scale = yf.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = max_abs_diff(&yf, &yq);
        // 54 products of 8-bit operands: a few percent of the output range.
        assert!(
            worst < 0.05 * scale,
            "{worst} vs outputs up to {scale}: {yq:?} vs {yf:?}"
        );
    }
}

/// conv 5->8 k3 s2, hard swish, a squeeze-excite gate (global pool, 1x1 conv ReLU, hard
/// sigmoid, multiply broadcast over the pixels), sigmoid, minus the hard swish output,
/// global pool, linear 8->3, softmax: the elementwise layers an imported MobileNetV3 needs.
#[test]
fn elementwise_layers_match_the_reference_and_quantize() {
    use wgpu_quant::ops::eltwise::{BinaryOp, UnaryOp};
    let ctx = ctx();
    let xs = [2, 9, 7, 5];
    let mut w = WeightFile::default();
    let d1 = ConvDims::new(8, 5, [3, 3], 1).unwrap();
    let d2 = ConvDims::new(8, 8, [1, 1], 1).unwrap();
    let desc1 = ConvDesc::default().stride(2).padding(Padding::Same);
    let desc2 = ConvDesc::default().activation(Activation::Relu);
    for (name, dims, seed) in [("c1", d1, 40u64), ("se", d2, 41)] {
        let n: usize = dims.oihw().iter().product();
        w.insert(
            &format!("{name}.weight"),
            &dims.oihw(),
            wgpu_quant::bench::random_f32(n, seed),
        )
        .unwrap();
        w.insert(
            &format!("{name}.bias"),
            &[8],
            wgpu_quant::bench::random_f32(8, seed + 10),
        )
        .unwrap();
    }
    w.insert("fc.weight", &[3, 8], wgpu_quant::bench::random_f32(24, 43))
        .unwrap();
    let hsig = UnaryOp::HardSigmoid {
        alpha: 0.2,
        beta: 0.5,
    };
    let mut g = Graph::default();
    g.push("c1", Layer::conv("c1.weight", Some("c1.bias"), d1, desc1));
    g.push(
        "hswish",
        Layer::Map {
            f: UnaryOp::HardSwish,
            clip: Clip::NONE,
        },
    );
    g.push("se.pool", Layer::Pool(PoolDesc::global_avg()));
    g.push(
        "se.fc",
        Layer::conv("se.weight", Some("se.bias"), d2, desc2),
    );
    g.push(
        "se.gate",
        Layer::Map {
            f: hsig,
            clip: Clip::NONE,
        },
    );
    g.push_from(
        "se.scale",
        Layer::Binary {
            op: BinaryOp::Mul,
            other: 4,
            clip: Clip::NONE,
        },
        Src::Node(1),
    );
    g.push(
        "sig",
        Layer::Map {
            f: UnaryOp::Sigmoid,
            clip: Clip::NONE,
        },
    );
    g.push(
        "sub",
        Layer::Binary {
            op: BinaryOp::Sub,
            other: 1,
            clip: Clip::RELU6,
        },
    );
    g.push("pool", Layer::Pool(PoolDesc::global_avg()));
    g.push("fc", Layer::linear("fc.weight", None, 3, 8));
    g.push("prob", Layer::Softmax);

    let xf = wgpu_quant::bench::random_f32(xs.iter().product(), 44);
    let r = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| f64::from(x)).collect() };
    let s1 = desc1.shape(&d1, &xs).unwrap();
    let c1 = reference::conv2d_f64(
        &r(&xf),
        &r(w.tensor("c1.weight", &d1.oihw()).unwrap()),
        Some(w.tensor("c1.bias", &[8]).unwrap()),
        Activation::None,
        &s1,
    );
    let hs = reference::map_f64(&c1, UnaryOp::HardSwish, Clip::NONE);
    let shape1 = s1.output_shape();
    let gpool = |v: &[f64]| -> Vec<f64> {
        let per = v.len() / 2;
        (0..2)
            .flat_map(|b| (0..8).map(move |c| (b, c)))
            .map(|(b, c)| {
                (0..per / 8).map(|p| v[b * per + p * 8 + c]).sum::<f64>() / (per / 8) as f64
            })
            .collect()
    };
    let sp = gpool(&hs);
    let s2 = desc2.shape(&d2, &[2, 1, 1, 8]).unwrap();
    let se = reference::conv2d_f64(
        &sp,
        &r(w.tensor("se.weight", &d2.oihw()).unwrap()),
        Some(w.tensor("se.bias", &[8]).unwrap()),
        Activation::Relu,
        &s2,
    );
    let gate = reference::map_f64(&se, hsig, Clip::NONE);
    let scaled = reference::binary_f64(
        &hs,
        &shape1,
        &gate,
        &[2, 1, 1, 8],
        BinaryOp::Mul,
        Clip::NONE,
    );
    let sig = reference::map_f64(&scaled, UnaryOp::Sigmoid, Clip::NONE);
    let sub = reference::binary_f64(&sig, &shape1, &hs, &shape1, BinaryOp::Sub, Clip::RELU6);
    let pooled = gpool(&sub);
    let fc = reference::linear_f64(
        &pooled,
        &r(w.tensor("fc.weight", &[3, 8]).unwrap()),
        None,
        Activation::None,
        (2, 3, 8),
    );
    let prob = reference::softmax_f64(&fc, 3);
    let want = [c1, hs, sp, se, gate, scaled, sig, sub, pooled, fc, prob];

    let fp32 = Model::new(&ctx, &g, &w, DType::F32, &xs).unwrap();
    let x = Tensor::from_slice(&ctx, &xs, &xf).unwrap();
    let mut enc = ctx.encoder("fp32");
    fp32.forward(&ctx, &mut enc, &x).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    for (i, node) in g.nodes.iter().enumerate() {
        let got = read_f32(&ctx, fp32.output(&node.name).unwrap());
        let wf: Vec<f32> = want[i].iter().map(|&v| v as f32).collect();
        let e = reference::rel_error(&got, &wf);
        assert!(e <= 1e-5, "node {i} ({}): rel. error {e:.2e}", node.name);
    }
    let p32 = read_f32(&ctx, fp32.output("prob").unwrap());
    // Per-layer GPU times: one per layer, in the graph's order, none negative; an
    // adapter without timestamps inside encoders says so.
    let stamps = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if ctx.device().features().contains(stamps) {
        let times = fp32.profile(&ctx, &x, 2).unwrap();
        let names: Vec<&str> = times.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, want);
        assert!(
            times.iter().all(|(_, t)| t.is_finite() && *t >= 0.0),
            "{times:?}"
        );
        assert!(fp32.profile(&ctx, &x, 0).is_err());
    } else {
        let e = fp32.profile(&ctx, &x, 2).unwrap_err();
        assert!(matches!(e, wgpu_quant::Error::MissingFeature { .. }), "{e}");
    }
    // INT8: calibrated on other inputs; the probabilities stay close to FP32's.
    let batches: Vec<Tensor> = (0..4)
        .map(|s| {
            Tensor::from_slice(&ctx, &xs, &wgpu_quant::bench::random_f32(xf.len(), 50 + s)).unwrap()
        })
        .collect();
    for mode in [QMode::Static, QMode::Dynamic] {
        let q = QModel::calibrate(&ctx, &g, &w, &xs, &batches, ObserverKind::MinMax, mode).unwrap();
        let mut enc = ctx.encoder("int8");
        let y = q.forward(&ctx, &mut enc, &x).unwrap().clone();
        ctx.submit_and_wait(enc).unwrap();
        let p8 = y.read_blocking::<f32>(&ctx).unwrap();
        let d = max_abs_diff(&p8, &p32);
        assert!(
            d < 0.03,
            "{mode:?}: probabilities {p8:?} vs FP32 {p32:?} ({d})"
        );
    }
}

/// Rewrites a saved INT8 model in the earlier format: activation zero points as I32, no
/// CRC in the metadata.
fn write_legacy(from: &std::path::Path, to: &std::path::Path) {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let bytes = std::fs::read(from).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut blobs = Vec::new();
    for (name, t) in st.tensors() {
        if name.starts_with("act.") && name.ends_with(".zero_point") {
            assert_eq!(t.dtype(), Dtype::U8, "{name}");
            let z: Vec<u8> = t
                .data()
                .iter()
                .flat_map(|&b| i32::from(b).to_le_bytes())
                .collect();
            blobs.push((name, Dtype::I32, t.shape().to_vec(), z));
        } else {
            blobs.push((name, t.dtype(), t.shape().to_vec(), t.data().to_vec()));
        }
    }
    let views: Vec<_> = blobs
        .iter()
        .map(|(n, d, sh, b)| (n.clone(), TensorView::new(*d, sh.clone(), b).unwrap()))
        .collect();
    let mut m = meta.metadata().clone().unwrap();
    m.remove("crc32");
    std::fs::write(to, safetensors::tensor::serialize(views, Some(m)).unwrap()).unwrap();
}
