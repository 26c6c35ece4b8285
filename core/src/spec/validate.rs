//! From the raw YAML shape to a validated [`Spec`]: names, linearity, indices, ordering,
//! cycles, and a dry run that evaluates every coefficient for the first steps.

use super::raw::{ParamTable, RawParam, RawSpec};
use super::yaml_pos::PosMap;
use super::MAP_FUNCTIONS;
use super::{Equation, Param, ParamKind, Per, Spec, State};
use crate::error::{did_you_mean, ErrorKind, Pos, SpecError};
use crate::expr::{self, BinOp, Ex, Expr, ExprPos, Idx};
use std::collections::BTreeMap;

/// Steps the dry run evaluates at load time (division by zero, missing initial values).
pub const DRY_RUN_STEPS: usize = 32;

/// The most states a spec may list (the shipped specs have one or two).
pub const MAX_STATES: usize = 64;
/// The most parameters a spec may define.
pub const MAX_PARAMS: usize = 256;
/// The most initial values a spec may give.
pub const MAX_INIT: usize = 256;
/// The longest chain of schedules using schedules (`a` uses `b`, which uses `c`: 3): the
/// evaluator recurses once per link.
pub const MAX_SCHEDULE_CHAIN: usize = 16;

/// Functions usable in coefficients and schedules, with their arity.
pub const MATH_FUNCTIONS: &[(&str, usize)] = &[
    ("sqrt", 1),
    ("exp", 1),
    ("ln", 1),
    ("log", 1),
    ("abs", 1),
    ("sin", 1),
    ("cos", 1),
    ("floor", 1),
    ("ceil", 1),
    ("pow", 2),
    ("min", 2),
    ("max", 2),
];
const RESERVED: &[&str] = &["k", "K", "j", "grad", "cat", "sum", "true", "false"];

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    pos: &'a PosMap,
}

impl Ctx<'_> {
    fn err(
        &self,
        kind: ErrorKind,
        pos: Option<Pos>,
        msg: impl Into<String>,
        hint: impl Into<String>,
    ) -> SpecError {
        SpecError::new(kind, msg)
            .with_hint(hint)
            .at(self.file, self.text, pos)
    }

    fn key_pos(&self, path: &[&str]) -> Option<Pos> {
        self.pos.get(path).and_then(|n| n.key.or(Some(n.value)))
    }

    fn value_pos(&self, path: &[&str]) -> Option<Pos> {
        self.pos.get(path).map(|n| n.value)
    }

    /// Parses the scalar at `path` and moves every position in it to file coordinates.
    fn parse_expr(&self, path: &[&str], text: &str, kind: ErrorKind) -> Result<Expr, SpecError> {
        let map = self.pos.value_map(path, self.text, text);
        let start = self.value_pos(path).unwrap_or_default();
        let file_pos = |p: ExprPos| match &map {
            Some(m) => m.get(p.line, p.column),
            None => start,
        };
        match expr::parse(text) {
            Ok(mut e) => {
                relocate(&mut e, &file_pos);
                Ok(e)
            }
            Err(e) => {
                let pos = Some(file_pos(e.pos));
                Err(self.err(kind, pos, e.message, e.hint.unwrap_or_default()))
            }
        }
    }
}

