//! The GPU context: a device and queue (the caller's, or ours), what the adapter can do,
//! and the compiled-pipeline cache.
//!
//! A renderer shares its device with [`Context::new`]; nothing here submits work behind
//! its back except the explicit conveniences (`*_blocking`, [`Tensor::read`]). The
//! context is cheap to clone and `Send + Sync`.
//!
//! [`Tensor::read`]: crate::Tensor::read

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::shaders::{KernelKey, ShaderVariant};

/// Environment variable that restricts adapter selection to backends
/// (`vulkan`, `metal`, `dx12`, `gl`, comma separated).
pub const ENV_BACKEND: &str = "WGPU_QUANT_BACKEND";
/// Environment variable that selects the adapter whose name contains this text
/// (case-insensitive).
pub const ENV_ADAPTER: &str = "WGPU_QUANT_ADAPTER";

const NO_ADAPTER_HINT: &str = "wgpu-quant needs a GPU adapter. Without a GPU, install a software \
Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`, which provides lavapipe), \
or try the GL backend with WGPU_QUANT_BACKEND=gl. List what wgpu sees with \
`cargo run --release -- adapters`.";

pub use crate::caps::{Capabilities, KeyLimits, Overrides};

/// How [`Context::request`] picks an adapter.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Backends to consider; `None` reads [`ENV_BACKEND`], else all backends.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name; `None` reads [`ENV_ADAPTER`].
    pub adapter_name: Option<String>,
    /// Preference when no name is given.
    pub power_preference: wgpu::PowerPreference,
    /// Features and limits to hold back (tests of the fallbacks, smaller GPUs).
    pub overrides: Overrides,
}

/// Parses a backend list such as `vulkan,gl`.
pub fn parse_backends(s: &str) -> Result<wgpu::Backends> {
    let mut b = wgpu::Backends::empty();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        b |= match part.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "all" => wgpu::Backends::all(),
            other => {
                return Err(Error::invalid(
                    "parse_backends",
                    format!("unknown backend '{other}' (expected vulkan, metal, dx12, gl or all)"),
                ))
            }
        };
    }
    if b.is_empty() {
        return Err(Error::invalid("parse_backends", "empty backend list"));
    }
    Ok(b)
}

impl RequestOptions {
    fn resolved(&self) -> Result<(wgpu::Backends, Option<String>)> {
        let backends = match self.backends {
            Some(b) => b,
            None => match crate::caps::env_var(ENV_BACKEND) {
                Some(s) if !s.trim().is_empty() => parse_backends(&s)?,
                _ => wgpu::Backends::all(),
            },
        };
        let name = self
            .adapter_name
            .clone()
            .or_else(|| crate::caps::env_var(ENV_ADAPTER).filter(|s| !s.trim().is_empty()));
        Ok((backends, name))
    }
}

/// A compiled kernel: pipeline plus the layout its bind groups must use.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

