//! The whole network on the CPU, chaining the per-layer references: forward in training or
//! eval mode, the loss, and every parameter gradient. The oracle for the GPU training step.

use crate::error::Result;
use crate::model::Model;
use crate::network::Kernel;

use super::{activation, avg_pool3d, batch_norm, conv3d, dense, dropout, max_pool3d, softmax_xent};

/// What one step computes.
pub struct StepOut {
    pub logits: Vec<f64>,
    pub loss: f64,
    pub correct: u32,
    /// One per [`Model::params`] tensor (empty in eval mode).
    pub grads: Vec<Vec<f64>>,
    /// One per [`Model::buffers`] tensor: the running statistics after the step.
    pub buffers: Vec<Vec<f64>>,
}

/// One forward (+ backward when `train`) over a batch `x` (N, C, D, H, W) with `labels`.
/// `params` and `buffers` are in [`Model::params`] / [`Model::buffers`] order; `step` is the
/// dropout step counter.
#[allow(clippy::too_many_arguments)]
pub fn step(
    model: &Model,
    seed: u64,
    step: u32,
    train: bool,
    params: &[Vec<f64>],
    buffers: &[Vec<f64>],
    x: &[f64],
    labels: &[u32],
) -> Result<StepOut> {
    let n = labels.len();
    let kernels = model.layers.iter().map(|l| Kernel::for_layer(l, n, seed)).collect::<Result<Vec<_>>>()?;
    let mut new_buffers = buffers.to_vec();
    // acts[i] is layer i's input; saved[i] what its backward needs (argmax, mean, invstd).
    let mut acts = vec![x.to_vec()];
    let mut argmax: Vec<Vec<u32>> = vec![vec![]; kernels.len()];
    let mut stats: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); kernels.len()];
    let (mut p_at, mut b_at) = (0, 0);
    let mut p_index = vec![];
    for (i, (layer, k)) in model.layers.iter().zip(&kernels).enumerate() {
        p_index.push(p_at);
        let xin = &acts[i];
        let p = |j: usize| params[p_at + j].as_slice();
        let y = match k {
            Kernel::Conv(c) => conv3d::forward(c, xin, p(0), c.has_bias.then(|| p(1))),
            Kernel::MaxPool(pool, shape) => {
                let (y, idx) = max_pool3d::forward(pool, *shape, xin);
                argmax[i] = idx;
                y
            }
            Kernel::AvgPool(pool, shape) => avg_pool3d::forward(pool, *shape, xin),
            Kernel::Act(a) => activation::forward(*a, xin),
            Kernel::Norm(bn) => {
                let (rm, rv) = (&buffers[b_at], &buffers[b_at + 1]);
                if train {
                    let t = batch_norm::forward_train(bn, xin, p(0), p(1), rm, rv);
                    new_buffers[b_at] = t.running_mean;
                    new_buffers[b_at + 1] = t.running_var;
                    stats[i] = (t.mean, t.invstd);
                    t.y
                } else {
                    batch_norm::forward_eval(bn, xin, p(0), p(1), rm, rv)
                }
            }
            Kernel::Drop(d) => {
                if train {
                    dropout::forward(d, step, xin)
                } else {
                    xin.clone()
                }
            }
            Kernel::Flatten => xin.clone(),
            Kernel::Dense(d) => dense::forward(d, xin, p(0), d.bias.then(|| p(1))),
        };
        p_at += layer.params.len();
        b_at += layer.buffers.len();
        acts.push(y);
    }
    let logits = acts.pop().unwrap();
    let xent = crate::layers::softmax_xent::SoftmaxXent::new(n, model.classes)?;
    let (loss, correct) = softmax_xent::forward(&xent, &logits, labels);
    let mut grads: Vec<Vec<f64>> = model.params().map(|t| vec![0.0; t.len()]).collect();
    if train {
        let mut dy = softmax_xent::backward(&xent, &logits, labels);
        for (i, k) in kernels.iter().enumerate().rev() {
            let xin = &acts[i];
            let y = if i + 1 < acts.len() { &acts[i + 1] } else { &logits };
            let at = p_index[i];
            let p = |j: usize| params[at + j].as_slice();
            dy = match k {
                Kernel::Conv(c) => {
                    grads[at] = conv3d::backward_weight(c, xin, &dy);
                    if c.has_bias {
                        grads[at + 1] = conv3d::backward_bias(c, &dy);
                    }
                    conv3d::backward_input(c, p(0), &dy)
                }
                Kernel::MaxPool(pool, shape) => max_pool3d::backward(pool, *shape, &argmax[i], &dy),
                Kernel::AvgPool(pool, shape) => avg_pool3d::backward(pool, *shape, &dy),
                Kernel::Act(a) => activation::backward(*a, xin, y, &dy),
                Kernel::Norm(bn) => {
                    let g = batch_norm::backward(bn, xin, &stats[i].0, &stats[i].1, p(0), &dy);
                    grads[at] = g.dgamma;
                    grads[at + 1] = g.dbeta;
                    g.dx
                }
                Kernel::Drop(d) => dropout::backward(d, step, &dy),
                Kernel::Flatten => dy,
                Kernel::Dense(d) => {
                    grads[at] = dense::backward_weight(d, &dy, xin);
                    if d.bias {
                        grads[at + 1] = dense::backward_bias(d, &dy);
                    }
                    dense::backward_input(d, &dy, p(0))
                }
            };
        }
    }
    Ok(StepOut { logits, loss, correct, grads, buffers: new_buffers })
}
