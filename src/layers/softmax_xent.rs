//! Softmax cross-entropy (PyTorch's `nn.CrossEntropyLoss`, mean over the batch) with the count
//! of correct predictions, and the gradient of the mean loss with respect to the logits.
//! Shapes: logits `[batch, classes]` f32, labels `[batch]` u32, loss `[1]` f32, correct `[1]` u32,
//! dlogits `[batch, classes]`. Shader: `shaders/softmax_xent.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Op, Shader};

use super::{expect_len, expect_positive, u32_of};

const LAYER: &str = "softmax_xent";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxXent {
    pub batch: usize,
    pub classes: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

fn expect_dtype(what: &str, b: &Buffer, dtype: DType) -> Result<()> {
    if b.dtype() != dtype {
        return Err(Error::shape(LAYER, format!("{what} must be a {dtype:?} buffer, got {:?}", b.dtype())));
    }
    Ok(())
}

impl SoftmaxXent {
    /// Both sizes positive, and batch · classes within the shader's 32-bit indices.
    pub fn new(batch: usize, classes: usize) -> Result<SoftmaxXent> {
        expect_positive(LAYER, "batch, classes", &[batch, classes])?;
        u32_of(LAYER, "logits element count", batch.saturating_mul(classes))?;
        Ok(SoftmaxXent { batch, classes })
    }

    pub fn logits_len(&self) -> usize {
        self.batch * self.classes
    }

    /// The shader only guards against labels ≥ classes; the host, which knows the labels,
    /// rejects them here with the first offending sample.
    pub fn check_labels(&self, labels: &[u32]) -> Result<()> {
        if labels.len() != self.batch {
            return Err(Error::shape(LAYER, format!("{} labels for a batch of {}", labels.len(), self.batch)));
        }
        match labels.iter().position(|&l| l as usize >= self.classes) {
            Some(s) => Err(Error::shape(
                LAYER,
                format!("label {} of sample {s} is not a class index below {}", labels[s], self.classes),
            )),
            None => Ok(()),
        }
    }

    fn params(&self) -> Params {
        // `new` checked that batch · classes fits in u32.
        Params { n: self.batch as u32, k: self.classes as u32, _pad0: 0, _pad1: 0 }
    }

    fn expect_inputs(&self, logits: &Buffer, labels: &Buffer) -> Result<()> {
        expect_len(LAYER, "logits", logits, self.logits_len())?;
        expect_len(LAYER, "labels", labels, self.batch)?;
        expect_dtype("labels", labels, DType::U32)
    }

    /// `loss[0]` = mean cross-entropy, `correct[0]` = number of samples whose argmax is the label
    /// (both overwritten). One workgroup reduces the whole batch in a fixed order.
    pub fn forward(&self, logits: &Buffer, labels: &Buffer, loss: &Buffer, correct: &Buffer) -> Result<Op> {
        self.expect_inputs(logits, labels)?;
        expect_len(LAYER, "loss", loss, 1)?;
        expect_len(LAYER, "correct", correct, 1)?;
        expect_dtype("correct", correct, DType::U32)?;
        let p = self.params();
        // max, exp, sum and log-sum-exp per logit; reads logits and labels.
        let n = self.logits_len() as u64;
        Ok(Op::groups("softmax_xent.forward", Shader::SoftmaxXent, "forward", &p, &[logits, labels, loss, correct], 1)
            .with_cost(4 * n, 4 * (n + self.batch as u64 + 2)))
    }

    /// loss_sum += loss · batch and correct_sum += correct: the running metric sums of an
    /// epoch, kept on the GPU so that only they are read back, and rarely.
    pub fn accumulate(&self, loss: &Buffer, correct: &Buffer, loss_sum: &Buffer, correct_sum: &Buffer) -> Result<Op> {
        for (what, b) in [("loss", loss), ("correct", correct), ("loss_sum", loss_sum), ("correct_sum", correct_sum)] {
            expect_len(LAYER, what, b, 1)?;
        }
        expect_dtype("correct", correct, DType::U32)?;
        expect_dtype("correct_sum", correct_sum, DType::U32)?;
        let p = self.params();
        Ok(Op::groups(
            "softmax_xent.accumulate",
            Shader::SoftmaxXent,
            "accumulate",
            &p,
            &[loss, correct, loss_sum, correct_sum],
            1,
        )
        .with_cost(2, 24))
    }

    /// dlogits = (softmax(logits) − onehot(labels)) / batch: the gradient of the mean loss.
    pub fn backward(&self, logits: &Buffer, labels: &Buffer, dlogits: &Buffer) -> Result<Op> {
        self.expect_inputs(logits, labels)?;
        expect_len(LAYER, "dlogits", dlogits, self.logits_len())?;
        let p = self.params();
        Ok(Op::threads(
            "softmax_xent.backward",
            Shader::SoftmaxXent,
            "backward",
            &p,
            &[logits, labels, dlogits],
            self.logits_len(),
        )
        .with_cost(5 * self.logits_len() as u64, 4 * (2 * self.logits_len() + self.batch) as u64))
    }
}
