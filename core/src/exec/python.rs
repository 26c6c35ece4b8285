//! The PyTorch export: a built [`Network`] written out as a readable Python `nn.Module`.
//!
//! The module is generated from the same [`Plan`](crate::plan::Plan)s the executor runs, so it
//! computes what the executor computes:
//!
//! * one class per block kind used (`Basic`, `Bottleneck`, `Preact`, `Dense`) and per stage
//!   transition used (`ZeroPad`, `Projection`, `DenseTransition`), with the layers the
//!   executor builds under the same attribute names;
//! * one class for the network, whose submodules sit at the executor's VarStore paths
//!   (`stem.conv`, `s0.b1.conv2`, `s1.shortcut`, `s0.coef.beta`, `head.fc`), so that its
//!   `state_dict()` keys are the names of the weights file (plus BatchNorm's
//!   `num_batches_tracked`, which the export adds to the file);
//! * one method per stage with the recurrence written out, one statement per operation of the
//!   plan in plan order, as `optarch codegen` writes it in Rust: blocks called on their
//!   operands, weighted sums with the constants folded (a coefficient of −1 subtracts), learnable
//!   coefficients as `nn.Parameter` scalars, the post-addition ReLU where the executor applies
//!   it, and every value deleted after its last reader;
//! * the per-channel normalisation of the training data as non-persistent buffers (inputs on
//!   the `[0, 1]` scale, as `model.pt` takes them).
//!
//! The module is fp32; it moves (`.to("cuda")`, `.double()`), trains, and compiles with
//! `torch.jit.script`.

use super::arch::{Network, StageNet, Transition};
use super::blocks::{Block, BlockKind, Conv};
use super::ExecError;
use crate::codegen::{short, value_names};
use crate::plan::{OpKind, PolyAlgebra, Scale};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Names a stage method may not give a value: its argument, the module, the imports.
const RESERVED: &[&str] = &["x", "self", "torch", "nn", "F"];

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

/// `base.name`, or `getattr(base, "name")` where `name` is not a Python identifier.
fn attr(base: &str, name: &str) -> String {
    if is_ident(name) {
        format!("{base}.{name}")
    } else {
        format!("getattr({base}, {name:?})")
    }
}

/// The expression of the submodule at VarStore path `path` (`s0.b1`).
fn module(path: &str) -> String {
    path.split('.')
        .filter(|c| !c.is_empty())
        .fold("self".to_string(), |acc, c| attr(&acc, c))
}

/// A float literal to 15 significant digits (`0.1`, `1.0`, `1e-7`).
fn lit(v: f64) -> String {
    format!("{:?}", short(v))
}

fn internal(msg: impl Into<String>) -> ExecError {
    ExecError::config(format!("PyTorch export: {}", msg.into()))
}

/// `a.b` joined, without a leading dot for the root.
fn join(root: &str, rest: &str) -> String {
    if root.is_empty() {
        rest.to_string()
    } else {
        format!("{root}.{rest}")
    }
}

/// The classes the file defines before the network's, by name, in a fixed order.
const BLOCK_CLASSES: &[(&str, &str)] = &[
    (
        "Basic",
        r#"class Basic(nn.Module):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN (He et al. 2016)."""

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(h))
"#,
    ),
    (
        "Bottleneck",
        r#"class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1-BN (He et al. 2016)."""

    def __init__(self, c_in: int, width: int, stride: int, expansion: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * expansion, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(width * expansion)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return self.bn3(self.conv3(h))
"#,
    ),
    (
        "Preact",
        r#"class Preact(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 (He et al., identity mappings)."""

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)

    def forward(self, x):
        h = F.relu(self.bn1(x))
        h = F.relu(self.bn2(self.conv1(h)))
        return self.conv2(h)
"#,
    ),
    (
        "Dense",
        r#"class Dense(nn.Module):
    """BN-ReLU-conv1x1(bottleneck*growth)-BN-ReLU-conv3x3(growth) (DenseNet-BC)."""

    def __init__(self, c_in: int, growth: int, bottleneck: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, growth * bottleneck, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(growth * bottleneck)
        self.conv2 = nn.Conv2d(growth * bottleneck, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        h = F.relu(self.bn1(x))
        h = F.relu(self.bn2(self.conv1(h)))
        return self.conv2(h)
"#,
    ),
    (
        "ZeroPad",
        r#"class ZeroPad(nn.Module):
    """He et al.'s option A: stride subsampling and zero-padded channels, no parameters."""

    def __init__(self, stride: int, lo: int, hi: int):
        super().__init__()
        self.stride = stride
        self.lo = lo
        self.hi = hi

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.lo, self.hi))
"#,
    ),
    (
        "Projection",
        r#"class Projection(nn.Module):
    """Option B: 1x1 convolution with stride, then BN."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.conv(x))
"#,
    ),
    (
        "DenseTransition",
        r#"class DenseTransition(nn.Module):
    """DenseNet transition: BN-ReLU-conv1x1, then 2x2 average pooling at stride 2."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)
        self.stride = stride

    def forward(self, x):
        y = self.conv(F.relu(self.bn(x)))
        if self.stride > 1:
            y = F.avg_pool2d(y, self.stride, self.stride)
        return y
"#,
    ),
];

