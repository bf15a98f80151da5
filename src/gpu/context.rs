//! Adapter discovery and choice, device creation with the adapter's real limits, and the
//! error scopes that turn wgpu validation / out-of-memory errors into library errors.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};

/// Which graphics API(s) to look for adapters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(BackendChoice::Auto),
            "vulkan" | "vk" => Ok(BackendChoice::Vulkan),
            "metal" | "mtl" => Ok(BackendChoice::Metal),
            "dx12" | "d3d12" => Ok(BackendChoice::Dx12),
            "gl" | "gles" | "opengl" => Ok(BackendChoice::Gl),
            _ => Err(Error::UnknownBackend(s.to_string())),
        }
    }
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            // GL is left out of auto: without a display it only logs noise, and every desktop
            // that has GL also has Vulkan, Metal or DX12. Ask for it with --backend gl.
            BackendChoice::Auto => wgpu::Backends::PRIMARY,
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// The element type that a run's activations and their gradients are stored in. Parameters,
/// their gradients and optimizer state, normalisation statistics, losses and every sum stay
/// f32 either way (the kernels read f16 into f32 and round once when they store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Needs the device's `SHADER_F16`; halves activation memory and traffic.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            _ => Err(Error::InvalidOption { field: "--precision".into(), message: format!("{s:?} is not a precision (f32 or f16)") }),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

/// How the user picked the adapter: `--backend` and `--adapter` (index or name substring).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub backend: BackendChoice,
    pub adapter: Option<String>,
    /// Open the device with WebGPU's default limits (128 MiB storage bindings, 256 MiB
    /// buffers, 256 invocations and 16 KiB of workgroup memory a workgroup, 8 storage buffers a
    /// shader, …) instead of the adapter's: what a browser page that asks for nothing gets, on
    /// any GPU. The caps below apply on top.
    pub default_limits: bool,
    /// Open the device with this max_storage_buffer_binding_size (bytes) when it is below the
    /// adapter's: how a small GPU is tested on a large one.
    pub max_storage_binding: Option<u64>,
    /// The same for max_uniform_buffer_binding_size: below 64 KiB the blocked convolution
    /// kernels cannot run, and the direct ones take their place.
    pub max_uniform_binding: Option<u64>,
    /// Whether kernels with several implementations are timed on this adapter at first use
    /// (see [`crate::tune`]); off: every layer takes its default kernels.
    pub tune: Tuning,
    /// Leave the device's subgroup operations off (the subgroup kernels then never run).
    pub no_subgroups: bool,
    /// What the kernels store activations in (f16: an error where the device lacks it).
    pub precision: Precision,
}

/// Kernel tuning: off, or on with the winners kept in a cache file (none: for this process
/// only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    #[default]
    Off,
    On { cache: Option<std::path::PathBuf> },
}

/// What `cnn3d adapters` reports for one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub timestamp_query: bool,
    pub timestamp_query_inside_passes: bool,
    pub shader_f16: bool,
    /// Subgroup operations in compute shaders, and the subgroup sizes the adapter may use.
    pub subgroups: bool,
    pub subgroup_sizes: (u32, u32),
}

