//! Right-hand sides and schedules, parsed with syn as Rust expressions and reduced to a small
//! expression tree with positions.
//!
//! Accepted: numbers, identifiers (`k`, `K`, `j`, parameter names), indexing (`z[k-1]`,
//! `beta[k]`, ranges `z[0..=k]`), calls (`grad(..)`, `cat(..)`, `sum(..)`, `sqrt(..)`, ...),
//! `+ - * /`, unary minus, parentheses, comparisons, `&&`, `||`, `!` and
//! `if c { a } else { b }`. Everything else is rejected with a hint.

use syn::spanned::Spanned;

/// A position inside an expression string: 1-based line, 0-based character column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExprPos {
    pub line: usize,
    pub column: usize,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// An index `base + offset`: `k+1` is `Some(K_LOWER), 1`; `-1` is `None, -1`; `K` is the step count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idx {
    /// `Some('k')`, `Some('K')`, `Some('j')` or `None` for a constant index.
    pub var: Option<char>,
    pub offset: i64,
}

impl std::fmt::Display for Idx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.var, self.offset) {
            (None, o) => write!(f, "{o}"),
            (Some(v), 0) => write!(f, "{v}"),
            (Some(v), o) if o > 0 => write!(f, "{v}+{o}"),
            (Some(v), o) => write!(f, "{v}-{}", -o),
        }
    }
}

/// Expression tree node.
#[derive(Clone, Debug, PartialEq)]
pub enum Ex {
    Num(f64),
    /// A bare identifier.
    Var(String),
    /// `name[idx]` (`name[k][j]` gives two indices).
    Index(String, Vec<Idx>),
    /// `name[lo..hi]` or `name[lo..=hi]`.
    Range {
        name: String,
        lo: Idx,
        hi: Idx,
        inclusive: bool,
    },
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// An expression with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub ex: Ex,
    pub pos: ExprPos,
}

/// A parse failure inside an expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    pub pos: ExprPos,
    pub message: String,
    pub hint: Option<String>,
    /// The character the error is about, when it is one character (a look-alike of an ASCII
    /// operator, a control character): `pos` is exactly where it stands.
    pub character: Option<char>,
}

fn err(span: proc_macro2::Span, message: impl Into<String>, hint: Option<&str>) -> ExprError {
    ExprError {
        pos: pos_of(span),
        message: message.into(),
        hint: hint.map(str::to_string),
        character: None,
    }
}

fn pos_of(span: proc_macro2::Span) -> ExprPos {
    let lc = span.start();
    ExprPos {
        line: lc.line.max(1),
        column: lc.column,
    }
}

/// Parses one expression.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    if text.trim().is_empty() {
        return Err(ExprError {
            pos: ExprPos { line: 1, column: 0 },
            message: "empty expression".into(),
            hint: Some("write a linear combination such as `z[k] - h * grad(z[k])`".into()),
            character: None,
        });
    }
    check_characters(text)?;
    check_size(text)?;
    let parsed: syn::Expr = syn::parse_str(text).map_err(|e| {
        let hint = if text.contains('^') {
            Some("`^` is not a power here: write pow(x, 2)")
        } else {
            Some("write a Rust-like arithmetic expression, e.g. `z[k] + beta * (z[k] - z[k-1])`")
        };
        err(e.span(), format!("cannot parse expression: {e}"), hint)
    })?;
    convert(&parsed)
}

