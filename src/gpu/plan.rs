//! Dispatches described without wgpu types ([`Op`]), compiled once into a [`Plan`] of
//! (pipeline, bind group, workgroup grid) steps, and replayed with one submit.


use crate::error::{Error, Result};

use super::shaders::{Constants, Shader};
use super::{Buffer, Gpu};

/// Threads per workgroup of the element-wise kernels (their `override WG`).
pub const WG: u32 = 64;

/// One compute dispatch. Binding 0 is the uniform `params`; bindings 1.. are `buffers`, in
/// order, exactly the storage bindings that the entry point uses.
#[derive(Clone, Debug)]
pub struct Op {
    /// What profiles and errors call it, e.g. `conv_layer1.0/conv3d.forward`.
    pub label: String,
    pub shader: Shader,
    pub entry: &'static str,
    pub constants: Constants,
    pub params: Vec<u8>,
    pub buffers: Vec<Buffer>,
    /// Workgroups to launch, counted linearly; the plan lays them out on a 2D grid when there
    /// are more than the adapter allows per dimension, and shaders index them as
    /// `wid.y * nwg.x + wid.x`, returning when past the end.
    pub groups: u64,
    /// Analytic floating-point operations of the dispatch (0: not known), for GFLOP/s.
    pub flops: u64,
    /// Analytic bytes it reads and writes in storage buffers (0: not known), for GB/s.
    pub bytes: u64,
}

impl Op {
    /// One invocation per item over `n` items, with `WG` threads per workgroup.
    pub fn threads<P: bytemuck::Pod>(
        label: impl Into<String>,
        shader: Shader,
        entry: &'static str,
        params: &P,
        buffers: &[&Buffer],
        n: usize,
    ) -> Op {
        Op::groups(label, shader, entry, params, buffers, n.div_ceil(WG as usize)).with_constant("WG", WG)
    }

    /// [`Op::threads`] in workgroups of `WG` threads, or of fewer where `WG` would leave fewer
    /// than 8 workgroups: a CPU adapter runs each workgroup on one core, so a dispatch of one
    /// workgroup leaves the others idle (lavapipe, 2 cores: the article's fc1 forward, 25
    /// invocations, 1.8–4.9× faster in workgroups of 8; conv1's weight gradient on the rows
    /// kernel, 48 invocations, 2.0–2.6×).
    /// Never below `min` (at least the subgroup size for kernels that need whole subgroups).
    #[allow(clippy::too_many_arguments)]
    pub fn threads_spread<P: bytemuck::Pod>(
        label: impl Into<String>,
        shader: Shader,
        entry: &'static str,
        params: &P,
        buffers: &[&Buffer],
        n: usize,
        min: u32,
    ) -> Op {
        let mut wg = WG;
        while wg / 2 >= min.max(1) && (n as u64).div_ceil(wg as u64) < 8 {
            wg /= 2;
        }
        Op::groups(label, shader, entry, params, buffers, n.div_ceil(wg as usize)).with_constant("WG", wg)
    }

    /// `groups` workgroups of the entry point's own fixed size (e.g. one per channel for
    /// a reduction).
    pub fn groups<P: bytemuck::Pod>(
        label: impl Into<String>,
        shader: Shader,
        entry: &'static str,
        params: &P,
        buffers: &[&Buffer],
        groups: usize,
    ) -> Op {
        Op {
            label: label.into(),
            shader,
            entry,
            constants: vec![],
            params: bytemuck::bytes_of(params).to_vec(),
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
            groups: groups as u64,
            flops: 0,
            bytes: 0,
        }
    }

    /// Its analytic cost: floating-point operations and bytes of storage traffic (counting
    /// each tensor element read or written once, as a roofline model would).
    pub fn with_cost(mut self, flops: u64, bytes: u64) -> Op {
        self.flops = flops;
        self.bytes = bytes;
        self
    }

    /// Sets a WGSL `override` constant of the pipeline (booleans as 0 or 1).
    pub fn with_constant(mut self, name: &'static str, value: u32) -> Op {
        self.constants.retain(|&(k, _)| k != name);
        self.constants.push((name, value));
        self
    }

    /// Prefixes the label with a layer name: `fc1` + `conv3d.forward` → `fc1/conv3d.forward`.
    pub fn named(mut self, layer: &str) -> Op {
        if !layer.is_empty() {
            self.label = format!("{layer}/{}", self.label);
        }
        self
    }
}

pub(crate) struct Step {
    pub(crate) label: String,
    /// The kernel: shader file and entry point (for errors).
    pub(crate) kernel: String,
    pub(crate) pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) grid: (u32, u32),
    // Read by the profiler, which is native only for now.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) flops: u64,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) bytes: u64,
    // Kept alive for as long as the bind group refers to it.
    _params: wgpu::Buffer,
}