fn report(index: usize, adapter: &wgpu::Adapter) -> AdapterReport {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterReport {
        index,
        name: info.name.clone(),
        backend: backend_name(info.backend).to_string(),
        device_type: device_type_name(info.device_type).to_string(),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        vendor: info.vendor,
        device: info.device,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        timestamp_query_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
    }
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "noop",
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Preference of `--backend auto`: discrete, then integrated, then virtual, then CPU adapters.
fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The backends to search: `--backend` wins, then `WGPU_BACKEND`, then auto.
fn resolve_backends(choice: BackendChoice) -> Result<(wgpu::Backends, bool)> {
    if choice != BackendChoice::Auto {
        return Ok((choice.backends(), false));
    }
    match std::env::var("WGPU_BACKEND") {
        Ok(v) if !v.trim().is_empty() => {
            let c: BackendChoice = v.parse()?;
            Ok((c.backends(), c == BackendChoice::Auto))
        }
        _ => Ok((BackendChoice::Auto.backends(), true)),
    }
}

fn no_adapter_hint() -> String {
    if cfg!(target_arch = "wasm32") {
        "In a browser, WebGPU needs a browser that offers it (navigator.gpu, e.g. Chrome or Edge 113+) and a secure context (https or localhost).".into()
    } else if cfg!(target_os = "linux") {
        "On Linux without a GPU, install Mesa's software Vulkan driver: `apt-get install mesa-vulkan-drivers` (lavapipe). With a GPU, install its Vulkan driver.".into()
    } else if cfg!(target_os = "macos") {
        "Metal should be available on every supported Mac; check that this is not a VM without GPU access.".into()
    } else {
        "Install or update the GPU's driver (Vulkan or DX12), or try --backend gl.".into()
    }
}

fn backends_name(b: wgpu::Backends) -> String {
    let mut names = vec![];
    for (flag, name) in [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
    ] {
        if b.contains(flag) {
            names.push(name);
        }
    }
    if cfg!(target_arch = "wasm32") && b.contains(wgpu::Backends::BROWSER_WEBGPU) {
        names.push("webgpu");
    }
    names.join(", ")
}

async fn enumerate(choice: BackendChoice) -> Result<Vec<wgpu::Adapter>> {
    let (backends, auto) = resolve_backends(choice)?;
    let mut adapters = instance(backends).enumerate_adapters(backends).await;
    if adapters.is_empty() && auto {
        // Last resort for auto: GL (e.g. a machine with only an OpenGL driver).
        adapters = instance(wgpu::Backends::GL).enumerate_adapters(wgpu::Backends::GL).await;
    }
    Ok(adapters)
}

/// Every adapter wgpu sees on the chosen backend(s) (all compiled backends for `--backend auto`,
/// GL included, since this is a listing).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(choice: BackendChoice) -> Result<Vec<AdapterReport>> {
    pollster::block_on(list_adapters_async(choice))
}

/// [`list_adapters`] without blocking (in a browser: the one adapter `navigator.gpu` offers,
/// or none).
pub async fn list_adapters_async(choice: BackendChoice) -> Result<Vec<AdapterReport>> {
    let backends = if choice == BackendChoice::Auto && std::env::var("WGPU_BACKEND").map_or(true, |v| v.trim().is_empty()) {
        wgpu::Backends::all()
    } else {
        resolve_backends(choice)?.0
    };
    let adapters = instance(backends).enumerate_adapters(backends).await;
    Ok(adapters.iter().enumerate().map(|(i, a)| report(i, a)).collect())
}

/// Static facts about the device a [`Gpu`] runs on.
#[derive(Clone, Debug, Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub timestamp_query: bool,
    pub timestamp_query_inside_passes: bool,
    pub shader_f16: bool,
    /// The smallest and largest subgroup the device may run, where it has subgroups.
    pub subgroup_sizes: Option<(u32, u32)>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub max_uniform_buffer_binding_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
}

/// An open device: the one object through which the rest of the crate touches the GPU.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) info: GpuInfo,
    pub(crate) pipelines: super::shaders::PipelineCache,
    pub(crate) tuning: Tuning,
    /// Tuning results of this process, by key, as JSON (see [`crate::tune`], which owns
    /// their type: the device knows nothing of layers).
    pub(crate) tuned: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Why the device was lost, once it is.
    lost: Arc<std::sync::Mutex<Option<String>>>,
    /// The first wgpu error raised outside every error scope since the last wait.
    uncaptured: Arc<std::sync::Mutex<Option<String>>>,
    /// In a browser error scopes resolve later (see [`Gpu::scoped`]): the first error one
    /// caught, with its context, until the next readback reports it.
    #[cfg(target_arch = "wasm32")]
    scoped_error: Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// The bytes tensors hold (see [`Gpu::memory`]).
    pub(crate) memory: Arc<super::buffer::Memory>,
    /// What every kernel of this device stores activations in (see [`Gpu::activations`]).
    pub(crate) precision: Precision,
}

