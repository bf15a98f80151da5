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

    fn params(self, n: usize) -> Result<Params> {
        let (kind, slope) = match self {
            Activation::Relu => (0, 0.0),
            Activation::LeakyRelu(s) => (1, s),
            Activation::Sigmoid => (2, 0.0),
            Activation::Tanh => (3, 0.0),
        };
        Ok(Params { n: u32_of(self.name(), "element count", n)?, kind, slope, _pad: 0 })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    kind: u32,
    slope: f32,
    _pad: u32,
}

/// y = f(x).
pub fn forward(act: Activation, x: &Buffer, y: &Buffer) -> Result<Op> {
    expect_len(act.name(), "y", y, x.len())?;
    let p = act.params(x.len())?;
    let n = x.len() as u64;
    Ok(Op::threads(format!("{}.forward", act.name()), Shader::Activation, "forward", &p, &[x, y], x.len())
        .with_cost(n * act.flops_per_element(), 2 * 4 * n))
}

/// dx = dy · f'(x); relu/leaky_relu read x, sigmoid/tanh read y = f(x).
pub fn backward(act: Activation, x: &Buffer, y: &Buffer, dy: &Buffer, dx: &Buffer) -> Result<Op> {
    for (what, b) in [("y", y), ("dy", dy), ("dx", dx)] {
        expect_len(act.name(), what, b, x.len())?;
    }
    let p = act.params(x.len())?;
    // Reads one of x or y, and dy; writes dx.
    let n = x.len() as u64;
    Ok(Op::threads(format!("{}.backward", act.name()), Shader::Activation, "backward", &p, &[x, y, dy, dx], x.len())
        .with_cost(2 * n, 3 * 4 * n))
}
