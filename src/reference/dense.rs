//! Reference dense layer: `y[s, o] = Σ_k x[s, k] · weight[o, k] + bias[o]`, and its gradients.
//! Layouts: x `[batch, in]`, weight `[out, in]`, bias `[out]`, y `[batch, out]`.

use crate::layers::dense::Dense;

pub fn forward(d: &Dense, x: &[f64], weight: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let (n, fi, fo) = (d.batch, d.in_features, d.out_features);
    let mut y = vec![0.0; n * fo];
    for s in 0..n {
        for o in 0..fo {
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for k in 0..fi {
                acc += x[s * fi + k] * weight[o * fi + k];
            }
            y[s * fo + o] = acc;
        }
    }
    y
}

/// dx[s, k] = Σ_o dy[s, o] · weight[o, k].
pub fn backward_input(d: &Dense, dy: &[f64], weight: &[f64]) -> Vec<f64> {
    let (n, fi, fo) = (d.batch, d.in_features, d.out_features);
    let mut dx = vec![0.0; n * fi];
    for s in 0..n {
        for k in 0..fi {
            for o in 0..fo {
                dx[s * fi + k] += dy[s * fo + o] * weight[o * fi + k];
            }
        }
    }
    dx
}

/// dweight[o, k] = Σ_s dy[s, o] · x[s, k].
pub fn backward_weight(d: &Dense, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let (n, fi, fo) = (d.batch, d.in_features, d.out_features);
    let mut dw = vec![0.0; fo * fi];
    for o in 0..fo {
        for k in 0..fi {
            for s in 0..n {
                dw[o * fi + k] += dy[s * fo + o] * x[s * fi + k];
            }
        }
    }
    dw
}

/// `dbias[o] = Σ_s dy[s, o]`.
pub fn backward_bias(d: &Dense, dy: &[f64]) -> Vec<f64> {
    let (n, fo) = (d.batch, d.out_features);
    let mut db = vec![0.0; fo];
    for s in 0..n {
        for o in 0..fo {
            db[o] += dy[s * fo + o];
        }
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    #[test]
    fn gradcheck_dense() {
        let d = Dense::new(3, 7, 5, true).unwrap();
        let x = random(1, d.input_len(), -1.0, 1.0);
        let w = random(2, d.weight_len(), -1.0, 1.0);
        let b = random(3, d.out_features, -1.0, 1.0);
        let g = random(4, d.output_len(), -1.0, 1.0);

        let dx = backward_input(&d, &g, &w);
        let num = numeric_grad(&|x| forward(&d, x, &w, Some(&b)), &x, &g, 1e-6);
        assert_grad_close("dense dx", &dx, &num, 1e-8, 1e-6).unwrap();

        let dw = backward_weight(&d, &g, &x);
        let num = numeric_grad(&|w| forward(&d, &x, w, Some(&b)), &w, &g, 1e-6);
        assert_grad_close("dense dweight", &dw, &num, 1e-8, 1e-6).unwrap();

        let db = backward_bias(&d, &g);
        let num = numeric_grad(&|b| forward(&d, &x, &w, Some(b)), &b, &g, 1e-6);
        assert_grad_close("dense dbias", &db, &num, 1e-8, 1e-6).unwrap();
    }

    #[test]
    fn forward_without_bias_matches_zero_bias() {
        let d = Dense::new(2, 3, 4, false).unwrap();
        let x = random(5, d.input_len(), -1.0, 1.0);
        let w = random(6, d.weight_len(), -1.0, 1.0);
        assert_eq!(forward(&d, &x, &w, None), forward(&d, &x, &w, Some(&[0.0; 4])));
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(Dense::new(0, 3, 4, true).is_err());
        assert!(Dense::new(2, 0, 4, true).is_err());
        assert!(Dense::new(1 << 20, 1 << 13, 4, true).is_err(), "x has 2^33 elements");
    }
}