fn relocate(e: &mut Expr, f: &dyn Fn(ExprPos) -> Pos) {
    let p = f(e.pos);
    e.pos = ExprPos {
        line: p.line,
        column: p.column,
    };
    match &mut e.ex {
        Ex::Num(_) | Ex::Var(_) | Ex::Index(..) | Ex::Range { .. } => {}
        Ex::Call(_, args) => args.iter_mut().for_each(|a| relocate(a, f)),
        Ex::Neg(a) | Ex::Not(a) => relocate(a, f),
        Ex::Bin(_, a, b) => {
            relocate(a, f);
            relocate(b, f);
        }
        Ex::If(c, a, b) => {
            relocate(c, f);
            relocate(a, f);
            relocate(b, f);
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A plain identifier that is not `k`, `K`, `j` or a function name.
fn is_valid_name(name: &str) -> bool {
    is_ident(name) && !RESERVED.contains(&name) && !MATH_FUNCTIONS.iter().any(|(f, _)| *f == name)
}

pub fn build(file: &str, text: &str, pos: &PosMap, raw: RawSpec) -> Result<Spec, SpecError> {
    let cx = Ctx { file, text, pos };
    if raw.name.trim().is_empty() {
        return Err(cx.err(
            ErrorKind::InvalidValue,
            cx.value_pos(&["name"]),
            "the spec's name is empty",
            "give it a short name such as `heavy_ball`",
        ));
    }
    check_counts(&cx, &raw)?;
    let mut states = declare_states(&cx, &raw)?;
    let params = declare_params(&cx, &raw, &states)?;
    let step = step_equations(&cx, &raw, &mut states)?;
    let init = init_equations(&cx, &raw, &states)?;
    let (output, input) = output_and_input(&cx, &raw, &states, &params, &init)?;
    let mut spec = Spec {
        file: file.to_string(),
        text: text.to_string(),
        name: raw.name.clone(),
        summary: raw.summary.clone().unwrap_or_default(),
        reading: raw.gradient.unwrap_or_default(),
        params,
        states,
        input,
        init,
        step,
        output,
    };
    check_schedules(&mut spec)?;
    check_schedule_chains(&spec)?;
    check_linear(&spec)?;
    spec.step = order_step(&spec)?;
    spec.init = order_init(&spec)?;

    // Dry run: evaluates every coefficient and reference for the first steps.
    super::eval::dry_run(&spec, DRY_RUN_STEPS)?;
    Ok(spec)
}

/// At most [`MAX_STATES`] states, [`MAX_PARAMS`] parameters and [`MAX_INIT`] initial values
/// (the checks that follow compare names pairwise); the error points at the first one too many.
fn check_counts(cx: &Ctx, raw: &RawSpec) -> Result<(), SpecError> {
    if raw.state.len() > MAX_STATES {
        return Err(cx.err(
            ErrorKind::TooLarge,
            cx.value_pos(&["state", &MAX_STATES.to_string()]),
            format!(
                "{} states; a spec may list at most {MAX_STATES}",
                raw.state.len()
            ),
            "a long history is written with ranges, e.g. sum(z[0..=k], w), not one state per step",
        ));
    }
    if let Some((name, _)) = raw.params.get_index(MAX_PARAMS) {
        return Err(cx.err(
            ErrorKind::TooLarge,
            cx.key_pos(&["params", name]),
            format!(
                "{} parameters; a spec may define at most {MAX_PARAMS}",
                raw.params.len()
            ),
            "a per-step or per-edge coefficient is one parameter with `per: step` or `per: edge`",
        ));
    }
    if let Some((lhs, _)) = raw.init.get_index(MAX_INIT) {
        return Err(cx.err(
            ErrorKind::TooLarge,
            cx.key_pos(&["init", lhs]),
            format!(
                "{} initial values; a spec may give at most {MAX_INIT}",
                raw.init.len()
            ),
            "give the values the step equations reach below their first index",
        ));
    }
    Ok(())
}

/// No chain of schedules using other schedules is longer than [`MAX_SCHEDULE_CHAIN`]: the
/// evaluator recurses once per link. A schedule's use of its own earlier values is no link
/// (it is evaluated bottom-up); a cycle between schedules is left to the dry run to report,
/// unless the walk passes the limit first.
fn check_schedule_chains(spec: &Spec) -> Result<(), SpecError> {
    let uses: Vec<Vec<usize>> = spec
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| match &p.kind {
            ParamKind::Schedule { expr, .. } => {
                let mut names = Vec::new();
                expr::mentions(expr, &mut names);
                let mut v: Vec<usize> = names
                    .iter()
                    .filter_map(|(n, _)| spec.param(n))
                    .filter(|&q| {
                        q != i && matches!(spec.params[q].kind, ParamKind::Schedule { .. })
                    })
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            _ => Vec::new(),
        })
        .collect();
    // Longest chain from each schedule, by an explicit-stack walk (no recursion here either).
    const OPEN: usize = usize::MAX;
    let mut longest: Vec<Option<usize>> = vec![None; uses.len()];
    for root in 0..uses.len() {
        if longest[root].is_some() {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        longest[root] = Some(OPEN);
        while let Some(&mut (p, ref mut next)) = stack.last_mut() {
            if let Some(&q) = uses[p].get(*next) {
                *next += 1;
                match longest[q] {
                    None => {
                        if stack.len() >= MAX_SCHEDULE_CHAIN {
                            let chain: Vec<&str> = stack
                                .iter()
                                .map(|&(s, _)| spec.params[s].name.as_str())
                                .chain(std::iter::once(spec.params[q].name.as_str()))
                                .collect();
                            return Err(spec
                                .error_at(
                                    spec.params[root].pos,
                                    ErrorKind::TooLarge,
                                    format!(
                                        "a chain of more than {MAX_SCHEDULE_CHAIN} schedules \
                                         using schedules: {}",
                                        chain.join(" -> ")
                                    ),
                                )
                                .with_hint("write the inner schedules into the outer one"));
                        }
                        longest[q] = Some(OPEN);
                        stack.push((q, 0));
                    }
                    Some(OPEN) => {} // a cycle: the dry run names it
                    Some(_) => {}
                }
            } else {
                stack.pop();
                let own = uses[p]
                    .iter()
                    .filter_map(|&q| longest[q].filter(|&d| d != OPEN))
                    .max()
                    .map_or(1, |d| d + 1);
                if own > MAX_SCHEDULE_CHAIN {
                    let name = &spec.params[p].name;
                    return Err(spec
                        .error_at(
                            spec.params[p].pos,
                            ErrorKind::TooLarge,
                            format!(
                                "schedule `{name}` starts a chain of {own} schedules using \
                                 schedules; at most {MAX_SCHEDULE_CHAIN}"
                            ),
                        )
                        .with_hint("write the inner schedules into the outer one"));
                }
                longest[p] = Some(own);
            }
        }
    }
    Ok(())
}

/// The states, each a valid, distinct name.
fn declare_states(cx: &Ctx, raw: &RawSpec) -> Result<Vec<State>, SpecError> {
    let mut states: Vec<State> = Vec::new();
    for (i, name) in raw.state.iter().enumerate() {
        let p = cx.value_pos(&["state", &i.to_string()]);
        if !is_valid_name(name) {
            return Err(cx.err(
                ErrorKind::InvalidValue,
                p,
                format!("`{name}` is not a valid state name"),
                "use a plain identifier such as z, y or v, not k, K, j or a function name",
            ));
        }
        if states.iter().any(|s| &s.name == name) {
            return Err(cx.err(
                ErrorKind::Duplicate,
                p,
                format!("state `{name}` is listed twice"),
                "list each state once in `state:`",
            ));
        }
        states.push(State {
            name: name.clone(),
            offset: i64::MIN,
        });
    }
    if states.is_empty() {
        return Err(cx.err(
            ErrorKind::InvalidValue,
            cx.value_pos(&["state"]),
            "`state` lists no state",
            "write e.g. `state: [z]`",
        ));
    }

    Ok(states)
}

/// The parameters, each a valid name that is not a state, with its kind.
fn declare_params(cx: &Ctx, raw: &RawSpec, states: &[State]) -> Result<Vec<Param>, SpecError> {
    let mut params: Vec<Param> = Vec::new();
    for (name, rp) in &raw.params {
        let p = cx.key_pos(&["params", name]);
        if !is_valid_name(name) {
            return Err(cx.err(
                ErrorKind::InvalidValue,
                p,
                format!("`{name}` is not a valid parameter name"),
                "use a plain identifier; k, K, j and function names are reserved",
            ));
        }
        if states.iter().any(|s| &s.name == name) {
            return Err(cx.err(
                ErrorKind::Duplicate,
                p,
                format!("`{name}` is both a state and a parameter"),
                "rename one of them",
            ));
        }
        let kind = param_kind(cx, name, rp)?;
        params.push(Param {
            name: name.clone(),
            kind,
            pos: p,
            recursive: false,
        });
    }

    Ok(params)
}

/// One step equation per state; sets each state's offset (`z[k+1]`: 1).
fn step_equations(
    cx: &Ctx,
    raw: &RawSpec,
    states: &mut [State],
) -> Result<Vec<Equation>, SpecError> {
    let mut step: Vec<Equation> = Vec::new();
    for (lhs, rhs) in &raw.step {
        let kp = cx.key_pos(&["step", lhs]);
        let (state, index) = parse_lhs(cx, states, lhs, kp, false)?;
        if step.iter().any(|e| e.state == state) {
            return Err(cx.err(
                ErrorKind::Duplicate,
                kp,
                format!("state `{}` has two step equations", states[state].name),
                "give each state exactly one equation in `step:`",
            ));
        }
        states[state].offset = index.offset;
        let e = cx.parse_expr(&["step", lhs], &rhs.0, ErrorKind::BadExpression)?;
        step.push(Equation {
            state,
            index,
            lhs: lhs.clone(),
            rhs: e,
            pos: cx.value_pos(&["step", lhs]),
        });
    }
    if step.is_empty() {
        return Err(cx.err(
            ErrorKind::InvalidValue,
            cx.value_pos(&["step"]),
            "`step` holds no equation",
            "write e.g. `step:\\n  z[k+1]: z[k] - grad(z[k])`",
        ));
    }
    if let Some(s) = states.iter().find(|s| s.offset == i64::MIN) {
        return Err(cx.err(
            ErrorKind::MissingKey,
            cx.value_pos(&["step"]),
            format!("state `{}` has no step equation", s.name),
            format!(
                "add `{}[k+1]: ...` under `step:` or remove `{}` from `state:`",
                s.name, s.name
            ),
        ));
    }

    Ok(step)
}

/// Initial values, each for an index below its state's step equation.
fn init_equations(cx: &Ctx, raw: &RawSpec, states: &[State]) -> Result<Vec<Equation>, SpecError> {
    let mut init: Vec<Equation> = Vec::new();
    for (lhs, rhs) in &raw.init {
        let kp = cx.key_pos(&["init", lhs]);
        let (state, index) = parse_lhs(cx, states, lhs, kp, true)?;
        if index.offset >= states[state].offset {
            return Err(cx.err(
                ErrorKind::Duplicate,
                kp,
                format!(
                    "`{lhs}` is already defined by the step equation of `{}`",
                    states[state].name
                ),
                format!(
                    "initial values are for indices below {}; remove this line",
                    states[state].offset
                ),
            ));
        }
        let e = cx.parse_expr(&["init", lhs], &rhs.0, ErrorKind::BadExpression)?;
        init.push(Equation {
            state,
            index,
            lhs: lhs.clone(),
            rhs: e,
            pos: cx.value_pos(&["init", lhs]),
        });
    }

    Ok(init)
}

/// The output expression (a bare state name means its last value) and the input state.
fn output_and_input(
    cx: &Ctx,
    raw: &RawSpec,
    states: &[State],
    params: &[Param],
    init: &[Equation],
) -> Result<(Expr, usize), SpecError> {
    let out_text = raw.output.0.clone();
    let mut output = cx.parse_expr(&["output"], &out_text, ErrorKind::BadExpression)?;
    let mut output_state = None;
    if let Ex::Var(name) = &output.ex {
        match states.iter().position(|s| &s.name == name) {
            Some(s) => {
                output_state = Some(s);
                output.ex = Ex::Index(
                    name.clone(),
                    vec![Idx {
                        var: Some('K'),
                        offset: states[s].offset - 1,
                    }],
                );
            }
            None => {
                return Err(unknown_name(
                    cx,
                    name,
                    Expr::file_pos(&output),
                    states,
                    params,
                ))
            }
        }
    }
    let input = match &raw.input {
        Some(name) => states.iter().position(|s| &s.name == name).ok_or_else(|| {
            cx.err(
                ErrorKind::UnknownState,
                cx.value_pos(&["input"]),
                format!("input state `{name}` is not declared"),
                "name one of the states listed in `state:`",
            )
        })?,
        None => output_state.unwrap_or(0),
    };
    if states[input].offset < 1 {
        return Err(cx.err(ErrorKind::InvalidValue, cx.value_pos(&["input"]).or(cx.value_pos(&["output"])), format!("the input state `{}` must be advanced as `{}[k+1]`, so that `{}[0]` can be the input", states[input].name, states[input].name, states[input].name), "pick another `input:` state or write its equation as `s[k+1]: ...`"));
    }
    if init.iter().any(|e| e.state == input && e.index.offset == 0) {
        let e = init
            .iter()
            .find(|e| e.state == input && e.index.offset == 0);
        return Err(cx.err(
            ErrorKind::Duplicate,
            e.and_then(|e| e.pos),
            format!(
                "`{}[0]` is the network input and cannot be given an initial value",
                states[input].name
            ),
            "remove this line",
        ));
    }

    Ok((output, input))
}

/// Schedules: only names they may use; whether each refers to its own earlier values.
fn check_schedules(spec: &mut Spec) -> Result<(), SpecError> {
    for i in 0..spec.params.len() {
        if let ParamKind::Schedule { expr, .. } = &spec.params[i].kind {
            let expr = expr.clone();
            check_coef(spec, &expr, Where::Schedule(i), false)?;
            let mut names = Vec::new();
            expr::mentions(&expr, &mut names);
            spec.params[i].recursive = names.iter().any(|(n, _)| n == &spec.params[i].name);
        }
    }
    Ok(())
}

/// Every right-hand side is linear in the states and grad(...).
fn check_linear(spec: &Spec) -> Result<(), SpecError> {
    for e in &spec.step {
        check_lin(spec, &e.rhs, Where::Step(e.state))?;
    }
    for e in &spec.init {
        check_lin(spec, &e.rhs, Where::Init)?;
    }
    check_lin(spec, &spec.output, Where::Output)
}

fn param_kind(cx: &Ctx, name: &str, rp: &RawParam) -> Result<ParamKind, SpecError> {
    let p = cx.value_pos(&["params", name]);
    let finite = |v: f64, what: &str| -> Result<f64, SpecError> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(cx.err(
                ErrorKind::InvalidValue,
                p,
                format!("{what} of `{name}` is not a finite number"),
                "use an ordinary number",
            ))
        }
    };
    Ok(match rp {
        RawParam::Number(v) => ParamKind::Const(finite(*v, "the value")?),
        RawParam::Schedule(s) => ParamKind::Schedule {
            expr: cx.parse_expr(&["params", name], s, ErrorKind::BadSchedule)?,
            start: BTreeMap::new(),
        },
        RawParam::Table(t) => {
            let ParamTable {
                value,
                schedule,
                start,
                init,
                learn,
                per,
                range,
                choices,
                default,
                doc: _,
            } = t;
            let forms = [
                value.is_some(),
                schedule.is_some(),
                learn == &Some(true) || (init.is_some() && learn != &Some(false)),
                range.is_some(),
                choices.is_some(),
            ];
            let count = forms.iter().filter(|b| **b).count();
            if count != 1 && !(init.is_some() && learn == &Some(false) && count == 0) {
                return Err(cx.err(
                    ErrorKind::InvalidValue,
                    p,
                    format!("parameter `{name}` must be exactly one of: value, schedule, learnable (init + learn: true), range, choices"),
                    "e.g. `beta: { schedule: \"(k - 1) / (k + 2)\" }` or `c: { init: 0.5, learn: true, per: step }`",
                ));
            }
            if start.is_some() && schedule.is_none() {
                return Err(cx.err(
                    ErrorKind::InvalidValue,
                    cx.key_pos(&["params", name, "start"]),
                    format!("`start` of `{name}` needs a `schedule`"),
                    "start values seed recursive schedules such as theta[k] = f(theta[k-1])",
                ));
            }
            if per.is_some() && learn != &Some(true) {
                return Err(cx.err(
                    ErrorKind::InvalidValue,
                    cx.key_pos(&["params", name, "per"]),
                    format!("`per` of `{name}` only applies to learnable parameters"),
                    "add `learn: true` and `init: ...`",
                ));
            }
            if default.is_some() && range.is_none() && choices.is_none() {
                return Err(cx.err(
                    ErrorKind::InvalidValue,
                    cx.key_pos(&["params", name, "default"]),
                    format!("`default` of `{name}` only applies to `range` and `choices`"),
                    "remove it, or use `value:` for a fixed number",
                ));
            }
            if let Some(v) = value {
                ParamKind::Const(finite(*v, "the value")?)
            } else if let Some(s) = schedule {
                let mut st = BTreeMap::new();
                for (k, v) in start.iter().flatten() {
                    st.insert(*k, finite(*v, "a start value")?);
                }
                ParamKind::Schedule {
                    expr: cx.parse_expr(
                        &["params", name, "schedule"],
                        s,
                        ErrorKind::BadSchedule,
                    )?,
                    start: st,
                }
            } else if let Some([lo, hi]) = range {
                let (lo, hi) = (finite(*lo, "the range")?, finite(*hi, "the range")?);
                if lo > hi {
                    return Err(cx.err(
                        ErrorKind::InvalidValue,
                        cx.value_pos(&["params", name, "range"]),
                        format!("the range of `{name}` is empty: {lo} > {hi}"),
                        "write the smaller bound first",
                    ));
                }
                let d = default.unwrap_or((lo + hi) / 2.0);
                if !(lo..=hi).contains(&d) {
                    return Err(cx.err(
                        ErrorKind::InvalidValue,
                        cx.value_pos(&["params", name, "default"]),
                        format!("the default {d} of `{name}` lies outside its range [{lo}, {hi}]"),
                        "pick a default inside the range",
                    ));
                }
                ParamKind::Range { lo, hi, default: d }
            } else if let Some(values) = choices {
                let Some(first) = values.first() else {
                    return Err(cx.err(
                        ErrorKind::InvalidValue,
                        cx.value_pos(&["params", name, "choices"]),
                        format!("`choices` of `{name}` is empty"),
                        "list at least one value",
                    ));
                };
                for v in values {
                    finite(*v, "a choice")?;
                }
                let d = default.unwrap_or(*first);
                if !values.contains(&d) {
                    return Err(cx.err(
                        ErrorKind::InvalidValue,
                        cx.value_pos(&["params", name, "default"]),
                        format!("the default {d} of `{name}` is not one of its choices"),
                        "pick one of the listed values",
                    ));
                }
                ParamKind::Choices {
                    values: values.clone(),
                    default: d,
                }
            } else if let Some(i) = init {
                if learn == &Some(true) {
                    ParamKind::Learnable {
                        init: finite(*i, "the initial value")?,
                        per: per.unwrap_or(Per::Shared),
                    }
                } else {
                    ParamKind::Const(finite(*i, "the value")?)
                }
            } else {
                return Err(cx.err(
                    ErrorKind::InvalidValue,
                    p,
                    format!("learnable parameter `{name}` has no `init`"),
                    "add `init: 0.0` (or another starting value)",
                ));
            }
        }
    })
}

fn parse_lhs(
    cx: &Ctx,
    states: &[State],
    lhs: &str,
    kp: Option<Pos>,
    init: bool,
) -> Result<(usize, Idx), SpecError> {
    let hint = if init {
        "write an initial value as `z[-1]: z[0]`"
    } else {
        "write the left-hand side as `z[k+1]` or `y[k]`"
    };
    let e = expr::parse(lhs).map_err(|e| {
        // A wrong character is pointed at, with its own hint; other errors at the key.
        let (pos, hint) = match (e.character, e.hint) {
            (Some(_), Some(h)) => {
                let path = [if init { "init" } else { "step" }, lhs];
                let at = cx
                    .pos
                    .key_map(&path, cx.text)
                    .map(|m| m.get(e.pos.line, e.pos.column));
                (at.or(kp), h)
            }
            _ => (kp, hint.to_string()),
        };
        cx.err(
            ErrorKind::BadExpression,
            pos,
            format!("bad left-hand side `{lhs}`: {}", e.message),
            hint,
        )
    })?;
    let Ex::Index(name, idx) = &e.ex else {
        return Err(cx.err(
            ErrorKind::BadExpression,
            kp,
            format!("bad left-hand side `{lhs}`"),
            hint,
        ));
    };
    let Some(state) = states.iter().position(|s| &s.name == name) else {
        let mut h = format!("add `{name}` to `state:`");
        if let Some(s) = did_you_mean(name, states.iter().map(|s| s.name.as_str())) {
            h = format!("did you mean `{s}`? Otherwise {h}");
        }
        return Err(cx.err(
            ErrorKind::UnknownState,
            kp,
            format!("unknown state `{name}`"),
            h,
        ));
    };
    match (idx.as_slice(), init) {
        (
            [i @ Idx {
                var: Some('k'),
                offset,
            }],
            false,
        ) if *offset >= 0 => Ok((state, *i)),
        ([i @ Idx { var: None, .. }], true) => Ok((state, *i)),
        _ => Err(cx.err(
            ErrorKind::BadExpression,
            kp,
            format!("bad left-hand side `{lhs}`"),
            hint,
        )),
    }
}

fn unknown_name(
    cx: &Ctx,
    name: &str,
    pos: Option<Pos>,
    states: &[State],
    params: &[Param],
) -> SpecError {
    let all: Vec<&str> = states
        .iter()
        .map(|s| s.name.as_str())
        .chain(params.iter().map(|p| p.name.as_str()))
        .collect();
    let hint = match did_you_mean(name, all.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "declare it under `state:` or `params:` (known: {})",
            all.join(", ")
        ),
    };
    cx.err(
        ErrorKind::UnknownState,
        pos,
        format!("unknown name `{name}`"),
        hint,
    )
}

/// Where an expression sits, which decides the indices it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// In the step equation of this state.
    Step(usize),
    Init,
    Output,
    /// In the schedule of this parameter.
    Schedule(usize),
}

