//! A mutation fuzzer for the ONNX importer: the real model files and the vendored ONNX
//! test models, with bytes flipped, cut, repeated and spliced, must each give `Ok` or a
//! clear `Error::Import`, never a panic. `cargo test --test onnx_fuzz` runs a short,
//! seeded smoke (CI); a long run takes a time budget and a seed:
//!
//! ```text
//! WGPU_QUANT_FUZZ_SECS=600 WGPU_QUANT_FUZZ_SEED=7 cargo test --release --test onnx_fuzz -- --nocapture
//! ```
//!
//! A panic reports the seed, the iteration and the mutated file, written to the temp dir
//! so it can be replayed with `OnnxImport::load`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use rand::{Rng, RngExt, SeedableRng};
use wgpu_quant::import::proto::ModelProto;
use wgpu_quant::import::{OnnxImport, OPERATORS};
use wgpu_quant::Error;

fn seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        root.join("examples/data/efficientnet_lite0/efficientnet_lite0.onnx"),
        root.join("examples/data/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        // ONNX Runtime's dynamic format (the rewrite of import/dynamic.rs).
        root.join("examples/data/efficientnet_lite0/efficientnet_lite0_dyn.onnx"),
    ];
    for sub in ["tests/data/onnx/pytorch-converted", "tests/data/onnx/node"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path().join("model.onnx"))
            .filter(|p| p.exists())
            .collect();
        dirs.sort();
        files.extend(dirs);
    }
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn mutate(rng: &mut impl Rng, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = rng.random(),
            2 => v.truncate(at),
            3 => {
                let len = rng.random_range(1..=16.min(v.len() - at));
                let chunk = v[at..at + len].to_vec();
                let to = rng.random_range(0..=v.len());
                v.splice(to..to, chunk);
            }
            4 => v[at] = [0x00, 0x7f, 0x80, 0xff][rng.random_range(0..4)],
            _ => {
                let end = (at + rng.random_range(1..=8)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

/// A number from the edges: 0, 1, negative, huge.
fn edgy(rng: &mut impl Rng) -> i64 {
    [
        0,
        1,
        2,
        3,
        -1,
        -2,
        7,
        255,
        65535,
        1 << 31,
        1 << 40,
        i64::MAX,
        i64::MIN,
    ][rng.random_range(0..13)]
}

/// Decodes the model and changes its fields: dimensions, attributes, operator types,
/// input names, data types and sizes; so the importer's logic, not only the protobuf
/// decoder, sees the bad values.
fn mutate_fields(rng: &mut impl Rng, b: &[u8]) -> Option<Vec<u8>> {
    let mut m = ModelProto::decode(b).ok()?;
    let g = m.graph.as_mut()?;
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..8) {
            0 if !g.initializer.is_empty() => {
                let i = rng.random_range(0..g.initializer.len());
                let t = &mut g.initializer[i];
                if t.dims.is_empty() {
                    t.dims.push(edgy(rng));
                } else {
                    let d = rng.random_range(0..t.dims.len());
                    t.dims[d] = edgy(rng);
                }
            }
            1 if !g.initializer.is_empty() => {
                let i = rng.random_range(0..g.initializer.len());
                let t = &mut g.initializer[i];
                t.data_type = Some(rng.random_range(0..28));
                if let Some(r) = t.raw_data.as_mut() {
                    let keep = rng.random_range(0..=r.len());
                    r.truncate(keep);
                }
            }
            2 if !g.node.is_empty() => {
                let i = rng.random_range(0..g.node.len());
                let n = &mut g.node[i];
                if n.attribute.is_empty() {
                    continue;
                }
                let a = rng.random_range(0..n.attribute.len());
                let at = &mut n.attribute[a];
                at.i = Some(edgy(rng));
                at.f = Some([0.0, -1.0, f32::NAN, f32::INFINITY, 1e30][rng.random_range(0..5)]);
                for v in at.ints.iter_mut() {
                    if rng.random_bool(0.5) {
                        *v = edgy(rng);
                    }
                }
            }
            3 if !g.node.is_empty() => {
                let i = rng.random_range(0..g.node.len());
                g.node[i].op_type = Some(OPERATORS[rng.random_range(0..OPERATORS.len())].0.into());
            }
            4 if !g.node.is_empty() => {
                let i = rng.random_range(0..g.node.len());
                let j = rng.random_range(0..g.node.len());
                let other = g.node[j].output.first().cloned().unwrap_or_default();
                let n = &mut g.node[i];
                if !n.input.is_empty() {
                    let k = rng.random_range(0..n.input.len());
                    n.input[k] = other;
                } else {
                    n.input.push(other);
                }
            }
            5 if !g.node.is_empty() => {
                let i = rng.random_range(0..g.node.len());
                let n = &mut g.node[i];
                if rng.random_bool(0.5) {
                    n.input.pop();
                } else {
                    n.input.push(String::new());
                }
            }
            6 => {
                m.opset_import
                    .iter_mut()
                    .for_each(|o| o.version = Some(rng.random_range(0..30)));
            }
            _ if !g.node.is_empty() => {
                let i = rng.random_range(0..g.node.len());
                g.node.remove(i);
            }
            _ => {}
        }
    }
    Some(m.encode_to_vec())
}

fn run(budget: Duration, seed: u64, max_iters: usize) -> usize {
    let seeds = seeds();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/efficientnet_lite0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut iters = 0;
    let (mut ok, mut errs) = (0usize, 0usize);
    while iters < max_iters && start.elapsed() < budget {
        let (path, bytes) = &seeds[rng.random_range(0..seeds.len())];
        let m = if rng.random_bool(0.5) {
            mutate_fields(&mut rng, bytes).unwrap_or_else(|| mutate(&mut rng, bytes))
        } else {
            mutate(&mut rng, bytes)
        };
        let shape: Option<Vec<usize>> = match rng.random_range(0..3) {
            0 => None,
            1 => Some(vec![1, 3, 224, 224]),
            _ => Some(
                (0..rng.random_range(1..=5))
                    .map(|_| rng.random_range(0..=9))
                    .collect(),
            ),
        };
        let r = catch_unwind(AssertUnwindSafe(|| {
            OnnxImport::from_bytes(&m, "fuzz.onnx", Some(&dir), shape.as_deref())
        }));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(Error::Import { file, detail })) => {
                assert_eq!(file, "fuzz.onnx");
                assert!(!detail.is_empty());
                errs += 1;
            }
            Ok(Err(e)) => panic!("seed {seed} iteration {iters}: not an import error: {e:?}"),
            Err(_) => {
                let out = std::env::temp_dir().join(format!("onnx-fuzz-{seed}-{iters}.onnx"));
                std::fs::write(&out, &m).unwrap();
                panic!(
                    "seed {seed} iteration {iters}: the importer panicked on a mutation of {} \
                     (input shape {shape:?}); the file is {}",
                    path.display(),
                    out.display()
                );
            }
        }
        iters += 1;
    }
    eprintln!(
        "{iters} mutated models in {:.1?}: {ok} imported, {errs} refused",
        start.elapsed()
    );
    iters
}

#[test]
fn mutated_models_never_panic_the_importer() {
    let (secs, seed) = common::fuzz_env();
    if secs > 0 {
        run(Duration::from_secs(secs), seed, usize::MAX);
    } else {
        // The CI smoke: a fixed number of mutations, whatever the machine's speed.
        assert_eq!(run(Duration::from_secs(3600), seed, 3000), 3000);
    }
}
