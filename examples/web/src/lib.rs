//! The classification page's Rust side: EfficientNet-Lite0 in FP32, FP16 and static INT8
//! on the browser's WebGPU adapter, through wgpu-quant's async API.
//!
//! `Classifier.create(fp32, int8, labels)` builds the three models from the bytes of the
//! FP32 weights file and of the INT8 model file that the native example saved
//! (`cargo run --release --example classify -- --save-int8 FILE`);
//! `classifier.classify(bytes)` decodes a PNG or JPEG with the same decoder as the native
//! example, resizes and crops it on the GPU, runs each precision and returns the top-5
//! and the time per image as JSON.

use std::rc::Rc;

use half::f16;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgpu_quant::model::{efficientnet_lite0, Model, QModel, WeightFile};
use wgpu_quant::ops::image::{image_to_tensor, ImageDesc, ImageSource};
use wgpu_quant::{Context, DType, RequestOptions, Tensor};

/// Timed runs per precision (after one untimed run that compiles the kernels).
const RUNS: usize = 3;
const SHAPE: [usize; 4] = [1, 224, 224, 3];
/// Timed runs per benchmark case (after one untimed run), as in `bench --quick`.
const BENCH_RUNS: usize = 3;

enum Net {
    Float(Model),
    Int8(Box<QModel>),
}

impl Net {
    fn input_dtype(&self) -> DType {
        match self {
            Net::Float(m) => m.dtype(),
            Net::Int8(_) => DType::F32,
        }
    }

    fn weight_bytes(&self) -> u64 {
        match self {
            Net::Float(m) => m.weight_bytes(),
            Net::Int8(q) => q.weight_bytes(),
        }
    }

    fn forward<'a>(
        &'a self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        x: &Tensor,
    ) -> wgpu_quant::Result<&'a Tensor> {
        match self {
            Net::Float(m) => m.forward(ctx, enc, x),
            Net::Int8(q) => q.forward(ctx, enc, x),
        }
    }
}

struct Inner {
    ctx: Context,
    nets: Vec<(&'static str, Net)>,
    labels: Vec<String>,
}

/// EfficientNet-Lite0 in each precision on one WebGPU device.
#[wasm_bindgen]
pub struct Classifier {
    inner: Rc<Inner>,
}

fn js(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

#[wasm_bindgen]
impl Classifier {
    /// Requests the browser's adapter and builds the models: a promise of a `Classifier`.
    pub fn create(fp32: Vec<u8>, int8: Vec<u8>, labels: String) -> js_sys::Promise {
        future_to_promise(async move {
            let ctx = Context::request(&RequestOptions::default())
                .await
                .map_err(js)?;
            let weights =
                WeightFile::from_bytes(&fp32, "efficientnet_lite0.safetensors").map_err(js)?;
            let graph = efficientnet_lite0(&weights).map_err(js)?;
            let mut nets = Vec::new();
            for (name, dtype) in [("FP32", DType::F32), ("FP16", DType::F16)] {
                let m = Model::new(&ctx, &graph, &weights, dtype, &SHAPE).map_err(js)?;
                nets.push((name, Net::Float(m)));
            }
            let q = QModel::from_bytes(
                &ctx,
                &graph,
                &int8,
                "efficientnet_lite0_int8.safetensors",
                &SHAPE,
            )
            .map_err(js)?;
            nets.push(("INT8", Net::Int8(Box::new(q))));
            // Errors of the uploads, if any, before the page calls it ready.
            ctx.check_errors().await.map_err(js)?;
            let labels = labels.lines().map(String::from).collect();
            Ok(Classifier {
                inner: Rc::new(Inner { ctx, nets, labels }),
            }
            .into())
        })
    }

    /// The adapter and what it offers, as JSON.
    pub fn adapter(&self) -> String {
        let c = self.inner.ctx.capabilities();
        let a = &c.adapter;
        let sizes: Vec<_> = self
            .inner
            .nets
            .iter()
            .map(|(name, n)| serde_json::json!({"precision": name, "weight_bytes": n.weight_bytes()}))
            .collect();
        serde_json::json!({
            "name": a.name,
            "vendor": a.vendor,
            "device": a.device,
            "driver": a.driver,
            "driver_info": a.driver_info,
            "backend": format!("{:?}", a.backend),
            "device_type": format!("{:?}", a.device_type),
            "shader_f16": c.shader_f16,
            "subgroups": c.subgroups,
            "packed_int8_dot": c.packed_int8_dot,
            "models": sizes,
        })
        .to_string()
    }

    /// The benchmark runner's quick linear cases (`wgpu-quant bench --quick`: the gemm
    /// suite's 256^3 and the models suite's BERT projection and LLM GEMV) in FP32, W8A8
    /// and W8A16 on this adapter: each checked against the f64 reference first (bit
    /// for bit for W8A8) and timed only when verified. A promise of a JSON array.
    pub fn bench(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            use wgpu_quant::bench::{CaseOptions, LinearData, Precision};
            let ctx = &inner.ctx;
            let opts = CaseOptions::default();
            let mut rows = Vec::new();
            for (case, m, n, k) in [
                ("gemm 256x256x256", 256, 256, 256),
                ("bert.attn_proj", 128, 768, 768),
                ("llm.gemv", 1, 4096, 4096),
            ] {
                let data = LinearData::new(m, n, k);
                for p in [Precision::Fp32, Precision::W8A8, Precision::W8A16] {
                    let prep = data.prepare_async(ctx, p, &opts).await.map_err(js)?;
                    let t = prep.time_async(ctx, 1, BENCH_RUNS).await.map_err(js)?;
                    let ms = t.as_ref().map(|t| t.median());
                    rows.push(serde_json::json!({
                        "case": case,
                        "shape": format!("{m}x{n}x{k}"),
                        "precision": p.name(),
                        "kernel": prep.kernel,
                        "verified": prep.verified,
                        "rel_error": prep.rel_error,
                        "ms": ms,
                        "gops": ms.map(|ms| prep.ops / ms / 1e6),
                    }));
                }
            }
            Ok(JsValue::from_str(
                &serde_json::Value::from(rows).to_string(),
            ))
        })
    }