/// The constructor call of a block.
fn block_ctor(b: &Block) -> (&'static str, String) {
    match b.kind {
        BlockKind::Basic => (
            "Basic",
            format!("Basic({}, {}, {})", b.c_in, b.width, b.stride),
        ),
        BlockKind::Bottleneck { expansion } => (
            "Bottleneck",
            format!(
                "Bottleneck({}, {}, {}, {expansion})",
                b.c_in, b.width, b.stride
            ),
        ),
        BlockKind::Preact => (
            "Preact",
            format!("Preact({}, {}, {})", b.c_in, b.width, b.stride),
        ),
        BlockKind::Dense { growth, bottleneck } => (
            "Dense",
            format!("Dense({}, {growth}, {bottleneck})", b.c_in),
        ),
    }
}

/// The constructor call of a transition, and its path.
fn transition_ctor(t: &Transition) -> (&'static str, String, &str) {
    let (o, i, _) = match t {
        Transition::Projection { conv, .. } | Transition::Dense { conv, .. } => conv.shape(),
        Transition::ZeroPad { .. } => (0, 0, 0),
    };
    match t {
        Transition::ZeroPad {
            stride,
            lo,
            hi,
            path,
        } => ("ZeroPad", format!("ZeroPad({stride}, {lo}, {hi})"), path),
        Transition::Projection { conv, path, .. } => (
            "Projection",
            format!("Projection({i}, {o}, {})", conv.stride),
            path,
        ),
        Transition::Dense { stride, path, .. } => (
            "DenseTransition",
            format!("DenseTransition({i}, {o}, {stride})"),
            path,
        ),
    }
}

fn conv_ctor(c: &Conv) -> String {
    let (o, i, k) = c.shape();
    format!(
        "nn.Conv2d({i}, {o}, {k}, {}, {}, bias=False)",
        c.stride,
        k / 2
    )
}

/// The `__init__` body: assignments at VarStore paths, with the containers they need.
#[derive(Default)]
struct Init {
    lines: String,
    made: HashSet<String>,
}

impl Init {
    fn put(&mut self, path: &str, expr: &str) {
        let comps: Vec<&str> = path.split('.').filter(|c| !c.is_empty()).collect();
        for k in 1..comps.len() {
            let pre = comps[..k].join(".");
            if self.made.insert(pre.clone()) {
                self.assign(&pre, "nn.Module()");
            }
        }
        self.made.insert(comps.join("."));
        self.assign(path, expr);
    }

    fn assign(&mut self, path: &str, expr: &str) {
        let (parent, name) = match path.rsplit_once('.') {
            Some((p, n)) => (module(p), n),
            None => ("self".to_string(), path),
        };
        let _ = if is_ident(name) {
            writeln!(self.lines, "        {parent}.{name} = {expr}")
        } else {
            writeln!(self.lines, "        setattr({parent}, {name:?}, {expr})")
        };
    }
}

/// Polynomials over the learnable scalars as Python expressions reading the parameters.
struct Poly<'a>(&'a [String]);

impl PolyAlgebra for Poly<'_> {
    type Value = String;
    type Error = ExecError;
    fn param(&mut self, id: usize) -> Result<String, ExecError> {
        self.0
            .get(id)
            .map(|p| module(p))
            .ok_or_else(|| internal(format!("learnable scalar {id} does not exist")))
    }
    fn mul(&mut self, a: String, b: String) -> String {
        format!("{a} * {b}")
    }
    fn scale(&mut self, a: String, f: f64) -> String {
        if f == -1.0 {
            format!("-{a}")
        } else if f < 0.0 {
            format!("-{a} * {}", lit(-f))
        } else {
            format!("{a} * {}", lit(f))
        }
    }
    fn add(&mut self, a: String, b: String) -> String {
        format!("{a} + {b}")
    }
    fn add_const(&mut self, a: String, c: f64) -> String {
        if c < 0.0 {
            format!("{a} - {}", lit(-c))
        } else {
            format!("{a} + {}", lit(c))
        }
    }
}