/// Characters that look like an ASCII operator, bracket or space (text pasted from a paper, a
/// word processor or a web page), with their Unicode name and what to type instead.
pub const LOOK_ALIKES: &[(char, &str, &str)] = &[
    ('\u{2212}', "MINUS SIGN", "-"),
    ('\u{2010}', "HYPHEN", "-"),
    ('\u{2011}', "NON-BREAKING HYPHEN", "-"),
    ('\u{2012}', "FIGURE DASH", "-"),
    ('\u{2013}', "EN DASH", "-"),
    ('\u{2014}', "EM DASH", "-"),
    ('\u{FE63}', "SMALL HYPHEN-MINUS", "-"),
    ('\u{FF0D}', "FULLWIDTH HYPHEN-MINUS", "-"),
    ('\u{FF0B}', "FULLWIDTH PLUS SIGN", "+"),
    ('\u{00D7}', "MULTIPLICATION SIGN", "*"),
    ('\u{2217}', "ASTERISK OPERATOR", "*"),
    ('\u{00B7}', "MIDDLE DOT", "*"),
    ('\u{22C5}', "DOT OPERATOR", "*"),
    ('\u{2219}', "BULLET OPERATOR", "*"),
    ('\u{FF0A}', "FULLWIDTH ASTERISK", "*"),
    ('\u{00F7}', "DIVISION SIGN", "/"),
    ('\u{2215}', "DIVISION SLASH", "/"),
    ('\u{2044}', "FRACTION SLASH", "/"),
    ('\u{FF0F}', "FULLWIDTH SOLIDUS", "/"),
    ('\u{2264}', "LESS-THAN OR EQUAL TO", "<="),
    ('\u{2265}', "GREATER-THAN OR EQUAL TO", ">="),
    ('\u{2260}', "NOT EQUAL TO", "!="),
    ('\u{FF1D}', "FULLWIDTH EQUALS SIGN", "="),
    ('\u{FF08}', "FULLWIDTH LEFT PARENTHESIS", "("),
    ('\u{FF09}', "FULLWIDTH RIGHT PARENTHESIS", ")"),
    ('\u{FF3B}', "FULLWIDTH LEFT SQUARE BRACKET", "["),
    ('\u{FF3D}', "FULLWIDTH RIGHT SQUARE BRACKET", "]"),
    ('\u{FF0C}', "FULLWIDTH COMMA", ","),
    ('\u{2026}', "HORIZONTAL ELLIPSIS", ".."),
    ('\u{2018}', "LEFT SINGLE QUOTATION MARK", "'"),
    ('\u{2019}', "RIGHT SINGLE QUOTATION MARK", "'"),
    ('\u{201C}', "LEFT DOUBLE QUOTATION MARK", "\""),
    ('\u{201D}', "RIGHT DOUBLE QUOTATION MARK", "\""),
    ('\u{00A0}', "NO-BREAK SPACE", " "),
    ('\u{2002}', "EN SPACE", " "),
    ('\u{2003}', "EM SPACE", " "),
    ('\u{2007}', "FIGURE SPACE", " "),
    ('\u{2009}', "THIN SPACE", " "),
    ('\u{200A}', "HAIR SPACE", " "),
    ('\u{202F}', "NARROW NO-BREAK SPACE", " "),
    ('\u{3000}', "IDEOGRAPHIC SPACE", " "),
    ('\u{200B}', "ZERO WIDTH SPACE", ""),
    ('\u{200C}', "ZERO WIDTH NON-JOINER", ""),
    ('\u{200D}', "ZERO WIDTH JOINER", ""),
    ('\u{2060}', "WORD JOINER", ""),
    (
        '\u{FEFF}',
        "ZERO WIDTH NO-BREAK SPACE (byte order mark)",
        "",
    ),
];

/// Greek letters, spelled out as a spec names them.
const GREEK: &[(char, &str)] = &[
    ('α', "alpha"),
    ('β', "beta"),
    ('γ', "gamma"),
    ('δ', "delta"),
    ('ε', "epsilon"),
    ('η', "eta"),
    ('θ', "theta"),
    ('κ', "kappa"),
    ('λ', "lambda"),
    ('μ', "mu"),
    ('ρ', "rho"),
    ('σ', "sigma"),
    ('τ', "tau"),
    ('φ', "phi"),
    ('ω', "omega"),
];

/// What to write instead of a mathematical symbol.
fn symbol_hint(ch: char) -> Option<&'static str> {
    Some(match ch {
        '√' => "write sqrt(x)",
        '²' | '³' => "write pow(x, 2) or pow(x, 3)",
        '∑' | 'Σ' => "write sum(z[0..=k], w) for a history sum",
        '∇' => "write grad(x)",
        _ => return None,
    })
}

