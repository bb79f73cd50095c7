//! A mutation fuzzer for the model-file loaders and the CLI's argument checks:
//!
//! - weight files (`WeightFile::from_bytes`, then `Model::new` on LeNet) and saved INT8
//!   models (`QModel::load`), mutated as bytes (flips, cuts, splices) and through their
//!   safetensors header (dtypes, shapes, offsets, metadata changed), must give `Ok` or
//!   an `Err`, never a panic;
//! - random argument lists for every `wgpu-quant` command, run with
//!   `WGPU_QUANT_CLI_CHECK_ONLY=1` (parse and check the arguments, then stop), must exit
//!   with 0 (valid) or 2 (refused, with a message), never crash.
//!
//! `cargo test --test loader_fuzz` runs a short seeded smoke (CI). A long run:
//!
//! ```text
//! WGPU_QUANT_FUZZ_SECS=600 WGPU_QUANT_FUZZ_SEED=3 cargo test --release --test loader_fuzz -- --nocapture
//! ```
//!
//! (the budget applies to each of the three targets).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use wgpu_quant::calib::ObserverKind;
use wgpu_quant::model::{lenet, Model, QMode, QModel, WeightFile};
use wgpu_quant::{DType, Tensor};

fn settings() -> (Duration, u64, usize) {
    let (secs, seed) = common::fuzz_env();
    if secs > 0 {
        (Duration::from_secs(secs), seed, usize::MAX)
    } else {
        (Duration::from_secs(3600), seed, 0)
    }
}

fn lenet_weights() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join("examples/data/mnist/lenet.safetensors")).unwrap()
}

/// A saved INT8 LeNet (dynamic, no calibration needed) as bytes.
fn lenet_int8() -> Vec<u8> {
    let ctx = common::ctx();
    let w = WeightFile::from_bytes(&lenet_weights(), "lenet.safetensors").unwrap();
    let q = QModel::calibrate(
        ctx,
        &lenet(),
        &w,
        &[1, 28, 28, 1],
        &[],
        ObserverKind::MinMax,
        QMode::Dynamic,
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!(
        "loader-fuzz-seed-{}.safetensors",
        std::process::id()
    ));
    q.save(&path).unwrap();
    let b = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    b
}

