//! Derive macros for optarch: `#[derive(Unroll)]` turns a struct of blocks into the unrolled
//! forward pass of a spec, generated at compile time.
//!
//! This crate is a thin shell: it parses the attributes ([`syn`]), loads and unrolls the spec
//! and compiles the plan with `optarch-core` (default features off, so it never links
//! libtorch), and hands the plan to `optarch_core::codegen`, the generator `optarch codegen`
//! uses too. Every problem becomes a `compile_error!` with a span on the attribute, the literal
//! or the field; stub impls are emitted beside it so one mistake does not cascade.
//!
//! Users depend on `optarch-core` (feature `torch`, on by default) and `optarch-macros` side
//! by side. See [`Unroll`] for the attribute keys and `docs/DERIVE.md` for a guide.

mod attrs;

use optarch_core::codegen::{self, Blocks, BlocksKind, Model};
use optarch_core::plan::Plan;
use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{parse_macro_input, DeriveInput};

/// Generates the unrolled forward pass of a spec for a struct of blocks.
///
/// ```ignore
/// use optarch_macros::Unroll;
/// use optarch_core::__private::tch::nn;
///
/// #[derive(Debug)]
/// struct MyBlock { conv: nn::Conv2D }
/// impl nn::ModuleT for MyBlock {
///     fn forward_t(&self, xs: &tch::Tensor, _train: bool) -> tch::Tensor { xs.apply(&self.conv) }
/// }
///
/// #[derive(Debug, Unroll)]
/// #[optarch(spec = "specs/heavy_ball.yaml", steps = 3, set(beta = 0.9))]
/// struct HeavyBall {
///     blocks: Vec<MyBlock>,
/// }
///
/// let vs = nn::VarStore::new(tch::Device::Cpu);
/// let net = HeavyBall::new(&vs.root(), |p, _step| MyBlock {
///     conv: nn::conv2d(p / "conv", 16, 16, 3, nn::ConvConfig { padding: 1, ..Default::default() }),
/// });
/// let y = nn::ModuleT::forward_t(&net, &x, true);
/// ```
///
/// (A complete, compiled and run version of this example is `examples/heavy_ball_derive.rs`.)
///
/// # Struct attribute `#[optarch(...)]`
///
/// | key | meaning |
/// |---|---|
/// | `spec = "path.yaml"` | the spec file, relative to the crate's `CARGO_MANIFEST_DIR`. Cargo rebuilds the crate when the file changes (the expansion holds `include_bytes!` of its absolute path). |
/// | `yaml = "..."` | an inline spec instead of a file (a raw string `r#"..."#` reads best). Exactly one of `spec` and `yaml`. |
/// | `steps = N` | the number of steps to unroll (required, 1 to the unroller's maximum). |
/// | `set(name = value, ...)` | parameter overrides, e.g. `set(beta = 0.9)`: each must name a parameter of the spec; fixes constants, search ranges and the initial value of learnable ones. |
/// | `crate = "path"` | the path of optarch-core in the generated code (default `::optarch_core`), for crates that reach it through a re-export. |
///
/// # Fields
///
/// * **blocks**: the field marked `#[optarch(blocks)]`, else the field named `blocks`. Its type
///   is `Vec<B>` or `[B; N]` (one block per block of the unrolled spec, in execution order; `N`
///   must equal that count, which is the number of steps for specs with one gradient per step),
///   or a single `B` used by every step (tied weights, the setting of the paper's theory),
///   where `B: tch::nn::ModuleT`.
/// * **coefficients**: the field marked `#[optarch(coef)]`, else the field named `coef`, of type
///   `Tensor`: a 1-D tensor of the learnable scalars, indexed like `Topology::learnables`.
///   Required when the spec has learnable parameters; allowed otherwise (then empty).
/// * Any other field is filled with `Default::default()` by the constructor.
///
/// The struct must be a struct with named fields and implement `Debug` (a supertrait of
/// `ModuleT`).
///
/// # Generated items
///
/// * `impl tch::nn::ModuleT`: `forward_t(xs, train)` runs the recurrence on `xs = z[0]`, one
///   `let` per operation of the plan the runtime executor interprets: constants folded
///   (coefficient 1 is a plain addition), dead terms dropped, every value dropped right after
///   its last reader. It covers one stage (same width throughout): stems, stage transitions
///   and heads are the user's, and so is any activation after the additions.
/// * `fn new(p: &nn::Path, block: impl FnMut(&nn::Path, usize) -> B) -> Self`: builds block
///   `i` as `block(&(p / "b{step}"), step)` (`p / "b{step}_{slot}"` for a second gradient in one
///   step, `p / "block"` with step 0 when shared), and the coefficients as `p / "coef"`.
/// * `impl optarch_core::Unrolled`: the constants `STEPS`, `BLOCKS`, `LEARNABLES`,
///   `SPEC_FILE`, `SPEC_YAML`, `SPEC_HASH` (FNV-1a of the text) and `overrides()`; the trait
///   provides `spec()`, `topology()` and `plan()` (bring it into scope to call them).
///
/// Generated code reaches tch as `<crate>::__private::tch` (optarch-core's re-export).
#[proc_macro_derive(Unroll, attributes(optarch))]
pub fn derive_unroll(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).into()
}

