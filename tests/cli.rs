//! The `wgpu-quant` binary end to end: `bench --json` on every adapter writes one
//! verified record per case and adapter, with the documented fields consistent with
//! each other.

use wgpu_quant::bench::{Record, Shape};

#[test]
fn bench_json_has_a_verified_record_per_case_and_adapter() {
    let dir = std::env::temp_dir().join(format!("wgpu-quant-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-quant"))
        .args(["bench", "--sizes", "33", "--gemv", "1x65x70", "--runs", "2"])
        .args(["--no-peak", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed (a GPU adapter is needed: install mesa-vulkan-drivers)\n{stdout}\n{stderr}"
    );
    let records: Vec<Record> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let adapters = stdout.matches("adapter: ").count();
    assert!(adapters >= 1, "{stdout}");
    assert_eq!(records.len(), 2 * adapters, "{records:#?}");
    for r in &records {
        assert!(r.verified, "{r:?}");
        assert!(r.max_rel_error < 1e-5, "{r:?}");
        assert!(stdout.contains(&r.adapter), "{r:?} not in the table");
        assert_eq!((r.op.as_str(), r.dtype.as_str()), ("gemm", "fp32"));
        let (m, n, k) = match (r.suite.as_str(), &r.shape) {
            ("gemm", &Shape::Gemm { m, n, k }) => {
                assert_eq!((m, n, k), (33, 33, 33));
                (m, n, k)
            }
            ("gemv", &Shape::Gemm { m, n, k }) => {
                assert_eq!((m, n, k), (1, 65, 70));
                (m, n, k)
            }
            other => panic!("unexpected suite and shape {other:?}"),
        };
        let ms = r.median_ms.expect("a verified case is timed");
        let (lo, hi) = (r.min_ms.unwrap(), r.max_ms.unwrap());
        assert!(lo > 0.0 && lo <= ms && ms <= hi, "{r:?}");
        let gops = 2.0 * (m * n * k) as f64 / (ms * 1e6);
        assert!((r.gops.unwrap() - gops).abs() <= 1e-9 * gops, "{r:?}");
        let bytes = 4.0 * (m * k + k * n + m * n) as f64;
        assert!((r.gbps.unwrap() - bytes / (ms * 1e6)).abs() <= 1e-9 * r.gbps.unwrap());
        assert_eq!(r.speedup_vs_fp32, Some(1.0));
        assert_eq!(r.pct_of_peak, None, "no peak was probed");
        assert_eq!(r.runs, 2);
        assert!(r.checked > 0);
    }
    std::fs::remove_dir_all(&dir).ok();
}
