//! Unrolling folds constants, merges parallel edges, drops zero edges and prunes dead values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::spec::{load_str, Overrides};
use optarch_core::topology::{unroll, NodeKind};

#[test]
fn dead_states_are_pruned() {
    // `w` is computed every step but never reaches the output: no node of it survives.
    let text = "name: dead\nstate: [z, w]\ninit:\n  w[0]: z[0]\nstep:\n  w[k+1]: 2 * w[k] - grad(w[k])\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n";
    let t = unroll(&load_str("d.yaml", text).unwrap(), 4, &Overrides::new()).unwrap();
    assert_eq!(t.block_count(), 4);
    assert!(t
        .graph
        .node_weights()
        .all(|n| n.names.iter().all(|s| !s.starts_with("w[") || s == "w[0]")));
}

#[test]
fn parallel_edges_merge_and_zero_edges_vanish() {
    // z[k] appears three times; the coefficients 0.5 + 0.25 + 0.25 merge into one edge of 1,
    // and a term that cancels (beta - beta) leaves no edge at all.
    let text = "name: m\nparams:\n  beta: 0.3\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: 0.5 * z[k] + 0.25 * z[k] + z[k] / 4 - grad(z[k]) + (beta - beta) * z[k-1]\noutput: z\n";
    let t = unroll(&load_str("m.yaml", text).unwrap(), 3, &Overrides::new()).unwrap();
    for n in t.graph.node_indices() {
        if t.graph[n].kind == NodeKind::Combine {
            let ops = t.operands(n);
            assert_eq!(ops.len(), 2, "z[k] and B_k only");
            assert!(ops.iter().all(|(_, e)| e.coef.is_one()), "merged to 1");
        }
    }
    // Nesterov: beta_1 = (1 - 1) / (1 + 2) = 0, so y[1] is z[1] itself (no combination node).
    let nag = "name: n\nparams:\n  beta: \"(k - 1) / (k + 2)\"\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: z[k] + beta * (z[k] - z[k-1])\n  z[k+1]: y[k] - grad(y[k])\noutput: z\n";
    let t = unroll(&load_str("n.yaml", nag).unwrap(), 3, &Overrides::new()).unwrap();
    let z1 = t
        .graph
        .node_indices()
        .find(|n| t.graph[*n].names.contains(&"z[1]".to_string()))
        .unwrap();
    assert!(
        t.graph[z1].names.contains(&"y[1]".to_string()),
        "{:?}",
        t.graph[z1].names
    );
}

#[test]
fn gradients_at_the_same_point_share_one_block() {
    // Two equations evaluate grad(z[k]): one block per step, not two.
    let text = "name: s\nparams:\n  beta: 0.5\nstate: [z, v]\ninit:\n  v[0]: 0\nstep:\n  v[k+1]: beta * v[k] - grad(z[k])\n  z[k+1]: z[k] + beta * v[k] - grad(z[k])\noutput: z\n";
    let t = unroll(&load_str("s.yaml", text).unwrap(), 5, &Overrides::new()).unwrap();
    assert_eq!(t.block_count(), 5);
}

#[test]
fn learnable_coefficients_are_named_and_renumbered() {
    let text = "name: lm\nparams:\n  c: { init: -0.05, learn: true, per: step }\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: (1 - c) * z[k] + c * z[k-1] - grad(z[k])\noutput: z\n";
    let t = unroll(&load_str("lm.yaml", text).unwrap(), 4, &Overrides::new()).unwrap();
    // c_0 folds away (z[-1] = z[0]); c_1..c_3 remain, numbered from 0.
    let names: Vec<&str> = t.learnables.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["c_1", "c_2", "c_3"]);
    assert!(t.learnables.iter().all(|l| l.init == -0.05));
}