/// Refuses the first character no expression may hold: a look-alike of an ASCII operator
/// (with the character to type instead), any other non-ASCII character (names and operators
/// are ASCII) and control characters. The position is the character's own.
fn check_characters(text: &str) -> Result<(), ExprError> {
    for (line, l) in text.split('\n').enumerate() {
        for (column, ch) in l.chars().enumerate() {
            if ch.is_ascii() && (!ch.is_ascii_control() || matches!(ch, '\t' | '\r')) {
                continue;
            }
            let code = format!("U+{:04X}", u32::from(ch));
            let (message, hint) =
                if let Some((_, name, ascii)) = LOOK_ALIKES.iter().find(|(c, ..)| *c == ch) {
                    match *ascii {
                        "" => (
                            format!("an invisible {name} ({code}) in the expression"),
                            "delete it: it is invisible and means nothing here".to_string(),
                        ),
                        " " => (
                            format!("a {name} ({code}) looks like a space but is not ASCII"),
                            "type an ordinary space (U+0020) instead".to_string(),
                        ),
                        a => (
                            format!("`{ch}` ({code} {name}) looks like `{a}` but is not ASCII"),
                            format!("type the ASCII `{a}` instead"),
                        ),
                    }
                } else if ch.is_control() {
                    (
                        format!("a control character ({code}) in the expression"),
                        "delete it".to_string(),
                    )
                } else if let Some(hint) = symbol_hint(ch) {
                    (
                        format!("`{ch}` ({code}) cannot appear in an expression"),
                        hint.to_string(),
                    )
                } else if let Some((_, word)) = GREEK
                    .iter()
                    .find(|(c, _)| ch.to_lowercase().eq(std::iter::once(*c)))
                {
                    (
                        format!("`{ch}` ({code}) is not ASCII; names in a spec are ASCII"),
                        format!("spell it out, e.g. `{word}`, and declare it under `params:`"),
                    )
                } else {
                    (
                        format!("`{ch}` ({code}) cannot appear in an expression"),
                        "expressions are ASCII: names, numbers, + - * / ( ) [ ] and the functions \
                     in docs/SPEC.md"
                            .to_string(),
                    )
                };
            return Err(ExprError {
                pos: ExprPos {
                    line: line + 1,
                    column,
                },
                message,
                hint: Some(hint),
                character: Some(ch),
            });
        }
    }
    Ok(())
}

/// The deepest bracket nesting an expression may have.
pub const MAX_NESTING: usize = 64;
/// The most operators an expression may have (commas between arguments count as one each).
pub const MAX_OPERATORS: usize = 512;

/// Refuses, before parsing, an expression whose tree would be deep enough to exhaust the
/// stack of the recursive passes over it (the parser's among them).
fn check_size(text: &str) -> Result<(), ExprError> {
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut too_deep = None;
    for (line, l) in text.lines().enumerate() {
        // Inside a number literal (`1.5e-7`), whose exponent's sign is no operator.
        let mut number = false;
        let mut prev = ' ';
        for (column, ch) in l.chars().enumerate() {
            let exponent_sign = number && matches!(ch, '+' | '-') && matches!(prev, 'e' | 'E');
            number = if ch.is_ascii_digit() {
                number || !(prev.is_alphanumeric() || prev == '_')
            } else {
                number && (ch.is_alphanumeric() || matches!(ch, '_' | '.') || exponent_sign)
            };
            prev = ch;
            if exponent_sign {
                continue;
            }
            match ch {
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING && too_deep.is_none() {
                        too_deep = Some(ExprPos {
                            line: line + 1,
                            column,
                        });
                    }
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                // A comma separates terms as an operator does (`cat(a, b, ...)`).
                '+' | '-' | '*' | '/' | '<' | '>' | '=' | '&' | '|' | '!' | ',' => operators += 1,
                _ => {}
            }
        }
    }
    if let Some(pos) = too_deep {
        return Err(ExprError {
            pos,
            message: format!("brackets nest {deepest} deep; at most {MAX_NESTING} are read"),
            hint: Some("name the inner parts as parameters or states".into()),
            character: None,
        });
    }
    if operators > MAX_OPERATORS {
        return Err(ExprError {
            pos: ExprPos { line: 1, column: 0 },
            message: format!(
                "{operators} operators and commas in one expression; at most {MAX_OPERATORS}"
            ),
            hint: Some(
                "a long combination of past iterates is a history sum: sum(z[0..=k], w)".into(),
            ),
            character: None,
        });
    }
    Ok(())
}

