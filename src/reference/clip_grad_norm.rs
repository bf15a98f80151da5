//! `torch.nn.utils.clip_grad_norm_` (norm_type 2) in f64: the oracle of
//! `shaders/clip_grad_norm.wgsl`.

/// (norm, coef, clipped gradients): norm = √Σ g², coef = min(1, max_norm / (norm + 1e-6)).
pub fn clip_grad_norm(g: &[f64], max_norm: f64) -> (f64, f64, Vec<f64>) {
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    (norm, coef, g.iter().map(|v| v * coef).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_above_the_limit_only() {
        // A 3-4-5 triangle: norm 5, clipped to 1 → every gradient times 1 / (5 + 1e-6).
        let (norm, coef, g) = clip_grad_norm(&[3.0, -4.0], 1.0);
        assert_eq!(norm, 5.0);
        assert_eq!(coef, 1.0 / (5.0 + 1e-6));
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] + 0.8).abs() < 1e-6, "{g:?}");
        let (_, coef, g) = clip_grad_norm(&[3.0, -4.0], 10.0);
        assert_eq!((coef, g), (1.0, vec![3.0, -4.0]));
    }
}