fn spec_err(
    spec: &Spec,
    e: &Expr,
    kind: ErrorKind,
    msg: impl Into<String>,
    hint: impl Into<String>,
) -> SpecError {
    spec.error_at(Expr::file_pos(e), kind, msg).with_hint(hint)
}

fn check_lin(spec: &Spec, e: &Expr, w: Where) -> Result<(), SpecError> {
    let nonlin = |what: String| {
        spec_err(spec, e, ErrorKind::NonLinear, what, "right-hand sides are linear combinations of states and grad(...), with coefficients that do not involve states")
    };
    match &e.ex {
        Ex::Num(v) if *v == 0.0 => Ok(()),
        Ex::Num(v) => Err(spec_err(spec, e, ErrorKind::NonLinear, format!("the constant `{v}` is added to feature maps"), "a right-hand side is a linear combination of states and grad(...); multiply constants with a state, e.g. `0.5 * z[k]`")),
        Ex::Var(n) => {
            if spec.state(n).is_some() {
                Err(spec_err(spec, e, ErrorKind::BadExpression, format!("state `{n}` needs an index"), format!("write e.g. `{n}[k]` or `{n}[k-1]`")))
            } else if spec.param(n).is_some() || n == "k" || n == "K" {
                Err(spec_err(spec, e, ErrorKind::NonLinear, format!("`{n}` is a coefficient without a feature map"), format!("multiply it with a state, e.g. `{n} * z[k]`")))
            } else {
                Err(unknown_in(spec, e, n))
            }
        }
        Ex::Index(n, idx) => {
            if let Some(s) = spec.state(n) {
                if idx.len() != 1 {
                    return Err(spec_err(spec, e, ErrorKind::BadExpression, format!("state `{n}` takes one index"), format!("write e.g. `{n}[k-1]`")));
                }
                check_state_index(spec, e, s, idx[0], w)
            } else if spec.param(n).is_some() {
                Err(spec_err(spec, e, ErrorKind::NonLinear, format!("`{n}` is a coefficient without a feature map"), format!("multiply it with a state, e.g. `{n}[k] * z[k]`")))
            } else {
                Err(unknown_in(spec, e, n))
            }
        }
        Ex::Range { name, .. } => Err(spec_err(spec, e, ErrorKind::BadExpression, format!("a history range of `{name}` must sit inside cat(...) or sum(...)"), format!("write e.g. `cat({name}[0..=k])` or `sum({name}[0..=k], w)`"))),
        Ex::Neg(a) => check_lin(spec, a, w),
        Ex::Bin(BinOp::Add | BinOp::Sub, a, b) => {
            check_lin(spec, a, w)?;
            check_lin(spec, b, w)
        }
        Ex::Bin(BinOp::Mul, a, b) => match (spec.is_linear(a), spec.is_linear(b)) {
            (true, true) => Err(nonlin("two feature-map expressions are multiplied".into())),
            (false, false) => Err(spec_err(spec, e, ErrorKind::NonLinear, "a coefficient without a feature map", "multiply it with a state, e.g. `beta * z[k]`")),
            (true, false) => {
                check_lin(spec, a, w)?;
                check_coef(spec, b, w, true)
            }
            (false, true) => {
                check_coef(spec, a, w, true)?;
                check_lin(spec, b, w)
            }
        },
        Ex::Bin(BinOp::Div, a, b) => {
            if spec.is_linear(b) {
                return Err(nonlin("division by a feature-map expression".into()));
            }
            if !spec.is_linear(a) {
                return Err(spec_err(spec, e, ErrorKind::NonLinear, "a coefficient without a feature map", "divide a state, e.g. `z[k] / 2`"));
            }
            check_lin(spec, a, w)?;
            check_coef(spec, b, w, false)
        }
        Ex::Bin(_, _, _) | Ex::Not(_) | Ex::If(..) => Err(nonlin("feature maps cannot appear in comparisons, conditions or `if` branches".into())),
        Ex::Call(f, args) => match f.as_str() {
            "grad" => {
                let [arg] = args.as_slice() else {
                    return Err(spec_err(spec, e, ErrorKind::BadExpression, "grad takes exactly one argument", "write e.g. `grad(z[k])` or `grad(z[k] + beta * (z[k] - z[k-1]))`"));
                };
                if !spec.is_linear(arg) {
                    return Err(spec_err(spec, arg, ErrorKind::NonLinear, "grad(...) of a coefficient", "apply grad to a feature map, e.g. `grad(z[k])`"));
                }
                check_lin(spec, arg, w)
            }
            "cat" => {
                if args.is_empty() {
                    return Err(spec_err(spec, e, ErrorKind::BadExpression, "cat() needs at least one argument", "write e.g. `cat(z[0..=k])` or `cat(z[k], grad(z[k]))`"));
                }
                for a in args {
                    match &a.ex {
                        Ex::Range { name, lo, hi, .. } => check_range(spec, a, name, *lo, *hi, w)?,
                        _ => {
                            if !spec.is_linear(a) {
                                return Err(spec_err(spec, a, ErrorKind::NonLinear, "cat(...) of a coefficient", "concatenate feature maps, e.g. `cat(z[k], grad(z[k]))`"));
                            }
                            check_lin(spec, a, w)?
                        }
                    }
                }
                Ok(())
            }
            "sum" => {
                let (range, weight) = match args.as_slice() {
                    [r] => (r, None),
                    [r, wt] => (r, Some(wt)),
                    _ => return Err(spec_err(spec, e, ErrorKind::BadExpression, "sum takes a history range and an optional weight", "write e.g. `sum(z[0..=k], w)` with `w` a parameter (per-edge learnable or a schedule in k and j)")),
                };
                let Ex::Range { name, lo, hi, .. } = &range.ex else {
                    return Err(spec_err(spec, range, ErrorKind::BadExpression, "the first argument of sum must be a history range", "write e.g. `sum(z[0..=k], w)`"));
                };
                check_range(spec, range, name, *lo, *hi, w)?;
                if let Some(wt) = weight {
                    if spec.is_linear(wt) {
                        return Err(spec_err(spec, wt, ErrorKind::NonLinear, "the weight of sum(...) involves feature maps", "the weight is a coefficient in k and j, e.g. a parameter `w`"));
                    }
                    check_coef_j(spec, wt, w, true, true)?;
                }
                Ok(())
            }
            other if MATH_FUNCTIONS.iter().any(|(m, _)| *m == other) => Err(nonlin(format!("`{other}` of a feature map is not linear"))),
            other => Err(unknown_fn(spec, e, other)),
        },
    }
}

