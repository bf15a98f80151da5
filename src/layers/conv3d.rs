//! 3D convolution, groups = 1, zero padding (PyTorch's `conv3d`): forward, and the gradients of
//! input, weight and bias.
//! Shapes: x [N, Cin, D, H, W], weight [Cout, Cin, kd, kh, kw], bias [Cout],
//! y [N, Cout, OD, OH, OW] with each output size from [`window_out`].
//! Shader: `shaders/conv3d.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op, Shader};

use super::{expect_len, expect_positive, u32_of, window_out, Dims3};

/// Output channels per forward invocation; must equal `CO_TILE` in shaders/conv3d.wgsl.
pub const CO_TILE: usize = 4;
/// Input channels per backward_input invocation; must equal `CI_TILE` in shaders/conv3d.wgsl.
pub const CI_TILE: usize = 4;

const LAYER: &str = "conv3d";

/// The geometry of one convolution: batch, channels, input size, and kernel, stride, padding
/// and dilation per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3d {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub input: Dims3,
    pub kernel: Dims3,
    pub stride: Dims3,
    pub padding: Dims3,
    pub dilation: Dims3,
    pub has_bias: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    c_out: u32,
    total: u32,
    in_d: u32,
    in_h: u32,
    in_w: u32,
    out_d: u32,
    out_h: u32,
    out_w: u32,
    k_d: u32,
    k_h: u32,
    k_w: u32,
    s_d: u32,
    s_h: u32,
    s_w: u32,
    p_d: u32,
    p_h: u32,
    p_w: u32,
    dil_d: u32,
    dil_h: u32,
    dil_w: u32,
    _pad0: u32,
    _pad1: u32,
}