fn mutate_bytes(rng: &mut impl Rng, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        // Half of the edits land in the header (its 8-byte length and JSON).
        let header = 8 + u64::from_le_bytes(v[..8.min(v.len())].try_into().unwrap_or([0; 8]))
            .min(v.len() as u64) as usize;
        let at = if rng.random_bool(0.5) {
            rng.random_range(0..header.clamp(1, v.len()))
        } else {
            rng.random_range(0..v.len())
        };
        match rng.random_range(0..5) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = [b'0', b'9', b'-', b'"', b',', b'[', 0xff][rng.random_range(0..7)],
            2 => v.truncate(at),
            3 => {
                let len = rng.random_range(1..=16.min(v.len() - at));
                let chunk = v[at..at + len].to_vec();
                let to = rng.random_range(0..=v.len());
                v.splice(to..to, chunk);
            }
            _ => {
                let end = (at + rng.random_range(1..=8)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

/// Rewrites the safetensors header: a tensor's dtype, shape or offsets, or the metadata.
type Header = serde_json::Map<String, serde_json::Value>;

/// A safetensors file's JSON header and its data section.
fn split_header(b: &[u8]) -> Option<(Header, &[u8])> {
    let n = usize::try_from(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)).ok()?;
    let end = n.checked_add(8)?;
    Some((serde_json::from_slice(b.get(8..end)?).ok()?, &b[end..]))
}

/// The bytes of a safetensors file with header `h` and data `data`.
fn join_header(h: &Header, data: &[u8]) -> Option<Vec<u8>> {
    let text = serde_json::to_vec(h).ok()?;
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend_from_slice(data);
    Some(out)
}

fn mutate_header(rng: &mut impl Rng, b: &[u8]) -> Option<Vec<u8>> {
    let (mut h, data) = split_header(b)?;
    let names: Vec<String> = h.keys().cloned().collect();
    let name = &names[rng.random_range(0..names.len())];
    let edgy = |rng: &mut dyn rand::Rng| -> serde_json::Value {
        let v: [u64; 9] = [0, 1, 2, 3, 255, 1 << 31, 1 << 32, 1 << 62, u64::MAX];
        serde_json::json!(v[rng.random_range(0..v.len())])
    };
    let entry = h.get_mut(name)?.as_object_mut()?;
    match rng.random_range(0..5) {
        0 if name != "__metadata__" => {
            let d = [
                "F32", "F16", "BF16", "I8", "U8", "I32", "I64", "F64", "BOOL", "X",
            ];
            entry.insert(
                "dtype".into(),
                serde_json::json!(d[rng.random_range(0..d.len())]),
            );
        }
        1 if name != "__metadata__" => {
            if let Some(shape) = entry.get_mut("shape").and_then(|s| s.as_array_mut()) {
                if shape.is_empty() || rng.random_bool(0.3) {
                    shape.push(edgy(rng));
                } else {
                    let i = rng.random_range(0..shape.len());
                    shape[i] = edgy(rng);
                }
            }
        }
        2 if name != "__metadata__" => {
            if let Some(o) = entry.get_mut("data_offsets").and_then(|s| s.as_array_mut()) {
                let i = rng
                    .random_range(0..o.len().max(1))
                    .min(o.len().saturating_sub(1));
                if !o.is_empty() {
                    o[i] = edgy(rng);
                }
            }
        }
        _ => {
            // Metadata values: the format, the mode, scales written as text.
            for v in entry.values_mut() {
                if rng.random_bool(0.3) {
                    let s = [
                        "",
                        "NaN",
                        "-1",
                        "0",
                        "1e40",
                        "wgpu-quant int8",
                        "static",
                        "dynamic",
                    ];
                    *v = serde_json::json!(s[rng.random_range(0..s.len())]);
                }
            }
        }
    }
    join_header(&h, data)
}

fn mutate(rng: &mut impl Rng, b: &[u8]) -> Vec<u8> {
    let m = if rng.random_bool(0.5) {
        mutate_header(rng, b).unwrap_or_else(|| mutate_bytes(rng, b))
    } else {
        mutate_bytes(rng, b)
    };
    // Half of the mutated INT8 models carry a CRC-32 that matches their (changed) data,
    // as a tool that wrote bad values would: the checks behind the checksum get fuzzed.
    if rng.random_bool(0.5) {
        if let Some(fixed) = fix_crc(&m) {
            return fixed;
        }
    }
    m
}

/// `b` with its header's `crc32` metadata set to its data's CRC-32 (None if it has none
/// or the header does not parse).
fn fix_crc(b: &[u8]) -> Option<Vec<u8>> {
    let (mut h, data) = split_header(b)?;
    let meta = h.get_mut("__metadata__")?.as_object_mut()?;
    meta.get("crc32")?;
    meta.insert(
        "crc32".into(),
        serde_json::json!(format!("{:08x}", crc32fast::hash(data))),
    );
    join_header(&h, data)
}

#[test]
fn mutated_weight_files_never_panic() {
    let (budget, seed, iters) = settings();
    let iters = if iters == 0 { 400 } else { iters };
    let ctx = common::ctx();
    let seed_bytes = lenet_weights();
    let g = lenet();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let (mut n, mut ok) = (0usize, 0usize);
    while n < iters && start.elapsed() < budget {
        let m = mutate(&mut rng, &seed_bytes);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let w = WeightFile::from_bytes(&m, "fuzz.safetensors")?;
            Model::new(ctx, &g, &w, DType::F32, &[1, 28, 28, 1]).map(drop)
        }));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => {
                let out = std::env::temp_dir().join(format!("weights-fuzz-{seed}-{n}.safetensors"));
                std::fs::write(&out, &m).unwrap();
                panic!(
                    "seed {seed} iteration {n}: a panic on the weight file {}",
                    out.display()
                );
            }
        }
        n += 1;
    }
    eprintln!(
        "weight files: {n} mutations in {:.1?}, {ok} loaded",
        start.elapsed()
    );
}

#[test]
fn mutated_int8_models_never_panic() {
    let (budget, seed, iters) = settings();
    let iters = if iters == 0 { 300 } else { iters };
    let ctx = common::ctx();
    let seed_bytes = lenet_int8();
    let g = lenet();
    let path = std::env::temp_dir().join(format!("qmodel-fuzz-{}.safetensors", std::process::id()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let start = Instant::now();
    let (mut n, mut ok) = (0usize, 0usize);
    let x = Tensor::zeros(ctx, &[1, 28, 28, 1], DType::F32).unwrap();
    while n < iters && start.elapsed() < budget {
        let m = mutate(&mut rng, &seed_bytes);
        std::fs::write(&path, &m).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| -> wgpu_quant::Result<()> {
            let q = QModel::load(ctx, &g, &path, &[1, 28, 28, 1])?;
            // A model that loads must also run.
            let mut enc = ctx.encoder("fuzz");
            q.forward(ctx, &mut enc, &x)?;
            ctx.submit_and_wait(enc)
        }));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => {
                let out = std::env::temp_dir().join(format!("qmodel-fuzz-{seed}-{n}.safetensors"));
                std::fs::write(&out, &m).unwrap();
                panic!(
                    "seed {seed} iteration {n}: a panic on the INT8 model {}",
                    out.display()
                );
            }
        }
        n += 1;
    }
    std::fs::remove_file(&path).ok();
    eprintln!(
        "INT8 models: {n} mutations in {:.1?}, {ok} loaded and ran",
        start.elapsed()
    );
}