struct Inner {
    /// Unique per context (clones share it): tensors remember it, so that an op given a
    /// tensor of another context refuses it instead of wgpu panicking.
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    caps: Capabilities,
    lost: Arc<AtomicBool>,
    kernels: Mutex<HashMap<KernelKey, Arc<Kernel>>>,
    dummy: wgpu::Buffer,
    bindings: Arc<Mutex<crate::bindcache::BindCache>>,
    scratch: Mutex<HashMap<(&'static str, u64), wgpu::Buffer>>,
    views: Mutex<HashMap<wgpu::Texture, wgpu::TextureView>>,
    stats: Stats,
    tuning: std::sync::RwLock<Option<Arc<crate::desc::tuning::TuneCache>>>,
    learner: std::sync::RwLock<Option<Learner>>,
    /// Set while the learner runs: the plans its tuning makes do not learn again.
    learning: AtomicBool,
    /// Shape classes handed to the learner (each once, whatever the outcome).
    learned: Mutex<std::collections::HashSet<crate::desc::tuning::ShapeClass>>,
}

thread_local! {
    /// The operands of the op being recorded on this thread, by name (see
    /// [`note_operands`]): on a validation error, [`Context::classify`] probes them to
    /// name a destroyed one.
    static OPERANDS: std::cell::RefCell<Vec<(String, wgpu::Buffer)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A validation error scope whose answer a browser gives asynchronously (see
/// [`Context::check_errors`]).
#[cfg(target_arch = "wasm32")]
struct PendingScope {
    context: u64,
    op: &'static str,
    operands: Vec<(String, wgpu::Buffer)>,
    answer: Answer,
}

/// A scope's answer: still to come, or an error that came.
#[cfg(target_arch = "wasm32")]
enum Answer {
    Waiting(std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>),
    Error(String),
}

/// Drops the scopes whose answer came without an error and keeps the errors, without
/// waiting (each future is polled once): an engine that records every frame and never
/// reads through the context does not accumulate scopes, nor keep their operands alive.
#[cfg(target_arch = "wasm32")]
fn prune_pending(pending: &mut Vec<PendingScope>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    pending.retain_mut(|s| {
        if let Answer::Waiting(f) = &mut s.answer {
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Pending => {}
                std::task::Poll::Ready(None) => return false,
                std::task::Poll::Ready(Some(e)) => s.answer = Answer::Error(e.to_string()),
            }
        }
        true
    });
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// Error scopes popped but not yet answered, oldest first (a page has one thread).
    static PENDING: std::cell::RefCell<Vec<PendingScope>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes the named operand buffers of the op about to be recorded on this thread
/// (replacing the previous op's), so that an error from a destroyed one names it.
pub(crate) fn note_operands(operands: Vec<(String, wgpu::Buffer)>) {
    OPERANDS.with(|o| *o.borrow_mut() = operands);
}

/// A learner: called by the plan with a shape it met without a tuned entry, on the
/// thread that is recording the op; it may tune the shape and install the result with
/// [`Context::set_tuning`]. See [`crate::tuning::learn`].
pub type Learner = Arc<
    dyn Fn(&Context, &crate::desc::tuning::TuneRequest) -> crate::error::Result<()> + Send + Sync,
>;

#[derive(Default)]
struct Stats {
    tensors: AtomicU64,
    bind_groups: AtomicU64,
    bind_group_hits: AtomicU64,
    uniform_buffers: AtomicU64,
    scratch_buffers: AtomicU64,
    split_dispatches: AtomicU64,
    split_k_runs: AtomicU64,
    plans_learned: AtomicU64,
    learn_failures: AtomicU64,
}

/// What a context has allocated so far (see [`Context::stats`]). An engine running the
/// same ops every frame should see these stop growing after the first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextStats {
    /// Tensors allocated through this context (the caller's and the ops' own).
    pub tensors_allocated: u64,
    /// Bind groups created (each with its own small uniform buffer for the op's
    /// parameters).
    pub bind_groups_created: u64,
    /// Op recordings that reused a pooled bind group.
    pub bind_group_reuses: u64,
    /// Uniform parameter buffers created.
    pub uniform_buffers_created: u64,
    /// Scratch buffers created for ops' intermediates.
    pub scratch_buffers_created: u64,
    /// Bind groups held by the pool now.
    pub pooled_bind_groups: usize,
    /// Compiled kernels.
    pub kernels: usize,
    /// Dispatches recorded as pieces of ops whose operands exceed
    /// `max_storage_buffer_binding_size` (each piece binds windows that fit).
    pub split_dispatches: u64,
    /// GEMMs recorded with parallel split-K (a partial-sum pass over the K slices and a
    /// reduce pass; see [`crate::plan::default_split_k`]).
    pub split_k_runs: u64,
    /// Shape classes the learner tuned ([`crate::tuning::learn`]).
    pub plans_learned: u64,
    /// Shape classes the learner failed to tune (they keep the default plan).
    pub learn_failures: u64,
    /// Error scopes of this context whose answer has not been taken yet: always 0
    /// natively; in a browser the scopes still on their way and the errors kept for
    /// the next [`Context::check_errors`] (answered scopes without an error are dropped
    /// as new ops record).
    pub pending_error_scopes: usize,
}

/// A device, its queue, its capabilities and the kernels compiled for it.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.inner.caps.adapter.name)
            .field("backend", &self.inner.caps.adapter.backend)
            .finish_non_exhaustive()
    }
}

/// The optional features wgpu-quant uses when the adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
}

