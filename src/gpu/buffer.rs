//! Device buffers of f32, f16 or u32 elements, with upload and read-back (f16 buffers are
//! written and read as f32 on the host, converted on the way).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

use super::Gpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    /// Half precision: the activations and their gradients of a run at `--precision f16`
    /// (see [`crate::gpu::Precision`]).
    F16,
    U32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 | DType::U32 => 4,
        }
    }
}

/// Bytes of the device buffers that tensors hold (every allocation through [`Gpu::zeros`] and
/// the functions built on it; read-back staging and timestamp buffers are not counted): now,
/// and the most at any one time.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    live: AtomicU64,
    peak: AtomicU64,
}

impl Memory {
    fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

/// A device buffer that gives its bytes back to the count when the last handle drops.
pub(crate) struct Raw {
    buffer: wgpu::Buffer,
    memory: Arc<Memory>,
}

impl std::ops::Deref for Raw {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.memory.live.fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}

/// Device memory held by tensors, in bytes (see [`Gpu::memory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUse {
    pub live_bytes: u64,
    pub peak_bytes: u64,
}

/// A storage buffer on the device, or a view of `len` elements at `offset` into one (see
/// [`Gpu::flat`]). Cloning is cheap (shared handle).
#[derive(Clone)]
pub struct Buffer {
    pub(crate) raw: Arc<Raw>,
    /// In elements; a multiple of the adapter's storage offset alignment.
    offset: usize,
    len: usize,
    dtype: DType,
    label: Arc<str>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({:?}, {:?} x {} at {})", self.label, self.dtype, self.len, self.offset)
    }
}

impl Buffer {
    /// `len` elements of this buffer from element `offset` on; binding it needs `offset` to
    /// be a multiple of the adapter's offset alignment (256 bytes at most in WebGPU).
    pub fn view(&self, offset: usize, len: usize, label: &str) -> Buffer {
        assert!(offset + len <= self.len, "view {offset}+{len} past the end of {self:?}");
        Buffer { raw: self.raw.clone(), offset: self.offset + offset, len, dtype: self.dtype, label: label.into() }
    }

    /// A view of `len` elements from element `offset` on that a kernel may bind as a uniform
    /// buffer, and that may run past this buffer's end into the slack of one made by
    /// [`Gpu::zeros_windowed`]; `None` if the buffer is not bindable as uniform, not f32 (the
    /// kernels' uniform blocks are vec4<f32>s), the start is not 256-byte aligned, or the
    /// device buffer ends first.
    pub(crate) fn uniform_window(&self, offset: usize, len: usize, label: &str) -> Option<Buffer> {
        let start = self.offset + offset;
        let fits = (start + len) as u64 * 4 <= self.raw.size();
        (self.dtype == DType::F32 && self.raw.usage().contains(wgpu::BufferUsages::UNIFORM) && start.is_multiple_of(64) && fits)
            .then(|| Buffer { raw: self.raw.clone(), offset: start, len, dtype: self.dtype, label: label.into() })
    }

    /// Whether both are the same elements of the same device buffer (one aliases the other).
    pub fn same(&self, other: &Buffer) -> bool {
        Arc::ptr_eq(&self.raw, &other.raw) && self.offset == other.offset && self.len == other.len
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn label(&self) -> &str {
        &self.label
    }
    pub(crate) fn bytes(&self) -> u64 {
        (self.len * self.dtype.size()) as u64
    }
    pub(crate) fn byte_offset(&self) -> u64 {
        (self.offset * self.dtype.size()) as u64
    }
    /// The binding of exactly this buffer's (or view's) elements, rounded up to whole 4 bytes
    /// (an odd number of f16s: a storage binding's size is a multiple of 4; allocations are
    /// too, so the rounding stays inside the buffer); at least 4 bytes, since an empty binding
    /// is invalid.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        let size = self.bytes().max(4).next_multiple_of(4).min(self.raw.size() - self.byte_offset());
        wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.raw, offset: self.byte_offset(), size: std::num::NonZeroU64::new(size) })
    }
}

