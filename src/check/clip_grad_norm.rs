//! clip_grad_norm: the norm, the coefficient and the clipped gradients against the reference.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::layers::clip_grad_norm::ClipGradNorm;
use crate::reference::clip_grad_norm as reference;
use crate::rng::Rng;

use super::{compare, f64s, KernelReport, Tol};

/// Gradient counts: one, odd and not a multiple of 256, and more than 256 groups of 256 so
/// that every thread of the first pass loops; 2D grid for the scale at 65,535 × 64 + 1,001.
const SIZES: &[usize] = &[1, 5 * 7 * 9 * 3, 256 * 256 * 3 + 17, 65_535 * 64 + 1_001];
/// Far below the norm (clips hard), near it, and above it (coef 1: gradients unchanged).
const MAX_NORMS: &[f32] = &[0.05, 20.0, 1e6];

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xC11B);
    for &n in SIZES {
        // Gradients whose norm is near 20 at every size, so max_norm 20 sits near the edge.
        let scale = 20.0 / (n as f64 / 3.0).sqrt();
        let g = rng.vec_f32(n, -scale, scale);
        let gr = f64s(&g);
        for &max_norm in MAX_NORMS {
            let gb = gpu.upload_f32("grads", &g)?;
            let clip = ClipGradNorm::new(gpu, n, max_norm)?;
            let plan = gpu.compile(&clip.ops(&gb)?)?;
            gpu.submit(&plan)?;
            let (norm, coef, want) = reference::clip_grad_norm(&gr, max_norm as f64);
            let shape = format!("[{n}] max_norm {max_norm}");
            // f32 sums of up to 4M squares in a tree: relative error well under 1e-5.
            let got = gpu.read_f32_async(clip.coef()).await?;
            out.push(compare("clip_grad_norm.norm", &shape, &got[1..], &[norm], Tol::new(0.0, 1e-5)));
            out.push(compare("clip_grad_norm.coef", &shape, &got[..1], &[coef], Tol::new(0.0, 1e-5)));
            out.push(compare("clip_grad_norm.scale", &shape, &gpu.read_f32_async(&gb).await?, &want, Tol::new(1e-12, 2e-5)));
        }
    }
    Ok(out)
}