fn unknown_in(spec: &Spec, e: &Expr, n: &str) -> SpecError {
    let all: Vec<&str> = spec
        .states
        .iter()
        .map(|s| s.name.as_str())
        .chain(spec.params.iter().map(|p| p.name.as_str()))
        .collect();
    let hint = match did_you_mean(n, all.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "declare `{n}` under `state:` or `params:`; known names: {}",
            all.join(", ")
        ),
    };
    let kind = match &e.ex {
        Ex::Index(..) | Ex::Range { .. } => ErrorKind::UnknownState,
        _ => ErrorKind::UnknownParam,
    };
    let what = if kind == ErrorKind::UnknownState {
        "state"
    } else {
        "parameter"
    };
    spec_err(spec, e, kind, format!("unknown {what} `{n}`"), hint)
}

fn unknown_fn(spec: &Spec, e: &Expr, f: &str) -> SpecError {
    let all: Vec<&str> = MAP_FUNCTIONS
        .iter()
        .copied()
        .chain(MATH_FUNCTIONS.iter().map(|(m, _)| *m))
        .collect();
    let hint = match did_you_mean(f, all.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("the functions are: {}", all.join(", ")),
    };
    spec_err(
        spec,
        e,
        ErrorKind::BadExpression,
        format!("unknown function `{f}`"),
        hint,
    )
}

