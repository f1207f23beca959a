//! Adapter discovery and device creation: Vulkan only, the adapter's own limits, the optional
//! features the kernels can use, and validation errors captured instead of panicking.

use std::sync::{Arc, Mutex, OnceLock};

use super::super::{BackendError, Result};

/// One Vulkan adapter as `kiln inspect --devices` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// The index `--gpu N` takes.
    pub index: usize,
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_subgroup_size: u32,
    pub max_subgroup_size: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
    pub shader_int64: bool,
    /// f16 16×16×16 cooperative matrices with f32 accumulators (tensor cores) that the prompt
    /// products can use: offered by the driver, with subgroups of exactly 32 and 48 KiB of
    /// workgroup memory (`shaders/matmul_coop.wgsl` is laid out for that).
    pub coop_matrix: bool,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        writeln!(
            f,
            "[{}] {} ({}, driver {} {})",
            self.index, self.name, self.device_type, self.driver, self.driver_info
        )?;
        writeln!(
            f,
            "    max buffer {:.0} MiB, max storage binding {:.0} MiB, workgroup memory {} KiB, {} invocations/workgroup",
            mib(self.max_buffer_size),
            mib(self.max_storage_buffer_binding_size),
            self.max_compute_workgroup_storage_size / 1024,
            self.max_compute_invocations_per_workgroup
        )?;
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "    f16 {}, subgroups {} (size {}..{}), timestamp queries {}, int64 {}, f16 cooperative matrices {}",
            yes(self.shader_f16),
            yes(self.subgroups),
            self.min_subgroup_size,
            self.max_subgroup_size,
            yes(self.timestamp_query),
            yes(self.shader_int64),
            yes(self.coop_matrix)
        )
    }
}

/// The process's one Vulkan instance. NVIDIA's driver stops listing its GPU after about 30
/// instances made in one process, even when each was dropped, so tests that open a backend
/// each (and `inspect --devices` before a run) share this one.
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::VULKAN;
        wgpu::Instance::new(desc)
    })
}

fn adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::VULKAN))
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let (info, l, f) = (a.get_info(), a.limits(), a.features());
    let (min_subgroup_size, max_subgroup_size) = (info.subgroup_min_size, info.subgroup_max_size);
    AdapterSummary {
        index,
        name: info.name,
        device_type: format!("{:?}", info.device_type),
        driver: info.driver,
        driver_info: info.driver_info,
        vendor: info.vendor,
        device: info.device,
        max_buffer_size: l.max_buffer_size,
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        min_subgroup_size,
        max_subgroup_size,
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        shader_int64: f.contains(wgpu::Features::SHADER_INT64),
        coop_matrix: coop_usable(a),
    }
}

/// Whether the prompt products' cooperative-matrix kernels can run on `a`.
fn coop_usable(a: &wgpu::Adapter) -> bool {
    use wgpu::CooperativeScalarType as S;
    let (info, l, f) = (a.get_info(), a.limits(), a.features());
    let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    f.contains(needed)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && l.max_compute_workgroup_storage_size >= 48 << 10
        && a.cooperative_matrix_properties().iter().any(|c| {
            (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
                && c.ab_type == S::F16
                && c.cr_type == S::F32
        })
}

/// Every Vulkan adapter, in the order `--gpu N` counts them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters()
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

/// An open device and what it was opened with.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The prompt products run on cooperative matrices (see [`AdapterSummary::coop_matrix`]).
    pub coop_matrix: bool,
    /// The row, routing and KDA scan kernels reduce over subgroups: the device has them, of at
    /// least 8 lanes (the scan's column groups), and `KILN_NO_SUBGROUPS` is not set (else they
    /// reduce through workgroup memory).
    pub subgroups: bool,
    /// Validation and out-of-memory errors nobody captured in a scope; drained by
    /// [`Context::check`].
    errors: Arc<Mutex<Vec<String>>>,
}

/// Features worth having when offered; every kernel works without them.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SUBGROUP_BARRIER
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
}

/// Rank for the default choice: a real GPU before a software rasteriser.
fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Context {
    /// Opens adapter `index` (as [`list_adapters`] numbers them), or the best one.
    pub fn open(index: Option<usize>) -> Result<Context> {
        let all = adapters();
        if all.is_empty() {
            return Err(BackendError::Gpu(
                "no Vulkan adapter found: install a GPU driver with Vulkan support, or \
                 mesa-vulkan-drivers for the lavapipe software device"
                    .into(),
            ));
        }
        let i = match index {
            Some(i) if i < all.len() => i,
            Some(i) => {
                return Err(BackendError::Gpu(format!(
                    "--gpu {i}: only {} Vulkan adapter(s) found (kiln inspect --devices lists them)",
                    all.len()
                )));
            }
            None => (0..all.len())
                .min_by_key(|&i| preference(all[i].get_info().device_type))
                .unwrap_or(0),
        };
        let adapter = &all[i];
        let limits = adapter.limits();
        let mut features = adapter.features() & wanted_features();
        let coop_matrix = coop_usable(adapter) && std::env::var_os("KILN_NO_COOP").is_none();
        if coop_matrix {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: the only experimental feature requested is cooperative matrices, used by
            // the prompt-product kernels alone, on adapters `coop_usable` accepted; their
            // results are checked against the CPU backend by `tests/wgpu_ops.rs` on such a GPU.
            experimental_features: if coop_matrix {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            ..Default::default()
        }))
        .map_err(|e| BackendError::Gpu(format!("opening {}: {e}", adapter.get_info().name)))?;
        let subgroups = features.contains(wgpu::Features::SUBGROUP)
            && adapter.get_info().subgroup_min_size >= 8
            && std::env::var_os("KILN_NO_SUBGROUPS").is_none();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        Ok(Context {
            device,
            queue,
            adapter: summary(i, adapter),
            limits,
            features,
            coop_matrix,
            subgroups,
            errors,
        })
    }

    /// The errors the device reported since the last check, as one error.
    pub fn check(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        Err(BackendError::Gpu(msg))
    }
}