/// Where `e` starts, found by walking down its leftmost operands. `Spanned::span` would print
/// the whole subtree to tokens for every node (quadratic in a long chain of `+`, and recursive
/// enough in syn's printer to exhaust a 2 MiB thread stack at 512 operators in a debug build).
fn start_of(e: &syn::Expr) -> proc_macro2::Span {
    let mut cur = e;
    loop {
        cur = match cur {
            syn::Expr::Binary(b) => &b.left,
            syn::Expr::Index(i) => &i.expr,
            syn::Expr::Call(c) => &c.func,
            syn::Expr::MethodCall(m) => &m.receiver,
            syn::Expr::Field(f) => &f.base,
            syn::Expr::Cast(c) => &c.expr,
            syn::Expr::Try(t) => &t.expr,
            syn::Expr::Range(syn::ExprRange {
                start: Some(s),
                attrs,
                ..
            }) if attrs.is_empty() => s,
            syn::Expr::Lit(l) if l.attrs.is_empty() => return l.lit.span(),
            syn::Expr::Paren(p) if p.attrs.is_empty() => return p.paren_token.span.open(),
            syn::Expr::Unary(u) if u.attrs.is_empty() => return u.op.span(),
            syn::Expr::If(i) if i.attrs.is_empty() => return i.if_token.span,
            syn::Expr::Block(b) if b.attrs.is_empty() && b.label.is_none() => {
                return b.block.brace_token.span.open()
            }
            syn::Expr::Path(p)
                if p.attrs.is_empty() && p.qself.is_none() && p.path.leading_colon.is_none() =>
            {
                match p.path.segments.first() {
                    Some(s) => return s.ident.span(),
                    None => return p.span(),
                }
            }
            other => return other.span(),
        };
    }
}

/// A binary or unary operator on the way down a chain, applied on the way back up.
enum Pending<'a> {
    Bin(BinOp, ExprPos, &'a syn::Expr),
    Neg(ExprPos),
    Not(ExprPos),
}

fn bin_op(b: &syn::ExprBinary) -> Result<BinOp, ExprError> {
    Ok(match b.op {
        syn::BinOp::Add(_) => BinOp::Add,
        syn::BinOp::Sub(_) => BinOp::Sub,
        syn::BinOp::Mul(_) => BinOp::Mul,
        syn::BinOp::Div(_) => BinOp::Div,
        syn::BinOp::Eq(_) => BinOp::Eq,
        syn::BinOp::Ne(_) => BinOp::Ne,
        syn::BinOp::Lt(_) => BinOp::Lt,
        syn::BinOp::Le(_) => BinOp::Le,
        syn::BinOp::Gt(_) => BinOp::Gt,
        syn::BinOp::Ge(_) => BinOp::Ge,
        syn::BinOp::And(_) => BinOp::And,
        syn::BinOp::Or(_) => BinOp::Or,
        syn::BinOp::BitXor(_) => {
            return Err(err(
                b.op.span(),
                "`^` is not a power operator here",
                Some("write pow(x, 2) for x squared"),
            ))
        }
        _ => {
            return Err(err(
                b.op.span(),
                "unsupported operator",
                Some("use + - * / for arithmetic and == != < <= > >= && || in conditions"),
            ))
        }
    })
}

