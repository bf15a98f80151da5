//! relu, leaky_relu, sigmoid, tanh: forward and backward against the reference.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::layers::activation::{self as layer, Activation};
use crate::reference::activation as reference;
use crate::rng::Rng;

use super::{compare_chunked, f64s, KernelReport, Tol};

/// Element counts: tiny, not a multiple of the workgroup, and one above 65,535 workgroups of
/// 64 so that the 2D grid is exercised.
// Odd sizes run one element per invocation, multiples of 4 one vec4 (the last one needs more
// than 65,535 workgroups of 64 vec4s).
const SIZES: &[usize] = &[1, 5 * 7 * 9 * 3, 4 * 5 * 7 * 9, 65_535 * 64 + 1_001, (65_535 * 64 + 7) * 4];

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xAC71);
    for act in [Activation::Relu, Activation::LeakyRelu(0.01), Activation::Sigmoid, Activation::Tanh] {
        for &n in SIZES {
            let x = gpu.round_act(&rng.vec_f32(n, -4.0, 4.0));
            let g = gpu.round_act(&rng.vec_f32(n, -1.0, 1.0));
            let xb = gpu.upload_act("x", &x)?;
            let yb = gpu.zeros_act("y", n)?;
            let dyb = gpu.upload_act("dy", &g)?;
            let dxb = gpu.zeros_act("dx", n)?;
            gpu.run_ops(&[layer::forward(act, &xb, &yb)?, layer::backward(act, &xb, &yb, &dyb, &dxb)?])?;
            let y = gpu.read_f32_async(&yb).await?;
            let dx = gpu.read_f32_async(&dxb).await?;
            drop((xb, yb, dyb, dxb));
            let shape = format!("[{n}]");
            // exp/tanh are approximations on GPUs (a few ulp, more on some drivers).
            let tol = Tol::new(1e-6, 1e-5).stored(gpu.precision());
            out.push(compare_chunked(&format!("{}.forward", act.name()), &shape, &y, tol, |r| reference::forward(act, &f64s(&x[r]))));
            // The backward reference uses the GPU's y so that only the backward kernel is judged.
            out.push(compare_chunked(&format!("{}.backward", act.name()), &shape, &dx, tol, |r| {
                reference::backward(act, &f64s(&x[r.clone()]), &f64s(&y[r.clone()]), &f64s(&g[r]))
            }));
        }
    }
    Ok(out)
}
