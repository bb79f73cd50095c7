//! One error type for the crate. Every variant carries the facts a caller needs to act on
//! it (the op, the shapes, the dtype, the limit and the value that broke it), so that a
//! message alone is enough to fix the call.

use crate::dtype::DType;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in wgpu-quant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the request.
    #[error("no GPU adapter found ({request}). {hint}")]
    NoAdapter {
        /// What was asked for (backends, name filter).
        request: String,
        /// How to get an adapter on this machine.
        hint: String,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter '{adapter}': {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// The driver's or wgpu's message.
        message: String,
    },
    /// Operands do not fit together.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The operation that rejected its operands.
        op: &'static str,
        /// Which operand, what was expected and what was given.
        detail: String,
    },
    /// An operand has the wrong element type.
    #[error("{op}: {operand} must be {expected}, got {got}")]
    DType {
        /// The operation.
        op: &'static str,
        /// Which operand.
        operand: &'static str,
        /// The dtype the op needs.
        expected: DType,
        /// The dtype it was given.
        got: DType,
    },
    /// A parameter is out of its valid range.
    #[error("{op}: invalid argument: {detail}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong with which argument.
        detail: String,
    },
    /// A buffer or binding would exceed a device limit.
    #[error(
        "{op}: {what} needs {needed} {}, over the device limit {limit_name} = {limit}",
        limit_unit(.limit_name)
    )]
    LimitExceeded {
        /// The operation.
        op: &'static str,
        /// The buffer or binding concerned.
        what: String,
        /// What it needs, in the limit's unit ([`limit_unit`]).
        needed: u64,
        /// The `wgpu::Limits` field that caps it.
        limit_name: &'static str,
        /// That limit's value on this device.
        limit: u64,
    },
    /// The op needs a device feature the adapter does not offer or the device was created
    /// without.
    #[error("{op}: needs {feature}, which device '{adapter}' does not have enabled")]
    MissingFeature {
        /// The operation.
        op: &'static str,
        /// The feature, as wgpu names it.
        feature: &'static str,
        /// Adapter name.
        adapter: String,
    },
    /// wgpu reported a validation error (a bug in wgpu-quant, or a resource the caller
    /// destroyed).
    #[error("{op}: wgpu validation error: {message}")]
    Validation {
        /// What was being created or recorded.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// Mapping a buffer for readback failed.
    #[error("reading back {what} failed: {message}")]
    Readback {
        /// The tensor or buffer.
        what: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost (driver reset, removal) or polling it failed.
    #[error("device lost: {0}")]
    DeviceLost(String),
    /// Reading, writing or parsing a file (an autotuning cache, say) failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A function that waits for the GPU was called in a browser, where waiting would
    /// freeze the page. The message names the async function to use instead, or says
    /// that the work runs natively only (docs/WEB.md lists what runs where).
    #[error("{op}: {detail}")]
    Blocking {
        /// The function that would have blocked.
        op: &'static str,
        /// What to do instead.
        detail: String,
    },
    /// An ONNX model could not be imported: a corrupt or truncated file, a node this
    /// crate does not run (every such node is listed), a shape that cannot be resolved.
    #[error("{file}: {detail}")]
    Import {
        /// The model file (or the name given to its bytes).
        file: String,
        /// What went wrong, naming the node, its op type and the numbers.
        detail: String,
    },
}

/// The error a blocking convenience returns in a browser build.
#[cfg(target_arch = "wasm32")]
pub(crate) fn native_only(op: &'static str) -> Error {
    Error::Blocking {
        op,
        detail: format!(
            "waits for the GPU, which would freeze a web page: in a browser await its async \
             form, {op}_async (docs/WEB.md lists the async API)"
        ),
    }
}

/// The unit of a `wgpu::Limits` field, as [`Error::LimitExceeded`] prints it: bytes for
/// sizes, invocations per workgroup, workgroups for dispatch dimensions.
pub fn limit_unit(limit_name: &str) -> &'static str {
    if limit_name.contains("invocations") {
        "invocations"
    } else if limit_name.contains("workgroups") {
        "workgroups"
    } else {
        "bytes"
    }
}

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// The same error attributed to `op` (an op that delegates to another reports the
    /// caller's name).
    pub(crate) fn with_op(self, op: &'static str) -> Self {
        match self {
            Error::Shape { detail, .. } => Error::Shape { op, detail },
            Error::DType {
                operand,
                expected,
                got,
                ..
            } => Error::DType {
                op,
                operand,
                expected,
                got,
            },
            Error::InvalidArgument { detail, .. } => Error::InvalidArgument { op, detail },
            Error::LimitExceeded {
                what,
                needed,
                limit_name,
                limit,
                ..
            } => Error::LimitExceeded {
                op,
                what,
                needed,
                limit_name,
                limit,
            },
            Error::MissingFeature {
                feature, adapter, ..
            } => Error::MissingFeature {
                op,
                feature,
                adapter,
            },
            other => other,
        }
    }

    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            detail: detail.into(),
        }
    }
}

/// The element count of `shape`, or a [`Error::Shape`] naming `op` and the shape when
/// the product does not fit in `usize` (so size arithmetic never wraps).
pub(crate) fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, format!("shape {shape:?} overflows usize")))
}

/// `numel * elem_size` bytes, or a [`Error::Shape`] when the product overflows `u64`.
pub(crate) fn checked_bytes(
    op: &'static str,
    shape: &[usize],
    numel: usize,
    elem_size: usize,
) -> Result<u64> {
    (numel as u64)
        .checked_mul(elem_size as u64)
        .and_then(|b| b.checked_add(15))
        .map(|b| b - 15)
        .ok_or_else(|| {
            Error::shape(
                op,
                format!("shape {shape:?}: {numel} elements of {elem_size} bytes overflow u64"),
            )
        })
}
