//! conv3d's direct kernels (shaders/conv3d/direct.wgsl): forward and backward_input from
//! storage buffers alone, for every geometry (the only kernels for kernels of more taps than a
//! uniform block holds), and backward_bias, which every choice runs. They need no more of a
//! device than every WebGPU device has ([`super::BASE_NEEDS`]).

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Needs, Op, Shader};
use crate::layers::{expect_len, Dims3};

use super::{Conv3d, BASE_NEEDS, LAYER};

/// Output channels per forward invocation; must equal `CO_TILE` in shaders/conv3d/direct.wgsl.
pub const CO_TILE: usize = 4;

/// Input channels per backward_input invocation; must equal `CI_TILE` in shaders/conv3d/direct.wgsl.
pub const CI_TILE: usize = 4;

/// What the direct kernels need of a device: no more than every WebGPU device has.
pub(super) fn needs() -> Needs {
    BASE_NEEDS
}

impl Conv3d {
    /// One invocation per output position and block of [`CO_TILE`] output channels.
    pub(super) fn forward_direct(&self, out: Dims3, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer) -> Op {
        let threads = self.n * self.c_out.div_ceil(CO_TILE) * out.iter().product::<usize>();
        let p = self.params(out, threads);
        let op = match bias {
            Some(b) => Op::threads("conv3d.forward", Shader::Conv3dDirect, "forward_bias", &p, &[x, weight, y, b], threads),
            None => Op::threads("conv3d.forward", Shader::Conv3dDirect, "forward", &p, &[x, weight, y], threads),
        };
        op.with_cost(self.macs_flops(out), self.cost_bytes(out))
    }

    /// backward_input with the direct kernel: one invocation per input position and block of
    /// CI_TILE input channels.
    pub(super) fn backward_input_direct(&self, out: Dims3, dy: &Buffer, weight: &Buffer, dx: &Buffer) -> Op {
        let threads = self.n * self.c_in.div_ceil(CI_TILE) * self.input.iter().product::<usize>();
        let p = self.params(out, threads);
        Op::threads("conv3d.backward_input", Shader::Conv3dDirect, "backward_input", &p, &[dy, weight, dx], threads)
            .with_cost(self.macs_flops(out), self.cost_bytes(out))
    }

    /// dbias = Σ over N and output positions of dy; one workgroup per output channel.
    pub fn backward_bias(&self, dy: &Buffer, dbias: &Buffer) -> Result<Op> {
        if !self.has_bias {
            return Err(Error::shape(LAYER, "backward_bias asked of a convolution without bias"));
        }
        let out = self.output()?;
        expect_len(LAYER, "dy", dy, self.y_dims(out).iter().product())?;
        expect_len(LAYER, "dbias", dbias, self.c_out)?;
        let p = self.params(out, self.c_out);
        let terms = self.n * out.iter().product::<usize>() * self.c_out;
        let entry = if out.iter().product::<usize>() % 4 == 0 { "backward_bias4" } else { "backward_bias" };
        Ok(Op::groups("conv3d.backward_bias", Shader::Conv3dDirect, entry, &p, &[dy, dbias], self.c_out)
            .with_cost(terms as u64, 4 * (terms + self.c_out) as u64))
    }
}
