//! The model API (`wgpu_quant::model`): a small graph of every layer kind against the
//! f64 reference layer by layer, the errors that name a missing or mis-shaped weight, the
//! same graph quantized (static and dynamic INT8) against its FP32 twin, and the real
//! EfficientNet-Lite0 on the bundled photos in FP32, FP16 and INT8.

use half::f16;
use wgpu_quant::model::{efficientnet_lite0, Graph, Layer, Model, QMode, QModel, Src, WeightFile};
use wgpu_quant::ops::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::ops::eltwise::Clip;
use wgpu_quant::ops::gemm::Activation;
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::ops::pool::PoolDesc;
use wgpu_quant::quant::ObserverKind;
use wgpu_quant::reference;
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

fn ctx() -> Context {
    Context::request_blocking(&RequestOptions::default())
        .expect("no GPU adapter (install mesa-vulkan-drivers for lavapipe)")
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

/// Top-5 class indices and the probabilities of `path` through `model`.
fn classify(ctx: &Context, model: &Model, path: &str) -> (Vec<usize>, Vec<f32>) {
    let img = image::open(format!("{DATA}/photos/{path}"))
        .unwrap()
        .to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
    let px = Tensor::from_slice(ctx, &[h * w], &px).unwrap();
    let x = Tensor::zeros(ctx, &[1, 224, 224, 3], model.dtype()).unwrap();
    let desc = ImageDesc::center_crop(224, 224, 224).normalize([127.0; 3], [128.0; 3]);
    let mut enc = ctx.encoder("classify");
    let src = ImageSource::Buffer {
        pixels: &px,
        width: w,
        height: h,
    };
    image_to_tensor(ctx, &mut enc, src, &desc, &x).unwrap();
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
        let worst = p32
            .iter()
            .zip(&p16)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
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
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
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
fn input(ctx: &Context, path: &str, shorter: usize) -> Tensor {
    let img = image::open(format!("{DATA}/{path}")).unwrap().to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
    let px = Tensor::from_slice(ctx, &[h * w], &px).unwrap();
    let x = Tensor::zeros(ctx, &[1, 224, 224, 3], DType::F32).unwrap();
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

#[test]
fn efficientnet_lite0_in_int8_is_smaller_and_still_sees_a_cat_and_espresso() {
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
            batches.push(input(&ctx, &format!("calibration/{f}"), shorter));
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
        for (photo, allowed) in [
            ("chelsea.png", &[281usize, 282, 283, 284, 285][..]),
            ("coffee.png", &[967][..]),
        ] {
            let x = input(&ctx, &format!("photos/{photo}"), 224);
            let mut enc = ctx.encoder("both");
            let yf = fp32.forward(&ctx, &mut enc, &x).unwrap().clone();
            let yq = q.forward(&ctx, &mut enc, &x).unwrap().clone();
            ctx.submit_and_wait(enc).unwrap();
            let ((tf, pf), (tq, pq)) = (top(&yf), top(&yq));
            assert!(allowed.contains(&tf), "{photo}: FP32 top-1 {tf}");
            assert!(
                allowed.contains(&tq),
                "{mode:?} {photo}: INT8 top-1 {tq} ({})",
                pq[tq]
            );
            // Where FP32 is sure (espresso 94%), INT8 agrees; on the cat, FP32's two
            // leading classes are 6.6 points apart and INT8 may swap them.
            let worst = pf
                .iter()
                .zip(&pq)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 0.05,
                "{mode:?} {photo}: probabilities differ by {worst}"
            );
        }
    }
}