fn check_state_index(spec: &Spec, e: &Expr, s: usize, idx: Idx, w: Where) -> Result<(), SpecError> {
    let st = &spec.states[s];
    match (w, idx.var) {
        (_, Some('j')) => Err(spec_err(
            spec,
            e,
            ErrorKind::BadExpression,
            "`j` indexes history sums only",
            "use `k`-relative or absolute indices for states",
        )),
        (Where::Step(owner), Some('k')) => {
            if idx.offset > st.offset {
                Err(spec_err(spec, e, ErrorKind::FutureReference, format!("`{}[{}]` refers to the future: during step k, `{}` is known up to `{}[k{}]`", st.name, idx, st.name, st.name, fmt_off(st.offset)), format!("use indices up to k{}; a method can only use what it has already computed", fmt_off(st.offset))))
            } else if owner == s && idx.offset == st.offset {
                Err(spec_err(
                    spec,
                    e,
                    ErrorKind::Cycle,
                    format!("`{}[{}]` is defined in terms of itself", st.name, idx),
                    format!(
                        "use earlier values such as `{}[k{}]`",
                        st.name,
                        fmt_off(st.offset - 1)
                    ),
                ))
            } else {
                Ok(())
            }
        }
        (Where::Step(_), Some('K')) | (Where::Init, Some(_)) => Err(spec_err(
            spec,
            e,
            ErrorKind::BadExpression,
            format!("index `{idx}` is not allowed here"),
            if w == Where::Init {
                "initial values use absolute indices such as `z[0]`"
            } else {
                "`K` (the step count) is only used in `output`"
            },
        )),
        (Where::Output, Some('k')) => Err(spec_err(
            spec,
            e,
            ErrorKind::BadExpression,
            "`k` is not defined in `output`",
            "use `K`, the number of steps, e.g. `z[K]` or `cat(z[0..=K])`",
        )),
        (Where::Output, Some('K')) => {
            if idx.offset > st.offset - 1 {
                Err(spec_err(
                    spec,
                    e,
                    ErrorKind::FutureReference,
                    format!(
                        "`{}[{}]` does not exist after K steps: the last is `{}[K{}]`",
                        st.name,
                        idx,
                        st.name,
                        fmt_off(st.offset - 1)
                    ),
                    format!(
                        "use `{}[K{}]` or simply `output: {}`",
                        st.name,
                        fmt_off(st.offset - 1),
                        st.name
                    ),
                ))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn fmt_off(o: i64) -> String {
    match o {
        0 => String::new(),
        o if o > 0 => format!("+{o}"),
        o => format!("{o}"),
    }
}

fn check_range(
    spec: &Spec,
    e: &Expr,
    name: &str,
    lo: Idx,
    hi: Idx,
    w: Where,
) -> Result<(), SpecError> {
    let Some(s) = spec.state(name) else {
        return Err(unknown_in(spec, e, name));
    };
    check_state_index(spec, e, s, lo, w)?;
    check_state_index(spec, e, s, hi, w)
}

/// Checks a coefficient expression. `poly`: learnable parameters may appear (only under + - *).
pub fn check_coef(spec: &Spec, e: &Expr, w: Where, poly: bool) -> Result<(), SpecError> {
    check_coef_j(spec, e, w, poly, false)
}

fn check_coef_j(
    spec: &Spec,
    e: &Expr,
    w: Where,
    poly: bool,
    allow_j: bool,
) -> Result<(), SpecError> {
    let sched = matches!(w, Where::Schedule(_));
    let kind = if sched {
        ErrorKind::BadSchedule
    } else {
        ErrorKind::BadExpression
    };
    let rec = |x: &Expr, poly: bool| check_coef_j(spec, x, w, poly, allow_j);
    match &e.ex {
        Ex::Num(_) => Ok(()),
        Ex::Var(n) | Ex::Index(n, _) => {
            let idx: &[Idx] = match &e.ex {
                Ex::Index(_, i) => i,
                _ => &[],
            };
            if idx.is_empty() {
                match n.as_str() {
                    "k" if w == Where::Output || w == Where::Init => {
                        return Err(spec_err(
                            spec,
                            e,
                            kind,
                            "`k` is not defined here",
                            "use `K` (the number of steps) in `output`",
                        ))
                    }
                    "k" | "K" => return Ok(()),
                    "j" if allow_j || sched => return Ok(()),
                    "j" => {
                        return Err(spec_err(
                            spec,
                            e,
                            kind,
                            "`j` is only defined inside the weight of sum(...)",
                            "write e.g. `sum(z[0..=k], 1 / (k + 1 - j))`",
                        ))
                    }
                    _ => {}
                }
            }
            let Some(p) = spec.param(n) else {
                if spec.state(n).is_some() {
                    return Err(spec_err(
                        spec,
                        e,
                        ErrorKind::NonLinear,
                        format!("state `{n}` inside a coefficient"),
                        "coefficients and schedules cannot depend on feature maps",
                    ));
                }
                return Err(unknown_in(
                    spec,
                    &Expr {
                        ex: Ex::Var(n.clone()),
                        pos: e.pos,
                    },
                    n,
                ));
            };
            if idx.len() > 1
                || idx.iter().any(|i| {
                    matches!(i.var, Some('K')) || (i.var == Some('j') && !(allow_j || sched))
                })
            {
                return Err(spec_err(
                    spec,
                    e,
                    kind,
                    format!("bad index on parameter `{n}`"),
                    format!("write `{n}`, `{n}[k]` or `{n}[k-1]`"),
                ));
            }
            if let ParamKind::Learnable { per, .. } = spec.params[p].kind {
                if !poly {
                    return Err(spec_err(spec, e, ErrorKind::NonLinear, format!("learnable parameter `{n}` used in a division, function or condition"), "learnable parameters may only be added, subtracted and multiplied in a coefficient"));
                }
                if sched {
                    return Err(spec_err(spec, e, kind, format!("schedule uses learnable parameter `{n}`"), "schedules are fixed functions of k; use the learnable parameter in the step equation instead"));
                }
                if per == Per::Edge && !allow_j {
                    return Err(spec_err(
                        spec,
                        e,
                        kind,
                        format!("per-edge parameter `{n}` outside sum(...)"),
                        format!("use it as the weight of a history sum, e.g. `sum(z[0..=k], {n})`"),
                    ));
                }
            }
            Ok(())
        }
        Ex::Range { .. } => Err(spec_err(
            spec,
            e,
            kind,
            "a history range inside a coefficient",
            "ranges belong in cat(...) or sum(...)",
        )),
        Ex::Neg(a) => rec(a, poly),
        Ex::Not(a) => rec(a, false),
        Ex::Bin(BinOp::Add | BinOp::Sub | BinOp::Mul, a, b) => {
            rec(a, poly)?;
            rec(b, poly)
        }
        Ex::Bin(BinOp::Div, a, b) => {
            rec(a, poly)?;
            rec(b, false)
        }
        Ex::Bin(_, a, b) => {
            rec(a, false)?;
            rec(b, false)
        }
        Ex::If(c, a, b) => {
            rec(c, false)?;
            rec(a, poly)?;
            rec(b, poly)
        }
        Ex::Call(f, args) => {
            if let Some((_, arity)) = MATH_FUNCTIONS.iter().find(|(m, _)| m == f) {
                if args.len() != *arity {
                    return Err(spec_err(
                        spec,
                        e,
                        kind,
                        format!("`{f}` takes {arity} argument(s), not {}", args.len()),
                        format!("write e.g. `{f}({})`", vec!["x"; *arity].join(", ")),
                    ));
                }
                args.iter().try_for_each(|a| rec(a, false))
            } else if MAP_FUNCTIONS.contains(&f.as_str()) {
                Err(spec_err(
                    spec,
                    e,
                    ErrorKind::NonLinear,
                    format!("`{f}(...)` inside a coefficient"),
                    "coefficients cannot depend on feature maps",
                ))
            } else {
                Err(unknown_fn(spec, e, f))
            }
        }
    }
}

/// References `(state, offset)` to same-step values in an expression.
fn same_step_refs(spec: &Spec, e: &Expr, out: &mut Vec<(usize, Option<Pos>)>) {
    match &e.ex {
        Ex::Index(n, idx) => {
            if let (
                Some(s),
                [Idx {
                    var: Some('k'),
                    offset,
                }],
            ) = (spec.state(n), idx.as_slice())
            {
                if *offset == spec.states[s].offset {
                    out.push((s, Expr::file_pos(e)));
                }
            }
        }
        Ex::Range {
            name,
            hi: Idx {
                var: Some('k'),
                offset,
            },
            ..
        } => {
            if let Some(s) = spec.state(name) {
                if *offset == spec.states[s].offset {
                    out.push((s, Expr::file_pos(e)));
                }
            }
        }
        Ex::Call(_, args) => args.iter().for_each(|a| same_step_refs(spec, a, out)),
        Ex::Neg(a) | Ex::Not(a) => same_step_refs(spec, a, out),
        Ex::Bin(_, a, b) => {
            same_step_refs(spec, a, out);
            same_step_refs(spec, b, out);
        }
        Ex::If(c, a, b) => {
            same_step_refs(spec, c, out);
            same_step_refs(spec, a, out);
            same_step_refs(spec, b, out);
        }
        _ => {}
    }
}

/// Orders equations so that each comes after those it uses (stable: keeps the written order
/// where it can); a cycle is an error at the reference that closes it.
fn order_by<F>(spec: &Spec, eqs: &[Equation], deps: F) -> Result<Vec<Equation>, SpecError>
where
    F: Fn(&Equation) -> Vec<(usize, Option<Pos>)>,
{
    let deps: Vec<Vec<(usize, Option<Pos>)>> = eqs.iter().map(&deps).collect();
    let mut done = vec![false; eqs.len()];
    let mut out = Vec::with_capacity(eqs.len());
    while out.len() < eqs.len() {
        let next =
            (0..eqs.len()).find(|&i| !done[i] && deps[i].iter().all(|(d, _)| done[*d] || *d == i));
        match next {
            Some(i) => {
                done[i] = true;
                out.push(eqs[i].clone());
            }
            None => {
                let i = (0..eqs.len()).find(|&i| !done[i]).unwrap_or(0);
                let (d, p) = deps[i]
                    .iter()
                    .find(|(d, _)| !done[*d])
                    .copied()
                    .unwrap_or((i, eqs[i].pos));
                return Err(spec
                    .error_at(
                        p,
                        ErrorKind::Cycle,
                        format!(
                            "`{}` and `{}` depend on each other within one step",
                            eqs[i].lhs, eqs[d].lhs
                        ),
                    )
                    .with_hint(
                        "one of them must use the previous value (e.g. index k instead of k+1)",
                    ));
            }
        }
    }
    Ok(out)
}

fn order_step(spec: &Spec) -> Result<Vec<Equation>, SpecError> {
    let eqs = &spec.step;
    order_by(spec, eqs, |e| {
        let mut refs = Vec::new();
        same_step_refs(spec, &e.rhs, &mut refs);
        refs.into_iter()
            .filter_map(|(s, p)| eqs.iter().position(|x| x.state == s).map(|i| (i, p)))
            .collect()
    })
}

fn abs_refs(spec: &Spec, e: &Expr, out: &mut Vec<(usize, i64, Option<Pos>)>) {
    match &e.ex {
        Ex::Index(n, idx) => {
            if let (Some(s), [Idx { var: None, offset }]) = (spec.state(n), idx.as_slice()) {
                out.push((s, *offset, Expr::file_pos(e)));
            }
        }
        Ex::Range {
            name,
            lo: Idx {
                var: None,
                offset: lo,
            },
            hi: Idx {
                var: None,
                offset: hi,
            },
            ..
        } => {
            if let Some(s) = spec.state(name) {
                for i in (*lo..=*hi).take(1024) {
                    out.push((s, i, Expr::file_pos(e)));
                }
            }
        }
        Ex::Call(_, args) => args.iter().for_each(|a| abs_refs(spec, a, out)),
        Ex::Neg(a) | Ex::Not(a) => abs_refs(spec, a, out),
        Ex::Bin(_, a, b) => {
            abs_refs(spec, a, out);
            abs_refs(spec, b, out);
        }
        _ => {}
    }
}

fn order_init(spec: &Spec) -> Result<Vec<Equation>, SpecError> {
    let eqs = &spec.init;
    for e in eqs {
        let mut refs = Vec::new();
        abs_refs(spec, &e.rhs, &mut refs);
        for (s, i, p) in refs {
            let known = (s == spec.input && i == 0)
                || eqs.iter().any(|x| x.state == s && x.index.offset == i);
            if !known {
                let st = &spec.states[s];
                let (kind, hint) = if i >= st.offset {
                    (ErrorKind::FutureReference, format!("initial values can use the input `{}[0]` and other initial values only", spec.states[spec.input].name))
                } else {
                    (
                        ErrorKind::MissingInit,
                        format!("add `{}[{}]: ...` under `init:`", st.name, i),
                    )
                };
                return Err(spec
                    .error_at(
                        p,
                        kind,
                        format!(
                            "`{}[{}]` is not known when initial values are computed",
                            st.name, i
                        ),
                    )
                    .with_hint(hint));
            }
        }
    }
    order_by(spec, eqs, |e| {
        let mut refs = Vec::new();
        abs_refs(spec, &e.rhs, &mut refs);
        refs.into_iter()
            .filter_map(|(s, i, p)| {
                eqs.iter()
                    .position(|x| x.state == s && x.index.offset == i)
                    .map(|j| (j, p))
            })
            .collect()
    })
}

/// True when the expression concatenates feature maps somewhere.
pub fn mentions_cat(e: &Expr) -> bool {
    match &e.ex {
        Ex::Call(f, args) => f == "cat" || args.iter().any(mentions_cat),
        Ex::Neg(a) | Ex::Not(a) => mentions_cat(a),
        Ex::Bin(_, a, b) => mentions_cat(a) || mentions_cat(b),
        Ex::If(c, a, b) => mentions_cat(c) || mentions_cat(a) || mentions_cat(b),
        _ => false,
    }
}