impl Context {
    /// Wraps a device and queue the caller already owns (a renderer's, say). Kernels use
    /// whatever features and limits that device was created with; request
    /// [`wanted_features`] and the adapter's limits when you create it to get the fast
    /// paths (and see [`Context::with_adapter`] for tensor cores).
    ///
    /// ```no_run
    /// # async fn engine() -> wgpu_quant::Result<()> {
    /// // The engine's own device, created however it likes.
    /// let instance = wgpu::Instance::default();
    /// let adapter = instance.request_adapter(&Default::default()).await.unwrap();
    /// let (device, queue) = adapter.request_device(&Default::default()).await.unwrap();
    /// // Share it: no second device, no copies between devices.
    /// let ctx = wgpu_quant::Context::new(device.clone(), queue.clone());
    /// # Ok(()) }
    /// ```
    pub fn new(device: wgpu::Device, queue: wgpu::Queue) -> Context {
        Self::with_overrides(device, queue, &Overrides::default())
    }

    /// [`Context::new`] for a device created from `adapter`, reading what only the
    /// adapter knows: the cooperative-matrix configurations it lists. Create the device
    /// with `Features::EXPERIMENTAL_COOPERATIVE_MATRIX` (and wgpu's experimental-features
    /// token) where the adapter has it, and the FP16 GEMM runs on tensor cores
    /// ([`Capabilities::coop_f16`]); with [`Context::new`] it never does, as a device does
    /// not tell which configurations its adapter lists.
    ///
    /// ```no_run
    /// # async fn engine() -> wgpu_quant::Result<()> {
    /// let instance = wgpu::Instance::default();
    /// let adapter = instance.request_adapter(&Default::default()).await.unwrap();
    /// let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    /// let wanted = wgpu_quant::context::wanted_features() | coop;
    /// let (device, queue) = adapter
    ///     .request_device(&wgpu::DeviceDescriptor {
    ///         required_features: adapter.features() & wanted,
    ///         required_limits: adapter.limits(),
    ///         // SAFETY: wgpu's token for its experimental features (here cooperative
    ///         // matrices); see `wgpu::ExperimentalFeatures::enabled`.
    ///         experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
    ///         ..Default::default()
    ///     })
    ///     .await
    ///     .unwrap();
    /// let ctx = wgpu_quant::Context::with_adapter(device, queue, &adapter);
    /// println!("tensor cores: {}", ctx.capabilities().coop_f16);
    /// # Ok(()) }
    /// ```
    pub fn with_adapter(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: &wgpu::Adapter,
    ) -> Context {
        let info = adapter.get_info();
        let coop = adapter.cooperative_matrix_properties();
        Self::build(
            device,
            queue,
            info,
            &coop,
            Arc::new(AtomicBool::new(false)),
            &Overrides::default(),
        )
    }

