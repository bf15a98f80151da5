//! dropout: forward and backward against the reference, with the masks compared exactly.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::dropout::Dropout;
use crate::reference::dropout as reference;
use crate::rng::Rng;

use super::{compare, f64s, KernelReport, Tol};

/// Element counts: tiny, odd and not a multiple of the workgroup, and one above 65,535
/// workgroups of 64 so that the 2D grid is exercised.
const SIZES: &[usize] = &[1, 5 * 7 * 9 * 3, 65_535 * 64 + 1_001];
const PROBS: &[f32] = &[0.0, 0.15, 0.5, 1.0];
/// Two steps replayed through the same compiled plan, the step number written in between.
const STEPS: &[u32] = &[0, 7_919];

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xD80D);
    for &n in SIZES {
        let x = gpu.round_act(&rng.vec_f32(n, -4.0, 4.0));
        let g = gpu.round_act(&rng.vec_f32(n, -1.0, 1.0));
        let xb = gpu.upload_act("x", &x)?;
        let dyb = gpu.upload_act("dy", &g)?;
        let (xr, gr) = (f64s(&x), f64s(&g));
        for &p in PROBS {
            let d = Dropout::new(p, 0x5EED_0000 + n as u32)?;
            let stepb = gpu.zeros("step", 1, DType::U32)?;
            let yb = gpu.zeros_act("y", n)?;
            let dxb = gpu.zeros_act("dx", n)?;
            let plan = gpu.compile(&[d.forward(&stepb, &xb, &yb)?, d.backward(&stepb, &dyb, &dxb)?])?;
            for &step in STEPS {
                gpu.write_u32(&stepb, &[step])?;
                gpu.submit(&plan)?;
                let shape = format!("[{n}] p {p} step {step}");
                // atol 0 (at f32): a dropped element must be exactly 0 on both sides, so any
                // mask disagreement fails; kept ones differ by the roundings of scale and the
                // product (2 ulp). At f16 the stored product may be subnormal, within 2⁻²⁵.
                let tol = Tol::new(0.0, 1e-6).stored(gpu.precision());
                let yr = reference::forward(&d, step, &xr);
                out.push(compare("dropout.forward", &shape, &gpu.read_f32_async(&yb).await?, &yr, tol));
                let dxr = reference::backward(&d, step, &gr);
                out.push(compare("dropout.backward", &shape, &gpu.read_f32_async(&dxb).await?, &dxr, tol));
            }
        }
    }
    Ok(out)
}