/// Converts `e`. Chains of binary operators down their left operands (a sum of 500 terms) and
/// of unary signs (`- - - x`) are walked in a loop, so the recursion deepens only with
/// brackets, calls and right operands (at most [`MAX_NESTING`] deep for a chain).
fn convert(e: &syn::Expr) -> Result<Expr, ExprError> {
    let mut pending = Vec::new();
    let mut cur = e;
    loop {
        match cur {
            syn::Expr::Binary(b) => {
                pending.push(Pending::Bin(bin_op(b)?, pos_of(start_of(cur)), &b.right));
                cur = &b.left;
            }
            syn::Expr::Unary(u) => {
                let pos = pos_of(start_of(cur));
                pending.push(match u.op {
                    syn::UnOp::Neg(_) => Pending::Neg(pos),
                    syn::UnOp::Not(_) => Pending::Not(pos),
                    _ => {
                        return Err(err(
                            u.span(),
                            "unsupported unary operator",
                            Some("use `-x` or `!cond`"),
                        ))
                    }
                });
                cur = &u.expr;
            }
            syn::Expr::Paren(p) => cur = &p.expr,
            syn::Expr::Group(g) => cur = &g.expr,
            _ => break,
        }
    }
    let mut acc = convert_operand(cur)?;
    while let Some(p) = pending.pop() {
        acc = match p {
            Pending::Bin(op, pos, right) => Expr {
                ex: Ex::Bin(op, Box::new(acc), Box::new(convert(right)?)),
                pos,
            },
            Pending::Neg(pos) => Expr {
                ex: Ex::Neg(Box::new(acc)),
                pos,
            },
            Pending::Not(pos) => Expr {
                ex: Ex::Not(Box::new(acc)),
                pos,
            },
        };
    }
    Ok(acc)
}

/// Converts what is no binary or unary operation and no bracket.
fn convert_operand(e: &syn::Expr) -> Result<Expr, ExprError> {
    let pos = pos_of(start_of(e));
    let ex = match e {
        syn::Expr::Lit(lit) => match &lit.lit {
            syn::Lit::Int(i) => Ex::Num(
                i.base10_digits()
                    .parse::<f64>()
                    .map_err(|_| err(i.span(), "bad integer literal", None))?,
            ),
            syn::Lit::Float(x) => Ex::Num(
                x.base10_digits()
                    .parse::<f64>()
                    .map_err(|_| err(x.span(), "bad number literal", None))?,
            ),
            syn::Lit::Bool(b) => Ex::Num(if b.value { 1.0 } else { 0.0 }),
            other => {
                return Err(err(other.span(), "only numbers are allowed as literals", Some("remove the quotes or characters")))
            }
        },
        syn::Expr::Path(p) => Ex::Var(ident_of(&p.path)?),
        syn::Expr::Paren(p) => return convert(&p.expr),
        syn::Expr::Group(g) => return convert(&g.expr),
        syn::Expr::Call(c) => {
            let name = match &*c.func {
                syn::Expr::Path(p) => ident_of(&p.path)?,
                other => return Err(err(other.span(), "only named functions can be called", Some("e.g. grad(z[k]) or sqrt(x)"))),
            };
            let args = c.args.iter().map(convert).collect::<Result<Vec<_>, _>>()?;
            Ex::Call(name, args)
        }
        syn::Expr::Index(_) => return convert_index(e),
        syn::Expr::If(i) => {
            let cond = convert(&i.cond)?;
            let then = block_expr(&i.then_branch, i.if_token.span)?;
            let Some((_, els)) = &i.else_branch else {
                return Err(err(i.span(), "`if` needs an `else` branch", Some("write `if k == 0 { 0 } else { 1 / k }`")));
            };
            let els = match &**els {
                syn::Expr::Block(b) => block_expr(&b.block, b.block.brace_token.span.open())?,
                other => convert(other)?,
            };
            Ex::If(Box::new(cond), Box::new(then), Box::new(els))
        }
        syn::Expr::MethodCall(m) => {
            return Err(err(
                m.method.span(),
                format!("method calls like `.{}()` are not supported", m.method),
                Some("write the function form instead, e.g. sqrt(x) or pow(x, 2)"),
            ))
        }
        other => {
            return Err(err(
                other.span(),
                "unsupported expression",
                Some("use numbers, names, indexing like z[k-1], calls like grad(..), + - * / and parentheses"),
            ))
        }
    };
    Ok(Expr { ex, pos })
}

