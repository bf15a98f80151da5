//! Reference 3D convolution (groups = 1, zero padding): y = Σ x·w + b, and its gradients.
//! Every pass walks the same list of product terms (x element, weight element, y element), so
//! forward and backward are visibly the same sum read in different directions.
//! The geometry must be valid (`Conv3d::output` succeeds); callers validate it first.

use crate::layers::conv3d::Conv3d;

/// Calls `f(x index, weight index, y index)` for every term x·w of the convolution: each output
/// position, output and input channel and kernel tap whose input position
/// `o·stride − padding + k·dilation` lies inside the input on all three axes.
fn for_each_term(g: &Conv3d, mut f: impl FnMut(usize, usize, usize)) {
    let [od, oh, ow] = g.output().expect("reference::conv3d needs a valid geometry");
    let [id, ih, iw] = g.input;
    let [kd, kh, kw] = g.kernel;
    // The input position read along axis `a` by output position `o` and tap `k`, if inside.
    let pos = |o: usize, k: usize, a: usize| -> Option<usize> {
        let i = (o * g.stride[a] + k * g.dilation[a]) as isize - g.padding[a] as isize;
        (i >= 0 && (i as usize) < g.input[a]).then_some(i as usize)
    };
    for n in 0..g.n {
        for co in 0..g.c_out {
            for zd in 0..od {
                for zh in 0..oh {
                    for zw in 0..ow {
                        let yi = (((n * g.c_out + co) * od + zd) * oh + zh) * ow + zw;
                        for ci in 0..g.c_in {
                            for a in 0..kd {
                                for b in 0..kh {
                                    for c in 0..kw {
                                        let (Some(xd), Some(xh), Some(xw)) = (pos(zd, a, 0), pos(zh, b, 1), pos(zw, c, 2))
                                        else {
                                            continue;
                                        };
                                        let xi = (((n * g.c_in + ci) * id + xd) * ih + xh) * iw + xw;
                                        let wi = (((co * g.c_in + ci) * kd + a) * kh + b) * kw + c;
                                        f(xi, wi, yi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn y_len(g: &Conv3d) -> usize {
    g.y_shape().expect("reference::conv3d needs a valid geometry").iter().product()
}

/// y = conv(x, weight) + bias (when given).
pub fn forward(g: &Conv3d, x: &[f64], weight: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; y_len(g)];
    for_each_term(g, |xi, wi, yi| y[yi] += x[xi] * weight[wi]);
    if let Some(b) = bias {
        let per_channel = y.len() / (g.n * g.c_out);
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / per_channel) % g.c_out];
        }
    }
    y
}

/// dx: each term x·w sends dy·w back to its x element.
pub fn backward_input(g: &Conv3d, weight: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.x_shape().iter().product()];
    for_each_term(g, |xi, wi, yi| dx[xi] += dy[yi] * weight[wi]);
    dx
}

/// dweight: each term x·w sends dy·x back to its weight element.
pub fn backward_weight(g: &Conv3d, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.weight_shape().iter().product()];
    for_each_term(g, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}

/// `dbias[co]` = Σ of dy over N and the output positions of channel co.
pub fn backward_bias(g: &Conv3d, dy: &[f64]) -> Vec<f64> {
    let per_channel = dy.len() / (g.n * g.c_out);
    let mut db = vec![0.0; g.c_out];
    for (i, v) in dy.iter().enumerate() {
        db[(i / per_channel) % g.c_out] += v;
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    /// Gradchecks every backward of `g` with a random upstream gradient.
    fn gradcheck(g: Conv3d, seed: u64) {
        let x = random(seed, g.x_shape().iter().product(), -1.0, 1.0);
        let w = random(seed + 1, g.weight_shape().iter().product(), -1.0, 1.0);
        let b = random(seed + 2, g.c_out, -1.0, 1.0);
        let dy = random(seed + 3, y_len(&g), -1.0, 1.0);
        let eps = 1e-6;
        let (atol, rtol) = (1e-7, 1e-6);

        let num = numeric_grad(&|x| forward(&g, x, &w, Some(&b)), &x, &dy, eps);
        assert_grad_close("conv3d dx", &backward_input(&g, &w, &dy), &num, atol, rtol).unwrap();
        let num = numeric_grad(&|w| forward(&g, &x, w, Some(&b)), &w, &dy, eps);
        assert_grad_close("conv3d dweight", &backward_weight(&g, &x, &dy), &num, atol, rtol).unwrap();
        let num = numeric_grad(&|b| forward(&g, &x, &w, Some(b)), &b, &dy, eps);
        assert_grad_close("conv3d dbias", &backward_bias(&g, &dy), &num, atol, rtol).unwrap();
    }

    #[test]
    fn gradcheck_padding_stride_dilation_per_axis() {
        let g = Conv3d::new(2, 2, 3, [4, 5, 6], [2, 3, 2])
            .with_stride([1, 2, 3])
            .with_padding([1, 0, 2])
            .with_dilation([2, 1, 1]);
        assert_eq!(g.output().unwrap(), [4, 2, 3]);
        gradcheck(g, 10);
    }

    #[test]
    fn gradcheck_stride_larger_than_kernel() {
        // Some input elements are read by no output position: their gradient must be zero.
        let g = Conv3d::new(1, 2, 2, [7, 5, 6], [2, 1, 2]).with_stride([3, 2, 4]).with_padding([0, 1, 1]);
        assert_eq!(g.output().unwrap(), [2, 4, 2]);
        gradcheck(g, 20);
    }

    #[test]
    fn forward_matches_a_hand_computed_value() {
        // 1 channel, input [1, 2, 3] along D, kernel [10, 100] with dilation 2 and padding 1:
        // output o reads positions o − 1 and o + 1 (zero outside 0..3).
        let g = Conv3d::new(1, 1, 1, [3, 1, 1], [2, 1, 1]).with_padding([1, 0, 0]).with_dilation([2, 1, 1]);
        let y = forward(&g, &[1.0, 2.0, 3.0], &[10.0, 100.0], Some(&[0.5]));
        // o=0: x[-1]·10 + x[1]·100 = 200; o=1: x[0]·10 + x[2]·100 = 310; o=2: x[1]·10 = 20.
        assert_eq!(y, vec![200.5, 310.5, 20.5]);
    }
}
