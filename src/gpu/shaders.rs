//! The shader registry (every WGSL file, compiled in with `include_str!`) and the pipeline
//! cache keyed by (shader, entry point, override constants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::Gpu;

/// One WGSL file in `shaders/`. The name is the file stem and the layer name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Activation,
    AvgPool3d,
    BatchNorm,
    ClipGradNorm,
    Conv3d,
    /// conv3d.wgsl with its tiled kernels' weights broadcast across the subgroup; only on
    /// devices with subgroups (see [`crate::gpu::Gpu::subgroup_size`]).
    Conv3dSubgroups,
    Dense,
    Dropout,
    Gather,
    MaxPool3d,
    Optim,
    SoftmaxXent,
}

impl Shader {
    pub const ALL: &'static [Shader] = &[
        Shader::Activation,
        Shader::AvgPool3d,
        Shader::BatchNorm,
        Shader::ClipGradNorm,
        Shader::Conv3d,
        Shader::Conv3dSubgroups,
        Shader::Dense,
        Shader::Dropout,
        Shader::Gather,
        Shader::MaxPool3d,
        Shader::Optim,
        Shader::SoftmaxXent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::AvgPool3d => "avg_pool3d",
            Shader::BatchNorm => "batch_norm",
            Shader::ClipGradNorm => "clip_grad_norm",
            Shader::Conv3d => "conv3d",
            Shader::Conv3dSubgroups => "conv3d_subgroups",
            Shader::Dense => "dense",
            Shader::Dropout => "dropout",
            Shader::Gather => "gather",
            Shader::MaxPool3d => "max_pool3d",
            Shader::Optim => "optim",
            Shader::SoftmaxXent => "softmax_xent",
        }
    }

    /// Whether the shader needs subgroup operations (the device's `Features::SUBGROUP`).
    pub fn needs_subgroups(self) -> bool {
        self == Shader::Conv3dSubgroups
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Activation => include_str!("../../shaders/activation.wgsl"),
            Shader::AvgPool3d => include_str!("../../shaders/avg_pool3d.wgsl"),
            Shader::BatchNorm => include_str!("../../shaders/batch_norm.wgsl"),
            Shader::ClipGradNorm => include_str!("../../shaders/clip_grad_norm.wgsl"),
            Shader::Conv3d => include_str!("../../shaders/conv3d.wgsl"),
            Shader::Conv3dSubgroups => conv3d_subgroups(),
            Shader::Dense => include_str!("../../shaders/dense.wgsl"),
            Shader::Dropout => include_str!("../../shaders/dropout.wgsl"),
            Shader::Gather => include_str!("../../shaders/gather.wgsl"),
            Shader::MaxPool3d => include_str!("../../shaders/max_pool3d.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::SoftmaxXent => include_str!("../../shaders/softmax_xent.wgsl"),
        }
    }
}

/// conv3d.wgsl with its `block_column` and `block_column2` (defined one after the other)
/// replaced by conv3d_subgroups.wgsl's, which also adds the subgroup kernels' entry points.
fn conv3d_subgroups() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let base = include_str!("../../shaders/conv3d.wgsl");
        let start = base.find("\nfn block_column(").expect("conv3d.wgsl defines block_column") + 1;
        let second = base.find("\nfn block_column2(").expect("conv3d.wgsl defines block_column2") + 1;
        let end = second + base[second..].find("\n}\n").expect("block_column2 ends") + 3;
        format!("{}{}\n{}", &base[..start], &base[end..], include_str!("../../shaders/conv3d_subgroups.wgsl"))
    })
}

/// Override constants as (name, value) pairs, kept sorted so equal sets hash equally.
pub type Constants = Vec<(&'static str, u32)>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    constants: Constants,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl Gpu {
    fn module(&self, shader: Shader) -> Result<Arc<wgpu::ShaderModule>> {
        let mut modules = self.pipelines.modules.lock().unwrap();
        if let Some(m) = modules.get(&shader) {
            return Ok(m.clone());
        }
        let m = self.scoped(
            || format!("compiling shaders/{}.wgsl", shader.name()),
            || {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
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
            return Ok(p.clone());
        }
        let module = self.module(shader)?;
        let consts: Vec<(&str, f64)> = key.constants.iter().map(|&(k, v)| (k, v as f64)).collect();
        let label = format!("{}.{}", shader.name(), entry);
        let t0 = std::time::Instant::now();
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
                        ..Default::default()
                    },
                    cache: None,
                })
            },
        )?;
        let pipeline = Arc::new(pipeline);
        log::debug!("compiled {label} in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        self.pipelines.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
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
