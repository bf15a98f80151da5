//! The shader registry (every WGSL file, compiled in with `include_str!`) and the pipeline
//! cache keyed by (shader, entry point, override constants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::{Gpu, Precision};

/// The line by which a file that binds activations declares their element type (f32 as
/// written; see [`Shader::source_at`]).
pub const ACT_F32: &str = "alias act = f32;";

/// One WGSL file in `shaders/`. The name is the file stem and the layer name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Activation,
    AvgPool3d,
    BatchNorm,
    ClipGradNorm,
    /// conv3d's geometry (`shaders/conv3d/geometry.wgsl`): declarations that conv3d's kernel
    /// families are composed onto, no entry points.
    Conv3dGeometry,
    /// conv3d's direct kernels (`shaders/conv3d/direct.wgsl`).
    Conv3dDirect,
    /// conv3d's tiled kernels of forward and backward_input (`shaders/conv3d/tiled.wgsl`).
    Conv3dTiled,
    /// conv3d's weight-gradient kernels (`shaders/conv3d/weight.wgsl`).
    Conv3dWeight,
    /// conv3d's implicit-GEMM kernels of all three passes (`shaders/conv3d/gemm.wgsl`).
    Conv3dGemm,
    /// conv3d's tiled and weight kernels with their block columns broadcast across the
    /// subgroup (`shaders/conv3d/subgroups.wgsl`); only on devices with subgroups (see
    /// [`crate::gpu::Gpu::subgroup_size`]).
    Conv3dSubgroups,
    Dense,
    Dropout,
    Gather,
    MaxPool3d,
    Optim,
    SoftmaxXent,
    /// The subgroup layout probe run when a device with subgroups opens.
    SubgroupLayout,
}

impl Shader {
    pub const ALL: &'static [Shader] = &[
        Shader::Activation,
        Shader::AvgPool3d,
        Shader::BatchNorm,
        Shader::ClipGradNorm,
        Shader::Conv3dGeometry,
        Shader::Conv3dDirect,
        Shader::Conv3dTiled,
        Shader::Conv3dWeight,
        Shader::Conv3dGemm,
        Shader::Conv3dSubgroups,
        Shader::Dense,
        Shader::Dropout,
        Shader::Gather,
        Shader::MaxPool3d,
        Shader::Optim,
        Shader::SoftmaxXent,
        Shader::SubgroupLayout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::AvgPool3d => "avg_pool3d",
            Shader::BatchNorm => "batch_norm",
            Shader::ClipGradNorm => "clip_grad_norm",
            Shader::Conv3dGeometry => "conv3d/geometry",
            Shader::Conv3dDirect => "conv3d/direct",
            Shader::Conv3dTiled => "conv3d/tiled",
            Shader::Conv3dWeight => "conv3d/weight",
            Shader::Conv3dGemm => "conv3d/gemm",
            Shader::Conv3dSubgroups => "conv3d/subgroups",
            Shader::Dense => "dense",
            Shader::Dropout => "dropout",
            Shader::Gather => "gather",
            Shader::MaxPool3d => "max_pool3d",
            Shader::Optim => "optim",
            Shader::SoftmaxXent => "softmax_xent",
            Shader::SubgroupLayout => "subgroup_layout",
        }
    }

    /// Whether the shader needs subgroup operations (the device's `Features::SUBGROUP`).
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Shader::Conv3dSubgroups | Shader::SubgroupLayout)
    }

    /// The file `shaders/<name>.wgsl` as it is: valid WGSL on its own.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Activation => include_str!("../../shaders/activation.wgsl"),
            Shader::AvgPool3d => include_str!("../../shaders/avg_pool3d.wgsl"),
            Shader::BatchNorm => include_str!("../../shaders/batch_norm.wgsl"),
            Shader::ClipGradNorm => include_str!("../../shaders/clip_grad_norm.wgsl"),
            Shader::Conv3dGeometry => include_str!("../../shaders/conv3d/geometry.wgsl"),
            Shader::Conv3dDirect => include_str!("../../shaders/conv3d/direct.wgsl"),
            Shader::Conv3dTiled => include_str!("../../shaders/conv3d/tiled.wgsl"),
            Shader::Conv3dWeight => include_str!("../../shaders/conv3d/weight.wgsl"),
            Shader::Conv3dGemm => include_str!("../../shaders/conv3d/gemm.wgsl"),
            Shader::Conv3dSubgroups => include_str!("../../shaders/conv3d/subgroups.wgsl"),
            Shader::Dense => include_str!("../../shaders/dense.wgsl"),
            Shader::Dropout => include_str!("../../shaders/dropout.wgsl"),
            Shader::Gather => include_str!("../../shaders/gather.wgsl"),
            Shader::MaxPool3d => include_str!("../../shaders/max_pool3d.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::SoftmaxXent => include_str!("../../shaders/softmax_xent.wgsl"),
            Shader::SubgroupLayout => include_str!("../../shaders/subgroup_layout.wgsl"),
        }
    }

    /// The file this one is composed onto (see [`compose`]), if any.
    pub fn base(self) -> Option<Shader> {
        match self {
            Shader::Conv3dDirect | Shader::Conv3dTiled | Shader::Conv3dGemm => Some(Shader::Conv3dGeometry),
            Shader::Conv3dWeight => Some(Shader::Conv3dTiled),
            Shader::Conv3dSubgroups => Some(Shader::Conv3dWeight),
            _ => None,
        }
    }

    /// Whether the file has entry points: all but conv3d's geometry, which only declares what
    /// the conv3d families share.
    pub fn has_entry_points(self) -> bool {
        self != Shader::Conv3dGeometry
    }

    /// The WGSL that runs: the file, or its composition onto its base's (itself composed).
    pub fn source(self) -> &'static str {
        static COMPOSED: [std::sync::OnceLock<String>; Shader::ALL.len()] = [const { std::sync::OnceLock::new() }; Shader::ALL.len()];
        let Some(base) = self.base() else { return self.file() };
        let i = Shader::ALL.iter().position(|&s| s == self).expect("every shader is in Shader::ALL");
        COMPOSED[i].get_or_init(|| compose(base.source(), self.file()))
    }

    /// The WGSL that runs at `precision`: [`Shader::source`] as it is at f32; at f16 with f16
    /// enabled and the activations' type, `act` (see [`ACT_F32`]), made f16. The kernels read
    /// activations into f32 (`f32(x[i])`) and store them with `act(..)`, so nothing else
    /// changes.
    pub fn source_at(self, precision: Precision) -> &'static str {
        static F16: [std::sync::OnceLock<String>; Shader::ALL.len()] = [const { std::sync::OnceLock::new() }; Shader::ALL.len()];
        match precision {
            Precision::F32 => self.source(),
            Precision::F16 => {
                let i = Shader::ALL.iter().position(|&s| s == self).expect("every shader is in Shader::ALL");
                F16[i].get_or_init(|| format!("enable f16;\n{}", self.source().replacen(ACT_F32, "alias act = f16;", 1)))
            }
        }
    }
}

