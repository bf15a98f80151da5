//! Reference gather: the batch's inputs and labels, one sample at a time.

use crate::data::colormap::lut_index;
use crate::layers::gather::{Gather, Mode};

/// (x, y) for `indices`; `data` is (N, C, S), already min-max scaled for the colormap modes,
/// `lut` 256 × 3 RGB. Indices past the data give zeros and label 0, as the shader does.
pub fn forward(g: &Gather, data: &[f32], labels: &[u32], indices: &[u32], lut: &[f32]) -> (Vec<f64>, Vec<u32>) {
    let in_len = g.channels * g.voxels;
    let out_len = g.out_channels() * g.voxels;
    let mut x = vec![0.0; g.batch * out_len];
    let mut y = vec![0; g.batch];
    for (b, &n) in indices.iter().enumerate() {
        let n = n as usize;
        if n >= g.samples {
            continue;
        }
        y[b] = labels[n];
        let sample = &data[n * in_len..(n + 1) * in_len];
        let out = &mut x[b * out_len..(b + 1) * out_len];
        for (o, v) in out.iter_mut().enumerate() {
            *v = match g.mode {
                Mode::Raw => sample[o] as f64,
                Mode::Colormap => lut[lut_index(sample[o % g.voxels]) * 3 + o / g.voxels] as f64,
                Mode::ArticleReshape => lut[lut_index(sample[o / 3]) * 3 + o % 3] as f64,
            };
        }
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::colormap;

    #[test]
    fn colormap_gather_matches_the_articles_preprocessing() {
        let raw = [0.3f32, -1.0, 2.5, 0.0, 0.7, 0.1];
        let g = |mode| Gather { batch: 1, samples: 1, channels: 1, voxels: raw.len(), mode };
        let scaled = colormap::min_max_scale(&raw);
        let lut = colormap::oranges_rgb();
        for (mode, article) in [(Mode::Colormap, false), (Mode::ArticleReshape, true)] {
            let (x, y) = forward(&g(mode), &scaled, &[4], &[0], &lut);
            let want: Vec<f64> = colormap::to_input(&raw, article).iter().map(|&v| v as f64).collect();
            assert_eq!(x, want);
            assert_eq!(y, vec![4]);
        }
    }
}
