//! 3D max pooling (PyTorch `MaxPool3d`, `ceil_mode = False`, `return_indices = True`):
//! forward writes y and the argmax, backward routes dy to the argmax.
//! Shapes: x `[N, C, D, H, W]`, y and indices `[N, C, OD, OH, OW]`; an index points into the
//! `D·H·W` volume of its own (n, c), as PyTorch's. Shader: `shaders/max_pool3d.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Op, Shader};
use crate::layers::activation::Activation;

use super::{expect_len, expect_positive, u32_of, window_out, Dims3};

const LAYER: &str = "max_pool3d";
const AXES: [&str; 3] = ["D", "H", "W"];

/// Window geometry per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool3d {
    pub kernel: Dims3,
    pub stride: Dims3,
    /// Implicit −∞ on both sides.
    pub padding: Dims3,
    pub dilation: Dims3,
}

impl MaxPool3d {
    /// Checks what PyTorch checks: positive kernel, stride and dilation, and
    /// `padding ≤ kernel / 2` on every axis.
    pub fn new(kernel: Dims3, stride: Dims3, padding: Dims3, dilation: Dims3) -> Result<MaxPool3d> {
        let pool = MaxPool3d { kernel, stride, padding, dilation };
        pool.validate()?;
        Ok(pool)
    }

    /// The checks of [`MaxPool3d::new`], repeated by every use since the fields are public.
    pub fn validate(&self) -> Result<()> {
        expect_positive(LAYER, "kernel", &self.kernel)?;
        expect_positive(LAYER, "stride", &self.stride)?;
        expect_positive(LAYER, "dilation", &self.dilation)?;
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

    /// PyTorch's `MaxPool3d(k)`: a cubic kernel, stride = kernel, no padding or dilation.
    pub fn cubic(k: usize) -> Result<MaxPool3d> {
        MaxPool3d::new([k; 3], [k; 3], [0; 3], [1; 3])
    }

    /// Output (OD, OH, OW) for input (D, H, W). Refuses inputs the window does not fit and,
    /// with dilation, windows whose taps all fall in the padding: PyTorch outputs −∞ there
    /// with an index outside the window, and its backward then writes out of bounds.
    pub fn output_dims(&self, input: Dims3) -> Result<Dims3> {
        self.validate()?;
        expect_positive(LAYER, "input size (D, H, W)", &input)?;
        let mut out = [0; 3];
        for a in 0..3 {
            let (i, k, s, p, d) = (input[a], self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]);
            out[a] = window_out(i, k, s, p, d).ok_or_else(|| {
                Error::shape(
                    LAYER,
                    format!(
                        "along {}, the kernel {k} with dilation {d} spans {} but the padded input is only {}",
                        AXES[a],
                        d * (k - 1) + 1,
                        i + 2 * p
                    ),
                )
            })?;
            // Only windows that start in the front padding can miss the input (padding ≤
            // kernel / 2 keeps a tap at or after 0): that tap lies below the dilation, which
            // may exceed the input size.
            for o in 0..out[a].min(p.div_ceil(s)) {
                let before = p - o * s;
                let first = before.div_ceil(d) * d - before;
                if first >= i {
                    return Err(Error::shape(
                        LAYER,
                        format!(
                            "along {}, output window {o} covers only padding (input {i}, kernel {k}, \
                             dilation {d}, padding {p}); use less padding or dilation",
                            AXES[a]
                        ),
                    ));
                }
            }
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
            dil_d: u("dilation", self.dilation[0])?,
            dil_h: u("dilation", self.dilation[1])?,
            dil_w: u("dilation", self.dilation[2])?,
            slope: 0.0,
        })
    }

    /// Windows that tile the input: stride = kernel, no padding, no dilation (MaxPool3d(k)).
    fn plain(&self) -> bool {
        self.stride == self.kernel && self.padding == [0; 3] && self.dilation == [1; 3]
    }

    /// Whether the windows cover an input of size (D, H, W) exactly, each element in one
    /// window: plain windows and sizes divisible by the kernel. The backward then writes every
    /// element of dx from its window, and may write it over x ([`backward_with`]).
    pub fn tiles(&self, input: Dims3) -> bool {
        self.plain() && (0..3).all(|a| input[a].is_multiple_of(self.kernel[a]))
    }
}

/// Whether `act` right before a max pool can be fused into it ([`forward_with`]): relu and
/// leaky_relu, whose gradient the pool can apply at the argmax from the activation's input.
pub fn fuses(act: Activation) -> bool {
    matches!(act, Activation::Relu | Activation::LeakyRelu(_))
}

/// The shader's ACT constant and slope for a fused activation.
fn act_constant(act: Option<Activation>) -> Result<(u32, f32)> {
    match act {
        None => Ok((0, 0.0)),
        Some(Activation::Relu) => Ok((1, 0.0)),
        Some(Activation::LeakyRelu(s)) => Ok((2, s)),
        Some(other) => Err(Error::shape(LAYER, format!("only relu and leaky_relu fuse into max pooling, not {}", other.name()))),
    }
}

