//! avg_pool3d forward and backward against the reference.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::layers::avg_pool3d::{self as layer, AvgPool3d};
use crate::reference::avg_pool3d as reference;
use crate::rng::Rng;

use super::{compare, f64s, shape_str, KernelReport, Tol};

fn cases() -> Result<Vec<([usize; 5], AvgPool3d)>> {
    Ok(vec![
        // Odd sizes, every option different per axis.
        ([2, 3, 5, 7, 9], AvgPool3d::new([2, 3, 2], [1, 2, 2], [1, 1, 0])?),
        // The article's pooling size, as AvgPool3d(2): 14³ → 7³.
        ([2, 4, 14, 14, 14], AvgPool3d::cubic(2)?),
        // Overlapping windows: each input element lies in up to 27 of them.
        ([1, 2, 6, 7, 5], AvgPool3d::new([3; 3], [1; 3], [1, 0, 1])?),
        // 161·161·163 inputs and 161·161·162 outputs: both passes need more than 65,535
        // workgroups of 64, so the 2D grid is exercised.
        ([1, 1, 161, 161, 163], AvgPool3d::new([1, 1, 2], [1; 3], [0; 3])?),
    ])
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xA11);
    for (x_shape, pool) in cases()? {
        let y_shape = pool.output_shape(x_shape)?;
        let (x_len, y_len) = (x_shape.iter().product(), y_shape.iter().product());
        let x = gpu.round_act(&rng.vec_f32(x_len, -1.0, 1.0));
        let g = gpu.round_act(&rng.vec_f32(y_len, -1.0, 1.0));
        let xb = gpu.upload_act("x", &x)?;
        let yb = gpu.zeros_act("y", y_len)?;
        let dyb = gpu.upload_act("dy", &g)?;
        let dxb = gpu.zeros_act("dx", x_len)?;
        gpu.run_ops(&[layer::forward(&pool, x_shape, &xb, &yb)?, layer::backward(&pool, x_shape, &dyb, &dxb)?])?;
        let yr = reference::forward(&pool, x_shape, &f64s(&x));
        let dxr = reference::backward(&pool, x_shape, &f64s(&g));
        let shape = format!("{} k{:?} s{:?} p{:?}", shape_str(&x_shape), pool.kernel, pool.stride, pool.padding);
        // Both passes add at most 27 terms whose magnitudes sum to at most 1 (|x|, |dy| < 1,
        // each window divided by its size), so f32 accumulation is off by under
        // 27 · 2⁻²⁴ ≈ 1.6e-6; the rest covers the division (2.5 ulp in WGSL).
        let tol = Tol::new(1e-5, 1e-5).stored(gpu.precision());
        out.push(compare("avg_pool3d.forward", &shape, &gpu.read_f32_async(&yb).await?, &yr, tol));
        out.push(compare("avg_pool3d.backward", &shape, &gpu.read_f32_async(&dxb).await?, &dxr, tol));
    }
    Ok(out)
}