/// One stage's method: the plan written out.
fn stage_method(s: &StageNet, index: usize, out: &mut String) -> Result<(), ExecError> {
    let plan = &s.plan;
    let names = value_names(plan, RESERVED);
    let name = |o: usize| -> Result<&str, ExecError> {
        match names.get(o) {
            Some(Some(n)) => Ok(n.as_str()),
            _ => Err(internal(format!("operation {o} has no value"))),
        }
    };
    let operand = |i: usize, k: usize| -> Result<&str, ExecError> {
        let o = plan.ops[i]
            .operands
            .get(k)
            .copied()
            .ok_or_else(|| internal(format!("operation {i} lacks operand {k}")))?;
        name(o)
    };
    let _ = writeln!(
        out,
        "    def stage{index}(self, x):\n        \"\"\"{} operations of the unrolled spec ({} blocks).\"\"\"",
        plan.ops.len(),
        plan.blocks
    );
    let mut blocks = s.blocks.iter();
    for (i, op) in plan.ops.iter().enumerate() {
        let value = match &op.kind {
            OpKind::Input => match &s.transition {
                Some(t) => format!("{}(x)", module(transition_ctor(t).2)),
                None => "x".to_string(),
            },
            OpKind::Block { .. } => {
                let b = blocks
                    .next()
                    .ok_or_else(|| internal("more block operations than blocks"))?;
                let arg = if s.raw.get(i).copied().unwrap_or(false) && s.transition.is_some() {
                    "x"
                } else {
                    operand(i, 0)?
                };
                format!("{}({arg})", module(&b.path))
            }
            OpKind::Combine(scales) => {
                let mut acc = String::new();
                for (k, sc) in scales.iter().enumerate() {
                    let x = operand(i, k)?;
                    let (neg, term) = match sc {
                        Scale::One => (false, x.to_string()),
                        Scale::Const(c) if *c == -1.0 => (true, x.to_string()),
                        Scale::Const(c) if *c < 0.0 => (true, format!("{x} * {}", lit(-c))),
                        Scale::Const(c) => (false, format!("{x} * {}", lit(*c))),
                        Scale::Poly(terms) => {
                            let p = Scale::fold(terms, &mut Poly(&s.learnable_names))?
                                .ok_or_else(|| internal("a polynomial without learnable terms"))?;
                            (false, format!("{x} * ({p})"))
                        }
                    };
                    acc = match (acc.is_empty(), neg) {
                        (true, false) => term,
                        (true, true) => format!("-{term}"),
                        (false, false) => format!("{acc} + {term}"),
                        (false, true) => format!("{acc} - {term}"),
                    };
                }
                if acc.is_empty() {
                    return Err(internal("an empty sum"));
                }
                acc
            }
            OpKind::Concat => {
                let parts = (0..op.operands.len())
                    .map(|k| operand(i, k))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("torch.cat([{}], 1)", parts.join(", "))
            }
            OpKind::Map(_) => {
                let chain = s.maps.get(i).map(Vec::as_slice).unwrap_or(&[]);
                chain.iter().fold(operand(i, 0)?.to_string(), |acc, t| {
                    format!("{}({acc})", module(transition_ctor(t).2))
                })
            }
            OpKind::Output => {
                let _ = writeln!(out, "        return {}\n", operand(i, 0)?);
                return Ok(());
            }
        };
        let value = if s.post.get(i).copied().unwrap_or(false) {
            format!("F.relu({value})")
        } else {
            value
        };
        let comment = if op.names.is_empty() {
            String::new()
        } else {
            format!("  # {}", op.names.join(", "))
        };
        let _ = writeln!(out, "        {} = {value}{comment}", name(i)?);
        let freed = op
            .frees
            .iter()
            .map(|&o| name(o))
            .collect::<Result<Vec<_>, _>>()?;
        if !freed.is_empty() {
            let _ = writeln!(out, "        del {}", freed.join(", "));
        }
    }
    Err(internal("the plan has no output"))
}