impl Gpu {
    /// Device memory that tensors hold now, and the most they held at once since the device
    /// was opened.
    pub fn memory(&self) -> MemoryUse {
        MemoryUse { live_bytes: self.memory.live.load(Ordering::Relaxed), peak_bytes: self.memory.peak.load(Ordering::Relaxed) }
    }

    /// Runs `f` and leaves the peak of [`Gpu::memory`] as if the buffers that `f` allocated and
    /// dropped again (the tuner's trial tensors) had never been held: a run's reported peak is
    /// that of the tensors it keeps, whether or not its kernels were tuned first.
    pub(crate) fn without_transient_peak<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.memory.peak.load(Ordering::Relaxed);
        let out = f();
        let live = self.memory.live.load(Ordering::Relaxed);
        self.memory.peak.store(before.max(live), Ordering::Relaxed);
        out
    }

    /// Refuses a tensor of f32s larger than one storage binding or one buffer of this adapter.
    pub fn check_fits(&self, label: &str, elements: usize) -> Result<()> {
        self.check_fits_as(label, elements, DType::F32)
    }

    /// Refuses a tensor of `dtype` larger than one storage binding or one buffer of this adapter.
    pub fn check_fits_as(&self, label: &str, elements: usize, dtype: DType) -> Result<()> {
        let size = dtype.size();
        let Some(bytes) = (elements as u64).checked_mul(size as u64) else {
            return Err(Error::shape(label, format!("{elements} elements of {size} bytes are more bytes than 64 bits count")));
        };
        if bytes > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                tensor: label.into(),
                bytes,
                limit_name: "max_buffer_size",
                limit: self.limits.max_buffer_size,
            });
        }
        let binding = self.limits.max_storage_buffer_binding_size;
        if bytes > binding {
            return Err(Error::TooLarge {
                tensor: label.into(),
                bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: binding,
            });
        }
        Ok(())
    }

    /// A zero-filled buffer of `len` elements.
    pub fn zeros(&self, label: &str, len: usize, dtype: DType) -> Result<Buffer> {
        self.zeros_with(label, len, dtype, wgpu::BufferUsages::empty())
    }

    /// A zero-filled f32 buffer that kernels may also bind, in 64 KiB views (see
    /// [`Buffer::view`]), as uniform buffers.
    pub(crate) fn zeros_uniform(&self, label: &str, len: usize) -> Result<Buffer> {
        self.zeros_with(label, len, DType::F32, wgpu::BufferUsages::UNIFORM)
    }

    /// A zero-filled f32 buffer of `len` elements followed by `slack` more, bindable as
    /// uniform buffers in windows that may run into the slack (see [`Buffer::uniform_window`]):
    /// kernels then read 64 KiB windows of a tensor without copying it.
    pub(crate) fn zeros_windowed(&self, label: &str, len: usize, slack: usize) -> Result<Buffer> {
        let total = len.checked_add(slack).ok_or_else(|| Error::shape(label, format!("{len} + {slack} elements overflow")))?;
        let mut b = self.zeros_with(label, total, DType::F32, wgpu::BufferUsages::UNIFORM)?;
        b.len = len;
        Ok(b)
    }

    // In a browser wgpu's handles are neither Send nor Sync (one thread); the Arc is for
    // sharing views, not threads.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    fn zeros_with(&self, label: &str, len: usize, dtype: DType, extra: wgpu::BufferUsages) -> Result<Buffer> {
        self.check_fits_as(label, len, dtype)?;
        // A zero-sized binding is invalid, so empty tensors still get one element; whole 4
        // bytes (see Buffer::binding).
        let size = (len.max(1) * dtype.size()).next_multiple_of(4) as u64;
        let raw = self.scoped(
            || format!("allocating {label} ({size} bytes)"),
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | extra,
                    mapped_at_creation: false,
                })
            },
        )?;
        self.memory.add(size);
        Ok(Buffer { raw: Arc::new(Raw { buffer: raw, memory: self.memory.clone() }), offset: 0, len, dtype, label: label.into() })
    }

    /// One zero-filled buffer holding several tensors, and a view of each: every tensor starts
    /// at a multiple of the adapter's `min_storage_buffer_offset_alignment`, so each view binds
    /// on its own while one dispatch (e.g. the optimizer) can still cover them all.
    pub fn flat(&self, label: &str, lens: &[(&str, usize)], dtype: DType) -> Result<(Buffer, Vec<Buffer>)> {
        let align = (self.limits.min_storage_buffer_offset_alignment as usize / dtype.size()).max(1);
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0usize;
        for &(_, len) in lens {
            offsets.push(total);
            total = len
                .max(1)
                .div_ceil(align)
                .checked_mul(align)
                .and_then(|l| total.checked_add(l))
                .ok_or_else(|| Error::shape(label, format!("the tensors' {} element counts overflow", lens.len())))?;
        }
        let whole = self.zeros(label, total, dtype)?;
        let views = lens
            .iter()
            .zip(offsets)
            .map(|(&(name, len), offset)| Buffer {
                raw: whole.raw.clone(),
                offset,
                len,
                dtype,
                label: format!("{label}:{name}").into(),
            })
            .collect();
        Ok((whole, views))
    }

    pub fn upload_f32(&self, label: &str, data: &[f32]) -> Result<Buffer> {
        self.upload(label, data, DType::F32)
    }

    /// A buffer of `dtype` (f32 or f16) holding `data`, converted where `dtype` is f16.
    pub fn upload(&self, label: &str, data: &[f32], dtype: DType) -> Result<Buffer> {
        let b = self.zeros(label, data.len(), dtype)?;
        self.write_f32(&b, data)?;
        Ok(b)
    }

    /// An activation tensor of this run's precision (see [`Gpu::activations`]) holding `data`.
    pub fn upload_act(&self, label: &str, data: &[f32]) -> Result<Buffer> {
        self.upload(label, data, self.activations())
    }

    /// A zero-filled activation tensor of this run's precision.
    pub fn zeros_act(&self, label: &str, len: usize) -> Result<Buffer> {
        self.zeros(label, len, self.activations())
    }

    pub fn upload_u32(&self, label: &str, data: &[u32]) -> Result<Buffer> {
        let b = self.zeros(label, data.len(), DType::U32)?;
        self.write_u32(&b, data)?;
        Ok(b)
    }

    /// Writes f32s into an f32 buffer, or into an f16 one rounded to nearest.
    pub fn write_f32(&self, b: &Buffer, data: &[f32]) -> Result<()> {
        match b.dtype {
            DType::F16 => {
                let mut halves: Vec<u16> = data.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
                // Copies move whole 4 bytes: an odd count takes one more half, which must land
                // in the allocation's own padding (see Gpu::zeros_with), never in a neighbour.
                if halves.len() % 2 == 1 {
                    let end = b.byte_offset() + 2 * halves.len() as u64;
                    if end + 2 != b.raw.size() {
                        return Err(Error::Gpu {
                            context: format!("writing {} f16 values into {}", halves.len(), b.label),
                            message: "an odd number of f16 values can only be written up to the end of their buffer".into(),
                        });
                    }
                    halves.push(0);
                }
                self.write_bytes(b, bytemuck::cast_slice(&halves))
            }
            _ => self.write_bytes(b, bytemuck::cast_slice(data)),
        }
    }

    pub fn write_u32(&self, b: &Buffer, data: &[u32]) -> Result<()> {
        self.write_bytes(b, bytemuck::cast_slice(data))
    }

    fn write_bytes(&self, b: &Buffer, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > b.bytes().next_multiple_of(4) {
            return Err(Error::Gpu {
                context: format!("writing {} bytes into {}", bytes.len(), b.label),
                message: format!("the buffer holds only {} bytes", b.bytes()),
            });
        }
        if !bytes.is_empty() {
            self.queue.write_buffer(&b.raw, b.byte_offset(), bytes);
        }
        Ok(())
    }

    /// Reads an f32 buffer, or an f16 one widened to f32 (exactly). Blocks until the GPU is
    /// done; in a browser, [`Gpu::read_f32_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, b: &Buffer) -> Result<Vec<f32>> {
        Ok(widen(b.dtype, self.read_bytes(b)?))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, b: &Buffer) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(b)?))
    }

    /// [`Gpu::read_f32`] as a future: in a browser it resolves once the GPU is done and the
    /// copy is mapped, without blocking the page; natively it waits for the GPU as
    /// [`Gpu::read_f32`] does and is then ready at once.
    pub async fn read_f32_async(&self, b: &Buffer) -> Result<Vec<f32>> {
        Ok(widen(b.dtype, self.read_bytes_async(b).await?))
    }

    /// [`Gpu::read_u32`] as a future (see [`Gpu::read_f32_async`]).
    pub async fn read_u32_async(&self, b: &Buffer) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes_async(b).await?))
    }

    /// Natively the async readback waits for the GPU and is then ready at once.
    #[cfg(not(target_arch = "wasm32"))]
    fn read_bytes(&self, b: &Buffer) -> Result<Vec<u8>> {
        pollster::block_on(self.read_bytes_async(b))
    }

    async fn read_bytes_async(&self, b: &Buffer) -> Result<Vec<u8>> {
        let Some(staging) = self.stage_readback(b)? else {
            return Ok(vec![]);
        };
        let mut bytes = self.map_read(&staging, &b.label).await?;
        bytes.truncate(b.bytes() as usize);
        Ok(bytes)
    }

    /// The bytes of `staging` (MAP_READ, its copy submitted) once the GPU has written them;
    /// unmapped after. `what` names the buffer in errors.
    pub(super) async fn map_read(&self, staging: &wgpu::Buffer, what: &str) -> Result<Vec<u8>> {
        let fail = |message: String| Error::Readback { buffer: what.to_string(), message };
        let mapped = Mapped::default();
        let done = mapped.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| done.set(r));
        // Natively the callback runs inside a poll; in a browser the device polls itself and
        // the callback runs when the mapping's promise resolves.
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        let mapping = mapped.await;
        self.check_lost("reading back from the GPU")?;
        mapping.map_err(|e| fail(e.to_string()))?;
        let bytes = staging.slice(..).get_mapped_range().map_err(|e| fail(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// A staging buffer that `b`'s bytes are copied into (submitted), or `None` for an empty
    /// buffer. Copies move whole 4 bytes (an odd count of f16s: one half more, dropped by
    /// [`Gpu::read_bytes_async`]).
    fn stage_readback(&self, b: &Buffer) -> Result<Option<wgpu::Buffer>> {
        if b.bytes() == 0 {
            return Ok(None);
        }
        let size = b.bytes().next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&b.raw, b.byte_offset(), &staging, 0, size);
        self.scoped(|| format!("reading back {}", b.label), || self.queue.submit([enc.finish()]))?;
        Ok(Some(staging))
    }
}

/// The bytes of a read-back f32 or f16 buffer as f32s (f16 widened exactly).
fn widen(dtype: DType, bytes: Vec<u8>) -> Vec<f32> {
    match dtype {
        DType::F16 => bytemuck::pod_collect_to_vec::<u8, u16>(&bytes).into_iter().map(|h| half::f16::from_bits(h).to_f32()).collect(),
        _ => bytemuck::pod_collect_to_vec(&bytes),
    }
}

/// The outcome of a `map_async` as a future: set by the mapping's callback, awaited by the
/// reader. Needs no executor of its own (the browser's, or none natively: the callback has
/// run before the first poll).
#[derive(Clone, Default)]
struct Mapped(Arc<Mutex<MapState>>);

#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

impl Mapped {
    fn set(&self, r: std::result::Result<(), wgpu::BufferAsyncError>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.result = Some(r);
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}

impl Future for Mapped {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
