//! Parsing and checking the `#[optarch(...)]` attributes and the fields. Errors are collected,
//! each with the span of the key, literal or field it is about.

use crate::Kind;
use optarch_core::codegen::Source;
use optarch_core::spec::Overrides;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, Fields, Lit, LitStr, Type};

/// Where the spec comes from, with the span of its literal.
#[derive(Clone)]
pub struct SpecSource {
    pub source: Source,
    pub span: Span,
}

/// The blocks field.
#[derive(Clone)]
pub struct BlocksField {
    pub member: syn::Member,
    pub kind: Kind,
    pub ty: Type,
    pub span: Span,
}

/// What the attributes and fields say.
#[derive(Default)]
pub struct Parsed {
    pub source: Option<SpecSource>,
    pub steps: Option<(usize, Span)>,
    pub overrides: Overrides,
    pub override_spans: Vec<(String, Span)>,
    pub krate: Option<syn::Path>,
    /// The blocks field and, for an array, its literal length with the span of the length.
    pub blocks: Option<(BlocksField, Option<(usize, Span)>)>,
    pub coef: Option<syn::Member>,
    pub others: Vec<syn::Member>,
}

const KEYS: &[&str] = &["spec", "yaml", "steps", "set", "crate"];

/// Parses everything, collecting errors.
pub fn parse(input: &DeriveInput) -> (Parsed, Vec<syn::Error>) {
    let mut p = Parsed::default();
    let mut errors = Vec::new();
    let mut seen_attr = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("optarch")) {
        seen_attr = true;
        let r = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match key.as_str() {
                "spec" | "yaml" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if p.source.is_some() {
                        errors.push(syn::Error::new(
                            meta.path.span(),
                            "the spec is given twice: use one `spec = \"file.yaml\"` or one `yaml = \"...\"`",
                        ));
                        return Ok(());
                    }
                    match load_source(&key, &lit) {
                        Ok(s) => p.source = Some(s),
                        Err(e) => errors.push(e),
                    }
                }
                "steps" => {
                    let lit: syn::LitInt = meta.value()?.parse()?;
                    match lit.base10_parse::<usize>() {
                        Ok(n) => p.steps = Some((n, lit.span())),
                        Err(e) => errors.push(syn::Error::new(lit.span(), e)),
                    }
                }
                "set" => meta.parse_nested_meta(|m| {
                    let name = m
                        .path
                        .get_ident()
                        .map(|i| i.to_string())
                        .ok_or_else(|| m.error("expected a parameter name, e.g. `set(beta = 0.9)`"))?;
                    let e: Expr = m.value()?.parse()?;
                    match number(&e) {
                        Some(v) => {
                            p.overrides.insert(name.clone(), v);
                            p.override_spans.push((name, m.path.span()));
                        }
                        None => errors.push(syn::Error::new(
                            e.span(),
                            "expected a number, e.g. `set(beta = 0.9)`",
                        )),
                    }
                    Ok(())
                })?,
                "crate" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse::<syn::Path>() {
                        Ok(path) => p.krate = Some(path),
                        Err(_) => errors.push(syn::Error::new(
                            lit.span(),
                            "expected a path, e.g. `crate = \"::my_reexport::optarch_core\"`",
                        )),
                    }
                }
                _ => {
                    let hint = optarch_core::error::did_you_mean(&key, KEYS.iter().copied())
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    errors.push(syn::Error::new(
                        meta.path.span(),
                        format!(
                            "unknown key `{key}` in #[optarch(...)]: the keys are spec, yaml, steps, set, crate{hint}"
                        ),
                    ));
                    // Skip its value, if any, so the remaining keys are still read.
                    if meta.input.peek(syn::Token![=]) {
                        let _: Expr = meta.value()?.parse()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        let _content;
                        syn::parenthesized!(_content in meta.input);
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    if !seen_attr {
        errors.push(syn::Error::new(
            input.ident.span(),
            "missing #[optarch(spec = \"file.yaml\", steps = N)] on the struct",
        ));
    } else {
        if p.source.is_none() && !errors.iter().any(|e| e.to_string().contains("spec file")) {
            errors.push(syn::Error::new(
                input.ident.span(),
                "no spec: add `spec = \"file.yaml\"` (relative to CARGO_MANIFEST_DIR) or `yaml = \"...\"` to #[optarch(...)]",
            ));
        }
        if p.steps.is_none() {
            errors.push(syn::Error::new(
                input.ident.span(),
                "no step count: add `steps = N` to #[optarch(...)]",
            ));
        }
    }
    fields(input, &mut p, &mut errors);
    (p, errors)
}

/// A number literal, possibly negated.
fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Float(f) => f.base10_parse().ok(),
            Lit::Int(i) => i.base10_parse::<i64>().ok().map(|v| v as f64),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => number(&u.expr).map(|v| -v),
        Expr::Group(g) => number(&g.expr),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// Reads a spec file (relative to `CARGO_MANIFEST_DIR`) or takes an inline one.
fn load_source(key: &str, lit: &LitStr) -> Result<SpecSource, syn::Error> {
    let value = lit.value();
    if key == "yaml" {
        return Ok(SpecSource {
            source: Source::inline("<inline spec>", &value),
            span: lit.span(),
        });
    }
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let source = Source::file(&dir, &value).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "cannot read spec file `{value}` (relative to CARGO_MANIFEST_DIR): {}",
                io_reason(&e)
            ),
        )
    })?;
    Ok(SpecSource {
        source,
        span: lit.span(),
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        _ => e.to_string(),
    }
}