impl Network {
    /// The network as a Python source file defining `class_name(nn.Module)`: see the module
    /// docs. `mean` and `std` are the per-channel normalisation built into `forward`; `doc` is
    /// the file's docstring.
    pub fn python(
        &self,
        class_name: &str,
        mean: &[f64],
        std: &[f64],
        doc: &str,
    ) -> Result<String, ExecError> {
        if !is_ident(class_name) {
            return Err(internal(format!(
                "`{class_name}` is not a Python class name"
            )));
        }
        let mut used = BTreeSet::new();
        let mut init = Init::default();
        let root = self.root.as_str();
        init.put(&self.stem_conv.path, &conv_ctor(&self.stem_conv));
        let stem_c = self.stem_conv.shape().0;
        if self.stem_bn.is_some() {
            init.put(&join(root, "stem.bn"), &format!("nn.BatchNorm2d({stem_c})"));
        }
        for s in &self.stages {
            if let Some(t) = &s.transition {
                let (class, ctor, path) = transition_ctor(t);
                used.insert(class);
                init.put(path, &ctor);
            }
            let mut b = s.blocks.iter();
            for (i, op) in s.plan.ops.iter().enumerate() {
                match &op.kind {
                    OpKind::Block { .. } => {
                        let block = b
                            .next()
                            .ok_or_else(|| internal("more block operations than blocks"))?;
                        let (class, ctor) = block_ctor(block);
                        used.insert(class);
                        init.put(&block.path, &ctor);
                    }
                    OpKind::Map(_) => {
                        for t in s.maps.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                            let (class, ctor, path) = transition_ctor(t);
                            used.insert(class);
                            init.put(path, &ctor);
                        }
                    }
                    _ => {}
                }
            }
            for (name, l) in s.learnable_names.iter().zip(&s.topology.learnables) {
                init.put(
                    name,
                    &format!("nn.Parameter(torch.tensor({}))", lit(l.init)),
                );
            }
        }
        let (classes, c) = match self.fc.ws.size().as_slice() {
            [o, i] => (*o, *i),
            _ => return Err(internal("the classifier is not a matrix")),
        };
        if self.head_bn.is_some() {
            init.put(&join(root, "head.bn"), &format!("nn.BatchNorm2d({c})"));
        }
        init.put(
            &join(root, "head.fc"),
            &format!("nn.Linear({c}, {classes})"),
        );
        let floats = |v: &[f64]| v.iter().map(|x| lit(*x)).collect::<Vec<_>>().join(", ");
        let channels = mean.len();

        let mut out = String::new();
        let _ = writeln!(out, "\"\"\"{}\"\"\"\n", doc.trim_end());
        out.push_str("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n\n");
        for (name, text) in BLOCK_CLASSES {
            if used.contains(name) {
                let _ = write!(out, "{text}\n\n");
            }
        }
        let _ = writeln!(
            out,
            "class {class_name}(nn.Module):\n    \"\"\"Images N×{channels}×H×W on the [0, 1] scale in, {classes} logits out.\"\"\"\n"
        );
        out.push_str("    def __init__(self):\n        super().__init__()\n");
        let _ = writeln!(
            out,
            "        # The training data's per-channel statistics (not part of the state dict).\n        \
             self.register_buffer(\"mean\", torch.tensor([{}]).view(1, {channels}, 1, 1), persistent=False)\n        \
             self.register_buffer(\"std\", torch.tensor([{}]).view(1, {channels}, 1, 1), persistent=False)",
            floats(mean),
            floats(std)
        );
        out.push_str(&init.lines);
        out.push('\n');
        out.push_str("    def forward(self, x):\n        h = (x - self.mean) / self.std\n");
        let stem = module(&self.stem_conv.path);
        let _ = writeln!(out, "        h = {stem}(h)");
        if self.stem_bn.is_some() {
            let _ = writeln!(
                out,
                "        h = F.relu({}(h))",
                module(&join(root, "stem.bn"))
            );
        }
        if self.max_pool {
            out.push_str("        h = F.max_pool2d(h, 3, 2, 1)\n");
        }
        for k in 0..self.stages.len() {
            let _ = writeln!(out, "        h = self.stage{k}(h)");
        }
        if self.head_bn.is_some() {
            let _ = writeln!(
                out,
                "        h = F.relu({}(h))",
                module(&join(root, "head.bn"))
            );
        }
        let _ = writeln!(
            out,
            "        h = F.adaptive_avg_pool2d(h, 1).flatten(1)\n        return {}(h)\n",
            module(&join(root, "head.fc"))
        );
        for (k, s) in self.stages.iter().enumerate() {
            stage_method(s, k, &mut out)?;
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        Ok(out)
    }
}
