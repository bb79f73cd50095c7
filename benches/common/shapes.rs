//! The linear benches' shapes: `WGPU_QUANT_BENCH_SHAPES=MxNxK,...` or the bench's own.

pub fn shapes(default: &[(usize, usize, usize)]) -> Vec<(usize, usize, usize)> {
    match std::env::var("WGPU_QUANT_BENCH_SHAPES") {
        Ok(s) => s
            .split(',')
            .map(|t| {
                let v: Vec<usize> = t
                    .split('x')
                    .map(|d| d.trim().parse().expect("MxNxK"))
                    .collect();
                (v[0], v[1], v[2])
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}
