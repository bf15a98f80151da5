//! Reference activations: y = f(x) and dx = dy · f'(x).

use crate::layers::activation::Activation;

fn f(act: Activation, v: f64) -> f64 {
    match act {
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu(s) => if v > 0.0 { v } else { v * s as f64 },
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::Tanh => v.tanh(),
    }
}

pub fn forward(act: Activation, x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| f(act, v)).collect()
}

/// `x` is the forward input, `y` its output (sigmoid and tanh differentiate through y).
pub fn backward(act: Activation, x: &[f64], y: &[f64], dy: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let d = match act {
                Activation::Relu => if x[i] > 0.0 { 1.0 } else { 0.0 },
                Activation::LeakyRelu(s) => if x[i] > 0.0 { 1.0 } else { s as f64 },
                Activation::Sigmoid => y[i] * (1.0 - y[i]),
                Activation::Tanh => 1.0 - y[i] * y[i],
            };
            dy[i] * d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    #[test]
    fn gradcheck_every_activation() {
        let x = random(1, 37, -3.0, 3.0);
        let g = random(2, 37, -1.0, 1.0);
        for act in [Activation::Relu, Activation::LeakyRelu(0.07), Activation::Sigmoid, Activation::Tanh] {
            let y = forward(act, &x);
            let dx = backward(act, &x, &y, &g);
            let num = numeric_grad(&|x| forward(act, x), &x, &g, 1e-6);
            assert_grad_close(act.name(), &dx, &num, 1e-7, 1e-6).unwrap();
        }
    }
}