fn block_expr(block: &syn::Block, span: proc_macro2::Span) -> Result<Expr, ExprError> {
    match block.stmts.as_slice() {
        [syn::Stmt::Expr(e, None)] => convert(e),
        _ => Err(err(
            span,
            "an `if` branch must hold exactly one expression",
            Some("write `if c { a } else { b }`"),
        )),
    }
}

fn ident_of(path: &syn::Path) -> Result<String, ExprError> {
    match path.get_ident() {
        Some(i) => Ok(i.to_string()),
        None => Err(err(
            path.span(),
            "expected a plain name",
            Some("paths like a::b are not names in a spec"),
        )),
    }
}

fn convert_index(e: &syn::Expr) -> Result<Expr, ExprError> {
    // Collect nested indices: name[a][b].
    let mut indices = Vec::new();
    let mut cur = e;
    while let syn::Expr::Index(ix) = cur {
        indices.push(&*ix.index);
        cur = &ix.expr;
    }
    indices.reverse();
    let name = match cur {
        syn::Expr::Path(p) => ident_of(&p.path)?,
        other => {
            return Err(err(
                other.span(),
                "only names can be indexed",
                Some("write e.g. z[k-1]"),
            ))
        }
    };
    let pos = pos_of(start_of(e));
    if let [syn::Expr::Range(r)] = indices.as_slice() {
        let (Some(lo), Some(hi)) = (&r.start, &r.end) else {
            return Err(err(
                r.span(),
                "a history range needs both ends",
                Some("write z[0..=k]"),
            ));
        };
        return Ok(Expr {
            ex: Ex::Range {
                name,
                lo: index_of(lo)?,
                hi: index_of(hi)?,
                inclusive: matches!(r.limits, syn::RangeLimits::Closed(_)),
            },
            pos,
        });
    }
    let idx = indices
        .into_iter()
        .map(index_of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Expr {
        ex: Ex::Index(name, idx),
        pos,
    })
}

/// `k`, `k+1`, `k-2`, `K`, `j`, `3`, `-1`.
fn index_of(e: &syn::Expr) -> Result<Idx, ExprError> {
    let bad = || {
        err(
            e.span(),
            "an index must be `k`, `k+n`, `k-n`, `K`, `j` or a whole number",
            Some("write e.g. z[k-1] or z[0]; other arithmetic in indices is not supported"),
        )
    };
    let int = |e: &syn::Expr| -> Option<i64> {
        match e {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) => i.base10_parse::<i64>().ok(),
            syn::Expr::Unary(syn::ExprUnary {
                op: syn::UnOp::Neg(_),
                expr,
                ..
            }) => match &**expr {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(i),
                    ..
                }) => i.base10_parse::<i64>().ok().map(|v| -v),
                _ => None,
            },
            syn::Expr::Paren(p) => match &*p.expr {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(i),
                    ..
                }) => i.base10_parse::<i64>().ok(),
                _ => None,
            },
            _ => None,
        }
    };
    let var = |e: &syn::Expr| -> Option<char> {
        match e {
            syn::Expr::Path(p) => match p.path.get_ident().map(|i| i.to_string()).as_deref() {
                Some("k") => Some('k'),
                Some("K") => Some('K'),
                Some("j") => Some('j'),
                _ => None,
            },
            _ => None,
        }
    };
    if let Some(v) = int(e) {
        return Ok(Idx {
            var: None,
            offset: v,
        });
    }
    if let Some(v) = var(e) {
        return Ok(Idx {
            var: Some(v),
            offset: 0,
        });
    }
    if let syn::Expr::Binary(b) = e {
        let sign = match b.op {
            syn::BinOp::Add(_) => 1,
            syn::BinOp::Sub(_) => -1,
            _ => return Err(bad()),
        };
        if let (Some(v), Some(n)) = (var(&b.left), int(&b.right)) {
            return Ok(Idx {
                var: Some(v),
                offset: sign * n,
            });
        }
    }
    Err(bad())
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div => 5,
        }
    }
}

