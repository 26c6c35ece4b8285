//! Code generation: a compiled [`Plan`] becomes straight-line Rust.
//!
//! The derive macro of `optarch-macros` and `optarch codegen` both call [`expand`]; the runtime
//! executor interprets the same [`Plan`] (see [`crate::exec::plan`], feature `torch`), so there
//! is one semantics. This module needs no libtorch: it produces tokens (`proc-macro2`) that
//! name tch through `<crate>::__private::tch`, a re-export in optarch-core with the `torch`
//! feature, so a user crate needs no `tch` dependency of its own under a fixed name.
//!
//! The generated `forward_t` has one `let` per operation of the plan, in plan order:
//!
//! * a block is `ModuleT::forward_t(&self.blocks[i], &x, train)`;
//! * a weighted sum folds its coefficients: a coefficient of 1 adds the operand as it is, a
//!   constant `c` multiplies by the literal `c` (a negative one subtracts `|c|`, which rounds
//!   the same), and a polynomial in learnable scalars is evaluated from the coefficient tensor
//!   field, term by term as the executor does;
//! * a concatenation is `Tensor::cat(&[...], 1)`;
//! * every value is dropped (`::core::mem::drop`) right after its last reader, as the executor
//!   frees it, and the output is returned by move.
//!
//! ```
//! use optarch_core::codegen::{self, Blocks, BlocksKind, Model, Source};
//! let text = "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n";
//! let spec = optarch_core::spec::load_str("gd.yaml", text)?;
//! let topo = optarch_core::topology::unroll(&spec, 2, &Default::default())?;
//! let plan = optarch_core::plan::Plan::compile(&topo)?;
//! let model = Model::standalone("Gd", BlocksKind::Vec, &topo, Source::inline("gd.yaml", text));
//! let code = codegen::pretty(&codegen::expand(&model, &topo, &plan)?)?;
//! assert!(code.contains("let z1 = xs + &b0;"), "{code}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::SpecError;
use crate::plan::{OpKind, Plan, PolyAlgebra, Scale};
use crate::spec::Overrides;
use crate::topology::Topology;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use std::collections::HashSet;

/// How the blocks are stored in the struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlocksKind {
    /// `Vec<B>`: one block per block operation of the plan.
    Vec,
    /// `[B; N]`: the same, with `N` the number of blocks.
    Array,
    /// A single `B` used by every step (tied weights).
    Shared,
}

/// The blocks field of the struct.
#[derive(Clone, Debug)]
pub struct Blocks {
    /// The field (`blocks`, or `0` in a tuple struct).
    pub member: syn::Member,
    pub kind: BlocksKind,
    /// The block type `B` (the element type for `Vec<B>` and `[B; N]`).
    pub ty: syn::Type,
    /// Where diagnostics about the block type point.
    pub span: Span,
}

/// Where the spec came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The name used in messages and returned by `spec()` (the path as written, or a label).
    pub file: String,
    /// The YAML text.
    pub text: String,
    /// The absolute path of a spec file, emitted as `include_bytes!` so that Cargo rebuilds
    /// the crate when the file changes; `None` for inline specs.
    pub track: Option<String>,
}

impl Source {
    /// The spec file `rel`, relative to `manifest_dir` (a crate's `CARGO_MANIFEST_DIR`): named
    /// `rel` in messages, tracked by its absolute path.
    pub fn file(manifest_dir: &std::path::Path, rel: &str) -> std::io::Result<Source> {
        let path = manifest_dir.join(rel);
        // At most `spec::MAX_SPEC_BYTES`, like every other reader of spec files.
        let text = crate::spec::read_file(&path)?;
        let abs = path.canonicalize().unwrap_or(path);
        Ok(Source {
            file: rel.into(),
            text,
            track: Some(abs.display().to_string()),
        })
    }

    /// An inline spec, named `file` in messages.
    pub fn inline(file: &str, text: &str) -> Source {
        Source {
            file: file.into(),
            text: text.into(),
            track: None,
        }
    }
}