/// A compiled sequence of dispatches; replay it with [`Gpu::run`].
pub struct Plan {
    pub(crate) steps: Vec<Step>,
    /// The profiler's query set and buffers, sized to this plan on its first profiled replay
    /// and reused by every later one.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) timestamps: std::sync::OnceLock<super::profiler::Timestamps>,
}

impl Plan {
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.label.as_str())
    }
    /// The labels of the steps that launch work (an empty grid records no dispatch), in
    /// order: what a profile of this plan lists.
    pub fn dispatch_labels(&self) -> impl Iterator<Item = &str> {
        self.active().map(|s| s.label.as_str())
    }
    pub(crate) fn active(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.grid.0 > 0)
    }
}

/// Lays `groups` workgroups out as (x, y) with x ≤ `per_dim`.
pub fn grid_2d(groups: u64, per_dim: u32) -> Option<(u32, u32)> {
    if groups == 0 {
        return Some((0, 0));
    }
    let x = groups.min(per_dim as u64);
    let y = groups.div_ceil(x);
    (y <= per_dim as u64).then_some((x as u32, y as u32))
}

impl Gpu {
    /// Builds pipelines, uniform buffers and bind groups for `ops`, once.
    pub fn compile(&self, ops: &[Op]) -> Result<Plan> {
        self.check_lost("compiling a plan")?;
        let per_dim = self.limits.max_compute_workgroups_per_dimension;
        let mut steps = Vec::with_capacity(ops.len());
        for op in ops {
            let pipeline = self.pipeline(op.shader, op.entry, &op.constants)?;
            let grid = grid_2d(op.groups, per_dim)
                .ok_or_else(|| Error::GridTooLarge { label: op.label.clone(), groups: op.groups, per_dim })?;
            let mut params = op.params.clone();
            params.resize(params.len().div_ceil(16).max(1) * 16, 0);
            let (uniform, bind_group) = self.scoped(
                || format!("binding the buffers of {} ({:?})", op.label, op.buffers),
                || {
                    // Written through the queue, not mapped at creation: wgpu panics when
                    // mapping fails, as it does on a lost device.
                    let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&op.label),
                        size: params.len() as u64,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    self.queue.write_buffer(&uniform, 0, &params);
                    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
                    for (i, b) in op.buffers.iter().enumerate() {
                        entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() });
                    }
                    let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(&op.label),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    (uniform, bind_group)
                },
            )?;
            steps.push(Step {
                label: op.label.clone(),
                kernel: format!("shaders/{}.wgsl {}", op.shader.name(), op.entry),
                pipeline,
                bind_group,
                grid,
                flops: op.flops,
                bytes: op.bytes,
                _params: uniform,
            });
        }
        Ok(Plan { steps, timestamps: Default::default() })
    }

    /// Records every step of `plan` into one compute pass, submits once and waits (not in a
    /// browser: there, [`Gpu::submit`] and an async readback).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, plan: &Plan) -> Result<()> {
        self.submit(plan)?;
        self.wait()
    }

    /// Records every step of `plan` into one compute pass and submits it without waiting:
    /// the next step's writes and submit queue up behind it. Reading a buffer back waits.
    pub fn submit(&self, plan: &Plan) -> Result<()> {
        let n = plan.active().count();
        self.submit_encoded(plan, 0..n, None)
    }

    /// Compiles and runs `ops` once (tests and `check`). In a browser it submits without
    /// waiting: a later readback waits for it.
    pub fn run_ops(&self, ops: &[Op]) -> Result<()> {
        let plan = self.compile(ops)?;
        #[cfg(not(target_arch = "wasm32"))]
        return self.run(&plan);
        #[cfg(target_arch = "wasm32")]
        return self.submit(&plan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workgroup size threads_spread picks for `n` invocations (no buffers needed).
    fn wg(n: usize, min: u32) -> (u32, u64) {
        let op = Op::threads_spread("t", Shader::Conv3dTiled, "zero", &[0u32; 4], &[], n, min);
        let wg = op.constants.iter().find(|(k, _)| *k == "WG").expect("WG").1;
        (wg, op.groups)
    }

    #[test]
    fn few_invocations_spread_over_smaller_workgroups() {
        // Enough for 8 workgroups of 64: unchanged.
        assert_eq!(wg(864, 8), (64, 14));
        assert_eq!(wg(512, 8), (64, 8));
        // Fewer: halved until there are 8 workgroups, or down to the minimum.
        assert_eq!(wg(300, 8), (32, 10));
        assert_eq!(wg(25, 8), (8, 4));
        assert_eq!(wg(48, 8), (8, 6));
        // Never below the minimum (a subgroup kernel's subgroup size), nor above WG.
        assert_eq!(wg(25, 32), (32, 1));
        assert_eq!(wg(25, 128), (64, 1));
        assert_eq!(wg(1, 1), (1, 1));
    }
}
