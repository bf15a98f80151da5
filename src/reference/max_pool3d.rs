//! Reference 3D max pooling, as PyTorch's CPU `max_pool3d_with_indices` and its backward.
//! x `[N, C, D, H, W]`; y and indices `[N, C, OD, OH, OW]`, an index counting inside the
//! `D·H·W` volume of its (n, c).

use crate::layers::max_pool3d::MaxPool3d;

/// y and the argmax of every window. A window starts at −∞ with its first in-bounds tap's
/// index; a tap wins when it is NaN or greater (so ties keep the first tap and the last NaN
/// wins).
pub fn forward(pool: &MaxPool3d, x_shape: [usize; 5], x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let [n, c, d, h, w] = x_shape;
    let [od, oh, ow] = pool.output_dims([d, h, w]).expect("reference max_pool3d: invalid geometry");
    let (k, s, p, dil) = (pool.kernel, pool.stride, pool.padding, pool.dilation);
    // In-bounds tap positions of window o along axis a, in scan order.
    let taps = |a: usize, o: usize, size: usize| -> Vec<usize> {
        (0..k[a])
            .map(|t| (o * s[a] + t * dil[a]) as i64 - p[a] as i64)
            .filter(|&i| i >= 0 && i < size as i64)
            .map(|i| i as usize)
            .collect()
    };
    let mut y = Vec::with_capacity(n * c * od * oh * ow);
    let mut indices = Vec::with_capacity(y.capacity());
    for slice in 0..n * c {
        let xs = &x[slice * d * h * w..(slice + 1) * d * h * w];
        for zd in 0..od {
            for zh in 0..oh {
                for zw in 0..ow {
                    let (td, th, tw) = (taps(0, zd, d), taps(1, zh, h), taps(2, zw, w));
                    let mut m = f64::NEG_INFINITY;
                    let mut best = (td[0] * h + th[0]) * w + tw[0];
                    for &i in &td {
                        for &j in &th {
                            for &l in &tw {
                                let at = (i * h + j) * w + l;
                                if xs[at] > m || xs[at].is_nan() {
                                    m = xs[at];
                                    best = at;
                                }
                            }
                        }
                    }
                    y.push(m);
                    indices.push(best as u32);
                }
            }
        }
    }
    (y, indices)
}

/// dx: each dy added to the input element its window's index names.
pub fn backward(pool: &MaxPool3d, x_shape: [usize; 5], indices: &[u32], dy: &[f64]) -> Vec<f64> {
    let [n, c, d, h, w] = x_shape;
    let [od, oh, ow] = pool.output_dims([d, h, w]).expect("reference max_pool3d: invalid geometry");
    let (vol, out_vol) = (d * h * w, od * oh * ow);
    let mut dx = vec![0.0; n * c * vol];
    for slice in 0..n * c {
        for o in slice * out_vol..(slice + 1) * out_vol {
            dx[slice * vol + indices[o] as usize] += dy[o];
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};
    use crate::rng::Rng;

    /// Distinct values 0.01 apart in random order: no ties, so the max is differentiable and a
    /// finite difference of 1e-6 never changes the argmax.
    fn distinct(seed: u64, len: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..len).map(|i| (i as f64 - len as f64 / 2.0) * 0.01).collect();
        let mut r = Rng::new(seed);
        for i in (1..len).rev() {
            v.swap(i, r.below(i as u64 + 1) as usize);
        }
        v
    }

    #[test]
    fn gradcheck() {
        let cases = [
            ([2, 2, 5, 6, 7], MaxPool3d::new([2, 3, 2], [1, 2, 2], [1, 1, 0], [1, 1, 2]).unwrap()),
            // Overlapping windows (stride < kernel) with dilation on D.
            ([1, 3, 6, 5, 4], MaxPool3d::new([3, 3, 2], [1, 1, 2], [1, 0, 1], [2, 1, 1]).unwrap()),
        ];
        for (seed, (shape, pool)) in cases.into_iter().enumerate() {
            let x = distinct(10 + seed as u64, shape.iter().product());
            let (y, idx) = forward(&pool, shape, &x);
            let g = random(20 + seed as u64, y.len(), -1.0, 1.0);
            let dx = backward(&pool, shape, &idx, &g);
            let num = numeric_grad(&|x| forward(&pool, shape, x).0, &x, &g, 1e-6);
            assert_grad_close(&format!("max_pool3d {shape:?}"), &dx, &num, 1e-7, 1e-6).unwrap();
        }
    }

    #[test]
    fn ties_keep_the_first_tap_and_nan_wins() {
        // One (n, c) of 1x2x3, kernel (1, 2, 2) stride 1: windows over columns {0,1} and {1,2}.
        let pool = MaxPool3d::new([1, 2, 2], [1; 3], [0; 3], [1; 3]).unwrap();
        let shape = [1, 1, 1, 2, 3];
        let (y, idx) = forward(&pool, shape, &[1.0, 5.0, 5.0, 5.0, 2.0, f64::NAN]);
        assert_eq!(idx, vec![1, 5]);
        assert_eq!(y[0], 5.0);
        assert!(y[1].is_nan());
        let (_, idx) = forward(&pool, shape, &[f64::NAN, 0.0, 0.0, f64::NAN, 9.0, 0.0]);
        assert_eq!(idx, vec![3, 4]);
        // All −∞: the window's first tap.
        let (_, idx) = forward(&pool, shape, &[f64::NEG_INFINITY; 6]);
        assert_eq!(idx, vec![0, 1]);
    }

    #[test]
    fn padding_never_wins() {
        // W = 3, kernel 2, padding 1: windows {-1,0}, {1,2}; all values negative.
        let pool = MaxPool3d::new([1, 1, 2], [1, 1, 2], [0, 0, 1], [1; 3]).unwrap();
        let (y, idx) = forward(&pool, [1, 1, 1, 1, 3], &[-3.0, -2.0, -1.0]);
        assert_eq!((y, idx), (vec![-3.0, -1.0], vec![0, 2]));
    }
}
