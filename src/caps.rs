//! What a device can do, as far as the kernels care: features, the limits the ops
//! check, and the overrides that hold some of them back. Plain data: the plan chooses
//! kernels from a [`Capabilities`] value alone, so its choices can be computed (and
//! tested) for any device, GPU or not.

/// The limits wgpu-quant depends on, as granted to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Largest storage-buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroup memory per workgroup, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Alignment of a storage binding's offset, bytes (ops that split oversized tensors
    /// bind windows starting at multiples of it).
    pub min_storage_buffer_offset_alignment: u32,
    /// Largest uniform-buffer binding, bytes.
    pub max_uniform_buffer_binding_size: u64,
}

impl KeyLimits {
    /// The limits wgpu-quant reads from a full `wgpu::Limits` (for example
    /// `wgpu::Limits::default()`, what WebGPU guarantees everywhere).
    pub fn of(l: &wgpu::Limits) -> Self {
        Self::from_limits(l)
    }

    pub(crate) fn from_limits(l: &wgpu::Limits) -> Self {
        KeyLimits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            max_uniform_buffer_binding_size: l.max_uniform_buffer_binding_size,
        }
    }
}

/// Capabilities and limits to hold back from wgpu-quant, whatever the adapter has.
///
/// With [`crate::Context::request`] / [`crate::Context::from_adapter`] the limits are lowered on the
/// device itself (so wgpu's validation enforces them too) and the features are not
/// requested; with [`crate::Context::with_overrides`] (a device the caller owns) wgpu-quant
/// only behaves as if the device had them. Uses: testing the fallback paths on a device
/// that has everything (the test suite does), leaving memory or features to a renderer,
/// or reproducing a smaller GPU's limits.
///
/// ```no_run
/// use wgpu_quant::{Context, RequestOptions, context::Overrides};
/// let ctx = Context::request_blocking(&RequestOptions {
///     overrides: Overrides {
///         max_storage_buffer_binding_size: Some(1 << 20), // 1 MiB bindings: ops split
///         disable_features: wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP,
///         disable_packed_int8_dot: true,
///         ..Default::default()
///     },
///     ..Default::default()
/// })?;
/// assert!(!ctx.capabilities().shader_f16);
/// # Ok::<(), wgpu_quant::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Caps `max_storage_buffer_binding_size` (bytes; rounded down to a multiple of 4).
    pub max_storage_buffer_binding_size: Option<u64>,
    /// Caps `max_compute_workgroup_storage_size` (bytes).
    pub max_compute_workgroup_storage_size: Option<u32>,
    /// Caps `max_compute_invocations_per_workgroup`.
    pub max_compute_invocations_per_workgroup: Option<u32>,
    /// Raises `min_storage_buffer_offset_alignment` (bytes; a power of two up to 256, the
    /// coarsest any device asks for), to test how ops split on such a device.
    pub min_storage_buffer_offset_alignment: Option<u32>,
    /// Optional features not to use (of [`crate::context::wanted_features`]).
    pub disable_features: wgpu::Features,
    /// Do not use WGSL's `dot4I8Packed` (the W8A8 kernels then unpack bytes themselves).
    pub disable_packed_int8_dot: bool,
}

impl Overrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    pub(crate) fn limits(&self, mut l: wgpu::Limits) -> wgpu::Limits {
        if let Some(v) = self.max_storage_buffer_binding_size {
            l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.min(v & !3);
        }
        if let Some(v) = self.min_storage_buffer_offset_alignment {
            l.min_storage_buffer_offset_alignment = l
                .min_storage_buffer_offset_alignment
                .max(v.clamp(1, 256).next_power_of_two());
        }
        if let Some(v) = self.max_compute_workgroup_storage_size {
            l.max_compute_workgroup_storage_size = l.max_compute_workgroup_storage_size.min(v);
        }
        if let Some(v) = self.max_compute_invocations_per_workgroup {
            l.max_compute_invocations_per_workgroup =
                l.max_compute_invocations_per_workgroup.min(v);
            l.max_compute_workgroup_size_x = l.max_compute_workgroup_size_x.min(v);
            l.max_compute_workgroup_size_y = l.max_compute_workgroup_size_y.min(v);
            l.max_compute_workgroup_size_z = l.max_compute_workgroup_size_z.min(v);
        }
        l
    }
}

