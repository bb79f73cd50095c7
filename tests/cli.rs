//! The `wgpu-quant` binary end to end: `bench` on every adapter writes one verified record
//! per case and adapter with the documented fields consistent with each other, draws the
//! chart, reports a wrong kernel as FAILED without timing it, and names bad arguments.

use std::process::{Command, Output};

use wgpu_quant::bench::{Record, Shape};

fn tmp(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-quant-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench(args: &[&str], env: Option<(&str, &std::path::Path)>) -> (Output, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgpu-quant"));
    cmd.arg("bench").args(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn bench_json_and_chart_cover_every_suite_and_adapter() {
    let dir = tmp("suites");
    let (json, chart) = (dir.join("bench.json"), dir.join("bench.svg"));
    let (out, stdout, stderr) = bench(
        &[
            "--quick",
            "--sizes",
            "33",
            "--shapes",
            "3x65x70",
            "--models",
            "eff.head_320to1280,eff.dw5x5s2_144",
            "--quant-shape",
            "33x70",
            "--runs",
            "2",
            "--json",
            json.to_str().unwrap(),
            "--chart",
            chart.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "bench failed (a GPU adapter is needed: install mesa-vulkan-drivers)\n{stdout}\n{stderr}"
    );
    let records: Vec<Record> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let adapters: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("adapter: "))
        .collect();
    assert!(!adapters.is_empty(), "{stdout}");
    // Per adapter: 2 linear shapes x 6 dtypes, 2 layers x 3 dtypes, 7 quant kernels, the
    // quick train cases, and the probes the adapter supports (3 or 4).
    let train = wgpu_quant::bench::train_cases(true).len();
    let probes = records.iter().filter(|r| r.suite == "peak").count();
    let unsupported = stdout.matches("not run: ").count();
    assert_eq!(probes + unsupported, 4 * adapters.len(), "{stdout}");
    assert_eq!(
        records.len(),
        probes + (12 + 6 + 7 + train) * adapters.len(),
        "{records:#?}"
    );
    for r in &records {
        assert!(r.verified, "{r:?}");
        assert!(r.max_rel_error <= r.budget, "{r:?}");
        assert!(stdout.contains(&r.adapter), "{r:?} not in the table");
        let ms = r.median_ms.expect("a verified case is timed");
        let (lo, hi) = (r.min_ms.unwrap(), r.max_ms.unwrap());
        assert!(lo > 0.0 && lo <= ms && ms <= hi, "{r:?}");
        assert_eq!(r.runs, if r.suite == "peak" { 3 } else { 2 }, "{r:?}");
        assert!(r.checked > 0, "{r:?}");
        match (r.suite.as_str(), r.op.as_str(), &r.shape) {
            ("gemm", "linear", &Shape::Gemm { m, n, k }) => {
                assert!([(33, 33, 33), (3, 65, 70)].contains(&(m, n, k)), "{r:?}");
                let gops = 2.0 * (m * n * k) as f64 / (ms * 1e6);
                assert!((r.gops.unwrap() - gops).abs() <= 1e-9 * gops, "{r:?}");
                if r.dtype == "fp32" {
                    let bytes = 4.0 * (m * k + k * n + m * n) as f64;
                    assert!((r.gbps.unwrap() - bytes / (ms * 1e6)).abs() <= 1e-9 * r.gbps.unwrap());
                }
            }
            ("models", "conv", Shape::Conv { .. }) => {
                assert!(r.case.starts_with("eff."), "{r:?}");
                assert!(
                    ["fp32", "fp16", "w8a8"].contains(&r.dtype.as_str()),
                    "{r:?}"
                );
            }
            ("quant", _, &Shape::Tensor { rows, cols }) => {
                assert_eq!((rows, cols), (33, 70));
                assert_eq!(r.budget, 0.0, "quantization is checked bit for bit");
                assert!(r.gbps.unwrap() > 0.0);
            }
            ("train", _, shape) => {
                assert!(r.dtype == "fp32" && r.budget <= 1e-5, "{r:?}");
                let case = wgpu_quant::bench::train_cases(true)
                    .into_iter()
                    .find(|c| c.name == r.case && c.op.name() == r.op);
                assert_eq!(case.map(|c| c.shape).as_ref(), Some(shape), "{r:?}");
            }
            ("peak", _, Shape::Probe { .. }) => {
                assert_eq!(r.pct_of_peak, Some(100.0));
            }
            other => panic!("unexpected suite, op and shape {other:?}"),
        }
        // W8A8 is bit-exact; so is its error.
        if r.dtype.starts_with("w8a8") {
            assert_eq!((r.budget, r.max_rel_error), (0.0, 0.0), "{r:?}");
        }
        // Speedups: the FP32 twin's median over this one, same adapter and case.
        if r.op == "linear" || r.op == "conv" {
            let fp32 = records
                .iter()
                .find(|f| {
                    f.adapter == r.adapter
                        && f.backend == r.backend
                        && f.case == r.case
                        && f.op == r.op
                        && f.dtype == "fp32"
                })
                .expect("every case has an FP32 twin");
            let want = fp32.median_ms.unwrap() / ms;
            let got = r.speedup_vs_fp32.expect("speedup");
            assert!((got - want).abs() <= 1e-12 * want, "{r:?}");
            if r.dtype == "fp32" {
                assert_eq!(got, 1.0);
                assert!(r.pct_of_peak.is_some(), "the FP32 peak was probed: {r:?}");
            }
        } else {
            assert_eq!(r.speedup_vs_fp32, None, "{r:?}");
        }
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for a in &adapters {
        let name = a.split(" (").next().unwrap();
        assert!(svg.contains(name), "{name} has no panel");
    }
    let bars = records
        .iter()
        .filter(|r| r.speedup_vs_fp32.is_some() && r.dtype != "fp32")
        .count();
    assert_eq!(
        svg.matches("<title>").count(),
        bars,
        "one bar per non-FP32 case"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_wrong_kernel_is_reported_failed_and_not_timed() {
    // The copy probe made to corrupt one word in four.
    let dir = tmp("mutant");
    let src = include_str!("../shaders/peak_copy.wgsl");
    let bad = src.replace(
        "dst[i] = src[i];",
        "dst[i] = src[i] + vec4<u32>(0u, 0u, 1u, 0u);",
    );
    assert_ne!(src, bad, "the mutation must apply");
    std::fs::write(dir.join("peak_copy.wgsl"), bad).unwrap();
    let json = dir.join("bench.json");
    let (out, stdout, stderr) = bench(
        &[
            "--suite",
            "peak",
            "--quick",
            "--json",
            json.to_str().unwrap(),
        ],
        Some(("WGPU_QUANT_SHADER_DIR", &dir)),
    );
    assert!(
        !out.status.success(),
        "a wrong result must fail the run\n{stdout}"
    );
    assert!(stderr.contains("some results were wrong"), "{stderr}");
    let records: Vec<Record> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let copies: Vec<&Record> = records.iter().filter(|r| r.op == "copy").collect();
    assert!(!copies.is_empty());
    for r in copies {
        assert!(!r.verified, "{r:?}");
        assert!(r.max_rel_error > 0.0, "{r:?}");
        assert_eq!(
            (r.median_ms, r.gbps, r.runs),
            (None, None, 0),
            "never timed: {r:?}"
        );
        assert!(stdout.contains("| u32 copy | copy | u32 |") && stdout.contains("FAILED"));
    }
    // The other probes still pass.
    assert!(records
        .iter()
        .filter(|r| r.op != "copy")
        .all(|r| r.verified));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_bench_arguments_are_named() {
    for (args, needle) in [
        (&["--suite", "gemm,nope"][..], "unknown suite 'nope'"),
        (&["--dtypes", "fp8"][..], "unknown dtype 'fp8'"),
        (
            &["--models", "r50.conv9"][..],
            "unknown model layer 'r50.conv9'",
        ),
        (&["--shapes", "4x4"][..], "shape '4x4'"),
        (&["--quant-shape", "0x5"][..], "--quant-shape '0x5'"),
        (&["--kernel", "reg:1"][..], "unknown kernel 'reg:1'"),
    ] {
        let (out, stdout, stderr) = bench(args, None);
        assert!(!out.status.success(), "{args:?} succeeded\n{stdout}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stdout.contains("| suite |"), "{args:?} ran before failing");
    }
}

#[test]
fn an_int8_kernel_off_by_one_fails_the_bit_exact_check() {
    // Every 8-bit dot (packed or not) adds 1 when the activation word's low byte is 3:
    // an error of about 1e-5, inside a float budget, caught only by the exact check. The
    // convolution's i8 output would round it away; its f32 check must not.
    let dir = tmp("int8");
    let src = include_str!("../shaders/qgemm.wgsl");
    let head = "fn dot4(x: u32, y: u32) -> i32 {";
    let bad = src.replace(
        head,
        "fn dot4(x: u32, y: u32) -> i32 { return dot4_true(x, y) + select(0, 1, (x & 0xffu) == 3u); }\nfn dot4_true(x: u32, y: u32) -> i32 {",
    );
    assert_ne!(src, bad, "the mutation must apply");
    std::fs::write(dir.join("qgemm.wgsl"), bad).unwrap();
    let json = dir.join("bench.json");
    let (out, stdout, _) = bench(
        &[
            "--suite",
            "gemm,models",
            "--sizes",
            "64",
            "--models",
            "r50.conv3x3_512",
            "--dtypes",
            "fp32,w8a8",
            "--runs",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
        Some(("WGPU_QUANT_SHADER_DIR", &dir)),
    );
    assert!(!out.status.success(), "{stdout}");
    let records: Vec<Record> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let int8: Vec<&Record> = records.iter().filter(|r| r.dtype == "w8a8").collect();
    assert!(!int8.is_empty());
    for r in int8 {
        assert!(!r.verified && r.median_ms.is_none(), "{r:?}");
        assert!(r.max_rel_error > 0.0 && r.max_rel_error < 1e-3, "{r:?}");
    }
    assert!(records
        .iter()
        .filter(|r| r.dtype == "fp32")
        .all(|r| r.verified));
    std::fs::remove_dir_all(&dir).ok();
}

fn wq(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-quant"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A float32 .npy file (format 1.0, C order).
fn write_npy(path: &std::path::Path, shape: &[usize], v: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

const EFF_ONNX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/data/efficientnet_lite0/efficientnet_lite0.onnx"
);

#[test]
fn inspect_lists_an_onnx_model_and_its_layers() {
    let (out, stdout, stderr) = wq(&["inspect", EFF_ONNX, "--shape", "1,3,224,224"]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("opset 17, 95 nodes -> 61 layers"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 0 | stem | conv 3x3 3->32 groups 1 stride [2, 2] Relu6 | input |"),
        "{stdout}"
    );
    // Without --shape the symbolic batch dimension is named.
    let (out, _, stderr) = wq(&["inspect", EFF_ONNX]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("symbolic") && stderr.contains("dimension 0"),
        "{stderr}"
    );
}

#[test]
fn run_classifies_a_photo_and_a_npy_tensor() {
    let labels = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/efficientnet_lite0/imagenet_labels.txt"
    );
    let photo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/photos/coffee.png"
    );
    let (out, stdout, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        photo,
        "--labels",
        labels,
        "--top",
        "1",
        "--runs",
        "1",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("espresso"), "{stdout}");
    assert!(stdout.contains("ms per run"), "{stdout}");
    // FP16: the input converted on the GPU.
    let (out, stdout, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        photo,
        "--labels",
        labels,
        "--top",
        "1",
        "--runs",
        "1",
        "--precision",
        "fp16",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Fp16") && stdout.contains("espresso"),
        "{stdout}"
    );
    // A quantized (QDQ) file with its own scales, on the integer kernels.
    let qdq = EFF_ONNX.replace(".onnx", "_qdq.onnx");
    let (out, stdout, stderr) = wq(&[
        "run",
        &qdq,
        "--shape",
        "1,3,224,224",
        "--input",
        photo,
        "--labels",
        labels,
        "--top",
        "1",
        "--runs",
        "1",
        "--precision",
        "int8-file",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Int8File") && stdout.contains("espresso"),
        "{stdout}"
    );
    // A float file has no scales of its own.
    let (out, _, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        photo,
        "--precision",
        "int8-file",
    ]);
    assert!(!out.status.success());
    assert!(stderr.contains("no QuantizeLinear"), "{stderr}");
    // The per-layer GPU times: one row per layer of the imported graph, and the total.
    let cls = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"
    );
    let (out, stdout, stderr) = wq(&[
        "run",
        cls,
        "--shape",
        "1,3,48,192",
        "--input",
        photo,
        "--runs",
        "1",
        "--layers",
    ]);
    assert!(out.status.success(), "{stderr}");
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && l.ends_with("% |"))
        .count();
    assert_eq!(rows, 109, "{stdout}");
    assert!(stdout.contains("total of the layers"), "{stdout}");
    // A .npy input in NCHW, and one of the wrong shape.
    let dir = tmp("npy");
    let npy = dir.join("x.npy");
    write_npy(&npy, &[1, 3, 224, 224], &vec![0.25; 3 * 224 * 224]);
    let (out, stdout, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        npy.to_str().unwrap(),
        "--precision",
        "int8-dynamic",
        "--runs",
        "1",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Int8Dynamic"), "{stdout}");
    write_npy(&npy, &[1, 3, 8, 8], &[0.0; 192]);
    let (out, _, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        npy.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr.contains("shape [1, 3, 8, 8]"), "{stderr}");
    // Static INT8 without calibration images is refused with the option to give.
    let (out, _, stderr) = wq(&[
        "run",
        EFF_ONNX,
        "--shape",
        "1,3,224,224",
        "--input",
        photo,
        "--precision",
        "int8-static",
    ]);
    assert!(!out.status.success());
    assert!(stderr.contains("--calibrate"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A reader that goes away early (`inspect ... | head`) ends the tool quietly, as SIGPIPE
/// ends other Unix tools, not with a panic on the failed write.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_tool_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let det = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/ppocr/ch_PP-OCRv4_det_infer.onnx"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpu-quant"))
        .args(["inspect", det, "--shape", "1,3,256,256"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the tool prints its ~200 lines.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?} {stderr}",
        out.status
    );
}
