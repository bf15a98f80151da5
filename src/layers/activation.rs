//! Element-wise activations (relu, leaky_relu, sigmoid, tanh): forward and backward.
//! Shapes: any; y has x's shape. Shader: `shaders/activation.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Buffer, Op, Shader};

use super::{expect_len, u32_of};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// Negative slope, PyTorch's default 0.01.
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
}

impl Activation {
    /// The layer name used in kernel labels and configs.
    /// Floating-point operations per element of the forward (exp counted as one).
    fn flops_per_element(self) -> u64 {
        match self {
            Activation::Relu => 1,
            Activation::LeakyRelu(_) => 2,
            Activation::Sigmoid | Activation::Tanh => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// The shader's `KIND` constant and its slope parameter.
    fn kind(self) -> (u32, f32) {
        match self {
            Activation::Relu => (0, 0.0),
            Activation::LeakyRelu(s) => (1, s),
            Activation::Sigmoid => (2, 0.0),
            Activation::Tanh => (3, 0.0),
        }
    }

    /// The dispatch of `entry` (or its vec4 form, when `n` is a multiple of 4) over `n`
    /// elements.
    fn op(self, pass: &str, entry: &'static str, entry4: &'static str, buffers: &[&Buffer], n: usize) -> Result<Op> {
        let (kind, slope) = self.kind();
        u32_of(self.name(), "element count", n)?;
        let (entry, count) = if n.is_multiple_of(4) { (entry4, n / 4) } else { (entry, n) };
        let p = Params { n: count as u32, slope, _pad0: 0, _pad1: 0 };
        Ok(Op::threads(format!("{}.{pass}", self.name()), Shader::Activation, entry, &p, buffers, count).with_constant("KIND", kind))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    slope: f32,
    _pad0: u32,
    _pad1: u32,
}

/// y = f(x).
pub fn forward(act: Activation, x: &Buffer, y: &Buffer) -> Result<Op> {
    expect_len(act.name(), "y", y, x.len())?;
    let n = x.len() as u64;
    Ok(act.op("forward", "forward", "forward4", &[x, y], x.len())?.with_cost(n * act.flops_per_element(), 2 * 4 * n))
}

/// dx = dy · f'(x); relu/leaky_relu read x, sigmoid/tanh read y = f(x).
pub fn backward(act: Activation, x: &Buffer, y: &Buffer, dy: &Buffer, dx: &Buffer) -> Result<Op> {
    for (what, b) in [("y", y), ("dy", dy), ("dx", dx)] {
        expect_len(act.name(), what, b, x.len())?;
    }
    // Reads one of x or y, and dy; writes dx.
    let n = x.len() as u64;
    Ok(act.op("backward", "backward", "backward4", &[x, y, dy, dx], x.len())?.with_cost(2 * n, 3 * 4 * n))
}
