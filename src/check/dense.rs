//! dense: forward, backward_input, backward_weight, backward_bias against the reference.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::dense::Dense;
use crate::reference::dense as reference;
use crate::rng::Rng;

use super::{compare, f64s, shape_str, KernelReport, Tol};

/// (batch, in, out, bias): the article's fc1; odd sizes with and without bias; a batch above
/// 256 so that backward_bias's threads loop over several samples; and a weight of
/// 2100 × 2100 = 4,410,000 elements, whose backward_weight needs 68,907 workgroups of 64 (a
/// 2D grid), with a batch of 1 to keep the reference cheap.
const CASES: &[(usize, usize, usize, bool)] = &[
    (100, 512, 128, true),
    (7, 13, 11, true),
    (7, 13, 11, false),
    (300, 5, 3, true),
    (1, 2100, 2100, true),
];

const EPS_F32: f64 = f32::EPSILON as f64 / 2.0;

/// A sum of `k` f32 products, each at most `m` in magnitude: each addition rounds by u·|partial
/// sum|, and with random signs the partial sums stay near √k·m, so the accumulated error is
/// about √k·u·√k·m = k·u·m (the worst case, k²·u·m, is far from random data). A factor 4
/// covers the tail over thousands of outputs; rtol covers the final rounding of large values.
fn sum_tol(k: usize, m: f64) -> Tol {
    Tol::new(4.0 * k as f64 * EPS_F32 * m, 1e-5)
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xDE45E);
    for &(n, fi, fo, has_bias) in CASES {
        let d = Dense::new(n, fi, fo, has_bias)?;
        // PyTorch's default init range, so outputs have the magnitudes of a real network.
        let wmax = 1.0 / (fi as f64).sqrt();
        let x = gpu.round_act(&rng.vec_f32(d.input_len(), -1.0, 1.0));
        let w = rng.vec_f32(d.weight_len(), -wmax, wmax);
        let b = rng.vec_f32(d.bias_len(), -wmax, wmax);
        let g = gpu.round_act(&rng.vec_f32(d.output_len(), -1.0, 1.0));

        let xb = gpu.upload_act("x", &x)?;
        let wb = gpu.upload_f32("weight", &w)?;
        let bb = if has_bias { Some(gpu.upload_f32("bias", &b)?) } else { None };
        let yb = gpu.zeros_act("y", d.output_len())?;
        let dyb = gpu.upload_act("dy", &g)?;
        let dxb = gpu.zeros_act("dx", d.input_len())?;
        let dwb = gpu.zeros("dweight", d.weight_len(), DType::F32)?;
        let dbb = if has_bias { Some(gpu.zeros("dbias", fo, DType::F32)?) } else { None };

        let mut ops = vec![d.forward(&xb, &wb, bb.as_ref(), &yb)?];
        ops.extend(d.backward(&xb, &wb, &dyb, Some(&dxb), &dwb, dbb.as_ref())?);
        gpu.run_ops(&ops)?;

        let (xr, wr, br, gr) = (f64s(&x), f64s(&w), f64s(&b), f64s(&g));
        let shape = format!("x {} w {} bias {has_bias}", shape_str(&[n, fi]), shape_str(&[fo, fi]));
        let yr = reference::forward(&d, &xr, &wr, has_bias.then_some(br.as_slice()));
        out.push(compare("dense.forward", &shape, &gpu.read_f32_async(&yb).await?, &yr, sum_tol(fi + 1, wmax).stored(gpu.precision())));
        let dxr = reference::backward_input(&d, &gr, &wr);
        out.push(compare("dense.backward_input", &shape, &gpu.read_f32_async(&dxb).await?, &dxr, sum_tol(fo, wmax).stored(gpu.precision())));
        let dwr = reference::backward_weight(&d, &gr, &xr);
        out.push(compare("dense.backward_weight", &shape, &gpu.read_f32_async(&dwb).await?, &dwr, sum_tol(n, 1.0)));
        if let Some(dbb) = &dbb {
            let dbr = reference::backward_bias(&d, &gr);
            out.push(compare("dense.backward_bias", &shape, &gpu.read_f32_async(dbb).await?, &dbr, sum_tol(n, 1.0)));
        }
    }
    Ok(out)
}
