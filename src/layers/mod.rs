//! One file per layer: its shapes, parameters, and the dispatches ([`Op`](crate::gpu::Op))
//! that compute its forward and backward passes.

pub mod activation;
pub mod avg_pool3d;
pub mod batch_norm;
pub mod clip_grad_norm;
pub mod conv3d;
pub mod dense;
pub mod dropout;
pub mod gather;
pub mod max_pool3d;
pub mod softmax_xent;

use crate::error::{Error, Result};
use crate::gpu::Buffer;

/// Sizes per spatial axis, in (D, H, W) order.
pub type Dims3 = [usize; 3];

/// Output size along one axis of a convolution or pooling window:
/// `floor((input + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1`, as PyTorch.
/// `None` when the (dilated) kernel does not fit in the padded input.
pub fn window_out(input: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let padded = padding.checked_mul(2)?.checked_add(input)?;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

/// Checks that a buffer holds exactly `want` elements.
pub(crate) fn expect_len(layer: &str, what: &str, b: &Buffer, want: usize) -> Result<()> {
    if b.len() != want {
        return Err(Error::shape(layer, format!("{what} has {} elements, expected {want}", b.len())));
    }
    Ok(())
}

/// Checks that all sizes are positive.
pub(crate) fn expect_positive(layer: &str, what: &str, v: &[usize]) -> Result<()> {
    if v.contains(&0) {
        return Err(Error::shape(layer, format!("{what} must be positive, got {v:?}")));
    }
    Ok(())
}

/// Converts a size to the u32 that shaders index with, or fails naming it.
pub(crate) fn u32_of(layer: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(layer, format!("{what} = {v} does not fit in 32 bits")))
}

#[cfg(test)]
mod tests {
    use super::window_out;

    #[test]
    fn window_out_matches_pytorch_and_rejects_what_cannot_work() {
        assert_eq!(window_out(16, 3, 1, 0, 1), Some(14));
        assert_eq!(window_out(14, 2, 2, 0, 1), Some(7));
        assert_eq!(window_out(7, 3, 2, 1, 2), Some(3)); // span 5, padded 9
        assert_eq!(window_out(2, 3, 1, 0, 1), None);
        assert_eq!(window_out(5, 0, 1, 0, 1), None);
        assert_eq!(window_out(5, 1, 0, 0, 1), None);
        assert_eq!(window_out(usize::MAX, 2, 1, usize::MAX, 1), None);
    }
}
