//! The benchmark runner's case table as a test: the same declarative cases that
//! `wgpu-quant bench` times and the tuner verifies its candidates on
//! (`bench::LinearData`, `bench::ConvData`), run here over odd shapes in every precision,
//! with the plan's choice and with every tile of the kernel pinned, checking every output
//! against the reference (bit for bit for the integer kernels, the stated budget for the
//! float ones).

mod common;

use wgpu_quant::bench::{CaseOptions, ConvData, LinearData, Precision};
use wgpu_quant::ops::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::ops::RowTile;

/// Every output checked.
fn all(tile: Option<RowTile>) -> CaseOptions {
    CaseOptions {
        samples: usize::MAX,
        tile,
        ..CaseOptions::default()
    }
}

/// The tiles a precision's kernel may be pinned to (none for the FP32 GEMM, whose kernel
/// is a `GemmKernel`).
fn linear_tiles(p: Precision) -> Vec<RowTile> {
    match p {
        Precision::W8A8 | Precision::W8A8Dynamic => wgpu_quant::ops::qgemm::TILES.to_vec(),
        Precision::Fp16 | Precision::W8A16 | Precision::W4A16 => {
            wgpu_quant::ops::wgemm::TILES.to_vec()
        }
        _ => Vec::new(),
    }
}

#[test]
fn linear_cases_verify_in_every_precision_and_tile() {
    let ctx = common::ctx();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (m, n, k) in [(1, 7, 33), (3, 17, 129), (33, 5, 70), (8, 129, 17)] {
        let data = LinearData::new(m, n, k);
        for p in Precision::ALL {
            let tiles = std::iter::once(None).chain(linear_tiles(p).into_iter().map(Some));
            for tile in tiles {
                runs += 1;
                match data.prepare(ctx, p, &all(tile)) {
                    Ok(prep) => {
                        assert_eq!(
                            prep.checked,
                            m * n,
                            "{m}x{n}x{k} {p:?}: not every output checked"
                        );
                        if !prep.verified {
                            failures.push(format!(
                                "{m}x{n}x{k} {p:?} {tile:?} ({}): rel. error {:.2e} over {:.0e}",
                                prep.kernel, prep.rel_error, prep.budget
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("{m}x{n}x{k} {p:?} {tile:?}: {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conv_cases_verify_in_every_precision_and_tile() {
    let ctx = common::ctx();
    let same = ConvDesc::default().padding(Padding::Same);
    let strided = ConvDesc::default().stride(2).padding(Padding::uniform(1));
    let cases = [
        // 3x3 stride 2 with odd channels, batch 2.
        (
            strided,
            ConvDims::new(7, 5, [3, 3], 1).unwrap(),
            [2, 9, 11, 5],
        ),
        // Grouped, channels not multiples of 4.
        (same, ConvDims::new(6, 6, [3, 3], 2).unwrap(), [1, 7, 5, 6]),
        // 5x5 with dilation.
        (
            same.dilation(2),
            ConvDims::new(3, 9, [5, 5], 1).unwrap(),
            [1, 13, 9, 9],
        ),
        // Pointwise (the FP32 GEMM path unless a tile is pinned).
        (
            ConvDesc::default(),
            ConvDims::new(3, 6, [1, 1], 1).unwrap(),
            [1, 5, 7, 6],
        ),
        // Depthwise (its own kernel).
        (same, ConvDims::new(4, 4, [3, 3], 4).unwrap(), [1, 6, 6, 4]),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for (desc, dims, xs) in cases {
        let data = ConvData::from_desc(&desc, dims, xs).unwrap();
        let total = data.shape.output_shape().iter().product::<usize>();
        for p in [Precision::Fp32, Precision::Fp16, Precision::W8A8] {
            let tiles: Vec<RowTile> = match (p, dims.is_depthwise()) {
                (_, true) => Vec::new(),
                (Precision::W8A8, _) => wgpu_quant::ops::qgemm::TILES.to_vec(),
                _ => wgpu_quant::ops::conv::TILES.to_vec(),
            };
            for tile in std::iter::once(None).chain(tiles.into_iter().map(Some)) {
                runs += 1;
                match data.prepare(ctx, p, &all(tile)) {
                    Ok(prep) => {
                        assert_eq!(
                            prep.checked, total,
                            "{dims:?} {p:?}: not every output checked"
                        );
                        if !prep.verified {
                            failures.push(format!(
                                "{dims:?} on {xs:?} {p:?} {tile:?} ({}): rel. error {:.2e} over {:.0e}",
                                prep.kernel, prep.rel_error, prep.budget
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("{dims:?} on {xs:?} {p:?} {tile:?}: {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