/// The geometry constants of the window kernels (`forward_windows`, `backward_windows`).
fn window_constants(op: Op, pool: &MaxPool3d, x_shape: [usize; 5], out: [usize; 5]) -> Op {
    let names = [("IN_D", x_shape[2]), ("IN_H", x_shape[3]), ("IN_W", x_shape[4]), ("OUT_D", out[2]), ("OUT_H", out[3]), ("OUT_W", out[4])];
    let kernel = [("KD", pool.kernel[0]), ("KH", pool.kernel[1]), ("KW", pool.kernel[2])];
    // Sizes fit in u32: params() checked them.
    names.into_iter().chain(kernel).fold(op, |op, (k, v)| op.with_constant(k, v as u32))
}

/// The kernel label: `max_pool3d.forward`, or `leaky_relu+max_pool3d.forward` when fused.
fn label(act: Option<Activation>, pass: &str) -> String {
    match act {
        None => format!("{LAYER}.{pass}"),
        Some(a) => format!("{}+{LAYER}.{pass}", a.name()),
    }
}

/// Mirrors `struct Params` in `shaders/max_pool3d.wgsl`.
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
    dil_d: u32,
    dil_h: u32,
    dil_w: u32,
    /// The fused leaky_relu's slope.
    slope: f32,
}

fn numel(shape: [usize; 5]) -> usize {
    shape.iter().product()
}

fn expect_indices(b: &Buffer) -> Result<()> {
    if b.dtype() != DType::U32 {
        return Err(Error::shape(LAYER, format!("indices must be a u32 buffer, got {:?}", b.dtype())));
    }
    Ok(())
}

/// y = max over each window of x, indices = where (one invocation per output element).
pub fn forward(pool: &MaxPool3d, x_shape: [usize; 5], x: &Buffer, y: &Buffer, indices: &Buffer) -> Result<Op> {
    forward_with(pool, x_shape, x, y, indices, None)
}

/// [`forward`] of `act(x)`, with the activation (relu or leaky_relu, see [`fuses`]) applied
/// inside the pool: y and indices are those of the two layers one after the other, and f(x)
/// is never stored.
pub fn forward_with(pool: &MaxPool3d, x_shape: [usize; 5], x: &Buffer, y: &Buffer, indices: &Buffer, act: Option<Activation>) -> Result<Op> {
    let y_len = numel(pool.output_shape(x_shape)?);
    expect_len(LAYER, "x", x, numel(x_shape))?;
    expect_len(LAYER, "y", y, y_len)?;
    expect_len(LAYER, "indices", indices, y_len)?;
    expect_indices(indices)?;
    let (kind, slope) = act_constant(act)?;
    let p = Params { slope, ..pool.params(x_shape, y_len)? };
    // One comparison (and activation) per window element; reads x, writes y and the argmax.
    let window = pool.kernel.iter().product::<usize>() as u64;
    let flops = y_len as u64 * window * if act.is_some() { 2 } else { 1 };
    let entry = match (pool.plain(), pairs(pool, x_shape)) {
        (true, true) => "forward_windows2",
        (true, false) => "forward_windows",
        _ => "forward",
    };
    let op = Op::threads(label(act, "forward"), Shader::MaxPool3d, entry, &p, &[x, y, indices], y_len)
        .with_constant("ACT", kind)
        .with_cost(flops, 4 * (numel(x_shape) + 2 * y_len) as u64);
    Ok(if pool.plain() { window_constants(op, pool, x_shape, pool.output_shape(x_shape)?) } else { op })
}

/// Whether the window kernels can take x and dx in pairs along W: windows 2 wide over an even
/// W (lavapipe: ~1.5× faster; the article's pools).
fn pairs(pool: &MaxPool3d, x_shape: [usize; 5]) -> bool {
    pool.kernel[2] == 2 && x_shape[4].is_multiple_of(2)
}

/// dx = Σ dy over the windows whose argmax is this element: with overlapping windows one
/// invocation per input element, gathering (no atomics); with windows that tile the input one
/// invocation per window writing all of it; else dx = 0 and one invocation per window writing
/// its argmax's gradient.
pub fn backward(pool: &MaxPool3d, x_shape: [usize; 5], indices: &Buffer, dy: &Buffer, dx: &Buffer) -> Result<Vec<Op>> {
    backward_with(pool, x_shape, indices, dy, dx, None)
}

