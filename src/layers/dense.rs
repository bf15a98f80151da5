//! Dense (fully connected, PyTorch's `nn.Linear`): y = x · weightᵀ + bias, and its backward.
//! Shapes: x `[batch, in]`, weight `[out, in]`, bias `[out]` (optional), y `[batch, out]`.
//! Shader: `shaders/dense.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op, Shader};
use crate::layers::conv3d::Conv3d;

use super::{expect_len, expect_positive, u32_of};

const LAYER: &str = "dense";

/// The geometry of one dense layer for a fixed batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dense {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    in_f: u32,
    out_f: u32,
    _pad: u32,
}

impl Dense {
    /// Validates the sizes: all positive, and every tensor's element count within the 32-bit
    /// indices the shader uses (the `*_len` products saturate, so an overflow fails here too).
    pub fn new(batch: usize, in_features: usize, out_features: usize, bias: bool) -> Result<Dense> {
        expect_positive(LAYER, "batch, in_features, out_features", &[batch, in_features, out_features])?;
        let d = Dense { batch, in_features, out_features, bias };
        for (what, n) in [("x", d.input_len()), ("weight", d.weight_len()), ("y", d.output_len())] {
            u32_of(LAYER, &format!("{what} element count"), n)?;
        }
        Ok(d)
    }

    /// `[batch, out_features]`.
    pub fn output_shape(&self) -> [usize; 2] {
        [self.batch, self.out_features]
    }

    pub fn input_len(&self) -> usize {
        self.batch.saturating_mul(self.in_features)
    }

    pub fn output_len(&self) -> usize {
        self.batch.saturating_mul(self.out_features)
    }

    pub fn weight_len(&self) -> usize {
        self.out_features.saturating_mul(self.in_features)
    }

    /// `out_features` with a bias, 0 without.
    pub fn bias_len(&self) -> usize {
        if self.bias {
            self.out_features
        } else {
            0
        }
    }

    /// The same layer as a 1×1×1 convolution of its features as channels (the layouts agree:
    /// x [N, in], weight [out, in], y [N, out]). The network runs dense layers so, on the tiled
    /// convolution kernels; this file's kernels (one output per invocation) stay as the direct
    /// reference on the GPU (`cnn3d check`, the bench's GEMM). Lavapipe, the article's fc1 at
    /// batch 100: ~58 ms a training step with these, see the commit for the convolution's.
    pub fn as_conv(&self) -> Conv3d {
        Conv3d::new(self.batch, self.in_features, self.out_features, [1, 1, 1], [1, 1, 1]).with_bias(self.bias)
    }

    fn params(&self) -> Params {
        // `new` checked that every count fits in u32.
        Params { n: self.batch as u32, in_f: self.in_features as u32, out_f: self.out_features as u32, _pad: 0 }
    }

    /// The bias buffer must be given exactly when the layer has one.
    fn expect_bias<'a>(&self, what: &str, b: Option<&'a Buffer>) -> Result<Option<&'a Buffer>> {
        match (self.bias, b) {
            (true, Some(b)) => {
                expect_len(LAYER, what, b, self.out_features)?;
                Ok(Some(b))
            }
            (false, None) => Ok(None),
            (true, None) => Err(Error::shape(LAYER, format!("the layer has a bias but no {what} buffer was given"))),
            (false, Some(_)) => Err(Error::shape(LAYER, format!("the layer has no bias but a {what} buffer was given"))),
        }
    }

    /// A multiply and an add per (sample, in, out): each of the three matmuls of the layer.
    fn matmul_flops(&self) -> u64 {
        2 * (self.batch * self.in_features * self.out_features) as u64
    }

    /// Each matmul reads two of (x, weight, dy) and writes the third (or dx/dweight).
    fn matmul_bytes(&self) -> u64 {
        4 * (self.input_len() + self.weight_len() + self.output_len()) as u64
    }

    /// y = x · weightᵀ (+ bias).
    pub fn forward(&self, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer) -> Result<Op> {
        expect_len(LAYER, "x", x, self.input_len())?;
        expect_len(LAYER, "weight", weight, self.weight_len())?;
        expect_len(LAYER, "y", y, self.output_len())?;
        let p = self.params();
        let n = self.output_len();
        let bias_len = if self.bias { self.out_features } else { 0 };
        let bytes = 4 * (self.input_len() + self.weight_len() + self.output_len() + bias_len) as u64;
        Ok(match self.expect_bias("bias", bias)? {
            Some(b) => Op::threads("dense.forward", Shader::Dense, "forward", &p, &[x, weight, y, b], n),
            None => Op::threads("dense.forward", Shader::Dense, "forward_no_bias", &p, &[x, weight, y], n),
        }
        .with_cost(self.matmul_flops() + (n * usize::from(self.bias)) as u64, bytes))
    }

    /// dx = dy · weight.
    pub fn backward_input(&self, dy: &Buffer, weight: &Buffer, dx: &Buffer) -> Result<Op> {
        expect_len(LAYER, "dy", dy, self.output_len())?;
        expect_len(LAYER, "weight", weight, self.weight_len())?;
        expect_len(LAYER, "dx", dx, self.input_len())?;
        let p = self.params();
        Ok(Op::threads("dense.backward_input", Shader::Dense, "backward_input", &p, &[dy, weight, dx], self.input_len())
            .with_cost(self.matmul_flops(), self.matmul_bytes()))
    }

    /// dweight = dyᵀ · x (summed over the batch; overwrites dweight).
    pub fn backward_weight(&self, dy: &Buffer, x: &Buffer, dweight: &Buffer) -> Result<Op> {
        expect_len(LAYER, "dy", dy, self.output_len())?;
        expect_len(LAYER, "x", x, self.input_len())?;
        expect_len(LAYER, "dweight", dweight, self.weight_len())?;
        let p = self.params();
        Ok(Op::threads("dense.backward_weight", Shader::Dense, "backward_weight", &p, &[dy, x, dweight], self.weight_len())
            .with_cost(self.matmul_flops(), self.matmul_bytes()))
    }

    /// dbias = Σ over the batch of dy (overwrites dbias); one workgroup per output feature.
    pub fn backward_bias(&self, dy: &Buffer, dbias: &Buffer) -> Result<Op> {
        expect_len(LAYER, "dy", dy, self.output_len())?;
        if !self.bias {
            return Err(Error::shape(LAYER, "backward_bias asked of a layer without a bias"));
        }
        expect_len(LAYER, "dbias", dbias, self.out_features)?;
        let p = self.params();
        Ok(Op::groups("dense.backward_bias", Shader::Dense, "backward_bias", &p, &[dy, dbias], self.out_features)
            .with_cost(self.output_len() as u64, 4 * (self.output_len() + self.out_features) as u64))
    }

    /// Every backward dispatch: dx when asked for (the first layer of a model needs none),
    /// dweight, and dbias exactly when the layer has a bias.
    pub fn backward(
        &self,
        x: &Buffer,
        weight: &Buffer,
        dy: &Buffer,
        dx: Option<&Buffer>,
        dweight: &Buffer,
        dbias: Option<&Buffer>,
    ) -> Result<Vec<Op>> {
        let mut ops = vec![];
        if let Some(dx) = dx {
            ops.push(self.backward_input(dy, weight, dx)?);
        }
        ops.push(self.backward_weight(dy, x, dweight)?);
        if let Some(db) = self.expect_bias("dbias", dbias)? {
            ops.push(self.backward_bias(dy, db)?);
        }
        Ok(ops)
    }
}