impl Gpu {
    /// Opens the adapter chosen by `opts` (see [`GpuOptions`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new_async(opts))
    }

    /// [`Gpu::new`] without blocking: how a browser opens its WebGPU device (from an async
    /// task, e.g. `wasm_bindgen_futures::spawn_local`).
    pub async fn new_async(opts: &GpuOptions) -> Result<Gpu> {
        let adapters = enumerate(opts.backend).await?;
        if adapters.is_empty() {
            let (b, _) = resolve_backends(opts.backend)?;
            return Err(Error::NoAdapter { backends: backends_name(b), hint: no_adapter_hint() });
        }
        let adapter = choose(adapters, opts.adapter.as_deref())?;
        let ainfo = adapter.get_info();
        log::info!(
            "using adapter {:?} ({}, {}, driver {} {})",
            ainfo.name,
            backend_name(ainfo.backend),
            device_type_name(ainfo.device_type),
            ainfo.driver,
            ainfo.driver_info
        );
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP;
        let wanted = if opts.no_subgroups { wanted - wgpu::Features::SUBGROUP } else { wanted };
        let features = adapter.features() & wanted;
        let mut limits = if opts.default_limits { wgpu::Limits::default() } else { adapter.limits() };
        if let Some(cap) = opts.max_storage_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = opts.max_uniform_binding {
            limits.max_uniform_buffer_binding_size = limits.max_uniform_buffer_binding_size.min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cnn3d"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: ainfo.name.clone(), message: e.to_string() })?;
        // Errors outside our scopes are kept, never the default panic: the next wait returns
        // the first as an error (see Gpu::check_lost).
        let uncaptured = Arc::new(std::sync::Mutex::new(None::<String>));
        let keep = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
            keep.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
        }));
        // A lost device (driver reset, GPU removed, OOM kill) fails every later submit and wait
        // with this reason instead of hanging or panicking; what was saved stays as it was.
        let lost = Arc::new(std::sync::Mutex::new(None));
        let record = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            log::error!("the GPU device was lost ({reason:?}): {message}");
            *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?}: {message}"));
        });
        let r = report(0, &adapter);
        let info = GpuInfo {
            name: r.name,
            backend: r.backend,
            device_type: r.device_type,
            driver: r.driver,
            driver_info: r.driver_info,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_query_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup_sizes: features.contains(wgpu::Features::SUBGROUP).then_some(r.subgroup_sizes),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            max_uniform_buffer_binding_size: limits.max_uniform_buffer_binding_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        };
        if opts.precision == Precision::F16 && !info.shader_f16 {
            return Err(Error::InvalidOption {
                field: "--precision".into(),
                message: format!("f16 needs shader-f16 (SHADER_F16), which {:?} ({}) does not offer; run at --precision f32, or on an adapter that `cnn3d adapters` lists with f16: yes", info.name, info.backend),
            });
        }
        let mut gpu = Gpu {
            device,
            queue,
            limits,
            info,
            pipelines: Default::default(),
            tuning: opts.tune.clone(),
            tuned: Default::default(),
            lost,
            uncaptured,
            #[cfg(target_arch = "wasm32")]
            scoped_error: Default::default(),
            memory: Default::default(),
            precision: opts.precision,
        };
        if gpu.info.subgroup_sizes.is_some() {
            if let Err(why) = gpu.subgroup_layout().await {
                log::warn!("leaving the subgroup kernels out on {}: {why}", gpu.info.name);
                gpu.info.subgroup_sizes = None;
            }
        }
        Ok(gpu)
    }

    /// Checks what the subgroup kernels take for granted (see shaders/subgroup_layout.wgsl): in
    /// one-dimensional workgroups of every size they run in (8 to 64 invocations), subgroups are
    /// runs of consecutive invocations from a multiple of their size, whose size is a power of two
    /// within the range the adapter reports.
    async fn subgroup_layout(&self) -> Result<()> {
        let (min, max) = self.info.subgroup_sizes.expect("a device with subgroups");
        // Four workgroups of each size, all in one submit.
        let sizes = [64u32, 32, 16, 8];
        let outs = sizes.iter().map(|&wg| self.zeros("subgroup layout", 8 * wg as usize, super::DType::U32)).collect::<Result<Vec<_>>>()?;
        let ops: Vec<super::Op> = sizes
            .iter()
            .zip(&outs)
            .map(|(&wg, out)| {
                super::Op::groups("subgroup_layout.probe", super::Shader::SubgroupLayout, "probe", &[4 * wg, 0, 0, 0], &[out], 4)
                    .with_constant("WG", wg)
            })
            .collect();
        self.submit(&self.compile(&ops)?)?;
        for (&wg, out) in sizes.iter().zip(&outs) {
            if let Some(message) = layout_error(&self.read_u32_async(out).await?, wg, min, max) {
                return Err(Error::Gpu { context: "checking the subgroup layout".into(), message });
            }
        }
        Ok(())
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// What this device's kernels store activations and their gradients in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The buffer type of activations and their gradients (see [`Gpu::precision`]).
    pub fn activations(&self) -> super::DType {
        match self.precision {
            Precision::F32 => super::DType::F32,
            Precision::F16 => super::DType::F16,
        }
    }

    /// `v` as this device stores an activation and reads it back: rounded to f16 at
    /// `--precision f16` (to nearest, as the kernels' act(..) and [`Gpu::write_f32`] round),
    /// unchanged at f32. What a reference computes from when it judges a kernel's f16 run.
    pub fn round_act(&self, v: &[f32]) -> Vec<f32> {
        match self.precision {
            Precision::F32 => v.to_vec(),
            Precision::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        }
    }

    /// The largest subgroup the device may run, where the subgroup kernels can run: the
    /// device has subgroups and none smaller than 4 lanes (they broadcast from lanes 0..3).
    pub fn subgroup_size(&self) -> Option<u32> {
        self.info.subgroup_sizes.filter(|&(min, _)| min >= 4).map(|(_, max)| max)
    }

    /// The device's smallest subgroup where the subgroup kernels can run (see
    /// [`Gpu::subgroup_size`]): kernels that broadcast from lanes 0..n need n lanes in every
    /// subgroup, whatever size the driver picks.
    pub fn min_subgroup_size(&self) -> Option<u32> {
        self.info.subgroup_sizes.filter(|&(min, _)| min >= 4).map(|(min, _)| min)
    }

    /// Runs `f` inside validation and out-of-memory error scopes; an error becomes
    /// [`Error::Gpu`] naming `context`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(&self, context: impl FnOnce() -> String, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            Some(e) => Err(Error::Gpu { context: context(), message: e.to_string() }),
            None => Ok(out),
        }
    }

    /// [`Gpu::scoped`] in a browser, where popping an error scope resolves a promise later and
    /// nothing may block: `f` runs inside the scopes, and an error they catch is kept with its
    /// context and returned by the next [`Gpu::check_lost`] (compiling a plan, submitting one
    /// and every async readback call it).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(&self, context: impl FnOnce() -> String, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let (v, o) = (validation.pop(), oom.pop());
        let context = context();
        let keep = self.scoped_error.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let (v, o) = (v.await, o.await);
            if let Some(e) = v.or(o) {
                log::error!("wgpu error ({context}): {e}");
                keep.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| (context, e.to_string()));
            }
        });
        Ok(out)
    }

    /// Blocks until the GPU has finished all submitted work.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait(&self) -> Result<()> {
        self.check_lost("waiting for the GPU")?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu { context: "waiting for the GPU".into(), message: e.to_string() })?;
        self.check_lost("waiting for the GPU")
    }

    /// An error if the device has been lost, or if a wgpu error was raised outside every
    /// error scope since the last check (each such error is reported once).
    pub(crate) fn check_lost(&self, context: &str) -> Result<()> {
        if let Some(why) = &*self.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::Gpu { context: context.into(), message: format!("the GPU device was lost ({why})") });
        }
        #[cfg(target_arch = "wasm32")]
        if let Some((scope, message)) = self.scoped_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let context = if scope.is_empty() { context.to_string() } else { scope };
            return Err(Error::Gpu { context, message });
        }
        match self.uncaptured.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(Error::Gpu { context: context.into(), message: format!("a wgpu error outside any error scope: {e}") }),
            None => Ok(()),
        }
    }

    /// Loses the device on purpose, as a driver reset would: how tests check that every later
    /// call fails with an error.
    #[doc(hidden)]
    pub fn lose_device_for_test(&self) {
        self.device.destroy();
    }
}

