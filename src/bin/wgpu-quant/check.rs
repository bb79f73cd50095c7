//! Every argument checked before any work starts: counts, sizes (with an estimate of the
//! memory a run needs, refused above a limit), files that must exist and outputs that
//! must be writable. A failure exits with status 2 and a usage hint (`main`).

use std::path::Path;

/// The most memory (bytes, host and GPU together) the benchmark commands may plan to
/// use; `WGPU_QUANT_CLI_MEMORY_LIMIT` (bytes) overrides it.
pub const DEFAULT_MEMORY_LIMIT: u64 = 4 << 30;

pub fn memory_limit() -> u64 {
    std::env::var("WGPU_QUANT_CLI_MEMORY_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MEMORY_LIMIT)
}

/// At least one.
pub fn positive(flag: &str, v: usize) -> Result<(), String> {
    if v == 0 {
        return Err(format!("{flag} 0: must be at least 1"));
    }
    Ok(())
}

/// `bytes` (None: overflowed) against the limit, naming what needs them.
pub fn memory(what: &str, bytes: Option<u64>) -> Result<(), String> {
    let limit = memory_limit();
    match bytes {
        Some(b) if b <= limit => Ok(()),
        Some(b) => Err(format!(
            "{what} needs about {:.1} GiB of memory, over the limit of {:.1} GiB \
             (WGPU_QUANT_CLI_MEMORY_LIMIT=BYTES raises it)",
            b as f64 / f64::from(1u32 << 30),
            limit as f64 / f64::from(1u32 << 30)
        )),
        None => Err(format!("{what}: the sizes overflow 64-bit arithmetic")),
    }
}

/// Bytes a linear case of `m x n x k` needs: A, B and C in f32 on the host, on the GPU
/// and for the reference (an upper bound of what the bench and tune allocate).
pub fn linear_bytes((m, n, k): (usize, usize, usize)) -> Option<u64> {
    let (m, n, k) = (m as u64, n as u64, k as u64);
    let elems = m
        .checked_mul(k)?
        .checked_add(k.checked_mul(n)?)?
        .checked_add(m.checked_mul(n)?)?;
    elems.checked_mul(4 * 3)
}

/// An input file that must exist and be a file.
pub fn input_file(flag: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{flag} {}: not a file", path.display())),
        Err(e) => Err(format!("{flag} {}: {e}", path.display())),
    }
}

/// A folder that must exist.
pub fn input_dir(flag: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{flag} {}: not a folder", path.display())),
        Err(e) => Err(format!("{flag} {}: {e}", path.display())),
    }
}

/// An output file that can be written: opened for appending (an existing file is not
/// changed) or created and removed again.
pub fn writable(flag: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if p.is_dir() {
        return Err(format!("{flag} {path}: is a folder, not a file"));
    }
    let existed = p.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(p)
        .map_err(|e| format!("{flag} {path}: cannot write: {e}"))?;
    if !existed {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
