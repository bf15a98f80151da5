//! Batch normalisation, exactly PyTorch's BatchNorm1d (input (N, C) or (N, C, L)), BatchNorm2d
//! and BatchNorm3d (input (N, C, D, H, W)), with affine weight (gamma) and bias (beta) and
//! running statistics. Every shape is treated as (N, C, S), S the product of the dims after C,
//! and a channel's statistics are over M = N·S values.
//!
//! Training: batch mean and biased variance normalise; the running statistics move by
//! `momentum` towards the batch mean and the *unbiased* variance; mean and 1/sqrt(var + eps)
//! are saved for the backward. Eval: the running statistics normalise.
//! Shapes: y, dy, dx have x's shape; gamma, beta, running_mean, running_var, mean, invstd,
//! dgamma, dbeta have C elements. Shader: `shaders/batch_norm.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op, Shader};

use super::{expect_len, expect_positive, u32_of};

const NAME: &str = "batch_norm";

/// The geometry and options of one batch-norm layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// N, the batch size.
    pub batch: usize,
    /// C, PyTorch's `num_features`.
    pub channels: usize,
    /// S, the values per (sample, channel): 1 for (N, C), L for (N, C, L), D·H·W for
    /// (N, C, D, H, W).
    pub spatial: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the batch statistics in the running-statistics update.
    pub momentum: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    total: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

impl BatchNorm {
    /// PyTorch's default eps.
    pub const DEFAULT_EPS: f32 = 1e-5;
    /// PyTorch's default momentum.
    pub const DEFAULT_MOMENTUM: f32 = 0.1;

    /// A layer for input of shape (N, C, ...) with rank 2 to 5, with PyTorch's default eps
    /// and momentum.
    pub fn new(input: &[usize]) -> Result<BatchNorm> {
        if !(2..=5).contains(&input.len()) {
            return Err(Error::shape(
                NAME,
                format!("input shape {input:?}: expected (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)"),
            ));
        }
        expect_positive(NAME, "input shape", input)?;
        let bn = BatchNorm {
            batch: input[0],
            channels: input[1],
            spatial: input[2..].iter().product(),
            eps: Self::DEFAULT_EPS,
            momentum: Self::DEFAULT_MOMENTUM,
        };
        bn.validate()?;
        Ok(bn)
    }

    pub fn with_eps(self, eps: f32) -> Result<BatchNorm> {
        let bn = BatchNorm { eps, ..self };
        bn.validate()?;
        Ok(bn)
    }

    pub fn with_momentum(self, momentum: f32) -> Result<BatchNorm> {
        let bn = BatchNorm { momentum, ..self };
        bn.validate()?;
        Ok(bn)
    }