/// A random argument list for a random command: known flags with edge values, unknown
/// flags, missing values, files that exist or not.
fn random_args(rng: &mut impl Rng, dir: &Path) -> Vec<String> {
    let cmds = [
        "bench", "tune", "sqnr", "inspect", "run", "chart", "adapters", "bogus",
    ];
    let cmd = cmds[rng.random_range(0..cmds.len())];
    let flags: &[&str] = match cmd {
        "bench" => &[
            "--sizes",
            "--shapes",
            "--runs",
            "--warmup",
            "--samples",
            "--suite",
            "--dtypes",
            "--models",
            "--quant-shape",
            "--kernel",
            "--json",
            "--chart",
            "--quick",
            "--no-peak",
        ],
        "tune" => &["--gemm", "--linear", "--conv", "--runs", "--out"],
        "sqnr" => &["--batches", "--batch-len", "--test-len"],
        "run" => &[
            "--input",
            "--shape",
            "--precision",
            "--calibrate",
            "--labels",
            "--top",
            "--resize",
            "--mean",
            "--std",
            "--runs",
            "--layers",
        ],
        "chart" => &["--out"],
        "inspect" => &["--shape"],
        "adapters" => &["--backend"],
        _ => &["--what"],
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = [
        root.join("examples/data/efficientnet_lite0/efficientnet_lite0.onnx"),
        root.join("examples/data/photos/coffee.png"),
        root.join("examples/data/calibration"),
        PathBuf::from("/nonexistent/x"),
        dir.join("out.json"),
        dir.to_path_buf(),
    ];
    let values = [
        "0",
        "1",
        "-1",
        "3",
        "256",
        "100000",
        "4294967296",
        "18446744073709551616",
        "",
        "x",
        "0x4x4",
        "4x4x4",
        "4294967296x1x1",
        "65536x65536x65536",
        "1x1",
        "0x5",
        "3,3",
        "1,3,0,4",
        "nan",
        "inf",
        "1e40",
        "fp32",
        "int8-static",
        "int8-file",
        "gemm",
        "peak,bogus",
        "reg:0,0,0,0",
        "tiled:1,1,1,1,1",
    ];
    let mut args = vec![cmd.to_string()];
    if matches!(cmd, "inspect" | "run" | "chart") && rng.random_bool(0.8) {
        args.push(
            files[rng.random_range(0..files.len())]
                .display()
                .to_string(),
        );
    }
    for _ in 0..rng.random_range(0..5) {
        let f = flags[rng.random_range(0..flags.len())];
        args.push(f.to_string());
        match rng.random_range(0..4) {
            0 => args.push(
                files[rng.random_range(0..files.len())]
                    .display()
                    .to_string(),
            ),
            1 => {}
            _ => args.push(values[rng.random_range(0..values.len())].to_string()),
        }
    }
    args
}

#[test]
fn random_cli_arguments_exit_cleanly() {
    let (budget, seed, iters) = settings();
    let iters = if iters == 0 { 300 } else { iters };
    let dir = std::env::temp_dir().join(format!("cli-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xc11);
    let start = Instant::now();
    let (mut n, mut valid) = (0usize, 0usize);
    while n < iters && start.elapsed() < budget {
        let args = random_args(&mut rng, &dir);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-quant"))
            .args(&args)
            .env("WGPU_QUANT_CLI_CHECK_ONLY", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => valid += 1,
            Some(2) => assert!(
                stderr.contains("error") && !stderr.contains("panicked"),
                "wgpu-quant {args:?}: refused without a clear message: {stderr}"
            ),
            other => {
                panic!("seed {seed} iteration {n}: wgpu-quant {args:?} exited {other:?}: {stderr}")
            }
        }
        n += 1;
    }
    std::fs::remove_dir_all(&dir).ok();
    eprintln!(
        "CLI: {n} argument lists in {:.1?}, {valid} valid",
        start.elapsed()
    );
}
