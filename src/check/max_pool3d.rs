//! max_pool3d forward (y and indices) and backward against the reference, alone and with a
//! relu or leaky_relu fused into it (against the two references one after the other).

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::activation::Activation;
use crate::layers::max_pool3d::{self as layer, MaxPool3d};
use crate::reference::{activation as act_reference, max_pool3d as reference};
use crate::rng::Rng;

use super::{compare, compare_u32, f64s, shape_str, KernelReport, Tol};

/// What fills x.
#[derive(Clone, Copy)]
enum Values {
    /// Uniform in [−1, 1): ties practically never happen.
    Uniform,
    /// Integers 0..=3: ties in most windows, so the first-tap rule is what decides.
    Ties,
    /// Uniform, with about one in eight NaN and one in eight −∞.
    NanAndNegInf,
}

struct Case {
    x_shape: [usize; 5],
    pool: MaxPool3d,
    values: Values,
    /// An activation fused before the pool.
    act: Option<Activation>,
    /// Backward writes dx over x (one buffer), as the training step does for a convolution
    /// whose output the pool's windows tile.
    in_place: bool,
}

fn cases() -> Result<Vec<Case>> {
    let case = |x_shape, k, s, p, d, values| -> Result<Case> {
        Ok(Case { x_shape, pool: MaxPool3d::new(k, s, p, d)?, values, act: None, in_place: false })
    };
    let fused = |c: Result<Case>, act| -> Result<Case> { Ok(Case { act: Some(act), ..c? }) };
    Ok(vec![
        // Odd sizes, every option different per axis.
        case([2, 3, 5, 7, 9], [2, 3, 2], [1, 2, 2], [1, 1, 0], [1, 1, 2], Values::Uniform)?,
        // The article's MaxPool3d(2): 14³ → 7³.
        Case { x_shape: [2, 4, 14, 14, 14], pool: MaxPool3d::cubic(2)?, values: Values::Uniform, act: None, in_place: false },
        // Windows that tile all but a remainder of the input (5 → 2 along every axis).
        Case { x_shape: [3, 5, 5, 7, 9], pool: MaxPool3d::cubic(2)?, values: Values::Uniform, act: None, in_place: false },
        Case { x_shape: [2, 3, 9, 6, 7], pool: MaxPool3d::new([3, 2, 1], [3, 2, 1], [0; 3], [1; 3])?, values: Values::Ties, act: None, in_place: false },
        // Stride past the window: inputs between windows get no gradient.
        case([2, 3, 7, 8, 9], [2; 3], [3, 3, 4], [0; 3], [1; 3], Values::Uniform)?,
        // The article's LeakyReLU + MaxPool3d(2) fused, on the tiling and the remainder path.
        Case { x_shape: [2, 4, 14, 14, 14], pool: MaxPool3d::cubic(2)?, values: Values::Uniform, act: Some(Activation::LeakyRelu(0.01)), in_place: false },
        Case { x_shape: [3, 5, 5, 7, 9], pool: MaxPool3d::cubic(2)?, values: Values::Uniform, act: Some(Activation::LeakyRelu(0.2)), in_place: false },
        // In place: dx written over x (the article's conv_layer1 output and its gradient).
        Case { x_shape: [2, 4, 14, 14, 14], pool: MaxPool3d::cubic(2)?, values: Values::Uniform, act: Some(Activation::LeakyRelu(0.01)), in_place: true },
        Case { x_shape: [2, 3, 9, 6, 7], pool: MaxPool3d::new([3, 2, 1], [3, 2, 1], [0; 3], [1; 3])?, values: Values::Ties, act: Some(Activation::Relu), in_place: true },
        // Relu: all-negative windows tie at 0 (the first tap wins, its gradient is 0).
        Case { x_shape: [2, 3, 9, 6, 7], pool: MaxPool3d::new([3, 2, 1], [3, 2, 1], [0; 3], [1; 3])?, values: Values::Uniform, act: Some(Activation::Relu), in_place: false },
        fused(case([2, 3, 7, 8, 9], [2; 3], [3, 3, 4], [0; 3], [1; 3], Values::Uniform), Activation::Relu)?,
        // A negative slope makes f decreasing below 0: the max is taken of f(x), not of x.
        fused(case([1, 2, 6, 7, 5], [3; 3], [1; 3], [1, 0, 1], [1; 3], Values::Uniform), Activation::LeakyRelu(-0.5))?,
        fused(case([2, 3, 7, 6, 5], [3, 2, 3], [1, 1, 2], [1, 1, 1], [1; 3], Values::Ties), Activation::LeakyRelu(0.01))?,
        fused(case([1, 2, 5, 6, 7], [2; 3], [1; 3], [1, 0, 1], [1, 2, 1], Values::NanAndNegInf), Activation::LeakyRelu(0.01))?,
        // Windows 2 wide over an even W (the kernels reading pairs along W), with ties (the
        // first in scan order wins) and with NaN and -inf, fused in place.
        Case { x_shape: [2, 3, 4, 6, 8], pool: MaxPool3d::cubic(2)?, values: Values::Ties, act: None, in_place: false },
        Case { x_shape: [1, 2, 6, 4, 10], pool: MaxPool3d::cubic(2)?, values: Values::NanAndNegInf, act: Some(Activation::LeakyRelu(0.01)), in_place: true },
        // Overlapping windows: each input element lies in up to 27 of them.
        case([1, 2, 6, 7, 5], [3; 3], [1; 3], [1, 0, 1], [1; 3], Values::Uniform)?,
        // Ties everywhere, in overlapping windows.
        case([2, 3, 7, 6, 5], [3, 2, 3], [1, 1, 2], [1, 1, 1], [1; 3], Values::Ties)?,
        case([1, 2, 5, 6, 7], [2; 3], [1; 3], [1, 0, 1], [1, 2, 1], Values::NanAndNegInf)?,
        // 161·161·163 inputs and 161·161·162 outputs: both passes need more than 65,535
        // workgroups of 64, so the 2D grid is exercised.
        case([1, 1, 161, 161, 163], [1, 1, 2], [1; 3], [0; 3], [1; 3], Values::Uniform)?,
    ])
}