/// Everything [`expand`] needs besides the plan.
#[derive(Clone, Debug)]
pub struct Model {
    pub ident: Ident,
    pub generics: syn::Generics,
    /// The path of optarch-core in the generated code (default `::optarch_core`).
    pub krate: syn::Path,
    pub blocks: Blocks,
    /// The tensor field holding the learnable coefficients (a 1-D tensor indexed like
    /// [`Topology::learnables`]); required when the topology has learnables.
    pub coef: Option<syn::Member>,
    /// Other fields, filled with `Default::default()` by the constructor.
    pub others: Vec<syn::Member>,
    pub source: Source,
    pub steps: usize,
    pub overrides: Overrides,
    /// Emit the struct definition too (for `optarch codegen`).
    pub define: bool,
}

impl Model {
    /// A model with a generated struct `ident<B>` (used by `optarch codegen`): `pub blocks`
    /// (`Vec<B>` or a shared `B`), and `pub coef: Tensor` when `topo` has learnables.
    pub fn standalone(ident: &str, kind: BlocksKind, topo: &Topology, source: Source) -> Model {
        let krate: syn::Path = syn::parse_quote!(::optarch_core);
        Model {
            ident: format_ident!("{}", ident),
            generics: syn::parse_quote!(<B>),
            krate,
            blocks: Blocks {
                member: syn::parse_quote!(blocks),
                kind,
                ty: syn::parse_quote!(B),
                span: Span::call_site(),
            },
            coef: (!topo.learnables.is_empty()).then(|| syn::parse_quote!(coef)),
            others: Vec::new(),
            source,
            steps: topo.steps,
            overrides: Overrides::new(),
            define: true,
        }
    }
}

/// FNV-1a (64 bits) of the spec text: stable across platforms and Rust versions.
pub fn spec_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn internal(msg: impl Into<String>) -> SpecError {
    SpecError::internal(msg)
}

/// A float literal (finite, non-negative: callers take the sign apart), to 15 significant
/// digits: `1 - 0.9` reads `0.1`, not `0.09999999999999998`. (The tensors are at most f64 and
/// usually f32: the last bits of a coefficient never reach them.)
fn float(v: f64) -> Literal {
    Literal::f64_unsuffixed(short(v))
}

/// `v` rounded to 15 significant digits (the shortest decimal that reads back as it): sums such
/// as `0.1 + 0.3` print as `0.4`, not `0.39999999999999997`.
pub fn short(v: f64) -> f64 {
    format!("{v:.14e}").parse().unwrap_or(v)
}

/// An identifier for a state value name: `z[3]` → `z3`, `z[-1]` → `z_m1`.
fn value_ident(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        match c {
            '[' | ']' | ' ' => {}
            '-' => s.push_str("_m"),
            c if c.is_ascii_alphanumeric() || c == '_' => s.push(c),
            _ => s.push('_'),
        }
    }
    s
}

/// The names of the values of a plan in generated code (`None` for the output, which is
/// returned): a block's value by its weight name (`b0`), any other by the first state value it
/// holds (`z3`), unique, never one of `reserved`, never starting with a digit. The Rust of the
/// derive and the Python of the PyTorch export name them alike.
pub(crate) fn value_names(plan: &Plan, reserved: &[&str]) -> Vec<Option<String>> {
    let mut used: HashSet<String> = reserved.iter().map(|s| s.to_string()).collect();
    plan.ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let base = match &op.kind {
                OpKind::Output => return None,
                OpKind::Block { name, .. } => name.clone(),
                _ => match op.names.first() {
                    Some(n) => value_ident(n),
                    None => format!("t{i}"),
                },
            };
            let base = if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
                format!("t{i}")
            } else {
                base
            };
            let mut name = base.clone();
            while !used.insert(name.clone()) {
                name.push('_');
            }
            Some(name)
        })
        .collect()
}