impl Expr {
    /// The file position of this node (after the loader has relocated it into the file).
    pub fn file_pos(&self) -> Option<crate::error::Pos> {
        Some(crate::error::Pos {
            line: self.pos.line,
            column: self.pos.column,
        })
    }

    fn precedence(&self) -> u8 {
        match &self.ex {
            Ex::Bin(op, ..) => op.precedence(),
            Ex::If(..) => 0,
            Ex::Neg(_) | Ex::Not(_) => 6,
            _ => 7,
        }
    }
}

/// Prints the expression back in spec syntax, with only the parentheses it needs.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wrap = |f: &mut std::fmt::Formatter<'_>, e: &Expr, min: u8| {
            if e.precedence() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match &self.ex {
            Ex::Num(v) => write!(f, "{}", crate::coef::format_number(*v)),
            Ex::Var(n) => f.write_str(n),
            Ex::Index(n, idx) => {
                f.write_str(n)?;
                idx.iter().try_for_each(|i| write!(f, "[{i}]"))
            }
            Ex::Range {
                name,
                lo,
                hi,
                inclusive,
            } => {
                write!(f, "{name}[{lo}..{}{hi}]", if *inclusive { "=" } else { "" })
            }
            Ex::Call(n, args) => {
                write!(f, "{n}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Ex::Neg(a) => {
                f.write_str("-")?;
                wrap(f, a, 6)
            }
            Ex::Not(a) => {
                f.write_str("!")?;
                wrap(f, a, 6)
            }
            Ex::Bin(op, a, b) => {
                let p = op.precedence();
                // Comparisons do not chain (`a < b < c` does not parse): a comparison on the
                // left of another keeps its parentheses.
                let left = if p == BinOp::Lt.precedence() {
                    p + 1
                } else {
                    p
                };
                wrap(f, a, left)?;
                write!(f, " {} ", op.symbol())?;
                // Left-associative: the right operand needs parentheses at equal precedence.
                wrap(f, b, p + 1)
            }
            Ex::If(c, a, b) => write!(f, "if {c} {{ {a} }} else {{ {b} }}"),
        }
    }
}

