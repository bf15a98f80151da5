//! The article's preprocessing: each sample min-max scaled on its own, mapped through
//! matplotlib's "Oranges" colormap, alpha dropped — built and applied exactly as matplotlib does
//! (its 256-entry lookup table from ColorBrewer's 9 Oranges colours, `Normalize` in float32 for
//! float32 data, and `Colormap.__call__`'s binning).
//!
//! The GPU applies the table when it gathers a batch (`shaders/gather.wgsl`); the host scales
//! each sample once ([`min_max_scale`]) and bins it ([`pack_codes`]: the table entry, a byte a
//! voxel on the device), so that the GPU's colours are matplotlib's bit for bit.

use std::fmt;

use serde::Serialize;

use super::DataError;

/// Entries of matplotlib's lookup table (`rcParams["image.lut"]`).
pub const LUT_SIZE: usize = 256;

/// How voxel values become the model's input channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    /// The article's: per-sample min-max scaling, then matplotlib's "Oranges" RGB (3 channels).
    #[default]
    Oranges,
    /// The raw values, one input channel per data channel.
    None,
}

impl Colormap {
    /// The model's input channels for data with `data_channels` channels.
    pub fn out_channels(self, data_channels: usize) -> usize {
        match self {
            Colormap::Oranges => 3,
            Colormap::None => data_channels,
        }
    }
}

impl std::str::FromStr for Colormap {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "oranges" => Ok(Colormap::Oranges),
            "none" => Ok(Colormap::None),
            _ => Err(DataError::Parse(format!(
                "unknown colormap {s:?}: expected oranges (the article's RGB input) or none (raw density, one channel)"
            ))),
        }
    }
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Colormap::Oranges => "oranges",
            Colormap::None => "none",
        })
    }
}

/// ColorBrewer's 9 "Oranges" colours as matplotlib's `_cm._Oranges_data` spells them (one of
/// these literals is 1 ulp off 3/255, so they are copied, not computed).
#[allow(clippy::excessive_precision)]
const ORANGES: [[f64; 3]; 9] = [
    [1.0, 0.96078431372549022, 0.92156862745098034],
    [0.99607843137254903, 0.90196078431372551, 0.80784313725490198],
    [0.99215686274509807, 0.81568627450980391, 0.63529411764705879],
    [0.99215686274509807, 0.68235294117647061, 0.41960784313725491],
    [0.99215686274509807, 0.55294117647058827, 0.23529411764705882],
    [0.94509803921568625, 0.41176470588235292, 0.07450980392156863],
    [0.85098039215686272, 0.28235294117647058, 0.00392156862745098],
    [0.65098039215686276, 0.21176470588235294, 0.01176470588235294],
    [0.49803921568627452, 0.15294117647058825, 0.01568627450980392],
];

/// matplotlib's `Oranges._lut[:256]`: RGBA in f64, built as
/// `LinearSegmentedColormap.from_list(name, colours, 256)` and `_create_lookup_table` build it,
/// operation for operation, so that the values agree to the last bit.
pub fn oranges_lut() -> Vec<[f64; 4]> {
    let n = LUT_SIZE;
    let k = ORANGES.len();
    // from_list: the colours sit at np.linspace(0, 1, 9), scaled by (N - 1).
    let x: Vec<f64> = linspace(k).iter().map(|v| v * (n - 1) as f64).collect();
    // (N - 1) * np.linspace(0, 1, N) ** gamma, gamma = 1.
    let xind: Vec<f64> = linspace(n).iter().map(|v| (n - 1) as f64 * v).collect();
    let mut lut = vec![[0.0, 0.0, 0.0, 1.0]; n];
    for c in 0..3 {
        let y = |i: usize| ORANGES[i][c];
        lut[0][c] = y(0);
        lut[n - 1][c] = y(k - 1);
        for j in 1..n - 1 {
            // np.searchsorted(x, xind) (side "left"): the first i with x[i] >= xind[j].
            let ind = x.iter().position(|&xi| xi >= xind[j]).unwrap_or(k - 1);
            let distance = (xind[j] - x[ind - 1]) / (x[ind] - x[ind - 1]);
            lut[j][c] = (distance * (y(ind) - y(ind - 1)) + y(ind - 1)).clamp(0.0, 1.0);
        }
    }
    lut
}

/// np.linspace(0, 1, n): `i * (1 / (n - 1))`, the last value exactly 1.
fn linspace(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { 1.0 } else { i as f64 * step }).collect()
}

/// The RGB of [`oranges_lut`] as f32, 256 × 3, row-major: the table the GPU reads.
pub fn oranges_rgb() -> Vec<f32> {
    oranges_lut().iter().flat_map(|e| [e[0] as f32, e[1] as f32, e[2] as f32]).collect()
}