/// [`backward`] of [`forward_with`]: with `Some((act, x))` the gradient with respect to the
/// activation's input x, dx = (pool's dx) · f'(x). dx may be x itself (the same buffer) where
/// the windows tile x: it is then overwritten.
pub fn backward_with(
    pool: &MaxPool3d,
    x_shape: [usize; 5],
    indices: &Buffer,
    dy: &Buffer,
    dx: &Buffer,
    act: Option<(Activation, &Buffer)>,
) -> Result<Vec<Op>> {
    let y_len = numel(pool.output_shape(x_shape)?);
    let x_len = numel(x_shape);
    expect_len(LAYER, "indices", indices, y_len)?;
    expect_indices(indices)?;
    expect_len(LAYER, "dy", dy, y_len)?;
    expect_len(LAYER, "dx", dx, x_len)?;
    let (kind, slope) = act_constant(act.map(|(a, _)| a))?;
    let covered = pool.tiles([x_shape[2], x_shape[3], x_shape[4]]);
    // dx over x: only the window kernel, over windows that cover x, reads each x before it
    // writes there.
    let in_place = act.is_some_and(|(_, x)| x.same(dx));
    if in_place && !covered {
        return Err(Error::shape(
            LAYER,
            "dx can share x's buffer only where the windows tile the input (stride = kernel, no padding or dilation, sizes divisible)",
        ));
    }
    // Binding 4 is read only with an activation (and not in place); else any read-only buffer
    // stands in.
    let x = match act {
        Some((_, x)) if !in_place => {
            expect_len(LAYER, "x", x, x_len)?;
            x
        }
        _ => indices,
    };
    let label = label(act.map(|(a, _)| a), "backward");
    // Per routed gradient: the activation's product, and its x read.
    let (act_flops, act_bytes) = if act.is_some() { (1, 4) } else { (0, 0) };
    let op = |entry: &'static str, count: usize, flops: u64, bytes: u64| -> Result<Op> {
        let p = Params { slope, ..pool.params(x_shape, count)? };
        Ok(Op::threads(label.clone(), Shader::MaxPool3d, entry, &p, &[indices, dy, dx, x], count)
            .with_constant("ACT", kind)
            .with_cost(flops, bytes))
    };
    let overlapping = (0..3).any(|a| pool.stride[a] < (pool.kernel[a] - 1) * pool.dilation[a] + 1);
    if overlapping {
        // One add per routed gradient; reads indices and dy, writes dx.
        return Ok(vec![op("backward", x_len, (y_len + act_flops * x_len) as u64, (4 * (2 * y_len + x_len) + act_bytes * x_len) as u64)?]);
    }
    let routed = ((act_flops * y_len) as u64, (4 * 3 * y_len + act_bytes * y_len) as u64);
    let mut ops = vec![];
    if !covered {
        let p = pool.params(x_shape, x_len)?;
        ops.push(Op::threads(label.clone(), Shader::MaxPool3d, "zero", &p, &[dx], x_len).with_cost(0, 4 * x_len as u64));
    }
    if pool.plain() {
        // Writes every element of every window: reads indices and dy, writes dx.
        let window = pool.kernel.iter().product::<usize>();
        let entry = if pairs(pool, x_shape) { "backward_windows2" } else { "backward_windows" };
        let op = op(entry, y_len, routed.0, routed.1 - (4 * y_len) as u64 + (4 * y_len * window) as u64)?;
        ops.push(window_constants(op, pool, x_shape, pool.output_shape(x_shape)?).with_constant("IN_PLACE", u32::from(in_place)));
    } else {
        ops.push(op("backward_scatter", y_len, routed.0, routed.1)?);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn output_shapes_follow_pytorch() {
        let p = MaxPool3d::new([2, 3, 2], [1, 2, 2], [1, 1, 0], [1, 1, 2]).unwrap();
        assert_eq!(p.output_shape([2, 3, 5, 7, 9]).unwrap(), [2, 3, 6, 4, 4]);
        assert_eq!(MaxPool3d::cubic(2).unwrap().output_dims([14, 14, 15]).unwrap(), [7, 7, 7]);
    }

    #[test]
    fn bad_geometry_is_a_shape_error() {
        assert!(message(MaxPool3d::new([2, 3, 2], [1, 1, 1], [1, 2, 0], [1; 3])).contains("padding along H"));
        assert!(message(MaxPool3d::new([2, 0, 2], [1; 3], [0; 3], [1; 3])).contains("kernel"));
        assert!(message(MaxPool3d::new([2; 3], [1, 1, 0], [0; 3], [1; 3])).contains("stride"));
        assert!(message(MaxPool3d::new([2; 3], [1; 3], [0; 3], [0, 1, 1])).contains("dilation"));
        let p = MaxPool3d::cubic(3).unwrap();
        assert!(message(p.output_dims([3, 2, 3])).contains("along H"));
        assert!(message(p.output_dims([3, 0, 3])).contains("positive"));
        assert!(message(p.output_shape([0, 1, 3, 3, 3])).contains("batch"));
        // Kernel 2, dilation 2, padding 1 on a size-1 axis: taps at −1 and 1, both outside.
        let p = MaxPool3d::new([1, 1, 2], [1; 3], [0, 0, 1], [1, 1, 2]).unwrap();
        assert!(message(p.output_dims([4, 4, 1])).contains("covers only padding"));
        assert_eq!(p.output_dims([4, 4, 2]).unwrap(), [4, 4, 2]);
        let direct = MaxPool3d { kernel: [0, 1, 1], stride: [1; 3], padding: [0; 3], dilation: [1; 3] };
        assert!(message(direct.output_dims([4, 4, 4])).contains("kernel"));
    }
}