/// The line that opens a variant file's stubs, and the one that closes them.
pub const STUBS_BEGIN: &str = "// stubs: begin";
pub const STUBS_END: &str = "// stubs: end";

/// A variant file split into its stubs (the lines between [`STUBS_BEGIN`] and [`STUBS_END`],
/// which repeat declarations of its base so that the file validates on its own) and the rest.
pub fn split_stubs(variant: &str) -> (String, String) {
    let (mut stubs, mut rest) = (String::new(), String::with_capacity(variant.len()));
    let mut in_stubs = false;
    for line in variant.split_inclusive('\n') {
        if line.starts_with(STUBS_BEGIN) {
            in_stubs = true;
        } else if line.starts_with(STUBS_END) {
            in_stubs = false;
        } else if in_stubs {
            stubs.push_str(line);
        } else {
            rest.push_str(line);
        }
    }
    (stubs, rest)
}

/// The name of the function a line defines (`fn name(` at the start of the line).
fn defines(line: &str) -> Option<&str> {
    line.strip_prefix("fn ").and_then(|l| l.split('(').next()).map(str::trim)
}

/// Composes a variant file onto its base: the base without its entry points (each from its
/// `@compute` line to the next line that is `}`) and without the functions that the variant
/// defines again (each from its `fn name(` line to the next line that is `}`), followed by the
/// variant without its stubs. The composed shader has the variant's entry points only: the
/// base's would call the variant's functions where nothing makes them valid (a broadcast
/// outside uniform control flow, say). Both inputs are valid WGSL on their own, and so is the
/// result (tests/shaders.rs checks all three).
pub fn compose(base: &str, variant: &str) -> String {
    let (_, own) = split_stubs(variant);
    let redefined: Vec<&str> = own.lines().filter_map(defines).collect();
    let mut out = String::with_capacity(base.len() + own.len());
    let mut skipping = false;
    for line in base.split_inclusive('\n') {
        if skipping {
            skipping = line.trim_end() != "}";
        } else if line.starts_with("@compute") {
            skipping = true;
        } else if defines(line).is_some_and(|n| redefined.contains(&n)) {
            // A one-line function ends on its own line.
            skipping = !line.trim_end().ends_with('}');
        } else {
            out.push_str(line);
        }
    }
    out.push('\n');
    out.push_str(&own);
    out
}

/// Override constants as (name, value) pairs, kept sorted so equal sets hash equally.
pub type Constants = Vec<(&'static str, u32)>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    constants: Constants,
}

