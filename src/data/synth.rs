//! The bundled dataset: 3D digits 0–9 generated in code from a seed, so that cnn3d runs with no
//! download. Each digit's strokes (the stroke font in `assets/digits.strokes`) are perturbed,
//! slanted and thickened into a 3D point cloud (extruded in depth), which is randomly scaled,
//! rotated, shifted, jittered and sprinkled with noise points, then voxelised to 16³ the way
//! 3D MNIST was made: counts per voxel over the cloud's cubic bounding box, divided by the max.
//!
//! Sample `i` of a split depends only on (seed, split, i), so a smaller set is a prefix of a
//! larger one. Labels cycle 0, 1, …, 9, so every class has N/10 samples (±1).

use serde::Serialize;

use crate::rng::Rng;

use super::{DataError, Dataset, Split};

/// Digits 0–9.
pub const CLASSES: usize = 10;
/// Voxels per axis, as 3D MNIST.
pub const SIDE: usize = 16;

const FONT: &str = include_str!("../../assets/digits.strokes");
/// The font's grid: 4 wide, 6 high.
const GRID_W: f64 = 4.0;
const GRID_H: f64 = 6.0;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SynthOptions {
    pub train: usize,
    pub test: usize,
    pub seed: u64,
}

impl Default for SynthOptions {
    /// 6,000 training and 1,000 test samples, seed 0.
    fn default() -> Self {
        SynthOptions { train: 6000, test: 1000, seed: 0 }
    }
}

type Stroke = Vec<[f64; 2]>;

/// The font: for each digit, its strokes.
fn font() -> Result<Vec<Vec<Stroke>>, DataError> {
    let bad = |line: &str, why: &str| DataError::Parse(format!("assets/digits.strokes: {why} in line {line:?}"));
    let mut digits: Vec<Option<Vec<Stroke>>> = vec![None; CLASSES];
    for line in FONT.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (d, rest) = line.split_once(':').ok_or_else(|| bad(line, "no `D:`"))?;
        let d: usize = d.trim().parse().ok().filter(|&d| d < CLASSES).ok_or_else(|| bad(line, "not a digit"))?;
        let mut strokes = vec![];
        for s in rest.split('|') {
            let mut stroke = vec![];
            for p in s.split_whitespace() {
                let (x, y) = p.split_once(',').ok_or_else(|| bad(line, "a point is not x,y"))?;
                let x: f64 = x.parse().map_err(|_| bad(line, "bad x"))?;
                let y: f64 = y.parse().map_err(|_| bad(line, "bad y"))?;
                stroke.push([x, y]);
            }
            if stroke.len() < 2 {
                return Err(bad(line, "a stroke needs two points"));
            }
            strokes.push(stroke);
        }
        digits[d] = Some(strokes);
    }
    digits
        .into_iter()
        .enumerate()
        .map(|(d, s)| s.ok_or_else(|| DataError::Parse(format!("assets/digits.strokes: digit {d} is missing"))))
        .collect()
}

/// The bundled dataset: `opts.train` and `opts.test` samples of (1, 16, 16, 16).
pub fn generate(opts: &SynthOptions) -> Result<Dataset, DataError> {
    if opts.train == 0 {
        return Err(DataError::Parse("--train 0: the bundled dataset needs at least one training sample".into()));
    }
    // The sample counts are flags: the memory they ask for is checked (without wrapping)
    // against the cap a data file's datasets get, before anything is allocated.
    let voxels = SIDE * SIDE * SIDE;
    let bytes = (opts.train as u128 + opts.test as u128) * (voxels as u128 * 4 + 4);
    let budget = super::budget::Budget::new()?;
    if bytes > budget.cap as u128 {
        return Err(DataError::Option {
            source_name: "the bundled dataset".into(),
            message: format!(
                "--train {} and --test {} samples of {SIDE}³ voxels would take {bytes} bytes of memory, above the cap of {} bytes ({}); ask for fewer samples, or set {} to a larger number of bytes",
                opts.train,
                opts.test,
                budget.cap,
                budget.source,
                super::MAX_DATA_BYTES_ENV
            ),
        });
    }
    let font = font()?;
    let split = |tag: u64, n: usize| {
        let mut x = Vec::with_capacity(n * SIDE * SIDE * SIDE);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let label = i % CLASSES;
            let mut rng = sample_rng(opts.seed, tag, i as u64);
            x.extend(voxelise(&cloud(&font[label], &mut rng)));
            y.push(label as u32);
        }
        Split { x, y, sample_len: SIDE * SIDE * SIDE }
    };
    Ok(Dataset {
        source: format!("bundled digits (seed {})", opts.seed),
        channels: 1,
        dims: [SIDE; 3],
        classes: CLASSES,
        train: split(1, opts.train),
        val: Split { sample_len: SIDE * SIDE * SIDE, ..Default::default() },
        test: split(2, opts.test),
    })
}

