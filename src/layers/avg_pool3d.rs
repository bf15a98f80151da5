//! 3D average pooling (PyTorch `AvgPool3d`, `ceil_mode = False`, `count_include_pad = True`,
//! no divisor override): forward and backward.
//! Shapes: x `[N, C, D, H, W]`, y `[N, C, OD, OH, OW]`. Shader: `shaders/avg_pool3d.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op, Shader};

use super::{expect_len, expect_positive, u32_of, window_out, Dims3};

const LAYER: &str = "avg_pool3d";
const AXES: [&str; 3] = ["D", "H", "W"];

/// Window geometry per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool3d {
    pub kernel: Dims3,
    pub stride: Dims3,
    /// Implicit zeros on both sides, counted in the divisor.
    pub padding: Dims3,
}

impl AvgPool3d {
    /// Checks what PyTorch checks: positive kernel and stride, `padding ≤ kernel / 2`.
    pub fn new(kernel: Dims3, stride: Dims3, padding: Dims3) -> Result<AvgPool3d> {
        let pool = AvgPool3d { kernel, stride, padding };
        pool.validate()?;
        Ok(pool)
    }

    /// PyTorch's `AvgPool3d(k)`: a cubic kernel, stride = kernel, no padding.
    pub fn cubic(k: usize) -> Result<AvgPool3d> {
        AvgPool3d::new([k; 3], [k; 3], [0; 3])
    }

    /// The checks of [`AvgPool3d::new`], repeated by every use since the fields are public.
    pub fn validate(&self) -> Result<()> {
        expect_positive(LAYER, "kernel", &self.kernel)?;
        expect_positive(LAYER, "stride", &self.stride)?;
        for ((axis, &p), &k) in AXES.iter().zip(&self.padding).zip(&self.kernel) {
            if p > k / 2 {
                return Err(Error::shape(
                    LAYER,
                    format!("padding along {axis} is {p}, but it must be at most half the kernel ({k} / 2 = {})", k / 2),
                ));
            }
        }
        Ok(())
    }

    /// Output (OD, OH, OW) for input (D, H, W); refuses inputs the window does not fit.
    pub fn output_dims(&self, input: Dims3) -> Result<Dims3> {
        self.validate()?;
        expect_positive(LAYER, "input size (D, H, W)", &input)?;
        let mut out = [0; 3];
        for a in 0..3 {
            let (i, k, s, p) = (input[a], self.kernel[a], self.stride[a], self.padding[a]);
            out[a] = window_out(i, k, s, p, 1).ok_or_else(|| {
                Error::shape(LAYER, format!("along {}, the kernel {k} is larger than the padded input {}", AXES[a], i + 2 * p))
            })?;
        }
        Ok(out)
    }

    /// Output shape `[N, C, OD, OH, OW]` for input shape `[N, C, D, H, W]`.
    pub fn output_shape(&self, x_shape: [usize; 5]) -> Result<[usize; 5]> {
        expect_positive(LAYER, "batch and channels", &x_shape[..2])?;
        let [n, c, d, h, w] = x_shape;
        let [od, oh, ow] = self.output_dims([d, h, w])?;
        Ok([n, c, od, oh, ow])
    }

    fn params(&self, x_shape: [usize; 5], count: usize) -> Result<Params> {
        let out = self.output_shape(x_shape)?;
        let u = |what: &str, v: usize| u32_of(LAYER, what, v);
        Ok(Params {
            count: u("element count", count)?,
            in_d: u("D", x_shape[2])?,
            in_h: u("H", x_shape[3])?,
            in_w: u("W", x_shape[4])?,
            out_d: u("OD", out[2])?,
            out_h: u("OH", out[3])?,
            out_w: u("OW", out[4])?,
            k_d: u("kernel", self.kernel[0])?,
            k_h: u("kernel", self.kernel[1])?,
            k_w: u("kernel", self.kernel[2])?,
            s_d: u("stride", self.stride[0])?,
            s_h: u("stride", self.stride[1])?,
            s_w: u("stride", self.stride[2])?,
            p_d: u("padding", self.padding[0])?,
            p_h: u("padding", self.padding[1])?,
            p_w: u("padding", self.padding[2])?,
        })
    }
}

/// Mirrors `struct Params` in `shaders/avg_pool3d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    count: u32,
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
}

fn numel(shape: [usize; 5]) -> usize {
    shape.iter().product()
}

/// y = mean of each window, padding counted (one invocation per output element).
pub fn forward(pool: &AvgPool3d, x_shape: [usize; 5], x: &Buffer, y: &Buffer) -> Result<Op> {
    let y_len = numel(pool.output_shape(x_shape)?);
    expect_len(LAYER, "x", x, numel(x_shape))?;
    expect_len(LAYER, "y", y, y_len)?;
    let p = pool.params(x_shape, y_len)?;
    let (x_len, y_len64, window) = (numel(x_shape) as u64, y_len as u64, pool.kernel.iter().product::<usize>() as u64);
    Ok(Op::threads(format!("{LAYER}.forward"), Shader::AvgPool3d, "forward", &p, &[x, y], y_len)
        .with_cost(y_len64 * window, 4 * (x_len + y_len64)))
}

/// dx = Σ dy / divisor over the windows that contain this element (one invocation per input
/// element, gathering, so overlapping windows need no atomics).
pub fn backward(pool: &AvgPool3d, x_shape: [usize; 5], dy: &Buffer, dx: &Buffer) -> Result<Op> {
    let y_len = numel(pool.output_shape(x_shape)?);
    let x_len = numel(x_shape);
    expect_len(LAYER, "dy", dy, y_len)?;
    expect_len(LAYER, "dx", dx, x_len)?;
    let p = pool.params(x_shape, x_len)?;
    // Each dy is added into every element of its window, then divided.
    let window = pool.kernel.iter().product::<usize>() as u64;
    Ok(Op::threads(format!("{LAYER}.backward"), Shader::AvgPool3d, "backward", &p, &[dy, dx], x_len)
        .with_cost(y_len as u64 * window + x_len as u64, 4 * (x_len + y_len) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn output_shapes_follow_pytorch() {
        let p = AvgPool3d::new([2, 3, 2], [1, 2, 2], [1, 1, 0]).unwrap();
        assert_eq!(p.output_shape([2, 3, 5, 7, 9]).unwrap(), [2, 3, 6, 4, 4]);
        assert_eq!(AvgPool3d::cubic(2).unwrap().output_dims([14, 15, 14]).unwrap(), [7, 7, 7]);
    }

    #[test]
    fn bad_geometry_is_a_shape_error() {
        assert!(message(AvgPool3d::new([2, 3, 2], [1; 3], [0, 0, 2])).contains("padding along W"));
        assert!(message(AvgPool3d::new([0, 3, 2], [1; 3], [0; 3])).contains("kernel"));
        assert!(message(AvgPool3d::new([2; 3], [1, 0, 1], [0; 3])).contains("stride"));
        let p = AvgPool3d::cubic(3).unwrap();
        assert!(message(p.output_dims([2, 3, 3])).contains("along D"));
        assert!(message(p.output_dims([3, 3, 0])).contains("positive"));
        assert!(message(p.output_shape([1, 0, 3, 3, 3])).contains("channels"));
        let direct = AvgPool3d { kernel: [1, 1, 0], stride: [1; 3], padding: [0; 3] };
        assert!(message(direct.output_dims([4, 4, 4])).contains("kernel"));
    }
}