/// The product of `dims`, or `None` on overflow.
fn count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Conv3d {
    /// A convolution with PyTorch's defaults: stride 1, no padding, dilation 1, with bias.
    pub fn new(n: usize, c_in: usize, c_out: usize, input: Dims3, kernel: Dims3) -> Conv3d {
        Conv3d { n, c_in, c_out, input, kernel, stride: [1; 3], padding: [0; 3], dilation: [1; 3], has_bias: true }
    }

    pub fn with_stride(self, stride: Dims3) -> Conv3d {
        Conv3d { stride, ..self }
    }

    pub fn with_padding(self, padding: Dims3) -> Conv3d {
        Conv3d { padding, ..self }
    }

    pub fn with_dilation(self, dilation: Dims3) -> Conv3d {
        Conv3d { dilation, ..self }
    }

    pub fn with_bias(self, has_bias: bool) -> Conv3d {
        Conv3d { has_bias, ..self }
    }

    /// Validates the geometry and returns the output size (OD, OH, OW). Fails with
    /// [`Error::Shape`] for zero sizes, a dilated kernel larger than the padded input along
    /// some axis, or sizes the shader's 32-bit indices cannot address.
    pub fn output(&self) -> Result<Dims3> {
        expect_positive(LAYER, "batch and channels (n, c_in, c_out)", &[self.n, self.c_in, self.c_out])?;
        expect_positive(LAYER, "input size", &self.input)?;
        expect_positive(LAYER, "kernel size", &self.kernel)?;
        expect_positive(LAYER, "stride", &self.stride)?;
        expect_positive(LAYER, "dilation", &self.dilation)?;
        // Every single size fits in u32 first, so the arithmetic below cannot overflow usize.
        for (what, v) in [
            ("input size", self.input),
            ("kernel size", self.kernel),
            ("stride", self.stride),
            ("padding", self.padding),
            ("dilation", self.dilation),
        ] {
            for x in v {
                u32_of(LAYER, what, x)?;
            }
        }
        let mut out = [0; 3];
        for a in 0..3 {
            let (i, k, s, p, d) = (self.input[a], self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]);
            out[a] = window_out(i, k, s, p, d).ok_or_else(|| {
                Error::shape(
                    LAYER,
                    format!(
                        "along axis {} the kernel spans {} (kernel {k}, dilation {d}) but the padded input is only {} \
                         (input {i}, padding {p} on each side)",
                        ["D", "H", "W"][a],
                        d * (k - 1) + 1,
                        i + 2 * p
                    ),
                )
            })?;
            u32_of(LAYER, "padded input size", i + 2 * p)?;
        }
        for (what, dims) in [
            ("x", self.x_shape()),
            ("y", self.y_dims(out)),
            ("weight", self.weight_shape()),
        ] {
            let len = count(&dims).ok_or_else(|| Error::shape(LAYER, format!("{what} {dims:?} has too many elements")))?;
            u32_of(LAYER, &format!("{what} element count"), len)?;
        }
        Ok(out)
    }

    fn y_dims(&self, out: Dims3) -> [usize; 5] {
        [self.n, self.c_out, out[0], out[1], out[2]]
    }

    /// x's shape [N, Cin, D, H, W].
    pub fn x_shape(&self) -> [usize; 5] {
        [self.n, self.c_in, self.input[0], self.input[1], self.input[2]]
    }

    /// y's shape [N, Cout, OD, OH, OW].
    pub fn y_shape(&self) -> Result<[usize; 5]> {
        Ok(self.y_dims(self.output()?))
    }

    /// The weight's shape [Cout, Cin, kd, kh, kw].
    pub fn weight_shape(&self) -> [usize; 5] {
        [self.c_out, self.c_in, self.kernel[0], self.kernel[1], self.kernel[2]]
    }

    /// The bias's length: Cout, or 0 without a bias.
    pub fn bias_len(&self) -> usize {
        if self.has_bias { self.c_out } else { 0 }
    }

    /// Validates the geometry and `x`'s and `y`'s lengths; returns the output size.
    fn check(&self, x_what: &str, x: &Buffer, y_what: &str, y: &Buffer) -> Result<Dims3> {
        let out = self.output()?;
        expect_len(LAYER, x_what, x, self.x_shape().iter().product())?;
        expect_len(LAYER, y_what, y, self.y_dims(out).iter().product())?;
        Ok(out)
    }

    fn params(&self, out: Dims3, total: usize) -> Params {
        // output() has checked that every size, and every count used as `total`, fits in u32.
        let u = |v: usize| v as u32;
        let [k_d, k_h, k_w] = self.kernel.map(u);
        let [s_d, s_h, s_w] = self.stride.map(u);
        let [p_d, p_h, p_w] = self.padding.map(u);
        let [dil_d, dil_h, dil_w] = self.dilation.map(u);
        let [in_d, in_h, in_w] = self.input.map(u);
        let [out_d, out_h, out_w] = out.map(u);
        Params {
            n: u(self.n),
            c_in: u(self.c_in),
            c_out: u(self.c_out),
            total: u(total),
            in_d,
            in_h,
            in_w,
            out_d,
            out_h,
            out_w,
            k_d,
            k_h,
            k_w,
            s_d,
            s_h,
            s_w,
            p_d,
            p_h,
            p_w,
            dil_d,
            dil_h,
            dil_w,
            _pad0: 0,
            _pad1: 0,
        }
    }

    /// y = conv(x, weight) (+ bias). `bias` must be given exactly when `has_bias`.
    /// One invocation per output position and block of [`CO_TILE`] output channels.
    pub fn forward(&self, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer) -> Result<Op> {
        let out = self.check("x", x, "y", y)?;
        expect_len(LAYER, "weight", weight, self.weight_shape().iter().product())?;
        let threads = self.n * self.c_out.div_ceil(CO_TILE) * out.iter().product::<usize>();
        let p = self.params(out, threads);
        let label = "conv3d.forward";
        match (bias, self.has_bias) {
            (Some(b), true) => {
                expect_len(LAYER, "bias", b, self.c_out)?;
                Ok(Op::threads(label, Shader::Conv3d, "forward_bias", &p, &[x, weight, y, b], threads))
            }
            (None, false) => Ok(Op::threads(label, Shader::Conv3d, "forward", &p, &[x, weight, y], threads)),
            (Some(_), false) => Err(Error::shape(LAYER, "a bias buffer was given to a convolution without bias")),
            (None, true) => Err(Error::shape(LAYER, "the convolution has a bias but no bias buffer was given")),
        }
    }

    /// dx = the gradient of x: for each input element, Σ over Cout and the taps that read it of
    /// dy·weight.
    pub fn backward_input(&self, dy: &Buffer, weight: &Buffer, dx: &Buffer) -> Result<Op> {
        let out = self.check("dx", dx, "dy", dy)?;
        expect_len(LAYER, "weight", weight, self.weight_shape().iter().product())?;
        // One invocation per input position and block of CI_TILE input channels.
        let threads = self.n * self.c_in.div_ceil(CI_TILE) * self.input.iter().product::<usize>();
        let p = self.params(out, threads);
        Ok(Op::threads("conv3d.backward_input", Shader::Conv3d, "backward_input", &p, &[dy, weight, dx], threads))
    }

    /// dweight = Σ over N and output positions of x·dy.
    pub fn backward_weight(&self, x: &Buffer, dy: &Buffer, dweight: &Buffer) -> Result<Op> {
        let out = self.check("x", x, "dy", dy)?;
        let len = self.weight_shape().iter().product();
        expect_len(LAYER, "dweight", dweight, len)?;
        // One workgroup per output channel, kernel tap and block of CI_TILE input channels.
        let groups = self.c_out * self.c_in.div_ceil(CI_TILE) * self.kernel.iter().product::<usize>();
        let p = self.params(out, groups);
        Ok(Op::groups("conv3d.backward_weight", Shader::Conv3d, "backward_weight", &p, &[x, dy, dweight], groups))
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
        Ok(Op::groups("conv3d.backward_bias", Shader::Conv3d, "backward_bias", &p, &[dy, dbias], self.c_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_err(c: Conv3d) -> String {
        match c.output() {
            Err(e @ Error::Shape { .. }) => e.to_string(),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn output_size_follows_pytorch() {
        let c = Conv3d::new(2, 3, 4, [5, 7, 9], [3, 2, 3])
            .with_stride([1, 2, 2])
            .with_padding([1, 0, 2])
            .with_dilation([1, 2, 1]);
        assert_eq!(c.output().unwrap(), [5, 3, 6]);
        assert_eq!(c.y_shape().unwrap(), [2, 4, 5, 3, 6]);
        // Stride larger than the kernel.
        let c = Conv3d::new(1, 1, 1, [7, 8, 10], [2, 2, 2]).with_stride([3, 3, 3]).with_padding([0, 2, 1]);
        assert_eq!(c.output().unwrap(), [2, 4, 4]);
    }

    #[test]
    fn rejects_bad_shapes() {
        // Kernel larger than the padded input along H: 2·(4−1)+1 = 7 > 5 + 2·0.
        let e = shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [3, 4, 3]).with_dilation([1, 2, 1]));
        assert!(e.contains("axis H") && e.contains("spans 7"), "{e}");
        // Padding can make it fit.
        assert!(Conv3d::new(1, 1, 1, [5, 5, 5], [3, 4, 3]).with_dilation([1, 2, 1]).with_padding([0, 1, 0]).output().is_ok());
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [6, 1, 1])).contains("axis D"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 0, 1])).contains("kernel size"));
        assert!(shape_err(Conv3d::new(1, 0, 1, [5, 5, 5], [1, 1, 1])).contains("channels"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 0, 5], [1, 1, 1])).contains("input size"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_stride([1, 0, 1])).contains("stride"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_dilation([0, 1, 1])).contains("dilation"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_padding([usize::MAX, 0, 0])).contains("padding"));
        assert!(shape_err(Conv3d::new(1 << 20, 64, 1, [64, 64, 64], [1, 1, 1])).contains("x"));
    }
}