/// What is wrong with a subgroup layout probe's output (`got`: lane and subgroup size of each
/// invocation, in workgroups of `wg`) for the subgroup kernels, if anything: every subgroup's
/// size a power of two within `min..=max`, and every invocation lane `local index mod size`.
fn layout_error(got: &[u32], wg: u32, min: u32, max: u32) -> Option<String> {
    for (i, pair) in got.chunks_exact(2).enumerate() {
        let (lane, size) = (pair[0], pair[1]);
        let local = i as u32 % wg;
        if !size.is_power_of_two() || size < min || size > max {
            return Some(format!("a subgroup of {size} lanes (the adapter reports {min} to {max})"));
        }
        if lane != local % size {
            return Some(format!("in workgroups of {wg}, invocation {local} is lane {lane} of a subgroup of {size}, not lane {}", local % size));
        }
    }
    None
}

fn choose(mut adapters: Vec<wgpu::Adapter>, wanted: Option<&str>) -> Result<wgpu::Adapter> {
    let listing = |adapters: &[wgpu::Adapter]| {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let r = report(i, a);
                format!("  {i}: {} ({}, {})", r.name, r.backend, r.device_type)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match wanted.map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) => {
            if let Ok(i) = w.parse::<usize>() {
                if i < adapters.len() {
                    return Ok(adapters.swap_remove(i));
                }
            } else {
                let lw = w.to_lowercase();
                if let Some(i) = adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&lw)) {
                    return Ok(adapters.swap_remove(i));
                }
            }
            Err(Error::AdapterNotFound { wanted: w.to_string(), available: listing(&adapters) })
        }
        None => {
            // Stable sort: among equals, the order wgpu enumerated them in.
            adapters.sort_by_key(|a| preference(a.get_info().device_type));
            Ok(adapters.remove(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::layout_error;

    fn probe(wg: u32, lane_size: impl Fn(u32) -> (u32, u32)) -> Vec<u32> {
        (0..2 * wg).flat_map(|i| { let (l, s) = lane_size(i % wg); [l, s] }).collect()
    }

    #[test]
    fn the_subgroup_layout_check_takes_consecutive_aligned_subgroups_only() {
        assert_eq!(layout_error(&probe(64, |i| (i % 8, 8)), 64, 8, 8), None);
        // A driver that picks 16 of its 8–32 lanes: fine.
        assert_eq!(layout_error(&probe(64, |i| (i % 16, 16)), 64, 8, 32), None);
        // Lanes interleaved across subgroups (lane = i / 8 for size 8): refused.
        assert!(layout_error(&probe(64, |i| (i / 8, 8)), 64, 8, 8).unwrap().contains("not lane"));
        // A size outside the reported range, or not a power of two: refused.
        assert!(layout_error(&probe(64, |i| (i % 4, 4)), 64, 8, 8).is_some());
        assert!(layout_error(&probe(48, |i| (i % 12, 12)), 48, 4, 32).is_some());
    }
}