/// Names of all identifiers and indexed names an expression mentions, with positions.
pub fn mentions(e: &Expr, out: &mut Vec<(String, ExprPos)>) {
    match &e.ex {
        Ex::Num(_) => {}
        Ex::Var(n) | Ex::Index(n, _) | Ex::Range { name: n, .. } => out.push((n.clone(), e.pos)),
        Ex::Call(_, args) => args.iter().for_each(|a| mentions(a, out)),
        Ex::Neg(a) | Ex::Not(a) => mentions(a, out),
        Ex::Bin(_, a, b) => {
            mentions(a, out);
            mentions(b, out);
        }
        Ex::If(c, a, b) => {
            mentions(c, out);
            mentions(a, out);
            mentions(b, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nesterov_step() {
        let e = parse("z[k] + beta[k] * (z[k] - z[k-1])").unwrap();
        let Ex::Bin(BinOp::Add, a, _) = e.ex else {
            panic!("not a sum")
        };
        assert_eq!(
            a.ex,
            Ex::Index(
                "z".into(),
                vec![Idx {
                    var: Some('k'),
                    offset: 0
                }]
            )
        );
    }

    #[test]
    fn expressions_too_deep_or_too_long_are_refused_before_parsing() {
        // Deep nesting would exhaust the stack of the recursive passes; it is refused with a
        // position at the first bracket past the limit.
        let deep = format!("{}z[k]{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nest"), "{}", e.message);
        assert_eq!(e.pos.column, MAX_NESTING);
        // At the limit it still parses.
        let ok = format!(
            "{}z[k]{}",
            "(".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1)
        );
        assert!(parse(&ok).is_ok());
        let long = vec!["z[k]"; MAX_OPERATORS + 2].join(" + ");
        let e = parse(&long).unwrap_err();
        assert!(e.message.contains("operators"), "{}", e.message);
        assert!(e.hint.is_some_and(|h| h.contains("sum(")));
        // Arguments count too: a concatenation of thousands of maps is refused.
        let wide = format!("cat({})", vec!["z[k]"; MAX_OPERATORS + 2].join(", "));
        assert!(parse(&wide).unwrap_err().message.contains("commas"));
        let ok = format!("cat({})", vec!["z[k]"; MAX_OPERATORS + 1].join(", "));
        assert!(parse(&ok).is_ok());
        // The sign of a number's exponent is no operator (found by the `structured` fuzz
        // target: about 500 terms `1.00e-7` printed from a loaded spec counted as 1,012
        // operators, core/fuzz/regressions/structured-exponent-sign.bin); a name ending in e
        // is no number.
        let small = vec!["1.00e-7"; MAX_OPERATORS + 1].join(" + ");
        assert!(parse(&small).is_ok());
        assert!(parse(&vec!["1E+3"; MAX_OPERATORS + 1].join(" + ")).is_ok());
        let names = vec!["e-e"; MAX_OPERATORS / 2 + 2].join(" + ");
        assert!(parse(&names).unwrap_err().message.contains("operators"));
        let mixed = vec!["x2e-1"; MAX_OPERATORS / 2 + 2].join(" + ");
        assert!(parse(&mixed).unwrap_err().message.contains("operators"));
    }

    #[test]
    fn ranges_and_ifs() {
        let e = parse("cat(z[0..=k])").unwrap();
        let Ex::Call(name, args) = e.ex else { panic!() };
        assert_eq!(name, "cat");
        assert!(matches!(
            args[0].ex,
            Ex::Range {
                inclusive: true,
                ..
            }
        ));
        assert!(matches!(
            parse("if k == 0 { 0 } else { 1 / k }").unwrap().ex,
            Ex::If(..)
        ));
    }

    #[test]
    fn printing_round_trips() {
        for text in [
            "z[k] + beta[k] * (z[k] - z[k-1])",
            "(1 - c) * z[k] + c * z[k-1] - grad(z[k])",
            "-grad(cat(z[0..=k]))",
            "a - (b - c)",
            "if k == 0 { 0 } else { 1 / k }",
            // Found by the `structured` fuzz target: printed as `0 >= 0 >= 0`, which does not
            // parse (core/fuzz/regressions/structured-chained-comparison.bin).
            "(0 >= 0) >= 0",
            "(a == b) != (c < d)",
            "a < (b < c)",
            "(a && b) || c && d",
        ] {
            let e = parse(text).unwrap();
            let printed = e.to_string();
            let again = parse(&printed).unwrap();
            assert_eq!(printed, again.to_string(), "{text}");
            assert_eq!(strip(&e), strip(&again), "{text} -> {printed}");
        }
        assert_eq!(parse("a - (b - c)").unwrap().to_string(), "a - (b - c)");
        assert_eq!(parse("(a - b) - c").unwrap().to_string(), "a - b - c");
    }

    /// The tree with every position cleared.
    fn strip(e: &Expr) -> Expr {
        let b = |x: &Expr| Box::new(strip(x));
        let ex = match &e.ex {
            Ex::Call(n, args) => Ex::Call(n.clone(), args.iter().map(strip).collect()),
            Ex::Neg(a) => Ex::Neg(b(a)),
            Ex::Not(a) => Ex::Not(b(a)),
            Ex::Bin(op, x, y) => Ex::Bin(*op, b(x), b(y)),
            Ex::If(c, x, y) => Ex::If(b(c), b(x), b(y)),
            other => other.clone(),
        };
        Expr {
            ex,
            pos: ExprPos::default(),
        }
    }

    #[test]
    fn errors_carry_columns() {
        let e = parse("z[k] + z[2*k]").unwrap_err();
        assert_eq!(e.pos.column, 9, "{e:?}");
        let e = parse("theta^2").unwrap_err();
        assert!(e.message.contains("power"), "{e:?}");
        let e = parse("z[k] +").unwrap_err();
        assert!(e.message.starts_with("cannot parse"), "{e:?}");
    }
}
