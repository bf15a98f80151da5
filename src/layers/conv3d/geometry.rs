//! The geometry of one convolution, in one place: the sizes and per-axis kernel, stride,
//! padding and dilation ([`Conv3d`]), validated ([`Conv3d::output`]); the shapes of x, y and
//! the weight; and the two forms in which the kernels read it, both made here from the same
//! values: the uniform [`Params`] of every dispatch (one pipeline serves every shape) and the
//! pipeline constants `G_*` of the tiled kernels ([`Conv3d::geometry`]), whose divisions a CPU
//! adapter then turns into multiplies (shaders/conv3d/geometry.wgsl declares both).
//! Also the tiled kernels' layout of output positions over invocations ([`Conv3d::layout`]).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op};
use crate::layers::{expect_len, expect_positive, u32_of, window_out, Dims3};

use super::LAYER;

/// The product of `dims`, or `None` on overflow.
pub(super) fn count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

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
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) c_in: u32,
    pub(super) c_out: u32,
    pub(super) total: u32,
    pub(super) in_d: u32,
    pub(super) in_h: u32,
    pub(super) in_w: u32,
    pub(super) out_d: u32,
    pub(super) out_h: u32,
    pub(super) out_w: u32,
    pub(super) k_d: u32,
    pub(super) k_h: u32,
    pub(super) k_w: u32,
    pub(super) s_d: u32,
    pub(super) s_h: u32,
    pub(super) s_w: u32,
    pub(super) p_d: u32,
    pub(super) p_h: u32,
    pub(super) p_w: u32,
    pub(super) dil_d: u32,
    pub(super) dil_h: u32,
    pub(super) dil_w: u32,
    pub(super) c0: u32,
    pub(super) r0: u32,
    pub(super) r_n: u32,
    pub(super) rows: u32,
    pub(super) tap: u32,
    pub(super) _pad0: u32,
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

    pub(super) fn y_dims(&self, out: Dims3) -> [usize; 5] {
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
    pub(super) fn check(&self, x_what: &str, x: &Buffer, y_what: &str, y: &Buffer) -> Result<Dims3> {
        let out = self.output()?;
        expect_len(LAYER, x_what, x, self.x_shape().iter().product())?;
        expect_len(LAYER, y_what, y, self.y_dims(out).iter().product())?;
        Ok(out)
    }

    pub(super) fn params(&self, out: Dims3, total: usize) -> Params {
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
            c0: 0,
            r0: 0,
            r_n: 0,
            rows: 0,
            tap: 0,
            _pad0: 0,
        }
    }

    /// The geometry as the tiled kernels' pipeline constants (`G_*` in shaders/conv3d/geometry.wgsl),
    /// the same values as [`Conv3d::params`].
    pub(super) fn geometry(&self, out: Dims3, op: Op) -> Op {
        let p = self.params(out, 0);
        let values = [
            ("G_C_IN", p.c_in),
            ("G_C_OUT", p.c_out),
            ("G_IN_D", p.in_d),
            ("G_IN_H", p.in_h),
            ("G_IN_W", p.in_w),
            ("G_OUT_D", p.out_d),
            ("G_OUT_H", p.out_h),
            ("G_OUT_W", p.out_w),
            ("G_K_D", p.k_d),
            ("G_K_H", p.k_h),
            ("G_K_W", p.k_w),
            ("G_S_D", p.s_d),
            ("G_S_H", p.s_h),
            ("G_S_W", p.s_w),
            ("G_P_D", p.p_d),
            ("G_P_H", p.p_h),
            ("G_P_W", p.p_w),
            ("G_DIL_D", p.dil_d),
            ("G_DIL_H", p.dil_h),
            ("G_DIL_W", p.dil_w),
        ];
        values.into_iter().fold(op, |op, (k, v)| op.with_constant(k, v))
    }

    /// How the tiled kernels lay out an invocation's output positions (`LAYOUT` in the
    /// shader): (layout, extent along W, extent along N). Four positions per invocation where
    /// that leaves at most 1/16 more positions idle than the best two-position layout (each
    /// weight load then serves four products; lavapipe: forward ~25% faster), else two; among
    /// equals the first listed.
    pub(super) fn layout(&self, out: Dims3) -> (u32, usize, usize) {
        let slots = |(_, w, n): (u32, usize, usize)| out[2].div_ceil(w) * w * self.n.div_ceil(n) * n;
        let best = |options: &[(u32, usize, usize)]| *options.iter().min_by_key(|&&o| slots(o)).expect("options");
        let two = best(&[(0, 2, 1), (1, 1, 2)]);
        let four = best(&[(2, 2, 2), (3, 1, 4), (4, 4, 1)]);
        if slots(four) * 16 <= slots(two) * 17 { four } else { two }
    }

    /// The smallest batch (at most 4) whose tiled kernels lay their positions out as this
    /// batch's: checking a kernel on it runs the pipelines this batch runs.
    pub fn check_batch(&self) -> usize {
        let Ok(out) = self.output() else { return 1 };
        (1..=self.n.min(4)).find(|&n| Conv3d { n, ..*self }.layout(out) == self.layout(out)).unwrap_or(1)
    }

    /// Invocations of the tiled kernels over `rows` rows of OW output positions per sample.
    pub(super) fn invocations(&self, out: Dims3, rows: usize) -> usize {
        let (_, w, n) = self.layout(out);
        out[2].div_ceil(w) * rows * self.n.div_ceil(n)
    }

    pub(super) fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    pub(super) fn weight_len(&self) -> usize {
        self.weight_shape().iter().product()
    }

    /// Floats of x per sample.
    pub(super) fn sample_len(&self) -> usize {
        self.c_in * self.input.iter().product::<usize>()
    }

    /// 2·N·Cout·positions·Cin·taps: the multiply-adds of forward, and of each gradient.
    pub(super) fn macs_flops(&self, out: Dims3) -> u64 {
        2 * (self.n * self.c_out * out.iter().product::<usize>() * self.c_in * self.taps()) as u64
    }

    pub(super) fn cost_bytes(&self, out: Dims3) -> u64 {
        4 * (self.x_shape().iter().product::<usize>() + self.weight_len() + self.y_dims(out).iter().product::<usize>()) as u64
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
    fn layouts_leave_few_positions_idle() {
        let layout = |n: usize, input: Dims3, kernel: Dims3| {
            let c = Conv3d::new(n, 2, 3, input, kernel);
            c.layout(c.output().unwrap()).0
        };
        // The article's conv1 (OW 14): two along W in two samples; conv2 (OW 5): four samples.
        assert_eq!(layout(100, [16, 16, 16], [3, 3, 3]), 2);
        assert_eq!(layout(100, [7, 7, 7], [3, 3, 3]), 3);
        // One sample: four along W where OW is a multiple of 4, two where it is 2.
        assert_eq!(layout(1, [1, 1, 512], [1, 1, 1]), 4);
        assert_eq!(layout(1, [2, 1, 3], [1, 1, 2]), 0);
        // Two samples of one position: the two samples.
        assert_eq!(layout(2, [3, 4, 2], [2, 2, 2]), 1);
        // cnn3d check's cases hold every layout (see src/check/conv3d.rs).
        assert_eq!(layout(4, [7, 6, 5], [3, 3, 3]), 3);
        assert_eq!(layout(3, [8, 9, 10], [3, 3, 3]), 4);
    }

    #[test]
    fn the_check_batch_lays_positions_out_as_the_batch() {
        let batch = |n: usize, input: Dims3| Conv3d::new(n, 2, 3, input, [3, 3, 3]).check_batch();
        // The article's conv1 (two along W in two samples) and conv2 (four samples).
        assert_eq!(batch(100, [16, 16, 16]), 2);
        assert_eq!(batch(100, [7, 7, 7]), 4);
        // Three samples of conv2's shape take two positions along W: one sample does too.
        assert_eq!(batch(3, [7, 7, 7]), 1);
        for (n, input) in [(100, [16, 16, 16]), (100, [7, 7, 7]), (9, [5, 6, 7])] {
            let c = Conv3d::new(n, 2, 3, input, [3, 3, 3]);
            let out = c.output().unwrap();
            assert_eq!(Conv3d { n: c.check_batch(), ..c }.layout(out), c.layout(out));
        }
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