/// Pipelines that no plan holds kept for reuse, at most: the rest are released, least
/// recently used first. A pipeline that a plan holds stays cached while the plan lives, so a
/// training run never recompiles; `check` and the tuner, which compile a few pipelines per
/// geometry and kernel and then drop them, stay flat in memory (a compiled pipeline holds the
/// driver's machine code: ~1–20 MB on a CPU driver).
pub const IDLE_PIPELINES: usize = 32;

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<Pipelines>,
    compiled: std::sync::atomic::AtomicU64,
    /// Every pipeline created, also those released since (see [`Gpu::pipelines_used`]).
    used: Mutex<std::collections::HashSet<PipelineKey>>,
}

/// A compute pipeline this device created: `shaders/<shader>.wgsl`'s `entry` with its override
/// constants, e.g. for compiling the same pipelines under another compiler
/// (tools/tint/validate.mjs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct PipelineUse {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: std::collections::BTreeMap<&'static str, u32>,
}

/// The cached pipelines with the tick of their last use.
#[derive(Default)]
struct Pipelines {
    map: HashMap<PipelineKey, (Arc<wgpu::ComputePipeline>, u64)>,
    tick: u64,
}

impl Pipelines {
    fn get(&mut self, key: &PipelineKey) -> Option<Arc<wgpu::ComputePipeline>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(p, used)| {
            *used = tick;
            p.clone()
        })
    }

    /// Caches `pipeline`, then releases the least recently used idle pipelines (held by no
    /// one but the cache) beyond [`IDLE_PIPELINES`].
    fn insert(&mut self, key: PipelineKey, pipeline: Arc<wgpu::ComputePipeline>) {
        self.tick += 1;
        self.map.insert(key, (pipeline, self.tick));
        let mut idle: Vec<(u64, PipelineKey)> =
            self.map.iter().filter(|(_, (p, _))| Arc::strong_count(p) == 1).map(|(k, (_, used))| (*used, k.clone())).collect();
        if idle.len() > IDLE_PIPELINES {
            idle.sort_by_key(|(used, _)| *used);
            for (_, k) in &idle[..idle.len() - IDLE_PIPELINES] {
                self.map.remove(k);
            }
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

impl Gpu {
    fn module(&self, shader: Shader) -> Result<Arc<wgpu::ShaderModule>> {
        let mut modules = self.pipelines.modules.lock().unwrap();
        if let Some(m) = modules.get(&shader) {
            return Ok(m.clone());
        }
        let m = self.scoped(
            || format!("compiling shaders/{}.wgsl ({})", shader.name(), self.precision),
            || {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source_at(self.precision).into()),
                })
            },
        )?;
        let m = Arc::new(m);
        modules.insert(shader, m.clone());
        Ok(m)
    }

    /// The compute pipeline for `entry` in `shader` with `constants`, created once and cached.
    /// Its bind group layout is derived from the entry point's own bindings.
    pub(crate) fn pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
        constants: &Constants,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut constants = constants.clone();
        constants.sort();
        let key = PipelineKey { shader, entry, constants };
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok(p);
        }
        let module = self.module(shader)?;
        let consts: Vec<(&str, f64)> = key.constants.iter().map(|&(k, v)| (k, v as f64)).collect();
        let label = format!("{}.{}", shader.name(), entry);
        let t0 = crate::Instant::now();
        let pipeline = self.scoped(
            || format!("creating the pipeline {label}"),
            || {
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &consts,
                        // naga's GLSL output zero-fills each workgroup array with one array
                        // constructor, which llvmpipe's GL driver took 10–30 s to compile per
                        // kernel (the whole conv3d check: 15+ min instead of 39 s). Every
                        // kernel here writes each workgroup element before any invocation
                        // reads it, so the fill is only needed where it is cheap to keep.
                        zero_initialize_workgroup_memory: self.info.backend != "gl",
                    },
                    cache: None,
                })
            },
        )?;
        let pipeline = Arc::new(pipeline);
        log::debug!("compiled {label} in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        self.pipelines.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pipelines.used.lock().unwrap().insert(key.clone());
        self.pipelines.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Every compute pipeline this device has created, sorted (each once, however often it
    /// was recreated after release).
    pub fn pipelines_used(&self) -> Vec<PipelineUse> {
        let used = self.pipelines.used.lock().unwrap();
        let mut out: Vec<PipelineUse> = used
            .iter()
            .map(|k| PipelineUse { shader: k.shader.name(), entry: k.entry, constants: k.constants.iter().copied().collect() })
            .collect();
        out.sort();
        out
    }

    /// How many compute pipelines this device has created (cache misses).
    pub fn compiled_pipelines(&self) -> u64 {
        self.pipelines.compiled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many compute pipelines the cache holds now (those of live plans and at most
    /// [`IDLE_PIPELINES`] others).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.pipelines.lock().unwrap().len()
    }
}

/// Looks a shader up by file stem (`"conv3d"`).
pub fn shader_by_name(name: &str) -> Result<Shader> {
    Shader::ALL
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .ok_or_else(|| Error::UnknownKernel(name.to_string()))
}