    /// Classifies a PNG or JPEG in every precision: a promise of a JSON string with the
    /// image size and, per precision, the median milliseconds per image (wall clock
    /// around submit and completion, preprocessing included) and the top-5.
    pub fn classify(&self, bytes: Vec<u8>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let img = image::load_from_memory(&bytes)
                .map_err(|e| js(format!("not a PNG or JPEG image: {e}")))?
                .to_rgba8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            let ctx = &inner.ctx;
            let pixels: Vec<u32> = bytemuck::cast_slice(img.as_raw()).to_vec();
            let px = Tensor::from_slice(ctx, &[h * w], &pixels).map_err(js)?;
            let desc = ImageDesc::center_crop(224, 224, 224).normalize([127.0; 3], [128.0; 3]);
            let mut results = Vec::new();
            for (name, net) in &inner.nets {
                let x = Tensor::zeros(ctx, &SHAPE, net.input_dtype()).map_err(js)?;
                let mut times = Vec::new();
                let mut out = None;
                for run in 0..=RUNS {
                    let mut enc = ctx.encoder("classify");
                    let src = ImageSource::Buffer {
                        pixels: &px,
                        width: w,
                        height: h,
                    };
                    image_to_tensor(ctx, &mut enc, src, &desc, &x).map_err(js)?;
                    out = Some(net.forward(ctx, &mut enc, &x).map_err(js)?);
                    let t0 = web_time::Instant::now();
                    ctx.submit(enc).await.map_err(js)?;
                    if run > 0 {
                        times.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                }
                times.sort_by(f64::total_cmp);
                let y = out.expect("at least one run");
                let probs: Vec<f32> = if y.dtype() == DType::F16 {
                    y.read::<f16>(ctx)
                        .await
                        .map_err(js)?
                        .iter()
                        .map(|v| v.to_f32())
                        .collect()
                } else {
                    y.read::<f32>(ctx).await.map_err(js)?
                };
                let mut idx: Vec<usize> = (0..probs.len()).collect();
                idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                let top: Vec<_> = idx[..5]
                    .iter()
                    .map(|&i| {
                        let label = inner.labels.get(i).map_or("?", |l| l.as_str());
                        serde_json::json!({"index": i, "label": label, "p": probs[i]})
                    })
                    .collect();
                results.push(serde_json::json!({
                    "precision": name,
                    "ms": times[times.len() / 2],
                    "top5": top,
                }));
            }
            let out = serde_json::json!({"width": w, "height": h, "results": results});
            Ok(JsValue::from_str(&out.to_string()))
        })
    }
}
