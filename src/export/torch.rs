//! The model as PyTorch source: `model.py`, a self-contained `nn.Module` built with no
//! arguments whose state_dict keys are the checkpoint's tensor names (so
//! `load_state_dict(..., strict=True)` takes a cnn3d checkpoint as it is), and a
//! `preprocess` function that turns volumes into the network's input exactly as the run did.

use std::fmt::Write as _;

use super::{refuse, Exportable};
use crate::config::LayerSpec;
use crate::data::colormap::oranges_rgb;
use crate::data::Colormap;
use crate::error::Result;
use crate::model::Layer;

/// Attributes every `nn.Module` has (`dir(nn.Module())`, PyTorch 2.x): a layer name part
/// equal to one cannot be a child module (`add_module` refuses it), and the generated module's
/// own helpers start with `_cnn3d`.
const MODULE_ATTRIBUTES: &[&str] = &[
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu", "cuda",
    "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter",
    "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule",
    "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu", "zero_grad",
];

/// The text of `model.py`.
pub fn model_py(e: &Exportable) -> Result<String> {
    check_names(e)?;
    let [c, d, h, w] = e.model.input;
    let mut s = String::new();
    let ck = e.checkpoint_path.display();
    let origin = &e.config_origin;
    let version = env!("CARGO_PKG_VERSION");
    let classes = e.model.classes;
    let _ = write!(
        s,
        r#""""A PyTorch twin of a cnn3d model, written by `cnn3d export` (cnn3d {version}).

Checkpoint: {ck}
Config: {origin}

    import safetensors.torch
    from model import Model, preprocess

    model = Model()
    model.load_state_dict(safetensors.torch.load_file("model.safetensors"), strict=True)
    model.eval()
    logits = model(preprocess(volumes))

The module's state_dict keys are the checkpoint's tensor names, so its weights load strictly.
Input: (N, C, D, H, W) float32 with (C, D, H, W) = INPUT_SHAPE; output: (N, CLASSES) logits.
cnn3d trained it with nn.CrossEntropyLoss on those logits (mean over the batch). Dropout and
batch norm follow model.train() / model.eval() as usual.
"""

import torch
from torch import nn

INPUT_SHAPE = ({c}, {d}, {h}, {w})
CLASSES = {classes}
# How the run turned voxels into the network's input: see preprocess().
COLORMAP = "{colormap}"
ARTICLE_RESHAPE = {reshape}


class Model(nn.Module):
    """The layers of the config, in order, each at its cnn3d name."""

    def __init__(self):
        super().__init__()
        self._cnn3d_order = []
"#,
        colormap = e.colormap,
        reshape = if e.article_reshape { "True" } else { "False" },
    );
    for layer in &e.model.layers {
        let _ = writeln!(s, "        # {}: {:?} -> {:?}", layer.describe(), layer.input, layer.output);
        let _ = writeln!(s, "        self._cnn3d_add({}, {})", py_str(&layer.name), module(layer)?);
    }
    s.push_str(
        r#"
    def _cnn3d_add(self, path, module):
        """Places `module` at the dotted `path` ("conv_layer1.0": child "0" of a plain
        container "conv_layer1"), which makes its state_dict keys `path.weight`, ..."""
        parent = self
        *outer, last = path.split(".")
        for part in outer:
            if part not in parent._modules:
                parent.add_module(part, nn.Module())
            parent = parent._modules[part]
        parent.add_module(last, module)
        self._cnn3d_order.append(path)

    def forward(self, x):
        for path in self._cnn3d_order:
            x = self.get_submodule(path)(x)
        return x


"#,
    );
    s.push_str(&preprocess_py(e));
    Ok(s)
}

/// One line on the preprocessing, for the ONNX graph's description.
pub fn preprocessing_summary(e: &Exportable) -> String {
    match (e.colormap, e.article_reshape) {
        (Colormap::Oranges, false) => "each volume min-max scaled on its own, then matplotlib's Oranges RGB, channels first".into(),
        (Colormap::Oranges, true) => "each volume min-max scaled on its own, then matplotlib's Oranges RGB, the article's plain reshape of channels-last RGB".into(),
        (Colormap::None, _) => "the raw values as float32, channels first".into(),
    }
}

/// The PyTorch module of one layer, as a Python expression.
fn module(layer: &Layer) -> Result<String> {
    let t = |v: [usize; 3]| format!("({}, {}, {})", v[0], v[1], v[2]);
    let py_bool = |b: bool| if b { "True" } else { "False" };
    Ok(match &layer.spec {
        LayerSpec::Conv3d { out_channels, kernel, stride, padding, dilation, bias, .. } => format!(
            "nn.Conv3d({}, {out_channels}, kernel_size={}, stride={}, padding={}, dilation={}, bias={})",
            layer.input[0],
            t(kernel.dims()),
            t(stride.dims()),
            t(padding.dims()),
            t(dilation.dims()),
            py_bool(*bias)
        ),
        LayerSpec::MaxPool3d { kernel, stride, padding, dilation, .. } => format!(
            "nn.MaxPool3d(kernel_size={}, stride={}, padding={}, dilation={})",
            t(kernel.dims()),
            t(stride.unwrap_or(*kernel).dims()),
            t(padding.dims()),
            t(dilation.dims())
        ),
        LayerSpec::AvgPool3d { kernel, stride, padding, .. } => format!(
            "nn.AvgPool3d(kernel_size={}, stride={}, padding={}, count_include_pad=True)",
            t(kernel.dims()),
            t(stride.unwrap_or(*kernel).dims()),
            t(padding.dims())
        ),
        LayerSpec::Relu { .. } => "nn.ReLU()".into(),
        LayerSpec::LeakyRelu { slope, .. } => format!("nn.LeakyReLU({})", py_f32(*slope)),
        LayerSpec::Sigmoid { .. } => "nn.Sigmoid()".into(),
        LayerSpec::Tanh { .. } => "nn.Tanh()".into(),
        LayerSpec::BatchNorm { eps, momentum, .. } => {
            let kind = match layer.input.len() {
                1 => "BatchNorm1d",
                4 => "BatchNorm3d",
                _ => return Err(refuse(layer, "PyTorch", format!("batch norm over an input of shape {:?}", layer.input))),
            };
            format!("nn.{kind}({}, eps={}, momentum={})", layer.input[0], py_f32(*eps), py_f32(*momentum))
        }
        LayerSpec::Dropout { p, .. } => format!("nn.Dropout({})", py_f32(*p)),
        LayerSpec::Flatten { .. } => "nn.Flatten()".into(),
        LayerSpec::Dense { out_features, bias, .. } => format!("nn.Linear({}, {out_features}, bias={})", layer.input[0], py_bool(*bias)),
    })
}

/// Layer names become paths of child modules, part by part; refuse those PyTorch's module tree
/// cannot hold as state_dict keys equal to the names.
fn check_names(e: &Exportable) -> Result<()> {
    for layer in &e.model.layers {
        for part in layer.name.split('.') {
            if part.is_empty() {
                return Err(refuse(layer, "PyTorch", format!("the name {:?} has an empty part between dots, which no module attribute can be", layer.name)));
            }
            if is_module_attribute(part) {
                return Err(refuse(layer, "PyTorch", format!("the part {part:?} of its name {:?} is an attribute every nn.Module has; rename the layer", layer.name)));
            }
        }
        // A layer inside another layer's path would make one module the other's parent.
        if let Some(outer) = e.model.layers.iter().find(|o| layer.name.starts_with(&format!("{}.", o.name))) {
            return Err(refuse(
                layer,
                "PyTorch",
                format!("its name {:?} lies under layer {:?}'s, which would nest one layer's module inside the other's; rename one of them", layer.name, outer.name),
            ));
        }
    }
    Ok(())
}

/// Whether `part` names an attribute of every nn.Module (or of the generated module), which
/// `add_module` refuses as a child's name.
fn is_module_attribute(part: &str) -> bool {
    // nn.Module's private attributes (`_modules`, `_parameters`, hooks, ...) by their prefixes.
    const PRIVATE: &[&str] = &[
        "__", "_cnn3d", "_modules", "_parameters", "_buffers", "_forward", "_backward", "_state_dict", "_load", "_non_persistent",
        "_version", "_apply", "_call", "_compiled", "_get", "_is_", "_maybe", "_named", "_register", "_replicate", "_save",
        "_slow", "_wrapped",
    ];
    MODULE_ATTRIBUTES.contains(&part) || PRIVATE.iter().any(|p| part.starts_with(p))
}

/// The `preprocess` function of the run's colormap, with matplotlib's Oranges table as
/// cnn3d's GPU reads it (f32, written as exact decimals).
fn preprocess_py(e: &Exportable) -> String {
    let [c, ..] = e.model.input;
    match e.colormap {
        Colormap::None => format!(
            r#"def preprocess(volumes):
    """The network's input for `volumes`, as cnn3d fed this run (--colormap none): the raw
    values as float32, channels first: (N, {c}, D, H, W), or (N, D, H, W) / flat (N, D*H*W)
    for one channel. Returns (N, *INPUT_SHAPE)."""
    x = torch.as_tensor(volumes).to(torch.float32)
    return x.reshape(x.shape[0], *INPUT_SHAPE)
"#
        ),
        Colormap::Oranges => {
            let rgb = oranges_rgb();
            let mut table = String::new();
            for e in rgb.chunks(3) {
                let _ = writeln!(table, "    ({}, {}, {}),", py_f32_exact(e[0]), py_f32_exact(e[1]), py_f32_exact(e[2]));
            }
            let layout = if e.article_reshape {
                r#"    # The article's plain reshape of the channels-last RGB buffer (--article-reshape):
    # it mixes colours and voxels, and the network was trained on exactly that.
    return rgb.reshape(n, *INPUT_SHAPE)"#
            } else {
                r#"    # Channels first: (N, 3, D, H, W).
    return rgb.permute(0, 2, 1).reshape(n, *INPUT_SHAPE)"#
            };
            format!(
                r#"# matplotlib's "Oranges" colormap: its 256-entry lookup table (RGB), as float32.
ORANGES = torch.tensor([
{table}], dtype=torch.float32)


def preprocess(volumes):
    """The network's input for one-channel `volumes` (N, D, H, W) or flat (N, D*H*W), as cnn3d
    fed this run (the 3D MNIST article's array_to_color): each volume min-max scaled to [0, 1]
    on its own in float32 (all zeros if constant), binned into the 256 colours as matplotlib
    does (x * 256, truncated; 1.0 -> the last colour), alpha dropped. Returns (N, *INPUT_SHAPE)."""
    x = torch.as_tensor(volumes).to(torch.float32)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    scaled = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), 0.0)
    index = (scaled * 256.0).clamp(min=0.0).to(torch.int64).clamp(max=255)
    rgb = ORANGES[index]  # (N, D*H*W, 3), channels last
{layout}
"#
            )
        }
    }
}

/// A Python string literal.
fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An f32 option as a Python float literal: the shortest text that reads back as the same
/// f32 (`0.01`, `1e-5`), as the config spells it.
fn py_f32(v: f32) -> String {
    format!("{v:?}")
}

/// An f32 as a Python float literal of exactly its value (f32 → f64 is exact, and `{:?}` of
/// an f64 is the shortest text that reads back as the same f64), for values that must
/// survive bit for bit (the colour table).
fn py_f32_exact(v: f32) -> String {
    format!("{:?}", v as f64)
}
