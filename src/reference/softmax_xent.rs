//! Reference softmax cross-entropy: loss = mean over samples of `−log softmax(logits)[label]`,
//! correct = #(argmax == label) with ties to the first maximum, and dlogits = (softmax −
//! onehot) / batch. Labels must be class indices (the layer checks them on the host).

use crate::layers::softmax_xent::SoftmaxXent;

/// log-softmax of one row, shifted by its maximum for stability.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
    row.iter().map(|&v| v - m - lse).collect()
}

/// The first index of the row's maximum, as torch.argmax.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for j in 1..row.len() {
        if row[j] > row[best] {
            best = j;
        }
    }
    best
}

/// (mean loss, correct count).
pub fn forward(l: &SoftmaxXent, logits: &[f64], labels: &[u32]) -> (f64, u32) {
    let k = l.classes;
    let mut loss = 0.0;
    let mut correct = 0;
    for (s, &label) in labels.iter().enumerate().take(l.batch) {
        let row = &logits[s * k..(s + 1) * k];
        loss -= log_softmax(row)[label as usize];
        correct += (argmax(row) == label as usize) as u32;
    }
    (loss / l.batch as f64, correct)
}

/// Gradient of the mean loss (upstream gradient 1).
pub fn backward(l: &SoftmaxXent, logits: &[f64], labels: &[u32]) -> Vec<f64> {
    let k = l.classes;
    let mut d = vec![0.0; l.batch * k];
    for (s, &label) in labels.iter().enumerate().take(l.batch) {
        for (j, lp) in log_softmax(&logits[s * k..(s + 1) * k]).into_iter().enumerate() {
            let onehot = if j == label as usize { 1.0 } else { 0.0 };
            d[s * k + j] = (lp.exp() - onehot) / l.batch as f64;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    #[test]
    fn gradcheck_softmax_xent() {
        let l = SoftmaxXent::new(5, 7).unwrap();
        let labels = [3, 0, 6, 6, 2];
        let z = random(1, l.logits_len(), -3.0, 3.0);
        let dz = backward(&l, &z, &labels);
        // The loss is a scalar, so its upstream gradient is the scalar 1.
        let num = numeric_grad(&|z| vec![forward(&l, z, &labels).0], &z, &[1.0], 1e-6);
        assert_grad_close("softmax_xent dlogits", &dz, &num, 1e-8, 1e-6).unwrap();
    }

    #[test]
    fn stable_for_large_logits_and_ties_go_first() {
        let l = SoftmaxXent::new(2, 3).unwrap();
        // Row 0: a tie between classes 0 and 2 at +1000; row 1: all equal.
        let z = [1000.0, 999.0, 1000.0, 5.0, 5.0, 5.0];
        let (loss, correct) = forward(&l, &z, &[2, 0]);
        assert!(loss.is_finite());
        assert_eq!(correct, 1, "argmax of row 0 is 0 (first maximum), of row 1 is 0");
        let exact = ((2.0 + (-1f64).exp()).ln() + 3f64.ln()) / 2.0;
        assert!((loss - exact).abs() < 1e-12, "{loss} vs {exact}");
    }

    #[test]
    fn rejects_bad_shapes_and_labels() {
        assert!(SoftmaxXent::new(0, 3).is_err());
        assert!(SoftmaxXent::new(3, 0).is_err());
        let l = SoftmaxXent::new(3, 4).unwrap();
        assert!(l.check_labels(&[0, 3, 1]).is_ok());
        assert!(l.check_labels(&[0, 4, 1]).is_err());
        assert!(l.check_labels(&[0, 1]).is_err());
    }
}