    /// [`Context::new`] holding back the features and limits in `overrides`: wgpu-quant
    /// behaves as if the device lacked them.
    pub fn with_overrides(
        device: wgpu::Device,
        queue: wgpu::Queue,
        overrides: &Overrides,
    ) -> Context {
        let info = device.adapter_info();
        Self::build(
            device,
            queue,
            info,
            &[],
            Arc::new(AtomicBool::new(false)),
            overrides,
        )
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        coop: &[wgpu::CooperativeMatrixProperties],
        lost: Arc<AtomicBool>,
        overrides: &Overrides,
    ) -> Context {
        let caps = Capabilities::detect(&device, info, coop, overrides);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-quant unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Context {
            inner: Arc::new(Inner {
                id: {
                    static NEXT: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(1);
                    NEXT.fetch_add(1, Ordering::Relaxed)
                },
                device,
                queue,
                caps,
                lost,
                kernels: Mutex::new(HashMap::new()),
                dummy,
                bindings: Arc::new(Mutex::new(crate::bindcache::BindCache::new(
                    crate::bindcache::DEFAULT_CAPACITY,
                ))),
                scratch: Mutex::new(HashMap::new()),
                views: Mutex::new(HashMap::new()),
                stats: Stats::default(),
                tuning: std::sync::RwLock::new(None),
                learner: std::sync::RwLock::new(None),
                learning: AtomicBool::new(false),
                learned: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// Lists the adapters wgpu finds on the given backends.
    pub async fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        instance.enumerate_adapters(backends).await
    }

    /// Creates a context on an adapter of our choice (see [`RequestOptions`] and the
    /// `WGPU_QUANT_BACKEND` / `WGPU_QUANT_ADAPTER` environment variables), with every
    /// optional feature in [`wanted_features`] the adapter has and the adapter's own
    /// limits.
    pub async fn request(opts: &RequestOptions) -> Result<Context> {
        let (backends, name) = opts.resolved()?;
        let adapters = Self::adapters(backends).await;
        let request = format!(
            "backends {backends:?}{}; {} adapter(s) seen: [{}]",
            name.as_deref()
                .map(|n| format!(", name containing '{n}'"))
                .unwrap_or_default(),
            adapters.len(),
            adapters
                .iter()
                .map(|a| {
                    let i = a.get_info();
                    format!("{} ({:?})", i.name, i.backend)
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let pick = match &name {
            Some(n) => {
                let n = n.to_ascii_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_ascii_lowercase().contains(&n))
            }
            None => {
                // Prefer the kind the caller asked for, then any real GPU, then the rest.
                let rank = |a: &wgpu::Adapter| {
                    let t = a.get_info().device_type;
                    let want = match opts.power_preference {
                        wgpu::PowerPreference::LowPower => wgpu::DeviceType::IntegratedGpu,
                        _ => wgpu::DeviceType::DiscreteGpu,
                    };
                    match t {
                        t if t == want => 0,
                        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu => 1,
                        wgpu::DeviceType::VirtualGpu => 2,
                        wgpu::DeviceType::Cpu => 3,
                        wgpu::DeviceType::Other => 4,
                    }
                };
                adapters.into_iter().min_by_key(rank)
            }
        };
        let adapter = pick.ok_or_else(|| Error::NoAdapter {
            request,
            hint: NO_ADAPTER_HINT.to_string(),
        })?;
        Self::from_adapter_with(&adapter, &opts.overrides).await
    }

    /// Creates a device on `adapter` with the features and limits described in
    /// [`Context::request`].
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Context> {
        Self::from_adapter_with(adapter, &Overrides::default()).await
    }

    /// [`Context::from_adapter`] with features and limits held back: the device is created
    /// without those features and with those limits lowered.
    pub async fn from_adapter_with(
        adapter: &wgpu::Adapter,
        overrides: &Overrides,
    ) -> Result<Context> {
        let info = adapter.get_info();
        let mut features = (adapter.features() & wanted_features()) - overrides.disable_features;
        // Cooperative matrices (tensor cores) are an experimental wgpu feature: asked for
        // only where the adapter lists the one configuration the kernels use.
        let coop = adapter.cooperative_matrix_properties();
        let coop_wanted = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let experimental = if adapter.features().contains(coop_wanted)
            && !overrides.disable_features.contains(coop_wanted)
            && features.contains(wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP)
        {
            features |= coop_wanted;
            // SAFETY: wgpu's token for experimental features; the only one used is
            // cooperative matrices, by the kernel of `ops::wgemm_coop`, which the plan
            // picks only for the configuration listed above (16x16x16 f16, f32 sums).
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-quant"),
                required_features: features,
                experimental_features: experimental,
                // The adapter's own limits, not the defaults: larger bindings and
                // workgroups where the hardware allows them.
                required_limits: overrides.limits(adapter.limits()),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _msg| flag.store(true, Ordering::SeqCst));
        Ok(Self::build(device, queue, info, &coop, lost, overrides))
    }

    /// Blocking twin of [`Context::request`] (not in the web build).
    ///
    /// ```no_run
    /// let ctx = wgpu_quant::Context::request_blocking(&Default::default())?;
    /// println!("running on {}", ctx.capabilities().adapter.name);
    /// # Ok::<(), wgpu_quant::Error>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn request_blocking(opts: &RequestOptions) -> Result<Context> {
        pollster::block_on(Self::request(opts))
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// What the device can do.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    pub(crate) fn dummy_buffer(&self) -> &wgpu::Buffer {
        &self.inner.dummy
    }

    fn check_lost(&self) -> Result<()> {
        if self.inner.lost.load(Ordering::SeqCst) {
            return Err(Error::DeviceLost(format!(
                "device '{}' was lost",
                self.inner.caps.adapter.name
            )));
        }
        Ok(())
    }

    /// Runs `f` (wgpu calls) inside a validation error scope, so that an error wgpu would
    /// hand to the device's uncaptured-error handler (which panics by default) comes back
    /// as an `Err`: [`Error::DeviceLost`] when the device is gone, else
    /// [`Error::Validation`]. Error scopes are per thread, so concurrent callers do not
    /// see each other's errors.
    ///
    /// Natively the scope is popped at once (wgpu answers without waiting for the GPU). In
    /// a browser popping is asynchronous: the scope's answer is kept and the next
    /// [`Context::check_errors`] (which every async read awaits first) returns the first
    /// error, classified the same way.
    pub(crate) fn scoped<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_lost()?;
        let scope = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        #[cfg(not(target_arch = "wasm32"))]
        match pollster::block_on(scope.pop()) {
            None => Ok(out),
            Some(e) => {
                let operands = OPERANDS.with(|o| o.borrow().clone());
                Err(pollster::block_on(self.classify(
                    op,
                    e.to_string(),
                    operands,
                )))
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let operands = OPERANDS.with(|o| o.borrow().clone());
            let pending = PendingScope {
                context: self.inner.id,
                op,
                operands,
                answer: Answer::Waiting(Box::pin(scope.pop())),
            };
            PENDING.with(|p| {
                let mut p = p.borrow_mut();
                prune_pending(&mut p);
                p.push(pending);
            });
            Ok(out)
        }
    }

    /// Waits for the validation results of everything recorded on this context so far
    /// and returns the first error as an `Err` (the same errors a native build returns
    /// from the op itself).
    ///
    /// Natively each op checks its own recording before it returns, so this only reports
    /// a lost device. In a browser, WebGPU answers error scopes asynchronously: an op
    /// returns `Ok` after recording and its error, if any, arrives here. [`Tensor::read`]
    /// and [`Context::submit`] call it, so a page that reads its results sees every error.
    ///
    /// [`Tensor::read`]: crate::Tensor::read
    pub async fn check_errors(&self) -> Result<()> {
        self.check_lost()?;
        #[cfg(target_arch = "wasm32")]
        {
            let id = self.inner.id;
            let mine: Vec<PendingScope> = PENDING.with(|p| {
                let mut all = p.borrow_mut();
                let (mine, rest) = std::mem::take(&mut *all)
                    .into_iter()
                    .partition(|s| s.context == id);
                *all = rest;
                mine
            });
            let mut first = None;
            for scope in mine {
                let error = match scope.answer {
                    Answer::Waiting(f) => f.await.map(|e| e.to_string()),
                    Answer::Error(e) => Some(e),
                };
                if let (Some(e), None) = (error, &first) {
                    first = Some((scope.op, e, scope.operands));
                }
            }
            if let Some((op, message, operands)) = first {
                return Err(self.classify(op, message, operands).await);
            }
        }
        Ok(())
    }

    /// What a validation error means, from wgpu's signals rather than its wording: the
    /// device is lost when its lost callback fired (a device this crate opened) or when
    /// it can no longer make a usable 16-byte buffer (a borrowed device, whose callback
    /// is the engine's); else, when an operand the op noted ([`note_operands`]) can no longer be
    /// copied from, that operand's buffer was destroyed (an error naming it; the context
    /// stays usable); else it is a validation error.
    async fn classify(
        &self,
        op: &'static str,
        message: String,
        operands: Vec<(String, wgpu::Buffer)>,
    ) -> Error {
        if self.inner.lost.load(Ordering::SeqCst) || !self.device_alive().await {
            self.inner.lost.store(true, Ordering::SeqCst);
            return Error::DeviceLost(format!("{op}: {message}"));
        }
        for (name, buffer) in &operands {
            if self.buffer_destroyed(buffer).await {
                return Error::InvalidArgument {
                    op,
                    detail: format!(
                        "{name}: its buffer was destroyed (wgpu: {})",
                        message.lines().last().unwrap_or("").trim()
                    ),
                };
            }
        }
        Error::Validation { op, message }
    }

    /// Whether the device still makes a usable buffer: a new 16-byte buffer can start
    /// mapping. (On a lost device, creation fails silently, as WebGPU specifies, and the
    /// buffer it returns is invalid.)
    async fn device_alive(&self) -> bool {
        let scope = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let probe = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-quant liveness probe"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        probe.map_async(wgpu::MapMode::Read, .., |_| {});
        let alive = scope.pop().await.is_none();
        probe.destroy();
        alive
    }

    /// Whether copying 4 bytes out of `buffer` fails (it was destroyed). A buffer without
    /// `COPY_SRC` cannot be probed and counts as alive.
    async fn buffer_destroyed(&self, buffer: &wgpu::Buffer) -> bool {
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) || buffer.size() < 4 {
            return false;
        }
        let scope = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let dst = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-quant buffer probe"),
            size: 16,
            usage: wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.encoder("wgpu-quant buffer probe");
        enc.copy_buffer_to_buffer(buffer, 0, &dst, 0, 4);
        self.inner.queue.submit([enc.finish()]);
        let destroyed = scope.pop().await.is_some();
        dst.destroy();
        destroyed
    }

    /// Blocks until all submitted work is done. Not in the web build, where nothing may
    /// block: use [`Context::submit`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_idle(&self) -> Result<()> {
        self.check_lost()?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(e.to_string()))?;
        Ok(())
    }

    /// Submits an encoder's work and waits for it to finish. Not in the web build: use
    /// [`Context::submit`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped("submit", || self.inner.queue.submit([encoder.finish()]))?;
        self.wait_idle()
    }

