//! Unrolling momentum methods gives the coefficients of the closed-form solution of their
//! linear recurrences (derivations in docs/THEORY.md), in both readings of `grad`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::analysis::coefficient_table;
use optarch_core::spec::{load_str, Overrides, Reading};
use optarch_core::topology::{unroll, NodeKind, Topology};

const HB: &str = "name: hb\nparams:\n  h: 1.0\n  beta: 0.5\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - h * grad(z[k]) + beta * (z[k] - z[k-1])\noutput: z\n";
const NAG: &str = "name: nag\nparams:\n  h: 1.0\n  beta: { schedule: \"(k - 1) / (k + 2)\" }\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: z[k] + beta[k] * (z[k] - z[k-1])\n  z[k+1]: y[k] - h * grad(y[k])\noutput: z\n";
const GD: &str =
    "name: gd\nparams:\n  h: 1.0\nstate: [z]\nstep:\n  z[k+1]: z[k] - h * grad(z[k])\noutput: z\n";

fn topo(text: &str, reading: Reading, steps: usize, o: &[(&str, f64)]) -> Topology {
    let mut s = load_str("t.yaml", text).unwrap();
    s.reading = reading;
    let o: Overrides = o.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    unroll(&s, steps, &o).unwrap()
}

/// Coefficient of basis element `col` ("x", "B3") in row `row` ("B5" = input of block 5, "out").
fn coef(t: &Topology, row: &str, col: &str) -> f64 {
    let table = coefficient_table(t).unwrap();
    let c = table
        .basis
        .iter()
        .position(|b| b == col)
        .unwrap_or_else(|| panic!("no column {col}"));
    let r = table
        .rows
        .iter()
        .find(|r| r.target == row)
        .unwrap_or_else(|| panic!("no row {row}"));
    r.values[c]
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
        "{what}: unrolled {a} vs closed form {b}"
    );
}

#[test]
fn gradient_descent_residual_is_exactly_the_resnet_chain() {
    let t = topo(GD, Reading::Residual, 6, &[]);
    let order = t.order().unwrap();
    let kinds: Vec<&NodeKind> = order.iter().map(|n| &t.graph[*n].kind).collect();
    // x, then (B_k, z_{k+1} = z_k + B_k) per step, then out.
    assert_eq!(kinds.len(), 2 + 2 * 6);
    let mut prev = t.input;
    for k in 0..6 {
        let b = order[1 + 2 * k];
        let z = order[2 + 2 * k];
        assert_eq!(t.graph[b].kind, NodeKind::Block { step: k, slot: 0 });
        assert_eq!(
            t.operands(b).iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![prev]
        );
        let ops = t.operands(z);
        assert_eq!(ops.len(), 2, "z[{}] = z[{k}] + B{k}", k + 1);
        assert!(ops.iter().all(|(_, e)| e.coef.is_one()));
        assert!(ops.iter().any(|(n, _)| *n == prev) && ops.iter().any(|(n, _)| *n == b));
        prev = z;
    }
    // Objective reading, h = 1: the plain feedforward chain, no combinations at all.
    let t = topo(GD, Reading::Objective, 6, &[]);
    assert_eq!(t.graph.node_count(), 8);
    assert!(t.graph.node_weights().all(|n| n.kind != NodeKind::Combine));
}

#[test]
fn heavy_ball_residual_matches_geometric_closed_form() {
    // d_k = z_{k+1} - z_k = beta d_{k-1} + h B_k, d_{-1} = 0  =>  z_i = x + h Σ_j (1 - beta^(i-j)) / (1 - beta) B_j
    let (h, beta, steps) = (0.7, 0.6, 9);
    let t = topo(HB, Reading::Residual, steps, &[("h", h), ("beta", beta)]);
    for i in 1..=steps {
        let row = if i == steps {
            "out".to_string()
        } else {
            format!("B{i}")
        };
        close(coef(&t, &row, "x"), 1.0, "x");
        for j in 0..i {
            let expect = h * (1.0 - beta.powi((i - j) as i32)) / (1.0 - beta);
            close(
                coef(&t, &row, &format!("B{j}")),
                expect,
                &format!("{row} <- B{j}"),
            );
        }
    }
}

#[test]
fn heavy_ball_objective_matches_characteristic_roots() {
    // z_{k+1} = a z_k - beta z_{k-1} + h B_k with a = 1 - h + beta; roots r1, r2 of r² - a r + beta.
    let (h, beta, steps) = (0.1, 0.1, 8);
    let a: f64 = 1.0 - h + beta;
    let disc = (a * a - 4.0 * beta).sqrt();
    let (r1, r2) = ((a + disc) / 2.0, (a - disc) / 2.0);
    let g = |n: i32| (r1.powi(n + 1) - r2.powi(n + 1)) / (r1 - r2); // impulse response
                                                                    // Homogeneous part with z_0 = z_{-1} = 1: c1 + c2 = 1, c1/r1 + c2/r2 = 1.
    let c2 = (1.0 - 1.0 / r1) / (1.0 / r2 - 1.0 / r1);
    let c1 = 1.0 - c2;
    let t = topo(HB, Reading::Objective, steps, &[("h", h), ("beta", beta)]);
    for i in 1..=steps {
        let row = if i == steps {
            "out".to_string()
        } else {
            format!("B{i}")
        };
        close(
            coef(&t, &row, "x"),
            c1 * r1.powi(i as i32) + c2 * r2.powi(i as i32),
            &format!("{row} <- x"),
        );
        for j in 0..i {
            close(
                coef(&t, &row, &format!("B{j}")),
                h * g((i - 1 - j) as i32),
                &format!("{row} <- B{j}"),
            );
        }
    }
}