/// The table entry matplotlib's `Colormap.__call__` picks for a float32 value in [0, 1]:
/// `x·256` (exact in f32), 256 → 255, truncate; below 0 → the first entry (the default "under"
/// colour), 256 and above → the last ("over"). NaN, which matplotlib paints transparent, cannot
/// reach here (NaN data is rejected when loading) and maps to the first entry.
pub fn lut_index(t: f32) -> usize {
    let xa = t * LUT_SIZE as f32;
    if xa >= (LUT_SIZE - 1) as f32 {
        LUT_SIZE - 1
    } else if xa > 0.0 {
        xa as usize
    } else {
        0
    }
}

/// One sample's table entries ([`lut_index`] of each min-max scaled value), four to a u32
/// word, the first voxel in the lowest byte; the last word padded with zeros. What the device
/// copy of a colormapped dataset holds: the colormap's 256 entries make one byte per voxel
/// exact, a quarter of the f32 values' memory.
pub fn pack_codes(scaled: &[f32]) -> Vec<u32> {
    scaled
        .chunks(4)
        .map(|four| four.iter().enumerate().fold(0u32, |w, (i, &t)| w | (lut_index(t) as u32) << (8 * i)))
        .collect()
}

/// One sample scaled to [0, 1] by its own minimum and maximum, as matplotlib's
/// `ScalarMappable.to_rgba` does with a fresh `Normalize`: in float32, `(x - min) / (max - min)`,
/// all zeros when the sample is constant.
pub fn min_max_scale(sample: &[f32]) -> Vec<f32> {
    let (lo, hi) = sample.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if sample.is_empty() || lo == hi {
        return vec![0.0; sample.len()];
    }
    let range = hi - lo;
    sample.iter().map(|&v| (v - lo) / range).collect()
}

/// The article's `array_to_color(sample)`: min-max scaling, Oranges, alpha dropped, as f32 —
/// channels last, (S, 3).
pub fn article_rgb(sample: &[f32]) -> Vec<f32> {
    let rgb = oranges_rgb();
    min_max_scale(sample)
        .iter()
        .flat_map(|&t| {
            let i = lut_index(t) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        })
        .collect()
}

/// The model's input for one one-channel sample, (3, S): the channels-last RGB volume moved to
/// channels first, or with `article_reshape` the article's plain `reshape(3, D, H, W)` of the
/// channels-last buffer (voxel `o / 3`, colour `o % 3` at position `o`).
pub fn to_input(sample: &[f32], article_reshape: bool) -> Vec<f32> {
    let rgb = article_rgb(sample);
    if article_reshape {
        return rgb;
    }
    let s = sample.len();
    let mut out = vec![0.0; 3 * s];
    for v in 0..s {
        for c in 0..3 {
            out[c * s + v] = rgb[v * 3 + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)]
    fn lut_ends_are_the_first_and_last_colours() {
        let lut = oranges_lut();
        assert_eq!(lut[0], [1.0, 0.96078431372549022, 0.92156862745098034, 1.0]);
        assert_eq!(lut[255], [0.49803921568627452, 0.15294117647058825, 0.01568627450980392, 1.0]);
        // From the lightest colour to the darkest, never back.
        assert!(lut.windows(2).all(|w| w[1][0] <= w[0][0] && w[1][1] <= w[0][1]), "Oranges darkens monotonically");
    }

    #[test]
    fn binning_follows_matplotlib() {
        assert_eq!(lut_index(0.0), 0);
        assert_eq!(lut_index(1.0), 255);
        assert_eq!(lut_index(0.5), 128);
        assert_eq!(lut_index(1.0 / 256.0), 1);
        assert_eq!(lut_index(1.0 / 256.0 - f32::EPSILON / 256.0), 0);
        assert_eq!(lut_index(-0.5), 0);
        assert_eq!(lut_index(7.0), 255);
        // Four entries a word, the first in the lowest byte; a partial last word padded with 0.
        assert_eq!(pack_codes(&[0.0, 1.0, 0.5, 1.0 / 256.0, 7.0]), vec![0x0180_ff00, 0xff]);
        assert_eq!(pack_codes(&[f32::NAN, -1.0]), vec![0]);
    }

    #[test]
    fn constant_samples_scale_to_zero() {
        assert_eq!(min_max_scale(&[3.0, 3.0]), vec![0.0, 0.0]);
        assert_eq!(min_max_scale(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    }

    #[test]
    fn article_reshape_scrambles_and_transpose_does_not() {
        let sample = [0.0, 1.0, 0.25, 0.5];
        let t = to_input(&sample, false);
        let a = to_input(&sample, true);
        let rgb = oranges_rgb();
        // Channel 0 (red) of the transposed volume holds each voxel's red.
        for (v, &x) in sample.iter().enumerate() {
            assert_eq!(t[v], rgb[lut_index(x) * 3]);
        }
        // The article's "channel 0" is voxel 0's RGB followed by voxel 1's red.
        assert_eq!(&a[..4], &[rgb[0], rgb[1], rgb[2], rgb[255 * 3]]);
    }
}