    /// Submits an encoder's work; the future resolves when the GPU has finished it, with
    /// the first validation error of anything recorded so far (see
    /// [`Context::check_errors`]). The async twin of `submit_and_wait`, and the one a
    /// browser build uses.
    pub async fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped("submit", || self.inner.queue.submit([encoder.finish()]))?;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.inner.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.drive()?;
        rx.await
            .map_err(|_| Error::DeviceLost("the GPU dropped a submission's completion".into()))?;
        self.check_errors().await
    }

    /// Submits an encoder's work without waiting for it (validation errors come back from
    /// the next [`Context::check_errors`], or at once natively). For work whose results
    /// stay on the GPU, which later submissions read in queue order.
    pub(crate) fn enqueue(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped("submit", || self.inner.queue.submit([encoder.finish()]))?;
        Ok(())
    }

    /// Runs a future to completion natively, for the crate's blocking conveniences (the
    /// twins of their `_async` forms). In a browser it returns [`Error::Blocking`] naming
    /// `op`: nothing may block there, and a page awaits the `_async` form.
    pub(crate) fn block<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = op;
            pollster::block_on(f)
        }
        #[cfg(target_arch = "wasm32")]
        {
            drop(f);
            Err(crate::error::native_only(op))
        }
    }

    /// Natively, waits on the device so that pending callbacks run; in a browser the
    /// page's event loop runs them, and this does nothing.
    fn drive(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_idle()?;
        Ok(())
    }

    /// Creates a command encoder on this device.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Copies `bytes` bytes from the start of `buffer` to the CPU.
    pub(crate) async fn read_buffer(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4).max(1) * 4;
        note_operands(vec![(what.to_string(), buffer.clone())]);
        self.check_errors().await?;
        let (tx, rx) = futures_channel::oneshot::channel();
        let staging = self.scoped("readback", || {
            let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-quant readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self.encoder("wgpu-quant readback");
            enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.inner.queue.submit([enc.finish()]);
            staging.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            staging
        })?;
        self.drive()?;
        // In a browser the copy's validation answer arrives asynchronously: take it
        // before trusting the mapping.
        self.check_errors().await?;
        let mapped = rx
            .await
            .map_err(|_| Error::Readback {
                what: what.to_string(),
                message: "map callback was dropped".into(),
            })?
            .map_err(|e| Error::Readback {
                what: what.to_string(),
                message: e.to_string(),
            });
        mapped?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Readback {
                what: what.to_string(),
                message: e.to_string(),
            })?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// The compiled kernel for a shader variant, compiling it on first use. Compilation
    /// errors come back as [`Error::Validation`] instead of wgpu's default panic.
    pub(crate) fn kernel(&self, variant: &ShaderVariant) -> Result<Arc<Kernel>> {
        let key = variant.key();
        if let Some(k) = self
            .inner
            .kernels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(k.clone());
        }
        let op = variant.file.op_name();
        if variant.needs_f16() && !self.inner.caps.shader_f16 {
            return Err(Error::MissingFeature {
                op,
                feature: "SHADER_F16",
                adapter: self.inner.caps.adapter.name.clone(),
            });
        }
        let device = &self.inner.device;
        let source = variant.source();
        variant.dump_if_requested(&source);
        let (pipeline, layout) = self.scoped(op, || {
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(op),
                entries: &variant.file.layout_entries(),
            });
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(op),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            };
            // Bounds checks stay on. Loop bounding (a counter naga adds to every loop so that
            // a non-terminating shader cannot hang the GPU) is turned off: it hides the trip
            // counts of the register-tile loops from the driver's compiler, which then cannot
            // unroll them, and on lavapipe that made FP32 GEMM 5x slower (6.5 -> 1.2 GFLOP/s at
            // 1024^3, docs/PERFORMANCE.md). SAFETY: every loop in shaders/ is bounded by a
            // compile-time constant or by a size from the uniform parameters, which the op
            // validated on the host before recording.
            let module = unsafe {
                device.create_shader_module_trusted(
                    desc,
                    wgpu::ShaderRuntimeChecks {
                        bounds_checks: true,
                        force_loop_bounding: false,
                        ..wgpu::ShaderRuntimeChecks::checked()
                    },
                )
            };
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(op),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(op),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            (pipeline, layout)
        })?;
        let kernel = Arc::new(Kernel { pipeline, layout });
        self.inner
            .kernels
            .lock()
            .expect("kernel cache")
            .insert(key, kernel.clone());
        Ok(kernel)
    }

    /// Number of distinct kernels compiled so far.
    pub fn compiled_kernels(&self) -> usize {
        self.inner
            .kernels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// What this context has allocated so far: run a frame twice and compare to check
    /// that the second allocates nothing.
    pub fn stats(&self) -> ContextStats {
        let s = &self.inner.stats;
        ContextStats {
            tensors_allocated: s.tensors.load(Ordering::Relaxed),
            bind_groups_created: s.bind_groups.load(Ordering::Relaxed),
            bind_group_reuses: s.bind_group_hits.load(Ordering::Relaxed),
            uniform_buffers_created: s.uniform_buffers.load(Ordering::Relaxed),
            scratch_buffers_created: s.scratch_buffers.load(Ordering::Relaxed),
            pooled_bind_groups: self
                .inner
                .bindings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
            kernels: self.compiled_kernels(),
            split_dispatches: s.split_dispatches.load(Ordering::Relaxed),
            split_k_runs: s.split_k_runs.load(Ordering::Relaxed),
            plans_learned: s.plans_learned.load(Ordering::Relaxed),
            learn_failures: s.learn_failures.load(Ordering::Relaxed),
            pending_error_scopes: self.pending_error_scopes(),
        }
    }

    fn pending_error_scopes(&self) -> usize {
        #[cfg(target_arch = "wasm32")]
        return PENDING.with(|p| {
            let mut p = p.borrow_mut();
            prune_pending(&mut p);
            p.iter().filter(|s| s.context == self.inner.id).count()
        });
        #[cfg(not(target_arch = "wasm32"))]
        0
    }

    /// Sets how many bind groups the pool keeps (default
    /// [`crate::bindcache::DEFAULT_CAPACITY`]); the least recently used go first. 0 turns
    /// pooling off. A pooled bind group keeps the buffers it binds alive until it is
    /// evicted, so an app that frees large tensors should call
    /// [`Context::clear_pool`] afterwards.
    pub fn set_pool_capacity(&self, capacity: usize) {
        self.inner
            .bindings
            .lock()
            .expect("bind pool")
            .set_capacity(capacity);
    }

    /// Drops every pooled bind group and scratch buffer (and with them the references
    /// they hold to tensors' buffers).
    pub fn clear_pool(&self) {
        self.inner
            .bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.inner
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.inner
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The default view of `texture`, made once and pooled (so that recording from the
    /// same texture every frame reuses its bind group).
    pub(crate) fn texture_view(&self, texture: &wgpu::Texture) -> wgpu::TextureView {
        self.inner
            .views
            .lock()
            .expect("view pool")
            .entry(texture.clone())
            .or_insert_with(|| texture.create_view(&wgpu::TextureViewDescriptor::default()))
            .clone()
    }

    /// Counts one dispatch of an op split over the binding limit.
    pub(crate) fn note_split(&self) {
        self.inner
            .stats
            .split_dispatches
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one GEMM recorded with parallel split-K.
    pub(crate) fn note_split_k(&self) {
        self.inner
            .stats
            .split_k_runs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A handle that releases `buffer`'s pooled bind groups when dropped (held by the
    /// tensors made on this context; see [`crate::bindcache`]).
    pub(crate) fn release_on_drop(&self, buffer: &wgpu::Buffer) -> crate::bindcache::Release {
        crate::bindcache::Release::new(buffer.clone(), Arc::downgrade(&self.inner.bindings))
    }

    /// This context's identity (shared by its clones).
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn note_tensor(&self) {
        self.inner.stats.tensors.fetch_add(1, Ordering::Relaxed);
    }

    /// The pooled bind group for `key`, or one made by `make` (with its own uniform
    /// buffer) and pooled.
    pub(crate) fn bind_group(
        &self,
        key: crate::bindcache::BindKey,
        make: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        let s = &self.inner.stats;
        let mut cache = self
            .inner
            .bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bg) = cache.get(&key) {
            s.bind_group_hits.fetch_add(1, Ordering::Relaxed);
            return bg;
        }
        let bg = make();
        s.bind_groups.fetch_add(1, Ordering::Relaxed);
        s.uniform_buffers.fetch_add(1, Ordering::Relaxed);
        cache.insert(key, bg.clone());
        bg
    }

    /// A scratch storage buffer of at least `bytes` for an op's intermediate, shared by
    /// every recording of that op on this context. Safe because GPU work on one queue
    /// runs in order: each use writes the buffer before the next pass reads it.
    pub(crate) fn scratch(&self, tag: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        self.scratch_with(tag, bytes, Vec::new)
    }

    /// [`Context::scratch`] whose contents on creation are `init()` (zeros past its end);
    /// for constant tables, which then must not be written.
    pub(crate) fn scratch_with(
        &self,
        tag: &'static str,
        bytes: u64,
        init: impl FnOnce() -> Vec<u32>,
    ) -> Result<wgpu::Buffer> {
        self.pooled(tag, bytes, wgpu::BufferUsages::empty(), init)
    }

    /// [`Context::scratch`] that can also be bound as a uniform buffer.
    pub(crate) fn uniform_scratch(&self, tag: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        self.pooled(tag, bytes, wgpu::BufferUsages::UNIFORM, Vec::new)
    }

    /// The pooled buffer under `(tag, size)`: storage and copies, plus `usage`.
    fn pooled(
        &self,
        tag: &'static str,
        bytes: u64,
        usage: wgpu::BufferUsages,
        init: impl FnOnce() -> Vec<u32>,
    ) -> Result<wgpu::Buffer> {
        let size = bytes.div_ceil(16).max(1) * 16;
        let mut map = self
            .inner
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = map.get(&(tag, size)) {
            return Ok(b.clone());
        }
        let mut contents = init();
        contents.resize((size / 4) as usize, 0);
        let buffer = self.scoped(tag, || {
            self.inner
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(tag),
                    contents: bytemuck::cast_slice(&contents),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST
                        | usage,
                })
        })?;
        self.inner
            .stats
            .scratch_buffers
            .fetch_add(1, Ordering::Relaxed);
        map.insert((tag, size), buffer.clone());
        Ok(buffer)
    }

    /// Installs an autotuning cache: plans found in it (for this adapter) replace the
    /// default heuristic. See [`crate::tuning`].
    pub fn set_tuning(&self, cache: Option<crate::desc::tuning::TuneCache>) {
        *self
            .inner
            .tuning
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cache.map(Arc::new);
    }

    /// The installed autotuning cache.
    pub fn tuning(&self) -> Option<Arc<crate::desc::tuning::TuneCache>> {
        self.inner
            .tuning
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs (or with `None` removes) a learner, which the plan calls the first time
    /// it meets a shape class without a tuned entry for this adapter. Off by default;
    /// [`crate::tuning::learn`] installs one that tunes and persists.
    pub fn set_learner(&self, learner: Option<Learner>) {
        *self
            .inner
            .learner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = learner;
    }

    /// Hands `request` to the learner, if one is installed, the class has no tuned entry
    /// for this adapter and was not handed over before, and no learner runs on this
    /// context now (its own tuning plans do not learn). A failure is counted in
    /// [`ContextStats::learn_failures`] and the plan keeps its default.
    /// `request` is built only when a learner is installed, so plans pay one read lock
    /// otherwise.
    pub(crate) fn learn(&self, request: impl FnOnce() -> crate::desc::tuning::TuneRequest) {
        let Some(learner) = self
            .inner
            .learner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let request = request();
        let class = request.class();
        if let Some(cache) = self.tuning() {
            let key = crate::desc::tuning::AdapterKey::of(&self.inner.caps.adapter);
            if cache.get(&key, &class).is_some() {
                return;
            }
        }
        if self
            .inner
            .learning
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if self
            .inner
            .learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(class)
        {
            let counter = match learner(self, &request) {
                Ok(()) => &self.inner.stats.plans_learned,
                Err(_) => &self.inner.stats.learn_failures,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.learning.store(false, Ordering::Release);
    }
}