fn nag_beta(l: usize) -> f64 {
    (l as f64 - 1.0) / (l as f64 + 2.0)
}

/// Π_{l=a}^{b} beta_l (1 when empty).
fn prod(a: usize, b: usize) -> f64 {
    (a..=b).map(nag_beta).product()
}

#[test]
fn nesterov_residual_matches_closed_form() {
    // d_k = beta_k d_{k-1} + h B_k  =>  z_i = x + h Σ_{j<i} Σ_{m=j}^{i-1} P(j+1, m) B_j,
    // y_i = z_i + beta_i d_{i-1}: coefficient of B_j is h (Σ_{m=j}^{i-1} P(j+1, m) + beta_i P(j+1, i-1)).
    let (h, steps) = (0.8, 10);
    let t = topo(NAG, Reading::Residual, steps, &[("h", h)]);
    for i in 1..steps {
        let row = format!("B{i}");
        close(coef(&t, &row, "x"), 1.0, "x");
        for j in 0..i {
            let zsum: f64 = (j..i).map(|m| prod(j + 1, m)).sum();
            let expect = h * (zsum + nag_beta(i) * prod(j + 1, i - 1));
            close(
                coef(&t, &row, &format!("B{j}")),
                expect,
                &format!("{row} <- B{j}"),
            );
            // Telescoped form of the products: P(j+1, m) = j(j+1)(j+2) / (m(m+1)(m+2)) for j >= 1.
            if j >= 1 {
                let tele =
                    |m: usize| (j * (j + 1) * (j + 2)) as f64 / (m * (m + 1) * (m + 2)) as f64;
                let zsum2: f64 = (j..i).map(tele).sum();
                close(
                    h * (zsum2 + nag_beta(i) * tele(i - 1)),
                    expect,
                    "telescoped",
                );
            }
        }
    }
    for j in 0..steps {
        let expect = h * (j..steps).map(|m| prod(j + 1, m)).sum::<f64>();
        close(
            coef(&t, "out", &format!("B{j}")),
            expect,
            &format!("out <- B{j}"),
        );
    }
}

#[test]
fn nesterov_objective_matches_transition_matrix_products() {
    // z_{k+1} = (1-h)(1+beta_k) z_k - (1-h) beta_k z_{k-1} + h B_k: with A_k the companion matrix,
    // the coefficient of B_j in z_i is h e1' A_{i-1} ... A_{j+1} e1.
    let (h, steps) = (0.5, 8);
    let t = topo(NAG, Reading::Objective, steps, &[("h", h)]);
    let mat = |k: usize| {
        let b = nag_beta(k);
        [[(1.0 - h) * (1.0 + b), -(1.0 - h) * b], [1.0, 0.0]]
    };
    let mul = |a: [[f64; 2]; 2], b: [[f64; 2]; 2]| {
        let mut c = [[0.0; 2]; 2];
        for r in 0..2 {
            for s in 0..2 {
                c[r][s] = a[r][0] * b[0][s] + a[r][1] * b[1][s];
            }
        }
        c
    };
    // z coefficient of B_j in z_i (i > j), and of x (z_0 = z_{-1} = x).
    let zb = |i: usize, j: usize| {
        let mut m = [[1.0, 0.0], [0.0, 1.0]];
        for k in j + 1..i {
            m = mul(mat(k), m);
        }
        h * m[0][0]
    };
    let zx = |i: usize| {
        let mut m = [[1.0, 0.0], [0.0, 1.0]];
        for k in 0..i {
            m = mul(mat(k), m);
        }
        m[0][0] + m[0][1]
    };
    for i in 1..steps {
        // y_i = (1 + beta_i) z_i - beta_i z_{i-1}
        let b = nag_beta(i);
        let row = format!("B{i}");
        close(
            coef(&t, &row, "x"),
            (1.0 + b) * zx(i) - b * zx(i - 1),
            &format!("{row} <- x"),
        );
        for j in 0..i {
            let prev = if i - 1 > j { zb(i - 1, j) } else { 0.0 };
            close(
                coef(&t, &row, &format!("B{j}")),
                (1.0 + b) * zb(i, j) - b * prev,
                &format!("{row} <- B{j}"),
            );
        }
    }
    close(coef(&t, "out", "x"), zx(steps), "out <- x");
    for j in 0..steps {
        close(
            coef(&t, "out", &format!("B{j}")),
            zb(steps, j),
            &format!("out <- B{j}"),
        );
    }
}