/// An independent stream per (seed, split, sample): hashed, so that neighbouring seeds do not
/// give shifted copies of one SplitMix stream.
fn sample_rng(seed: u64, split: u64, i: u64) -> Rng {
    let a = Rng::new(seed).next_u64();
    let b = Rng::new(a ^ (split << 56) ^ i).next_u64();
    Rng::new(b)
}

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller; 1 - u keeps the logarithm finite.
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// One digit as a 3D point cloud, roughly within [-1, 1]³.
fn cloud(strokes: &[Stroke], rng: &mut Rng) -> Vec<[f64; 3]> {
    // The writer's hand: each vertex moved a little, slant, width and pen size.
    let slant = rng.uniform(-0.3, 0.3);
    let aspect = rng.uniform(0.75, 1.25);
    let radius = rng.uniform(0.25, 0.55);
    let depth = rng.uniform(0.8, 2.4);
    let strokes: Vec<Stroke> = strokes
        .iter()
        .map(|s| {
            s.iter()
                .map(|&[x, y]| {
                    let (x, y) = (x + 0.12 * normal(rng), y + 0.12 * normal(rng));
                    [(x - GRID_W / 2.0) * aspect + slant * (y - GRID_H / 2.0), y - GRID_H / 2.0]
                })
                .collect()
        })
        .collect();
    let segments: Vec<([f64; 2], [f64; 2], f64)> = strokes
        .iter()
        .flat_map(|s| s.windows(2).map(|w| (w[0], w[1], ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())))
        .collect();
    let length: f64 = segments.iter().map(|s| s.2).sum();

    // The pose: size, rotation (in-plane roll, tilts out of the plane) and position.
    let scale = rng.uniform(0.55, 0.9) / (GRID_H / 2.0);
    let rot = rotation(rng.uniform(-0.4, 0.4), rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6));
    let shift = [rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)];

    let n = (length * rng.uniform(70.0, 110.0)) as usize;
    let mut points = Vec::with_capacity(n + 100);
    for _ in 0..n {
        // A point on the strokes, uniform by length, spread over the pen's disc and the depth.
        let mut at = rng.uniform(0.0, length);
        let &(a, b, len) = segments.iter().find(|s| {
            at -= s.2;
            at <= 0.0
        }).unwrap_or(&segments[segments.len() - 1]);
        let t = if len > 0.0 { 1.0 + at / len } else { 0.0 };
        let (r, phi) = (radius * rng.next_f64().sqrt(), rng.uniform(0.0, std::f64::consts::TAU));
        let p = [
            a[0] + t * (b[0] - a[0]) + r * phi.cos(),
            a[1] + t * (b[1] - a[1]) + r * phi.sin(),
            rng.uniform(-depth / 2.0, depth / 2.0),
        ];
        let mut q = [0.0; 3];
        for (k, qk) in q.iter_mut().enumerate() {
            *qk = scale * (rot[k][0] * p[0] + rot[k][1] * p[1] + rot[k][2] * p[2]) + shift[k] + 0.02 * normal(rng);
        }
        points.push(q);
    }
    // Stray points: they also stretch the bounding box, so the digit's size and place in the
    // grid vary as they do in scanned data.
    for _ in 0..rng.uniform(20.0, 120.0) as usize {
        points.push([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)]);
    }
    points
}

/// Rotation about z (in the digit's plane), then x, then y.
fn rotation(roll: f64, pitch: f64, yaw: f64) -> [[f64; 3]; 3] {
    let (sr, cr) = roll.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sy, cy) = yaw.sin_cos();
    let rz = [[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    mul(ry, mul(rx, rz))
}

fn mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// 3D MNIST's voxel grid: the cloud's bounding box (padded by 0.001, grown to a cube about its
/// centre), 16 bins per axis, counts per voxel divided by the largest count. Voxel (x, y, z) is
/// element (x·16 + y)·16 + z.
fn voxelise(points: &[[f64; 3]]) -> Vec<f32> {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in points {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let extent: [f64; 3] = std::array::from_fn(|k| hi[k] - lo[k] + 0.002);
    let side = extent.iter().cloned().fold(0.0, f64::max);
    let origin: [f64; 3] = std::array::from_fn(|k| lo[k] - 0.001 - (side - extent[k]) / 2.0);
    let step = side / SIDE as f64;
    let mut counts = vec![0u32; SIDE * SIDE * SIDE];
    for p in points {
        let idx: [usize; 3] = std::array::from_fn(|k| (((p[k] - origin[k]) / step) as usize).min(SIDE - 1));
        counts[(idx[0] * SIDE + idx[1]) * SIDE + idx[2]] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f32;
    counts.iter().map(|&c| c as f32 / max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_has_every_digit() {
        let f = font().unwrap();
        assert_eq!(f.len(), CLASSES);
    }

    #[test]
    fn samples_are_normalised_like_3d_mnist() {
        let ds = generate(&SynthOptions { train: 20, test: 10, seed: 3 }).unwrap();
        assert_eq!(ds.train.x.len(), 20 * 4096);
        assert_eq!(ds.test.len(), 10);
        for i in 0..ds.train.len() {
            let s = ds.train.sample(i);
            let max = s.iter().cloned().fold(0.0, f32::max);
            assert_eq!(max, 1.0, "sample {i} is divided by its largest count");
            assert!(s.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
        assert_eq!(ds.train.y[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    }

    #[test]
    fn a_smaller_set_is_a_prefix_and_seeds_differ() {
        let a = generate(&SynthOptions { train: 12, test: 3, seed: 5 }).unwrap();
        let b = generate(&SynthOptions { train: 4, test: 1, seed: 5 }).unwrap();
        let c = generate(&SynthOptions { train: 4, test: 1, seed: 6 }).unwrap();
        assert_eq!(&a.train.x[..b.train.x.len()], &b.train.x[..]);
        assert_eq!(&a.test.x[..b.test.x.len()], &b.test.x[..]);
        assert_ne!(b.train.x, c.train.x);
    }
}