/// The names of the values of a plan as Rust identifiers.
fn names(plan: &Plan) -> Vec<Option<Ident>> {
    value_names(plan, &["xs", "train", "self", "coef"])
        .into_iter()
        .map(|n| n.map(|n| format_ident!("{}", n)))
        .collect()
}

/// The body of `forward_t(&self, xs: &Tensor, train: bool) -> Tensor`.
pub fn forward_body(model: &Model, topo: &Topology, plan: &Plan) -> Result<TokenStream, SpecError> {
    let krate = &model.krate;
    let tch = quote!(#krate::__private::tch);
    let names = names(plan);
    let input = plan.input();
    // A reference to value `o`: the input is `xs` itself (already a `&Tensor`).
    let refer = |o: usize| -> Result<TokenStream, SpecError> {
        if Some(o) == input {
            return Ok(quote!(xs));
        }
        match names.get(o) {
            Some(Some(n)) => Ok(quote!(&#n)),
            _ => Err(internal(format!("operation {o} has no value"))),
        }
    };
    let mut stmts = Vec::new();
    let mut ret = None;
    let mut uses_coef = false;
    for (i, op) in plan.ops.iter().enumerate() {
        let value: Option<TokenStream> = match &op.kind {
            OpKind::Input => None,
            OpKind::Block { index, .. } => {
                let x = refer(
                    *op.operands
                        .first()
                        .ok_or_else(|| internal("a block without operand"))?,
                )?;
                let member = &model.blocks.member;
                let block = match model.blocks.kind {
                    BlocksKind::Shared => quote!(&self.#member),
                    BlocksKind::Vec | BlocksKind::Array => {
                        let idx = Literal::usize_unsuffixed(*index);
                        quote!(&self.#member[#idx])
                    }
                };
                Some(quote!(#tch::nn::ModuleT::forward_t(#block, #x, train)))
            }
            OpKind::Combine(scales) => {
                let mut acc: Option<TokenStream> = None;
                let single = scales.len() == 1;
                for (k, s) in scales.iter().enumerate() {
                    let o = *op
                        .operands
                        .get(k)
                        .ok_or_else(|| internal("a missing operand"))?;
                    let x = refer(o)?;
                    let (neg, term) = match s {
                        Scale::One => (false, x),
                        Scale::Const(c) if *c < 0.0 && (*c + 1.0).abs() == 0.0 => (true, x),
                        Scale::Const(c) if *c < 0.0 => {
                            let c = float(-c);
                            (true, quote!(#x * #c))
                        }
                        Scale::Const(c) => {
                            let c = float(*c);
                            (false, quote!(#x * #c))
                        }
                        Scale::Poly(terms) => {
                            uses_coef = true;
                            let p = poly(terms, topo)?;
                            (false, quote!(#x * #p))
                        }
                    };
                    acc = Some(match (acc, neg) {
                        // A lone operand of weight 1 is the value itself.
                        (None, false) if single && *s == Scale::One => {
                            quote!(#term.shallow_clone())
                        }
                        (None, false) => term,
                        (None, true) => quote!(-(#term)),
                        (Some(a), false) => quote!(#a + #term),
                        (Some(a), true) => quote!(#a - #term),
                    });
                }
                Some(acc.ok_or_else(|| internal("an empty sum"))?)
            }
            OpKind::Concat => {
                let parts = op
                    .operands
                    .iter()
                    .map(|&o| refer(o))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(quote!(#tch::Tensor::cat(&[#(#parts),*], 1)))
            }
            OpKind::Output => {
                let o = *op
                    .operands
                    .first()
                    .ok_or_else(|| internal("an output without operand"))?;
                ret = Some(if Some(o) == input {
                    quote!(xs.shallow_clone())
                } else {
                    match names.get(o) {
                        Some(Some(n)) => quote!(#n),
                        _ => return Err(internal("the output reads no value")),
                    }
                });
                None
            }
            OpKind::Map(_) => {
                return Err(internal(
                    "stage transitions (map operations) are executor concerns; the derive \
                     covers one stage",
                ))
            }
        };
        if let (Some(v), Some(Some(n))) = (value, names.get(i)) {
            stmts.push(quote!(let #n = #v;));
        }
        if op.kind == OpKind::Output {
            break;
        }
        for &o in &op.frees {
            if Some(o) != input {
                if let Some(Some(n)) = names.get(o) {
                    stmts.push(quote!(::core::mem::drop(#n);));
                }
            }
        }
    }
    let ret = ret.ok_or_else(|| internal("the plan has no output"))?;
    if uses_coef && model.coef.is_none() {
        return Err(internal(
            "the plan reads learnable coefficients but there is no field",
        ));
    }
    let coef = match (&model.coef, uses_coef) {
        (Some(c), true) => quote!(let coef = &self.#c;),
        _ => quote!(),
    };
    let train = if plan.blocks == 0 {
        quote!(let _ = train;)
    } else {
        quote!()
    };
    Ok(quote! {
        #coef
        #train
        #(#stmts)*
        #ret
    })
}

/// A polynomial in learnable scalars as a scalar tensor expression, in the order
/// [`Scale::fold`] fixes (the executor's): `coef.get(id)` for each scalar.
fn poly(terms: &[(f64, Vec<usize>)], topo: &Topology) -> Result<TokenStream, SpecError> {
    let acc = Scale::fold(terms, &mut Tokens(topo))?
        .ok_or_else(|| internal("a polynomial without learnable terms"))?;
    let t = acc.tokens;
    Ok(if acc.neg {
        quote!((-(#t)))
    } else {
        quote!((#t))
    })
}

/// A polynomial's tokens with its sign kept apart, so that `1 - c` reads `1.0 - coef.get(0)`
/// rather than `coef.get(0) * -1.0 + 1.0`: the value is `-tokens` when `neg`. Every rewrite
/// is exact in floating point (a negation, or the two orders of one addition), so the code
/// computes the bits the executor computes.
struct Signed {
    tokens: TokenStream,
    neg: bool,
    /// A sum or difference at the top level (needs parentheses after a minus).
    sum: bool,
}

impl Signed {
    fn grouped(&self) -> TokenStream {
        let t = &self.tokens;
        if self.sum {
            quote!((#t))
        } else {
            t.clone()
        }
    }
}

/// Polynomials over the learnable scalars as tokens reading the coefficient tensor `coef`.
struct Tokens<'a>(&'a Topology);

impl PolyAlgebra for Tokens<'_> {
    type Value = Signed;
    type Error = SpecError;
    fn param(&mut self, id: usize) -> Result<Signed, SpecError> {
        if id >= self.0.learnables.len() {
            return Err(internal(format!("learnable scalar {id} does not exist")));
        }
        let id = Literal::usize_unsuffixed(id);
        Ok(Signed {
            tokens: quote!(coef.get(#id)),
            neg: false,
            sum: false,
        })
    }
    fn mul(&mut self, a: Signed, b: Signed) -> Signed {
        let (x, y) = (a.grouped(), b.grouped());
        Signed {
            tokens: quote!(#x * #y),
            neg: a.neg != b.neg,
            sum: false,
        }
    }
    fn scale(&mut self, a: Signed, f: f64) -> Signed {
        let x = a.grouped();
        let tokens = if f.abs() == 1.0 {
            a.tokens
        } else {
            let f = float(f.abs());
            quote!(#x * #f)
        };
        Signed {
            sum: a.sum && f.abs() == 1.0,
            tokens,
            neg: a.neg != (f < 0.0),
        }
    }
    fn add(&mut self, a: Signed, b: Signed) -> Signed {
        let (x, y) = (&a.tokens, b.grouped());
        let (tokens, neg) = match (a.neg, b.neg) {
            (false, false) => (quote!(#x + #y), false),
            (false, true) => (quote!(#x - #y), false),
            (true, false) => {
                let (x, y) = (a.grouped(), &b.tokens);
                (quote!(#y - #x), false)
            }
            (true, true) => (quote!(#x + #y), true),
        };
        Signed {
            tokens,
            neg,
            sum: true,
        }
    }
    fn add_const(&mut self, a: Signed, c: f64) -> Signed {
        let l = float(c.abs());
        let x = &a.tokens;
        let (tokens, neg) = match (a.neg, c < 0.0) {
            (false, false) => (quote!(#x + #l), false),
            (false, true) => (quote!(#x - #l), false),
            (true, false) => {
                let x = a.grouped();
                (quote!(#l - #x), false)
            }
            (true, true) => (quote!(#x + #l), true),
        };
        Signed {
            tokens,
            neg,
            sum: true,
        }
    }
}

/// The whole expansion: the `ModuleT` impl, the constructor and the accessors (and the struct
/// itself when [`Model::define`] is set), inside `const _: () = { ... };`.
pub fn expand(model: &Model, topo: &Topology, plan: &Plan) -> Result<TokenStream, SpecError> {
    let krate = &model.krate;
    let tch = quote!(#krate::__private::tch);
    let ident = &model.ident;
    let (impl_generics, ty_generics, where_clause) = model.generics.split_for_impl();
    let body = forward_body(model, topo, plan)?;
    let block_ty = &model.blocks.ty;
    let mut module_where = where_clause
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(where));
    let span = model.blocks.span;
    module_where
        .predicates
        .push(syn::parse_quote_spanned!(span=> #block_ty: #tch::nn::ModuleT));

    // The constructor.
    let blocks_member = &model.blocks.member;
    let block_calls: Vec<TokenStream> = plan
        .ops
        .iter()
        .filter_map(|op| match op.kind {
            OpKind::Block { step, ref name, .. } => {
                let step = Literal::usize_unsuffixed(step);
                Some(quote!(block(&(p / #name), #step)))
            }
            _ => None,
        })
        .collect();
    let blocks_init = match model.blocks.kind {
        BlocksKind::Shared => quote!(block(&(p / "block"), 0)),
        BlocksKind::Array => quote!([#(#block_calls),*]),
        BlocksKind::Vec => quote!(::std::vec![#(#block_calls),*]),
    };
    let coef_init = model.coef.as_ref().map(|c| {
        let inits = topo.learnables.iter().map(|l| float_signed(l.init));
        quote!(#c: p.var_copy("coef", &#tch::Tensor::from_slice::<f64>(&[#(#inits),*])),)
    });
    let others = model
        .others
        .iter()
        .map(|m| quote!(#m: ::core::default::Default::default(),));

    let file = &model.source.file;
    let text = &model.source.text;
    let hash = spec_hash(text);
    let hash = Literal::u64_suffixed(hash);
    let steps = Literal::usize_unsuffixed(model.steps);
    let blocks = Literal::usize_unsuffixed(plan.blocks);
    let learnables = Literal::usize_unsuffixed(topo.learnables.len());
    let overrides = model.overrides.iter().map(|(k, v)| {
        let v = float_signed(*v);
        quote!((::std::string::String::from(#k), #v))
    });
    let track = model.source.track.as_ref().map(|path| {
        quote!(
            const _: &[u8] = ::core::include_bytes!(#path);
        )
    });
    let spec_name = &topo.name;
    let forward_doc = format!(
        " The `{spec_name}` recurrence unrolled for {} steps ({} blocks): `xs` is `z[0]`, shape \
         `[N, C, H, W]`; the result has the shape the blocks keep (for concatenating specs, the \
         channels of every concatenated value).",
        model.steps, plan.blocks
    );
    let new_doc = format!(
        " Builds the blocks with `block(path, step)`, one per block of the plan under `p / \"b{{step}}\"` \
         (`p / \"block\"` when shared){}.",
        if model.coef.is_some() {
            ", and the learnable coefficients as a 1-D tensor `p / \"coef\"` with their initial values"
        } else {
            ""
        }
    );
    let definition = model.define.then(|| {
        let ty = match model.blocks.kind {
            BlocksKind::Shared => quote!(B),
            _ => quote!(::std::vec::Vec<B>),
        };
        let coef = model.coef.as_ref().map(|c| quote!(pub #c: #tch::Tensor,));
        let doc = format!(
            " `{spec_name}` unrolled for {} steps (generated by `optarch codegen`).",
            model.steps
        );
        quote! {
            #[doc = #doc]
            #[derive(Debug)]
            pub struct #ident<B> {
                pub #blocks_member: #ty,
                #coef
            }
        }
    });
    let new_sig = quote_spanned!(span=> mut block: impl ::core::ops::FnMut(&#tch::nn::Path, usize) -> #block_ty);
    let out = quote! {
        #definition
        const _: () = {
            #track
            #[automatically_derived]
            impl #impl_generics #tch::nn::ModuleT for #ident #ty_generics #module_where {
                #[doc = #forward_doc]
                fn forward_t(&self, xs: &#tch::Tensor, train: bool) -> #tch::Tensor {
                    #body
                }
            }
            #[automatically_derived]
            impl #impl_generics #krate::Unrolled for #ident #ty_generics #where_clause {
                const STEPS: usize = #steps;
                const BLOCKS: usize = #blocks;
                const LEARNABLES: usize = #learnables;
                const SPEC_FILE: &'static str = #file;
                const SPEC_YAML: &'static str = #text;
                const SPEC_HASH: u64 = #hash;
                fn overrides() -> #krate::spec::Overrides {
                    ::std::collections::BTreeMap::from([#(#overrides),*])
                }
            }
            // A constructor a crate may not use: no dead-code warning for it.
            #[allow(dead_code)]
            impl #impl_generics #ident #ty_generics #where_clause {
                #[doc = #new_doc]
                pub fn new(p: &#tch::nn::Path, #new_sig) -> Self {
                    Self {
                        #blocks_member: #blocks_init,
                        #coef_init
                        #(#others)*
                    }
                }
            }
        };
    };
    Ok(out)
}

/// A float literal that may be negative (as a unary minus and a literal).
fn float_signed(v: f64) -> TokenStream {
    if v < 0.0 {
        let l = float(-v);
        quote!(-#l)
    } else {
        float(v).into_token_stream()
    }
}

/// Stub impls emitted next to a compile error, so that one mistake does not cascade into
/// errors at every use of the struct: `ModuleT`, `new` and the accessors, with bodies that
/// are never run (the crate does not compile).
pub fn stubs(ident: &Ident, generics: &syn::Generics, krate: &syn::Path) -> TokenStream {
    let tch = quote!(#krate::__private::tch);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #tch::nn::ModuleT for #ident #ty_generics #where_clause {
                fn forward_t(&self, _xs: &#tch::Tensor, _train: bool) -> #tch::Tensor {
                    ::core::unreachable!()
                }
            }
            #[automatically_derived]
            impl #impl_generics #krate::Unrolled for #ident #ty_generics #where_clause {
                const STEPS: usize = 0;
                const BLOCKS: usize = 0;
                const LEARNABLES: usize = 0;
                const SPEC_FILE: &'static str = "";
                const SPEC_YAML: &'static str = "";
                const SPEC_HASH: u64 = 0;
                fn overrides() -> #krate::spec::Overrides {
                    ::core::unreachable!()
                }
            }
            #[allow(dead_code)]
            impl #impl_generics #ident #ty_generics #where_clause {
                pub fn new<__B>(_p: &#tch::nn::Path, _block: impl ::core::ops::FnMut(&#tch::nn::Path, usize) -> __B) -> Self {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// `snake_case` → `CamelCase` (`heavy_ball` → `HeavyBall`), a valid type name.
pub fn type_name(spec_name: &str) -> String {
    let mut out = String::new();
    for part in spec_name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'S');
    }
    out
}

/// The module `optarch codegen` prints: a struct `name<B>` (default: the spec name in
/// `CamelCase`) with `pub blocks: Vec<B>` (a single `B` when `shared`) and, when the spec has
/// learnable coefficients, `pub coef: Tensor`, followed by exactly what `#[derive(Unroll)]`
/// generates for it (without the `include_bytes!`, as the file is standalone), pretty-printed.
pub fn source(
    spec: &crate::spec::Spec,
    steps: usize,
    overrides: &Overrides,
    name: Option<&str>,
    shared: bool,
) -> Result<String, SpecError> {
    let topo = crate::topology::unroll(spec, steps, overrides)?;
    let plan = Plan::compile(&topo)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => type_name(&spec.name),
    };
    if syn::parse_str::<Ident>(&name).is_err() {
        return Err(SpecError::new(
            crate::error::ErrorKind::InvalidValue,
            format!("`{name}` is not a Rust type name"),
        )
        .with_hint("pass e.g. --name HeavyBall"));
    }
    let kind = if shared {
        BlocksKind::Shared
    } else {
        BlocksKind::Vec
    };
    let mut model = Model::standalone(&name, kind, &topo, Source::inline(&spec.file, &spec.text));
    model.overrides = overrides.clone();
    let code = pretty(&expand(&model, &topo, &plan)?)?;
    let sets: String = overrides
        .iter()
        .map(|(k, v)| format!(" --set {k}={v}"))
        .collect();
    Ok(format!(
        "// Generated by `optarch codegen {} --steps {steps}{sets}{}`: the `{}` recurrence \
         unrolled,\n// the same code `#[derive(optarch_macros::Unroll)]` expands to. Needs \
         optarch-core (feature `torch`).\n\n{code}",
        spec.file,
        if shared { " --shared" } else { "" },
        spec.name
    ))
}

/// Pretty-prints a token stream of items (prettyplease).
pub fn pretty(tokens: &TokenStream) -> Result<String, SpecError> {
    let file: syn::File = syn::parse2(tokens.clone())
        .map_err(|e| internal(format!("the generated code does not parse: {e}")))?;
    Ok(prettyplease::unparse(&file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_print_short() {
        assert_eq!(float(1.0 - 0.9).to_string(), "0.1");
        assert_eq!(float(1.2817535251253207).to_string(), "1.28175352512532");
        assert_eq!(float(0.5).to_string(), "0.5");
        assert_eq!(float(2.0).to_string(), "2.0");
    }

    fn generate(text: &str, steps: usize, kind: BlocksKind) -> String {
        let spec = crate::spec::load_str("t.yaml", text).unwrap();
        let topo = crate::topology::unroll(&spec, steps, &Default::default()).unwrap();
        let plan = Plan::compile(&topo).unwrap();
        let mut model = Model::standalone("Net", kind, &topo, Source::inline("t.yaml", text));
        model.source.track = Some("/abs/specs/t.yaml".into());
        pretty(&expand(&model, &topo, &plan).unwrap()).unwrap()
    }

    const HB: &str = "name: hb\nparams:\n  beta: 0.5\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k]) + beta * (z[k] - z[k-1])\noutput: z\n";

    #[test]
    fn heavy_ball_is_straight_line_with_folded_constants() {
        let code = generate(HB, 3, BlocksKind::Vec);
        // Step 0: z[-1] = z[0], so z1 = z0 + B0(z0); then (1 + β) z - β z₋ + B(z).
        let squeezed: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squeezed.contains(
                "let b0 = ::optarch_core::__private::tch::nn::ModuleT::forward_t( &self.blocks[0], xs, train, );"
            ),
            "{code}"
        );
        assert!(
            code.contains("let z2 = &z1 * 1.5 + &b1 - xs * 0.5;"),
            "{code}"
        );
        assert!(
            code.contains("let z3 = &z2 * 1.5 + &b2 - &z1 * 0.5;"),
            "{code}"
        );
        assert!(code.contains("::core::mem::drop(z1);"), "{code}");
        assert!(
            code.contains("const _: &[u8] = ::core::include_bytes!(\"/abs/specs/t.yaml\");"),
            "{code}"
        );
        assert!(!code.contains("self.coef"), "{code}");
    }

    /// A value read twice by its last reader (`cat(z[k], z[k])`) is dropped after it, as the
    /// executor frees it (the plan's `frees`).
    #[test]
    fn a_value_read_twice_is_still_dropped() {
        let cat = "name: c\nstate: [z]\nstep:\n  z[k+1]: cat(z[k], grad(z[k]), z[k])\noutput: z\n";
        let code = generate(cat, 2, BlocksKind::Vec);
        assert!(code.contains("::core::mem::drop(z1);"), "{code}");
        assert!(code.contains("::core::mem::drop(b1);"), "{code}");
    }

    #[test]
    fn shared_blocks_read_one_field() {
        let code = generate(HB, 2, BlocksKind::Shared);
        assert!(code.contains("&self.blocks,"), "{code}");
        assert!(!code.contains("self.blocks["), "{code}");
    }

    #[test]
    fn learnable_coefficients_are_read_from_the_tensor_field() {
        let lm = "name: lm\nparams:\n  c: { init: 0.1, learn: true, per: step }\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: (1 - c[k]) * z[k] + c[k] * z[k-1] - grad(z[k])\noutput: z\n";
        let code = generate(lm, 3, BlocksKind::Vec);
        assert!(code.contains("let coef = &self.coef;"), "{code}");
        assert!(code.contains("coef.get(0)"), "{code}");
        assert!(
            code.contains("pub coef: ::optarch_core::__private::tch::Tensor"),
            "{code}"
        );
    }

    /// Rebuild tracking: a spec read from a file is emitted as `include_bytes!` of its
    /// absolute path (Cargo then rebuilds the crate when the file changes); inline specs not.
    #[test]
    fn spec_files_are_tracked_with_include_bytes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = Source::file(dir, "../specs/heavy_ball.yaml").unwrap();
        let abs = dir.join("../specs/heavy_ball.yaml").canonicalize().unwrap();
        assert_eq!(src.track.as_deref(), Some(abs.to_str().unwrap()));
        assert_eq!(src.file, "../specs/heavy_ball.yaml");
        let spec = crate::spec::load_str(&src.file, &src.text).unwrap();
        let topo = crate::topology::unroll(&spec, 2, &Default::default()).unwrap();
        let plan = Plan::compile(&topo).unwrap();
        let mut model = Model::standalone("Net", BlocksKind::Vec, &topo, src);
        model.define = false;
        let out = expand(&model, &topo, &plan).unwrap().to_string();
        let want = format!(
            ":: core :: include_bytes ! ({:?})",
            abs.display().to_string()
        );
        assert!(out.contains(&want), "{out}");
        model.source.track = None;
        assert!(!expand(&model, &topo, &plan)
            .unwrap()
            .to_string()
            .contains("include_bytes"));
        assert!(Source::file(dir, "no/such.yaml").is_err());
    }

    #[test]
    fn stubs_cover_every_generated_item() {
        let out = stubs(
            &format_ident!("Net"),
            &syn::parse_quote!(<B>),
            &syn::parse_quote!(::optarch_core),
        )
        .to_string();
        for item in [
            "fn forward_t",
            "fn new",
            "Unrolled for Net",
            "fn overrides",
            "STEPS",
            "BLOCKS",
            "LEARNABLES",
            "SPEC_FILE",
            "SPEC_YAML",
            "SPEC_HASH",
        ] {
            assert!(out.contains(item), "{item}: {out}");
        }
    }

    #[test]
    fn hash_is_fnv1a() {
        assert_eq!(spec_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(spec_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
