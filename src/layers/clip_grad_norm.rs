//! Gradient clipping by the total 2-norm, as `torch.nn.utils.clip_grad_norm_` (norm_type 2):
//! over the ONE flat gradient buffer, norm = √Σ g², and every gradient is multiplied by
//! min(1, max_norm / (norm + 1e-6)). Runs on the GPU inside the training step, between the
//! backward and the update. Shader: `shaders/clip_grad_norm.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, Op, Shader};

use super::{expect_len, u32_of};

const LAYER: &str = "clip_grad_norm";
/// Threads per reduction workgroup, as the shader's `@workgroup_size(256)`.
const REDUCE_WG: usize = 256;
/// At most this many partial sums: the `finish` workgroup reduces them in one pass.
const MAX_GROUPS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    groups: u32,
    max_norm: f32,
    _pad: u32,
}

/// Clipping of `n` gradients to `max_norm`, with its two small work buffers.
pub struct ClipGradNorm {
    pub max_norm: f32,
    n: usize,
    partials: Buffer,
    coef: Buffer,
}

impl ClipGradNorm {
    /// `max_norm` must be finite and > 0 (torch accepts 0, which only zeroes every gradient).
    pub fn validate(max_norm: f32) -> Result<()> {
        if max_norm.is_finite() && max_norm > 0.0 {
            return Ok(());
        }
        Err(Error::InvalidOption { field: "--clip-grad-norm".into(), message: format!("must be a finite number > 0, got {max_norm}") })
    }

    pub fn new(gpu: &Gpu, n: usize, max_norm: f32) -> Result<ClipGradNorm> {
        Self::validate(max_norm)?;
        let partials = gpu.zeros("clip_grad_norm partials", Self::groups(n), DType::F32)?;
        let coef = gpu.zeros("clip_grad_norm coef", 2, DType::F32)?;
        Ok(ClipGradNorm { max_norm, n, partials, coef })
    }

    /// Workgroups of the first pass: one per 256 gradients, at most `MAX_GROUPS`.
    pub fn groups(n: usize) -> usize {
        n.div_ceil(REDUCE_WG).clamp(1, MAX_GROUPS)
    }

    /// [coef, norm] of the last replayed step.
    pub fn coef(&self) -> &Buffer {
        &self.coef
    }

    /// partial sums of squares → norm and coef → g ← g · coef.
    pub fn ops(&self, grads: &Buffer) -> Result<Vec<Op>> {
        expect_len(LAYER, "grads", grads, self.n)?;
        if grads.dtype() != DType::F32 {
            return Err(Error::shape(LAYER, format!("grads must be an f32 buffer, got {:?}", grads.dtype())));
        }
        let groups = Self::groups(self.n);
        let p = Params { n: u32_of(LAYER, "gradient count", self.n)?, groups: groups as u32, max_norm: self.max_norm, _pad: 0 };
        let n = self.n as u64;
        Ok(vec![
            Op::groups("clip_grad_norm.partial", Shader::ClipGradNorm, "partial", &p, &[grads, &self.partials], groups)
                .with_cost(2 * n, 4 * n),
            Op::groups("clip_grad_norm.finish", Shader::ClipGradNorm, "finish", &p, &[&self.partials, &self.coef], 1)
                .with_cost(groups as u64 + 3, 4 * groups as u64 + 8),
            Op::threads("clip_grad_norm.scale", Shader::ClipGradNorm, "scale", &p, &[&self.coef, grads], self.n)
                .with_cost(n, 8 * n),
        ])
    }
}