fn fill(rng: &mut Rng, n: usize, values: Values) -> Vec<f32> {
    match values {
        Values::Uniform => rng.vec_f32(n, -1.0, 1.0),
        Values::Ties => (0..n).map(|_| rng.below(4) as f32).collect(),
        Values::NanAndNegInf => (0..n)
            .map(|_| match rng.below(8) {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                _ => rng.uniform(-1.0, 1.0) as f32,
            })
            .collect(),
    }
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0x3A9);
    for Case { x_shape, pool, values, act, in_place } in cases()? {
        let y_shape = pool.output_shape(x_shape)?;
        let (x_len, y_len) = (x_shape.iter().product(), y_shape.iter().product());
        let x = gpu.round_act(&fill(&mut rng, x_len, values));
        let g = gpu.round_act(&rng.vec_f32(y_len, -1.0, 1.0));
        let xb = gpu.upload_act("x", &x)?;
        let yb = gpu.zeros_act("y", y_len)?;
        let ib = gpu.zeros("indices", y_len, DType::U32)?;
        let dyb = gpu.upload_act("dy", &g)?;
        // dx starts as garbage: the pass must write every element (the scatter path zeroes
        // the elements no window picked).
        let dxb = if in_place { xb.clone() } else { gpu.upload_act("dx", &vec![f32::NAN; x_len])? };
        let mut ops = vec![layer::forward_with(&pool, x_shape, &xb, &yb, &ib, act)?];
        ops.extend(layer::backward_with(&pool, x_shape, &ib, &dyb, &dxb, act.map(|a| (a, &xb)))?);
        gpu.run_ops(&ops)?;
        let x64 = f64s(&x);
        let fx = match act {
            Some(a) => act_reference::forward(a, &x64),
            None => x64.clone(),
        };
        let (yr, ir) = reference::forward(&pool, x_shape, &fx);
        // The reference's own indices: when the GPU's match them (checked exactly) the backward
        // is judged alone, and wrong GPU indices cannot send the reference out of bounds.
        let mut dxr = reference::backward(&pool, x_shape, &ir, &f64s(&g));
        if let Some(a) = act {
            dxr = act_reference::backward(a, &x64, &fx, &dxr);
        }
        let shape = format!(
            "{}{}{} k{:?} s{:?} p{:?} d{:?}",
            if in_place { "in place: " } else { "" },
            act.map(|a| format!("{a:?} then ")).unwrap_or_default(),
            shape_str(&x_shape),
            pool.kernel,
            pool.stride,
            pool.padding,
            pool.dilation
        );
        // The max selects an input value: exact, NaN and −∞ included (at f16 too: the value
        // stored is one read). A fused leaky_relu multiplies in f32 where the reference does in
        // f64: one rounding, 2⁻²⁴ relative (and one more to store it at f16).
        let tol = if act.is_some() { Tol::new(0.0, 1.2e-7).stored(gpu.precision()) } else { Tol::new(0.0, 0.0) };
        out.push(compare("max_pool3d.forward", &shape, &gpu.read_f32_async(&yb).await?, &yr, tol));
        out.push(compare_u32("max_pool3d.forward", &shape, &gpu.read_u32_async(&ib).await?, &ir));
        // dx sums at most 27 dy terms of |dy| < 1 in f32 (kernel 3, stride 1): the error is
        // below 26 · 2⁻²⁴ · 27 ≈ 4.2e-5 (and a fused slope's product adds one rounding).
        out.push(compare("max_pool3d.backward", &shape, &gpu.read_f32_async(&dxb).await?, &dxr, Tol::new(5e-5, 1e-5).stored(gpu.precision())));
    }
    Ok(out)
}