fn expand(input: &DeriveInput) -> proc_macro2::TokenStream {
    let (parsed, mut errors) = attrs::parse(input);
    let krate = parsed
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::optarch_core));
    let stubs = || codegen::stubs(&input.ident, &input.generics, &krate);
    let fail = |errors: Vec<syn::Error>| {
        let mut it = errors.into_iter();
        let mut e = match it.next() {
            Some(e) => e,
            None => syn::Error::new(input.ident.span(), "optarch: unknown error"),
        };
        e.extend(it);
        let ce = e.to_compile_error();
        let stubs = stubs();
        quote!(#ce #stubs)
    };
    let (Some(source), Some((steps, steps_span)), Some((blocks, array_len))) =
        (parsed.source.clone(), parsed.steps, parsed.blocks.clone())
    else {
        return fail(errors);
    };
    // The spec, unrolled and compiled: the same path as the runtime executor.
    let spec = match optarch_core::spec::load_str(&source.source.file, &source.source.text) {
        Ok(s) => s,
        Err(e) => {
            errors.push(syn::Error::new(source.span, e.to_string()));
            return fail(errors);
        }
    };
    for (name, span) in &parsed.override_spans {
        if spec.param(name).is_none() {
            let names: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
            let hint = match optarch_core::error::did_you_mean(name, names.iter().copied()) {
                Some(s) => format!("; did you mean `{s}`?"),
                None if names.is_empty() => " (it has none)".to_string(),
                None => format!("; its parameters are: {}", names.join(", ")),
            };
            errors.push(syn::Error::new(
                *span,
                format!("`{name}` names no parameter of spec `{}`{hint}", spec.name),
            ));
        }
    }
    if !errors.is_empty() {
        return fail(errors);
    }
    let topo = match optarch_core::topology::unroll(&spec, steps, &parsed.overrides) {
        Ok(t) => t,
        Err(e) => {
            errors.push(syn::Error::new(steps_span, e.to_string()));
            return fail(errors);
        }
    };
    let plan = match Plan::compile(&topo) {
        Ok(p) => p,
        Err(e) => {
            errors.push(syn::Error::new(source.span, e.to_string()));
            return fail(errors);
        }
    };
    if let Some((n, span)) = array_len {
        if n != plan.blocks {
            errors.push(syn::Error::new(
                span,
                format!(
                    "the blocks array has length {n}, but `{}` unrolled for {steps} steps has {} \
                     blocks: write `[_; {}]`",
                    spec.name, plan.blocks, plan.blocks
                ),
            ));
        }
    }
    if !topo.learnables.is_empty() && parsed.coef.is_none() {
        let names: Vec<&str> = topo.learnables.iter().map(|l| l.name.as_str()).collect();
        errors.push(syn::Error::new(
            input.ident.span(),
            format!(
                "spec `{}` has learnable coefficients ({}): add a field `coef: Tensor` (or mark \
                 a tensor field `#[optarch(coef)]`)",
                spec.name,
                names.join(", ")
            ),
        ));
    }
    if !errors.is_empty() {
        return fail(errors);
    }
    let model = Model {
        ident: input.ident.clone(),
        generics: input.generics.clone(),
        krate: krate.clone(),
        blocks: Blocks {
            member: blocks.member,
            kind: blocks.kind,
            ty: blocks.ty,
            span: blocks.span,
        },
        coef: parsed.coef.clone(),
        others: parsed.others.clone(),
        source: source.source,
        steps,
        overrides: parsed.overrides.clone(),
        define: false,
    };
    match codegen::expand(&model, &topo, &plan) {
        Ok(t) => t,
        Err(e) => fail(vec![syn::Error::new(input.span(), e.to_string())]),
    }
}

// Keep the kind type reachable for attrs.rs.
pub(crate) use BlocksKind as Kind;
