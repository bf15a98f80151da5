//! Reference 3D average pooling, as PyTorch's CPU `avg_pool3d` with `count_include_pad = True`
//! and its backward. x `[N, C, D, H, W]`, y `[N, C, OD, OH, OW]`.

use crate::layers::avg_pool3d::AvgPool3d;

/// Window o along axis a: its in-bounds positions and its divisor factor. As PyTorch, the
/// divisor comes from the window clipped to the padded input (`end = min(start + k, size +
/// pad)`) before it is clipped to the input itself.
fn window(pool: &AvgPool3d, a: usize, o: usize, size: usize) -> (std::ops::Range<usize>, usize) {
    let start = (o * pool.stride[a]) as i64 - pool.padding[a] as i64;
    let end = (start + pool.kernel[a] as i64).min((size + pool.padding[a]) as i64);
    let factor = (end - start) as usize;
    (start.max(0) as usize..end.min(size as i64) as usize, factor)
}

pub fn forward(pool: &AvgPool3d, x_shape: [usize; 5], x: &[f64]) -> Vec<f64> {
    let [n, c, d, h, w] = x_shape;
    let [od, oh, ow] = pool.output_dims([d, h, w]).expect("reference avg_pool3d: invalid geometry");
    let mut y = Vec::with_capacity(n * c * od * oh * ow);
    for slice in 0..n * c {
        let xs = &x[slice * d * h * w..(slice + 1) * d * h * w];
        for zd in 0..od {
            for zh in 0..oh {
                for zw in 0..ow {
                    let ((rd, fd), (rh, fh), (rw, fw)) =
                        (window(pool, 0, zd, d), window(pool, 1, zh, h), window(pool, 2, zw, w));
                    let mut sum = 0.0;
                    for i in rd {
                        for j in rh.clone() {
                            for l in rw.clone() {
                                sum += xs[(i * h + j) * w + l];
                            }
                        }
                    }
                    y.push(sum / (fd * fh * fw) as f64);
                }
            }
        }
    }
    y
}

/// dx: each dy / divisor spread over the input elements of its window.
pub fn backward(pool: &AvgPool3d, x_shape: [usize; 5], dy: &[f64]) -> Vec<f64> {
    let [n, c, d, h, w] = x_shape;
    let [od, oh, ow] = pool.output_dims([d, h, w]).expect("reference avg_pool3d: invalid geometry");
    let mut dx = vec![0.0; n * c * d * h * w];
    let mut o = 0;
    for slice in 0..n * c {
        let dxs = &mut dx[slice * d * h * w..(slice + 1) * d * h * w];
        for zd in 0..od {
            for zh in 0..oh {
                for zw in 0..ow {
                    let ((rd, fd), (rh, fh), (rw, fw)) =
                        (window(pool, 0, zd, d), window(pool, 1, zh, h), window(pool, 2, zw, w));
                    let g = dy[o] / (fd * fh * fw) as f64;
                    for i in rd {
                        for j in rh.clone() {
                            for l in rw.clone() {
                                dxs[(i * h + j) * w + l] += g;
                            }
                        }
                    }
                    o += 1;
                }
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    #[test]
    fn gradcheck() {
        let cases = [
            ([2, 3, 5, 6, 7], AvgPool3d::new([2, 3, 2], [1, 2, 2], [1, 1, 0]).unwrap()),
            // Overlapping windows (stride < kernel), padding on two axes.
            ([1, 2, 4, 5, 6], AvgPool3d::new([3, 3, 2], [1, 1, 2], [1, 0, 1]).unwrap()),
        ];
        for (seed, (shape, pool)) in cases.into_iter().enumerate() {
            let x = random(30 + seed as u64, shape.iter().product(), -1.0, 1.0);
            let y = forward(&pool, shape, &x);
            let g = random(40 + seed as u64, y.len(), -1.0, 1.0);
            let dx = backward(&pool, shape, &g);
            let num = numeric_grad(&|x| forward(&pool, shape, x), &x, &g, 1e-6);
            assert_grad_close(&format!("avg_pool3d {shape:?}"), &dx, &num, 1e-7, 1e-6).unwrap();
        }
    }

    #[test]
    fn padding_counts_in_the_divisor() {
        // W = 3, kernel 2, stride 2, padding 1: windows {pad, 0} and {1, 2}, both divided by 2.
        let pool = AvgPool3d::new([1, 1, 2], [1, 1, 2], [0, 0, 1]).unwrap();
        assert_eq!(forward(&pool, [1, 1, 1, 1, 3], &[4.0, 2.0, 6.0]), vec![2.0, 4.0]);
        assert_eq!(backward(&pool, [1, 1, 1, 1, 3], &[1.0, 3.0]), vec![0.5, 1.5, 1.5]);
    }
}