/// What the device can do, as far as wgpu-quant's kernels care.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Adapter name, vendor, driver, backend, device type.
    pub adapter: wgpu::AdapterInfo,
    /// `f16` arithmetic in shaders (`Features::SHADER_F16` enabled on the device).
    pub shader_f16: bool,
    /// Subgroup operations (`Features::SUBGROUP` enabled on the device).
    pub subgroups: bool,
    /// Subgroup size range reported by the adapter.
    pub subgroup_size: (u32, u32),
    /// Timestamp queries at pass boundaries (`Features::TIMESTAMP_QUERY`).
    pub timestamp_query: bool,
    /// Timestamp queries inside passes (`Features::TIMESTAMP_QUERY_INSIDE_PASSES`).
    pub timestamp_inside_passes: bool,
    /// WGSL's `packed_4x8_integer_dot_product` language feature (`dot4I8Packed`). wgpu's
    /// shader translator implements it on every backend: natively where the driver has
    /// integer dot products (Vulkan 1.3, `VK_KHR_shader_integer_dot_product`), as a
    /// polyfill elsewhere.
    pub packed_int8_dot: bool,
    /// Cooperative matrices of 16x16x16 f16 with f32 accumulation (tensor cores):
    /// `Features::EXPERIMENTAL_COOPERATIVE_MATRIX` enabled on the device and the
    /// configuration listed by `Adapter::cooperative_matrix_properties`. Only a context
    /// that sees the adapter ([`crate::Context::request`], `from_adapter`,
    /// [`crate::Context::with_adapter`] for a device of your own) knows the list;
    /// [`crate::Context::new`] leaves this `false`.
    pub coop_f16: bool,
    /// Limits granted to the device.
    pub limits: KeyLimits,
}

/// Whether WGSL's `packed_4x8_integer_dot_product` is there: natively, wgpu's own shader
/// translator (naga) implements it on every backend; on the web the browser's WGSL
/// compiler decides, and says so in the instance's language features.
#[cfg(not(target_arch = "wasm32"))]
fn wgsl_packed_dot() -> bool {
    use wgpu::naga::front::wgsl::ImplementedLanguageExtension as Ext;
    Ext::all().contains(&Ext::Packed4x8IntegerDotProduct)
}

#[cfg(target_arch = "wasm32")]
fn wgsl_packed_dot() -> bool {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
        .wgsl_language_features()
        .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct)
}

impl Capabilities {
    pub(crate) fn detect(
        device: &wgpu::Device,
        adapter: wgpu::AdapterInfo,
        coop: &[wgpu::CooperativeMatrixProperties],
        o: &Overrides,
    ) -> Self {
        let f = device.features() - o.disable_features;
        let packed_int8_dot = !o.disable_packed_int8_dot && wgsl_packed_dot();
        let coop_f16 = f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && coop.iter().any(|c| {
                (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
                    && c.ab_type == wgpu::CooperativeScalarType::F16
                    && c.cr_type == wgpu::CooperativeScalarType::F32
            });
        Capabilities {
            coop_f16,
            subgroup_size: (adapter.subgroup_min_size, adapter.subgroup_max_size),
            adapter,
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_inside_passes: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            packed_int8_dot,
            limits: KeyLimits::from_limits(&o.limits(device.limits())),
        }
    }

    /// A device described by hand, for asking what the plan would choose on hardware
    /// that is not here (and for testing the plan without a GPU): an adapter called
    /// `name` of `device_type`, with `limits`, `SHADER_F16`, subgroups of `subgroup_size`
    /// (`None`: no subgroups), `dot4I8Packed` and timestamps.
    ///
    /// ```
    /// use wgpu_quant::{plan, Capabilities, KeyLimits};
    /// use wgpu_quant::ops::gemm::GemmDesc;
    /// let gpu = Capabilities::synthetic(
    ///     "a discrete GPU",
    ///     wgpu::DeviceType::DiscreteGpu,
    ///     KeyLimits::of(&wgpu::Limits::default()),
    ///     Some(32),
    /// );
    /// let k = plan::default_gemm_kernel(&gpu, &GemmDesc::new(1024, 1024, 1024));
    /// assert!(k.fits(&gpu));
    /// ```
    pub fn synthetic(
        name: &str,
        device_type: wgpu::DeviceType,
        limits: KeyLimits,
        subgroup_size: Option<u32>,
    ) -> Self {
        let sg = subgroup_size.unwrap_or(0);
        Capabilities {
            adapter: wgpu::AdapterInfo {
                name: name.to_string(),
                driver: "synthetic".into(),
                subgroup_min_size: sg,
                subgroup_max_size: sg,
                ..wgpu::AdapterInfo::new(device_type, wgpu::Backend::Noop)
            },
            shader_f16: true,
            subgroups: subgroup_size.is_some(),
            subgroup_size: (sg, sg),
            timestamp_query: true,
            timestamp_inside_passes: true,
            packed_int8_dot: true,
            coop_f16: false,
            limits,
        }
    }

    /// True when the adapter is a CPU implementation (lavapipe, SwiftShader, WARP): the
    /// plan then prefers kernels without workgroup memory and barriers.
    pub fn is_cpu(&self) -> bool {
        self.adapter.device_type == wgpu::DeviceType::Cpu
    }
}

/// An environment variable natively; `None` in a browser, which has no environment.
pub(crate) fn env_var(name: &str) -> Option<String> {
    #[cfg(not(target_arch = "wasm32"))]
    return std::env::var(name).ok();
    #[cfg(target_arch = "wasm32")]
    {
        let _ = name;
        None
    }
}
