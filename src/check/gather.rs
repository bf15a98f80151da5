//! gather (colormap, the article's reshape, raw) and its labels against the reference.

use crate::data::colormap;
use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::gather::{self as layer, Gather, Mode};
use crate::reference::gather as reference;
use crate::rng::Rng;

use super::{compare, compare_u32, shape_str, KernelReport, Tol};

/// (samples, channels, D, H, W, batch): odd sizes that differ per axis, a small volume of a
/// multiple of 4 voxels (the colormap's four-voxel kernel) with an odd batch, and a 16³ batch of
/// 350 whose 4.3 M outputs need more than 65,535 workgroups of 64 (a 2D grid).
const CASES: &[(usize, usize, [usize; 3], usize)] =
    &[(13, 1, [5, 7, 9], 7), (9, 2, [3, 4, 5], 11), (5, 1, [2, 3, 2], 3), (20, 1, [16, 16, 16], 350)];

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0x6A7E);
    let lut = colormap::oranges_rgb();
    let lut_b = gpu.upload_f32("lut", &lut)?;
    for &(samples, channels, dims, batch) in CASES {
        let voxels: usize = dims.iter().product();
        let mut raw = rng.vec_f32(samples * channels * voxels, -2.0, 3.0);
        // Some values exactly on bin edges k/256 after scaling: scale each sample from [0, 1]
        // values whose first two are 0 and 1, so min-max scaling leaves them unchanged.
        for (i, v) in raw.iter_mut().enumerate() {
            match i % voxels {
                0 => *v = 0.0,
                1 => *v = 1.0,
                k if k % 5 == 0 => *v = (rng.below(257) as f32) / 256.0,
                _ => *v = v.clamp(0.0, 1.0) * 0.999 + 0.0005,
            }
        }
        let labels: Vec<u32> = (0..samples).map(|_| rng.below(10) as u32).collect();
        // Random indices with repeats, and one past the end (the shader must write zeros).
        let mut indices: Vec<u32> = (0..batch).map(|_| rng.below(samples as u64) as u32).collect();
        indices[batch / 2] = samples as u32;
        let modes: &[Mode] = if channels == 1 { &[Mode::Colormap, Mode::ArticleReshape, Mode::Raw] } else { &[Mode::Raw] };
        for &mode in modes {
            let g = Gather { batch, samples, channels, voxels, mode };
            // What the device copy holds: per-sample scaled values for the colormap.
            let data: Vec<f32> = match mode {
                Mode::Raw => raw.clone(),
                _ => raw.chunks(voxels).flat_map(colormap::min_max_scale).collect(),
            };
            // The colormap's device copy: each sample's table entries, a byte each.
            let data_b = match mode {
                Mode::Raw => gpu.upload_f32("data", &data)?,
                _ => gpu.upload_u32("codes", &data.chunks(voxels).flat_map(colormap::pack_codes).collect::<Vec<u32>>())?,
            };
            let labels_b = gpu.upload_u32("labels", &labels)?;
            let idx_b = gpu.upload_u32("indices", &indices)?;
            let x_b = gpu.zeros_act("x", g.out_len())?;
            let y_b = gpu.zeros("y", batch, DType::U32)?;
            gpu.run_ops(&[layer::forward(&g, &data_b, &labels_b, &idx_b, Some(&lut_b), &x_b, &y_b)?])?;
            let (x_ref, y_ref) = reference::forward(&g, &data, &labels, &indices, &lut);
            // The gathered batch is an activation: stored as the device stores them (the
            // reference's values are f32s, so this rounds once, as the kernel does).
            let x_ref: Vec<f64> = gpu.round_act(&x_ref.iter().map(|&v| v as f32).collect::<Vec<f32>>()).into_iter().map(f64::from).collect();
            let shape = shape_str(&[batch, g.out_channels(), dims[0], dims[1], dims[2]]);
            // A table lookup or a copy: exact (at f16, exactly the f16 of the f32 value).
            out.push(compare(g.kernel(), &shape, &gpu.read_f32_async(&x_b).await?, &x_ref, Tol::new(0.0, 0.0)));
            out.push(compare_u32("gather.labels", &shape, &gpu.read_u32_async(&y_b).await?, &y_ref));
        }
    }
    Ok(out)
}
