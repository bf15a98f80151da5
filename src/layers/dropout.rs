//! Inverted dropout (PyTorch's `nn.Dropout` in training mode): y = x · keep / (1 − p), with the
//! mask drawn by a counter-based hash of (seed, step, element index) and recomputed by the
//! backward. Shapes: any; y has x's shape. Shader: `shaders/dropout.wgsl`.
//! In evaluation mode dropout is the identity, and a model records no dispatch for it.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Op, Shader};

use super::{expect_len, u32_of};

const LAYER: &str = "dropout";

/// Dropout probability `p` and the seed of this layer's masks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub seed: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    seed: u32,
    prob: f32,
    scale: f32,
}

impl Dropout {
    /// `p` must be finite and in [0, 1]: 0 keeps everything, 1 drops everything.
    pub fn new(p: f32, seed: u32) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::shape(LAYER, format!("p must be a probability in [0, 1], got {p}")));
        }
        Ok(Dropout { p, seed })
    }

    /// 1 / (1 − p), rounded once to f32; 0 for p = 1, where nothing is kept to scale.
    pub fn scale(&self) -> f32 {
        if self.p < 1.0 {
            (1.0 / (1.0 - self.p as f64)) as f32
        } else {
            0.0
        }
    }

    fn params(&self, n: usize) -> Result<Params> {
        Ok(Params { n: u32_of(LAYER, "element count", n)?, seed: self.seed, prob: self.p, scale: self.scale() })
    }

    /// `step` is a 1-element u32 buffer holding the step number that selects the mask; the
    /// trainer writes it before each replay.
    fn expect_step(step: &Buffer) -> Result<()> {
        expect_len(LAYER, "step", step, 1)?;
        if step.dtype() != DType::U32 {
            return Err(Error::shape(LAYER, format!("step must be a u32 buffer, got {:?}", step.dtype())));
        }
        Ok(())
    }

    /// y = x · keep / (1 − p).
    pub fn forward(&self, step: &Buffer, x: &Buffer, y: &Buffer) -> Result<Op> {
        Self::expect_step(step)?;
        expect_len(LAYER, "y", y, x.len())?;
        let p = self.params(x.len())?;
        // The mask hash is integer work; the float work is one multiply per element.
        let n = x.len() as u64;
        Ok(Op::threads("dropout.forward", Shader::Dropout, "forward", &p, &[step, x, y], x.len()).with_cost(n, 8 * n))
    }

    /// dx = dy · keep / (1 − p), with the mask of the forward of the same step.
    pub fn backward(&self, step: &Buffer, dy: &Buffer, dx: &Buffer) -> Result<Op> {
        Self::expect_step(step)?;
        expect_len(LAYER, "dx", dx, dy.len())?;
        let p = self.params(dy.len())?;
        let n = dy.len() as u64;
        Ok(Op::threads("dropout.backward", Shader::Dropout, "backward", &p, &[step, dy, dx], dy.len()).with_cost(n, 8 * n))
    }
}