    /// Checks sizes and options: positive N, C, S whose product fits the shaders' u32
    /// indices, a finite eps ≥ 0 and a momentum in [0, 1].
    pub fn validate(&self) -> Result<()> {
        expect_positive(NAME, "(N, C, S)", &[self.batch, self.channels, self.spatial])?;
        let total = self.batch.checked_mul(self.channels).and_then(|v| v.checked_mul(self.spatial));
        u32_of(NAME, "element count N·C·S", total.unwrap_or(usize::MAX))?;
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::shape(NAME, format!("eps must be finite and >= 0, got {}", self.eps)));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::shape(NAME, format!("momentum must be in [0, 1], got {}", self.momentum)));
        }
        Ok(())
    }

    /// The output shape: the input's, after checking that `input` is this layer's geometry.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let other = BatchNorm::new(input)?;
        if (other.batch, other.channels, other.spatial) != (self.batch, self.channels, self.spatial) {
            return Err(Error::shape(
                NAME,
                format!(
                    "input shape {input:?} is not (N, C, S) = ({}, {}, {})",
                    self.batch, self.channels, self.spatial
                ),
            ));
        }
        Ok(input.to_vec())
    }

    /// N·C·S, the elements of x.
    pub fn elements(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    /// M = N·S, the values behind one channel's statistics.
    pub fn count(&self) -> usize {
        self.batch * self.spatial
    }

    fn params(&self) -> Result<Params> {
        self.validate()?;
        Ok(Params {
            n: self.batch as u32,
            c: self.channels as u32,
            s: self.spatial as u32,
            total: self.elements() as u32,
            eps: self.eps,
            momentum: self.momentum,
            _pad0: 0,
            _pad1: 0,
        })
    }

    /// Batch statistics need two values per channel (the unbiased variance divides by M − 1).
    fn expect_training(&self) -> Result<()> {
        if self.count() < 2 {
            return Err(Error::shape(
                NAME,
                format!(
                    "expected more than 1 value per channel when training, got (N, C, S) = ({}, {}, {})",
                    self.batch, self.channels, self.spatial
                ),
            ));
        }
        Ok(())
    }

    fn expect_lens(&self, tensors: &[(&str, &Buffer)], per_channel: &[(&str, &Buffer)]) -> Result<()> {
        for (what, b) in tensors {
            expect_len(NAME, what, b, self.elements())?;
        }
        for (what, b) in per_channel {
            expect_len(NAME, what, b, self.channels)?;
        }
        Ok(())
    }

    /// Training forward, two dispatches: `batch_norm.stats` (one workgroup per channel) writes
    /// `mean` and `invstd` = 1/sqrt(biased var + eps) and updates `running_mean` and
    /// `running_var` in place; `batch_norm.forward_train` writes y = (x − mean)·invstd·gamma + beta.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train(
        &self,
        x: &Buffer,
        gamma: &Buffer,
        beta: &Buffer,
        running_mean: &Buffer,
        running_var: &Buffer,
        y: &Buffer,
        mean: &Buffer,
        invstd: &Buffer,
    ) -> Result<Vec<Op>> {
        self.expect_training()?;
        self.expect_lens(
            &[("x", x), ("y", y)],
            &[
                ("gamma", gamma),
                ("beta", beta),
                ("running_mean", running_mean),
                ("running_var", running_var),
                ("mean", mean),
                ("invstd", invstd),
            ],
        )?;
        let p = self.params()?;
        let (e, c) = (self.elements() as u64, self.channels as u64);
        Ok(vec![
            Op::groups(
                "batch_norm.stats",
                Shader::BatchNorm,
                "stats",
                &p,
                &[x, mean, invstd, running_mean, running_var],
                self.channels,
            )
            // Σx and Σx² per element; reads x once.
            .with_cost(3 * e, 4 * e + 24 * c),
            Op::threads(
                "batch_norm.forward_train",
                Shader::BatchNorm,
                "forward_train",
                &p,
                &[x, mean, invstd, gamma, beta, y],
                self.elements(),
            )
            .with_cost(4 * e, 8 * e + 16 * c),
        ])
    }

    /// Eval forward: y = (x − running_mean)/sqrt(running_var + eps)·gamma + beta.
    pub fn forward_eval(
        &self,
        x: &Buffer,
        gamma: &Buffer,
        beta: &Buffer,
        running_mean: &Buffer,
        running_var: &Buffer,
        y: &Buffer,
    ) -> Result<Op> {
        self.expect_lens(
            &[("x", x), ("y", y)],
            &[("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)],
        )?;
        let p = self.params()?;
        let (e, c) = (self.elements() as u64, self.channels as u64);
        Ok(Op::threads(
            "batch_norm.forward_eval",
            Shader::BatchNorm,
            "forward_eval",
            &p,
            &[x, running_mean, running_var, gamma, beta, y],
            self.elements(),
        )
        .with_cost(5 * e, 8 * e + 16 * c))
    }

    /// Training backward of the parameters, one workgroup per channel, with xhat =
    /// (x − mean)·invstd from the saved statistics: dgamma = Σ dy·xhat, dbeta = Σ dy.
    /// Overwrites dgamma and dbeta (it does not accumulate into them).
    pub fn backward_params(
        &self,
        x: &Buffer,
        mean: &Buffer,
        invstd: &Buffer,
        dy: &Buffer,
        dgamma: &Buffer,
        dbeta: &Buffer,
    ) -> Result<Op> {
        self.expect_training()?;
        self.expect_lens(
            &[("x", x), ("dy", dy)],
            &[("mean", mean), ("invstd", invstd), ("dgamma", dgamma), ("dbeta", dbeta)],
        )?;
        let p = self.params()?;
        let (e, c) = (self.elements() as u64, self.channels as u64);
        Ok(Op::groups(
            "batch_norm.backward_params",
            Shader::BatchNorm,
            "backward_params",
            &p,
            &[x, mean, invstd, dy, dgamma, dbeta],
            self.channels,
        )
        // xhat, dy·xhat and two sums per element.
        .with_cost(5 * e, 8 * e + 16 * c))
    }

    /// Training backward of the input: dx = gamma·invstd/M·(M·dy − Σdy − xhat·Σdy·xhat).
    /// The two sums are read from `dgamma` and `dbeta` exactly as [`Self::backward_params`]
    /// wrote them, so this op must follow it with nothing changing them in between.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        x: &Buffer,
        mean: &Buffer,
        invstd: &Buffer,
        dy: &Buffer,
        dgamma: &Buffer,
        dbeta: &Buffer,
        gamma: &Buffer,
        dx: &Buffer,
    ) -> Result<Op> {
        self.expect_training()?;
        self.expect_lens(
            &[("x", x), ("dy", dy), ("dx", dx)],
            &[("mean", mean), ("invstd", invstd), ("dgamma", dgamma), ("dbeta", dbeta), ("gamma", gamma)],
        )?;
        let p = self.params()?;
        let (e, c) = (self.elements() as u64, self.channels as u64);
        Ok(Op::threads(
            "batch_norm.backward_input",
            Shader::BatchNorm,
            "backward_input",
            &p,
            &[x, mean, invstd, dy, dgamma, dbeta, gamma, dx],
            self.elements(),
        )
        .with_cost(8 * e, 12 * e + 20 * c))
    }

    /// The whole training backward in order: backward_params, then backward_input.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &Buffer,
        mean: &Buffer,
        invstd: &Buffer,
        gamma: &Buffer,
        dy: &Buffer,
        dx: &Buffer,
        dgamma: &Buffer,
        dbeta: &Buffer,
    ) -> Result<Vec<Op>> {
        Ok(vec![
            self.backward_params(x, mean, invstd, dy, dgamma, dbeta)?,
            self.backward_input(x, mean, invstd, dy, dgamma, dbeta, gamma, dx)?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_options() {
        let bn = BatchNorm::new(&[100, 128]).unwrap();
        assert_eq!((bn.batch, bn.channels, bn.spatial, bn.count()), (100, 128, 1, 100));
        let bn = BatchNorm::new(&[3, 5, 5, 7, 9]).unwrap();
        assert_eq!((bn.spatial, bn.count(), bn.elements()), (315, 945, 4725));
        assert_eq!(bn.output_shape(&[3, 5, 5, 7, 9]).unwrap(), vec![3, 5, 5, 7, 9]);
        assert!(bn.output_shape(&[3, 5, 5, 7, 8]).is_err());
        assert!(BatchNorm::new(&[4]).is_err());
        assert!(BatchNorm::new(&[4, 0, 3]).is_err());
        assert!(BatchNorm::new(&[1, 2, 3, 4, 5, 6]).is_err());
        assert!(BatchNorm::new(&[4, 3]).unwrap().with_eps(-1.0).is_err());
        assert!(BatchNorm::new(&[4, 3]).unwrap().with_momentum(f32::NAN).is_err());
        assert!(BatchNorm::new(&[1 << 16, 1 << 16, 2]).is_err());
        // PyTorch: "Expected more than 1 value per channel when training".
        assert!(BatchNorm::new(&[1, 4]).unwrap().expect_training().is_err());
        assert!(BatchNorm::new(&[1, 4, 2]).unwrap().expect_training().is_ok());
    }
}