/// The field's `#[optarch(blocks)]` / `#[optarch(coef)]` marker.
fn marker(field: &syn::Field, errors: &mut Vec<syn::Error>) -> Option<&'static str> {
    let mut out = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("optarch")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("blocks") {
                out = Some("blocks");
            } else if meta.path.is_ident("coef") {
                out = Some("coef");
            } else {
                errors.push(syn::Error::new(
                    meta.path.span(),
                    "unknown field marker: use #[optarch(blocks)] or #[optarch(coef)]",
                ));
            }
            Ok(())
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    out
}

fn fields(input: &DeriveInput, p: &mut Parsed, errors: &mut Vec<syn::Error>) {
    let named = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => &f.named,
            _ => {
                errors.push(syn::Error::new(
                    input.ident.span(),
                    "#[derive(Unroll)] needs a struct with named fields (e.g. `blocks: Vec<B>`)",
                ));
                return;
            }
        },
        _ => {
            errors.push(syn::Error::new(
                input.ident.span(),
                "#[derive(Unroll)] works on structs only",
            ));
            return;
        }
    };
    let marks: Vec<Option<&str>> = named.iter().map(|f| marker(f, errors)).collect();
    let pick = |what: &str| -> Option<usize> {
        marks.iter().position(|m| *m == Some(what)).or_else(|| {
            named.iter().position(|f| {
                f.ident.as_ref().is_some_and(|i| i == what)
                    && marks.iter().all(|m| *m != Some(what))
            })
        })
    };
    let blocks_at = pick("blocks");
    let coef_at = pick("coef");
    match blocks_at {
        None => errors.push(syn::Error::new(
            input.ident.span(),
            "no blocks field: name a field `blocks` or mark it #[optarch(blocks)] (type `Vec<B>`, `[B; N]` or `B`)",
        )),
        Some(i) => {
            let f = &named[i];
            match blocks_type(&f.ty) {
                Ok((kind, ty, len)) => {
                    let member = syn::Member::Named(f.ident.clone().unwrap_or_else(|| syn::Ident::new("blocks", Span::call_site())));
                    p.blocks = Some((
                        BlocksField {
                            member,
                            kind,
                            ty,
                            span: f.ty.span(),
                        },
                        len,
                    ));
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(i) = coef_at {
        let f = &named[i];
        if is_tensor(&f.ty) {
            p.coef = f.ident.clone().map(syn::Member::Named);
        } else {
            errors.push(syn::Error::new(
                f.ty.span(),
                "the coefficient field must be a `Tensor` (a 1-D tch::Tensor of the learnable scalars)",
            ));
        }
    }
    for (i, f) in named.iter().enumerate() {
        if Some(i) != blocks_at && Some(i) != coef_at {
            if let Some(id) = &f.ident {
                p.others.push(syn::Member::Named(id.clone()));
            }
        }
    }
}

fn is_tensor(ty: &Type) -> bool {
    match ty {
        Type::Path(tp) if tp.qself.is_none() => tp
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Tensor" && s.arguments.is_none()),
        Type::Group(g) => is_tensor(&g.elem),
        _ => false,
    }
}

type BlocksType = (Kind, Type, Option<(usize, Span)>);

/// `Vec<B>`, `[B; N]` or `B`.
fn blocks_type(ty: &Type) -> Result<BlocksType, syn::Error> {
    let wrong = |what: &str| {
        syn::Error::new(
            ty.span(),
            format!(
                "the blocks field cannot be {what}: use `Vec<B>`, `[B; N]` or a single `B` shared by every step, with `B: tch::nn::ModuleT`"
            ),
        )
    };
    match ty {
        Type::Group(g) => blocks_type(&g.elem),
        Type::Paren(p) => blocks_type(&p.elem),
        Type::Array(a) => {
            let len = match &a.len {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(i), ..
                }) => i
                    .base10_parse::<usize>()
                    .map_err(|e| syn::Error::new(i.span(), e))?,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "write the array length as a number literal (the derive checks it against the spec's block count)",
                    ))
                }
            };
            Ok((Kind::Array, (*a.elem).clone(), Some((len, a.len.span()))))
        }
        Type::Path(tp) if tp.qself.is_none() => {
            let Some(last) = tp.path.segments.last() else {
                return Err(wrong("an empty path"));
            };
            if last.ident == "Vec" {
                if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                    if let (1, Some(syn::GenericArgument::Type(t))) =
                        (args.args.len(), args.args.first())
                    {
                        return Ok((Kind::Vec, t.clone(), None));
                    }
                }
                return Err(wrong("a `Vec` without one element type"));
            }
            if last.ident == "Option" {
                return Err(wrong("an `Option`"));
            }
            Ok((Kind::Shared, ty.clone(), None))
        }
        Type::Reference(_) => Err(wrong("a reference")),
        Type::Slice(_) => Err(wrong("a slice")),
        Type::Tuple(_) => Err(wrong("a tuple")),
        Type::Ptr(_) => Err(wrong("a pointer")),
        _ => Err(wrong("this type")),
    }
}
