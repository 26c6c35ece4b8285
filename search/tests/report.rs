//! `optarch report`: a synthetic search database (written with the store's API) reported as
//! CSV, JSON and a self-contained HTML page that headless Chromium must render.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_search::report::{kendall_tau, spearman_rho, write_report, ReportOptions, CSV_HEADER};
use optarch_search::search::candidate::Candidate;
use optarch_search::search::config;
use optarch_search::search::ids::{CandidateId, ExperimentId, TrialId};
use optarch_search::search::store::{Epoch, NewTrial, Phase, Store, TrialStatus};
use optarch_search::train::EpochMetrics;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The search configuration: rungs at 1, 3 and 9 epochs, and a ResNet-32-like architecture
/// (5 blocks in its first stage).
const CONFIG_YAML: &str = "name: synthetic
train: {arch: {preset: cifar-resnet, depth: 32}}
budget: {min_epochs: 1, max_epochs: 9, eta: 3, trials: 6}
finalists: {top_k: 2, seeds: 3}
candidates: [{spec: heavy_ball.yaml}]
";

/// Final test accuracies of the two finalists and of the reference C, three seeds each (their
/// validation accuracies are 0.01 above).
const FINAL_A: [f64; 3] = [0.80, 0.82, 0.81];
const FINAL_B: [f64; 3] = [0.84, 0.86, 0.83];
const FINAL_C: [f64; 3] = [0.70, 0.72, 0.71];

fn spec(file: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../specs")
            .join(file),
    )
    .unwrap()
}

struct Db {
    store: Store,
    exp: ExperimentId,
}

impl Db {
    fn candidate(
        &self,
        name: &str,
        file: &str,
        params: &[(&str, f64)],
        contraction: Option<f64>,
        reference: bool,
    ) -> CandidateId {
        let position = self.store.candidates().unwrap().len();
        let (id, new) = self
            .store
            .insert_candidate(
                self.exp,
                position,
                &Candidate {
                    name: name.into(),
                    origin: format!("spec:specs/{file}"),
                    family: format!("spec:specs/{file}"),
                    spec_yaml: spec(file),
                    overrides: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                    features: params.iter().map(|(_, v)| *v).collect(),
                    spec_hash: format!("s-{name}"),
                    topo_hash: format!("t-{name}"),
                    contraction,
                    asymptotic: contraction.map(|c| c * 0.9),
                    reference,
                    arch: None,
                },
            )
            .unwrap();
        assert!(new);
        id
    }

    fn trial(&self, candidate: CandidateId, phase: Phase, seed: u64, budget: usize) -> TrialId {
        let id = self
            .store
            .insert_trial(
                self.exp,
                &NewTrial {
                    candidate,
                    phase,
                    seed,
                    budget,
                    max_budget: 9,
                    rung: 0,
                    batch_size: 128,
                },
            )
            .unwrap();
        self.store
            .set_size(id, 100_000 * candidate.0, 1_000_000)
            .unwrap();
        id
    }

    /// Trains `trial` through `epochs` (0-based) with validation accuracy `val(epoch)` and, for
    /// a final trial only (as the search evaluates the test set), test accuracy 0.01 below it,
    /// then ends the attempt as `status`.
    fn train(
        &self,
        trial: TrialId,
        epochs: std::ops::Range<usize>,
        val: impl Fn(usize) -> f64,
        status: TrialStatus,
    ) {
        let tested = self.store.trial(trial).unwrap().phase == Phase::Final;
        self.store.start_trial(trial, "cpu").unwrap();
        for e in epochs {
            self.store
                .record_epoch(&Epoch {
                    trial,
                    metrics: EpochMetrics {
                        epoch: e,
                        lr: 0.1,
                        train_loss: 1.0,
                        train_acc: val(e),
                        val_loss: Some(1.0),
                        val_acc: Some(val(e)),
                        test_loss: tested.then_some(1.0),
                        test_acc: tested.then(|| val(e) - 0.01),
                        images_per_sec: 1000.0,
                        epoch_seconds: 1.5,
                    },
                })
                .unwrap();
        }
        let err = (status != TrialStatus::Done).then_some("boom");
        self.store.finish_trial(trial, status, err, 2.0).unwrap();
    }
}

/// The search below, in numbers:
///
/// | candidate | contraction | search                          | baseline   | finals     |
/// |-----------|-------------|---------------------------------|------------|------------|
/// | A (1)     | 0.70        | rungs 1→3→9 epochs, 0.50 → 0.74 |            | FINAL_A    |
/// | B (2)     | 0.80        | rungs 1→3, 0.45 → 0.53          |            | FINAL_B    |
/// | C (3)     | 0.90        | rung 1, 0.40                    | 9 ep, 0.67 | FINAL_C    |
/// | D (4)     | 0.95        | rung 1, 0.30                    |            |            |
/// | E (5)     | 0.60        | diverged, no epoch              |            |            |
/// | F (6)     | 0.85        | failed, no epoch                |            |            |
/// | G (7)     | -           |                                 | 9 ep, 0.62 |            |
fn synthetic(dir: &Path, final_c: [f64; 3]) {
    let store = Store::open(&dir.join("search.db")).unwrap();
    let cfg = config::parse(Path::new("synthetic.yaml"), CONFIG_YAML).unwrap();
    let exp = store
        .create_experiment(
            "synthetic",
            CONFIG_YAML,
            &serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
    let db = Db { store, exp };
    db.store.event(None, "search started").unwrap();
    let a = db.candidate("A", "heavy_ball.yaml", &[("beta", 0.5)], Some(0.70), false);
    let b = db.candidate("B", "nesterov.yaml", &[], Some(0.80), false);
    // C is the reference (gradient descent): re-trained with the finalists' seeds.
    let c = db.candidate("C", "gradient_descent.yaml", &[], Some(0.90), true);
    let d = db.candidate("D", "heavy_ball.yaml", &[("beta", 0.1)], Some(0.95), false);
    let e = db.candidate("E", "heavy_ball.yaml", &[("beta", 0.9)], Some(0.60), false);
    let f = db.candidate("F", "nesterov_theta.yaml", &[], Some(0.85), false);
    let g = db.candidate("G", "gradient_descent.yaml", &[("h", 0.5)], None, false);

    // ASHA: every search trial trains 1 epoch; A and B are promoted to 3, A to 9.
    let ta = db.trial(a, Phase::Search, 1, 1);
    let tb = db.trial(b, Phase::Search, 1, 1);
    let tc = db.trial(c, Phase::Search, 1, 1);
    let td = db.trial(d, Phase::Search, 1, 1);
    let te = db.trial(e, Phase::Search, 1, 1);
    let tf = db.trial(f, Phase::Search, 1, 1);
    let va = |e: usize| 0.50 + 0.03 * e as f64;
    let vb = |e: usize| 0.45 + 0.04 * e as f64;
    db.train(ta, 0..1, va, TrialStatus::Done);
    db.train(tb, 0..1, vb, TrialStatus::Done);
    db.train(tc, 0..1, |_| 0.40, TrialStatus::Done);
    db.train(td, 0..1, |_| 0.30, TrialStatus::Done);
    db.train(te, 0..0, |_| 0.0, TrialStatus::Diverged);
    db.event(Some(te), "diverged: the loss is NaN at step 12")
        .unwrap();
    db.store.start_trial(tf, "cpu").unwrap();
    db.train(tf, 0..0, |_| 0.0, TrialStatus::Failed);
    db.event(Some(tf), "failed twice: the trial process was killed")
        .unwrap();
    for t in [ta, tb] {
        db.store.promote(t, 1, 3).unwrap();
    }
    db.train(ta, 1..3, va, TrialStatus::Done);
    db.train(tb, 1..3, vb, TrialStatus::Done);
    db.store.promote(ta, 2, 9).unwrap();
    db.train(ta, 3..9, va, TrialStatus::Done);

    // The random baseline at the full budget.
    let bc = db.trial(c, Phase::Baseline, 2, 9);
    db.train(bc, 0..9, |e| 0.35 + 0.04 * e as f64, TrialStatus::Done);
    let bg = db.trial(g, Phase::Baseline, 3, 9);
    db.train(bg, 0..9, |e| 0.30 + 0.04 * e as f64, TrialStatus::Done);

    // Finalists and the reference, three seeds each: the last epoch's test accuracy is the
    // given one.
    for (cand, finals) in [(a, FINAL_A), (b, FINAL_B), (c, final_c)] {
        for (seed, acc) in finals.iter().enumerate() {
            let t = db.trial(cand, Phase::Final, 10 + seed as u64, 9);
            let acc = *acc;
            db.train(
                t,
                0..9,
                move |e| acc + 0.01 - 0.02 * (8 - e) as f64,
                TrialStatus::Done,
            );
        }
    }
    // A's best trial has its picture on disk; the others are drawn from their specs.
    let pic = dir.join(format!("trials/{:04}", ta.0));
    std::fs::create_dir_all(&pic).unwrap();
    std::fs::write(
        pic.join("topology.svg"),
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60" viewBox="0 0 200 60"><rect width="200" height="60" fill="#eee"/><text x="10" y="35">picture of A</text></svg>"##,
    )
    .unwrap();
}

impl std::ops::Deref for Db {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sample_std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

/// Splits a CSV line, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn report_ranks_candidates_and_writes_csv_json_html() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic(tmp.path(), FINAL_C);
    let opts = ReportOptions { top_k: 3 };
    let (text, paths) = write_report(tmp.path(), &opts).unwrap();
    assert_eq!(paths.csv, tmp.path().join("report/leaderboard.csv"));
    let mut files: Vec<String> = std::fs::read_dir(tmp.path().join("report"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["leaderboard.csv", "leaderboard.json", "report.html"]
    );

    // CSV, on validation only: the candidates with final trials first (B's mean beats A's and
    // the reference C's), then by rung and score, then the baseline-only candidate, then the
    // faults.
    let csv = std::fs::read_to_string(&paths.csv).unwrap();
    let lines: Vec<Vec<String>> = csv.lines().map(csv_fields).collect();
    assert_eq!(lines[0], CSV_HEADER);
    let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
    let rows = &lines[1..];
    let names: Vec<&str> = rows.iter().map(|r| r[col("name")].as_str()).collect();
    assert_eq!(names, ["B", "A", "C", "D", "G", "E", "F"]);
    let ranks: Vec<&str> = rows.iter().map(|r| r[col("rank")].as_str()).collect();
    assert_eq!(ranks, ["1", "2", "3", "4", "5", "6", "7"]);
    let num = |r: &Vec<String>, c: &str| r[col(c)].parse::<f64>().unwrap();
    for (row, finals) in [
        (&rows[0], FINAL_B),
        (&rows[1], FINAL_A),
        (&rows[2], FINAL_C),
    ] {
        assert!(
            close(num(row, "final_val_mean"), mean(&finals) + 0.01),
            "{row:?}"
        );
        assert!(
            close(num(row, "final_val_std"), sample_std(&finals)),
            "{row:?}"
        );
        assert_eq!(row[col("final_n")], "3");
    }
    // No column holds a test accuracy.
    assert!(
        CSV_HEADER.iter().all(|h| !h.contains("test")),
        "{CSV_HEADER:?}"
    );
    let a = &rows[1];
    assert_eq!(
        (
            a[col("highest_rung")].as_str(),
            a[col("rung_epochs")].as_str()
        ),
        ("2", "9")
    );
    assert!(close(num(a, "val_acc"), 0.50 + 0.03 * 8.0));
    assert_eq!(a[col("params")], "beta=0.5");
    assert_eq!(
        a[col("epochs")],
        "36",
        "9 search epochs and 3 × 9 final ones"
    );
    assert_eq!(a[col("reference")], "false");
    assert_eq!(a[col("phases")], "search+final");
    let b = &rows[0];
    assert_eq!(b[col("highest_rung")], "1");
    assert!(close(num(b, "val_acc"), 0.45 + 0.04 * 2.0));
    let c = &rows[2];
    assert_eq!(
        (
            c[col("highest_rung")].as_str(),
            c[col("phases")].as_str(),
            c[col("reference")].as_str()
        ),
        ("0", "search+baseline+final", "true")
    );
    assert!(close(num(c, "baseline_val"), 0.35 + 0.04 * 8.0));
    assert_eq!(c[col("epochs")], "37");
    let g = &rows[4];
    assert_eq!(
        (g[col("highest_rung")].as_str(), g[col("final_n")].as_str()),
        ("", "")
    );
    assert!(close(num(g, "baseline_val"), 0.30 + 0.04 * 8.0));
    assert_eq!(g[col("contraction")], "");
    let counts = |r: &Vec<String>| {
        ["diverged", "oom", "failed"].map(|k| r[col(k)].parse::<usize>().unwrap())
    };
    assert_eq!(counts(&rows[5]), [1, 0, 0]);
    assert_eq!(counts(&rows[6]), [0, 0, 1]);
    assert_eq!(rows[0][col("parameters")], "200000");

    // JSON: rungs, budgets, the comparison and the hypothesis test.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&paths.json).unwrap()).unwrap();
    assert_eq!(json["format"], "optarch-report");
    assert_eq!(json["schedule"]["rungs"], serde_json::json!([1, 3, 9]));
    let rungs = json["rungs"].as_array().unwrap();
    let reached: Vec<u64> = rungs
        .iter()
        .map(|r| r["reached"].as_u64().unwrap())
        .collect();
    assert_eq!(reached, [4, 2, 1]);
    assert_eq!(rungs[0]["promoted"], 2);
    assert_eq!(rungs[1]["promoted"], 1);
    assert!(rungs[2]["promoted"].is_null());
    assert!(close(
        rungs[0]["median"].as_f64().unwrap(),
        (0.45 + 0.40) / 2.0
    ));
    assert!(close(rungs[0]["best"].as_f64().unwrap(), 0.50));
    assert_eq!(rungs[0]["tau_next"], 1.0);
    let budget = &json["budget"];
    assert_eq!(
        [
            &budget["search"]["epochs"],
            &budget["baseline"]["epochs"],
            &budget["final"]["epochs"]
        ],
        [14, 18, 81]
    );
    assert_eq!(json["comparison"]["search"]["name"], "A");
    assert!(close(
        json["comparison"]["search"]["score"].as_f64().unwrap(),
        0.74
    ));
    assert_eq!(json["comparison"]["baseline"]["name"], "C");
    assert!(close(
        json["comparison"]["baseline"]["score"].as_f64().unwrap(),
        0.67
    ));
    // The unbiased estimate: B's test accuracy, and B − C paired by seed: (0.14, 0.14, 0.12),
    // mean 0.1333, sd 0.0115, 95 % half-width 4.303 · 0.0115 / √3 = 0.0287: resolved.
    let est = &json["estimate"];
    assert_eq!(est["winner"], "B");
    assert!(close(est["test"]["mean"].as_f64().unwrap(), mean(&FINAL_B)));
    let vs = &est["references"][0];
    assert_eq!(vs["reference"], "C");
    let d = &vs["difference"];
    let diffs: Vec<f64> = FINAL_B.iter().zip(FINAL_C).map(|(b, c)| b - c).collect();
    let half = 4.303 * sample_std(&diffs) / 3f64.sqrt();
    assert_eq!(d["n"], 3);
    assert!(close(d["mean"].as_f64().unwrap(), mean(&diffs)));
    assert!(close(
        d["hi"].as_f64().unwrap() - d["mean"].as_f64().unwrap(),
        half
    ));
    // Contraction against first-rung accuracy: A .70/.50, B .80/.45, C .90/.40, D .95/.30 —
    // a perfectly falling order, which supports the hypothesis. Of the 24 orders of 4 points,
    // 2 are as extreme.
    let corr = json["correlations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["rate"] == "contraction" && c["accuracy"].as_str().unwrap().contains("first rung")
        })
        .unwrap();
    assert_eq!(corr["n"], 4);
    assert_eq!(corr["kendall_tau"], -1.0);
    assert_eq!(corr["spearman_rho"], -1.0);
    assert!(close(corr["p_value"].as_f64().unwrap(), 2.0 / 24.0));
    let faults: Vec<&str> = json["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(faults, ["diverged", "failed"]);
    assert_eq!(json["events"].as_array().unwrap().len(), 3);

    // The terminal text: the same order, and the baseline comparison.
    let order: Vec<usize> = ["  B  ", "  A  ", "  C  ", "  D  ", "  G  "]
        .iter()
        .map(|n| {
            text.find(n)
                .unwrap_or_else(|| panic!("{n} missing:\n{text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        text.contains("85.33 ± 1.53 % (n=3)"),
        "final validation of B: {text}"
    );
    assert!(
        text.contains("unbiased estimate (test set, never used to choose): B 84.33 ± 1.53 % (n=3)"),
        "{text}"
    );
    assert!(
        text.contains(
            "against C 71.00 ± 1.00 % (n=3): +13.33 points, 95 % interval [+10.46, +16.20] over \
             3 paired seeds: resolved"
        ),
        "{text}"
    );
    assert!(
        text.contains("baseline (random search, 2 trials, 18 epochs): best C"),
        "{text}"
    );
    assert!(
        text.contains("search − baseline: +7.00 points validation"),
        "{text}"
    );
    assert!(
        !text.contains("test 3"),
        "no test figure outside the estimate and the finals: {text}"
    );
    // Every candidate with final trials, on validation and test.
    for line in [
        "  B  val 85.33 ± 1.53 % (n=3)  test 84.33 ± 1.53 % (n=3)\n",
        "  A  val 82.00 ± 1.00 % (n=3)  test 81.00 ± 1.00 % (n=3)\n",
        "  C  val 72.00 ± 1.00 % (n=3)  test 71.00 ± 1.00 % (n=3)  (reference)\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    // The first rung against the finals' ranking: A, B, C score 0.50, 0.45, 0.40 there and
    // 0.82, 0.853, 0.72 at the end; one discordant pair of three gives τ = 1/3.
    assert!(
        text.contains(
            "  rung 1 (1 epoch, 11 % of a full run): 4 scored, 2 promoted; τ next +1.000 \
             (n = 2), τ finals +0.333 (n = 3)"
        ),
        "{text}"
    );
    assert!(
        text.contains("  rung 3 (9 epochs, 100 % of a full run): 1 scored, - promoted;"),
        "{text}"
    );
    assert!(text.contains("Spearman ρ"), "{text}");

    // The page: self-contained, with the top 3 pictures and the hypothesis in words.
    let html = std::fs::read_to_string(&paths.html).unwrap();
    for banned in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script src",
        "@import",
        "url(http",
    ] {
        assert!(!html.contains(banned), "the page must not load {banned}");
    }
    assert_eq!(html.matches("src=\"data:image/svg+xml;base64,").count(), 3);
    assert!(
        html.contains(&format!("#2 A: trials/{:04}/topology.svg", 1)),
        "A's own picture"
    );
    assert_eq!(
        html.matches("drawn from its spec at 5 steps").count(),
        2,
        "B and C"
    );
    assert!(html.contains("supports the hypothesis"));
    assert!(html.contains("<strong>negative</strong>"));
    assert!(html.contains("diverged: the loss is NaN at step 12"));
    assert_eq!(
        html.matches("<svg xmlns").count(),
        9,
        "history ×2, rate, parallel coordinates, Pareto ×2, curves ×2, timeline"
    );
    assert!(!html.contains("999999"), "float noise on the page");

    // OPTARCH_REPORT_KEEP=DIR keeps the page to look at.
    if let Some(keep) = std::env::var_os("OPTARCH_REPORT_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&paths.html, Path::new(&keep).join("report.html")).unwrap();
    }
    render_in_chromium(&paths.html, "ok 3 images, 9 charts");
}

/// When a reference wins on validation, the best finalist that is no reference is the one
/// compared with it on the test set.
#[test]
fn a_winning_reference_is_compared_with_the_best_finalist() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic(tmp.path(), [0.90, 0.91, 0.92]);
    let (text, _) = write_report(tmp.path(), &ReportOptions { top_k: 1 }).unwrap();
    assert!(
        text.contains("unbiased estimate (test set, never used to choose): C 91.00 ± 1.00 % (n=3)"),
        "{text}"
    );
    // B − C by seed: (−0.06, −0.05, −0.09).
    assert!(
        text.contains(
            "B (the best finalist that is no reference, 84.33 ± 1.53 % (n=3)) against C 91.00 ± \
             1.00 % (n=3): -6.67 points"
        ),
        "{text}"
    );
}

#[test]
fn rank_correlations_on_known_vectors() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let up = [2.0, 4.0, 8.0, 16.0, 32.0];
    let down = [5.0, 4.0, 3.0, 2.0, 1.0];
    assert_eq!(kendall_tau(&x, &up), Some(1.0));
    assert_eq!(spearman_rho(&x, &up), Some(1.0));
    assert_eq!(kendall_tau(&x, &down), Some(-1.0));
    assert_eq!(spearman_rho(&x, &down), Some(-1.0));
    // With a tie in x: pairs (1,2), (1,3), (1,4), (2,4), (3,4) agree, (2,3) is tied in x.
    // τ-b = 5 / √(5 · 6); ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]:
    // ρ = 4.5 / √(4.5 · 5).
    let (tx, ty) = ([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0]);
    assert!(close(kendall_tau(&tx, &ty).unwrap(), 5.0 / 30f64.sqrt()));
    assert!(close(spearman_rho(&tx, &ty).unwrap(), 4.5 / 22.5f64.sqrt()));
    assert_eq!(kendall_tau(&[1.0], &[1.0]), None);
    assert_eq!(spearman_rho(&x, &[3.0; 5]), None);
}

/// `optarch report DIR --json` prints leaderboard.json's content, and writes the files.
#[test]
fn report_json_prints_the_leaderboard() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic(tmp.path(), FINAL_C);
    let out = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .arg("report")
        .arg(tmp.path())
        .args(["--json", "--top-k", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("report/leaderboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, file);
    assert!(tmp.path().join("report/report.html").is_file());
}

#[test]
fn a_directory_without_a_search_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let e = write_report(tmp.path(), &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("search.db not found"), "{e}");
    assert!(e.contains("optarch search --out"), "{e}");
    // A database whose search never started.
    Store::open(&tmp.path().join("search.db")).unwrap();
    let e = write_report(tmp.path(), &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no experiment"), "{e}");
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OPTARCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
    .find(|p| p.is_file())
}

/// Runs Chromium headless with `args` on `page` (a fragment such as `#selftest` may follow),
/// stdout into a file; kills it after 90 s.
fn run_chromium(bin: &Path, args: &[String], page: &Path, fragment: &str, stdout: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}{fragment}", page.display()))
        .stdout(Stdio::from(std::fs::File::create(stdout).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Chromium, or `None` after saying why the browser check is skipped (an error under CI).
fn browser() -> Option<PathBuf> {
    let bin = chromium();
    if bin.is_none() {
        let msg = "Chromium is not installed, so the HTML report was not rendered: install it \
                   with `apt-get install -y chromium` (Debian), or point OPTARCH_CHROMIUM at a \
                   Chromium or Chrome binary";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED the browser check: {msg}");
    }
    bin
}

/// The text of the element `id` in a DOM Chromium dumped.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    dom.split(&format!("id=\"{id}\">"))
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no #{id} in the DOM Chromium dumped:\n{dom:.2000}"))
}

/// Loads `page#run-selftest` in a window `width` pixels wide: the page sorts, filters, hovers and
/// opens a candidate itself and reports what it saw in `#selftest`. Returns that report.
fn selftest_in_chromium(bin: &Path, page: &Path, width: u32) -> String {
    let out = tempfile::tempdir().unwrap();
    let dom = out.path().join("dom.html");
    run_chromium(
        bin,
        &["--dump-dom".into(), format!("--window-size={width},1000")],
        page,
        "#run-selftest",
        &dom,
    );
    let dom = std::fs::read_to_string(&dom).unwrap();
    element_text(&dom, "selftest").to_string()
}

/// A screenshot's luminance averaged over blocks of `BLOCK` × `BLOCK` pixels: what a layout
/// comparison needs, blind to anti-aliasing and to text that changes from run to run (times).
const BLOCK: usize = 20;

struct Blocks {
    w: usize,
    h: usize,
    v: Vec<u8>,
}

impl Blocks {
    fn of_png(path: &Path) -> Blocks {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let (pw, ph) = (info.width as usize, info.height as usize);
        let (w, h) = (pw / BLOCK, ph / BLOCK);
        let mut v = vec![0u8; w * h];
        for by in 0..h {
            for bx in 0..w {
                let mut sum = 0u64;
                for y in by * BLOCK..(by + 1) * BLOCK {
                    for x in bx * BLOCK..(bx + 1) * BLOCK {
                        let p = &buf[(y * pw + x) * channels..];
                        let lum = if channels >= 3 {
                            (299 * u64::from(p[0]) + 587 * u64::from(p[1]) + 114 * u64::from(p[2]))
                                / 1000
                        } else {
                            u64::from(p[0])
                        };
                        sum += lum;
                    }
                }
                v[by * w + bx] = (sum / (BLOCK * BLOCK) as u64) as u8;
            }
        }
        Blocks { w, h, v }
    }

    fn text(&self) -> String {
        let mut s = format!("{} {}\n", self.w, self.h);
        for row in self.v.chunks(self.w) {
            s.extend(row.iter().map(|b| format!("{b:02x}")));
            s.push('\n');
        }
        s
    }

    fn parse(text: &str) -> Blocks {
        let mut lines = text.lines();
        let dims: Vec<usize> = lines
            .next()
            .unwrap()
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
        let v = lines
            .flat_map(|l| {
                (0..l.len() / 2).map(move |i| u8::from_str_radix(&l[2 * i..2 * i + 2], 16).unwrap())
            })
            .collect();
        Blocks {
            w: dims[0],
            h: dims[1],
            v,
        }
    }

    /// The share of blocks that differ by more than 40 levels from `other`'s, at the best
    /// vertical offset within ±4 blocks (a line more or less above shifts the rest).
    fn differ(&self, other: &Blocks) -> f64 {
        assert_eq!(self.w, other.w, "widths differ");
        (-4i64..=4)
            .map(|dy| {
                let (mut n, mut bad) = (0usize, 0usize);
                for y in 0..self.h as i64 {
                    let oy = y + dy;
                    if oy < 0 || oy >= other.h as i64 {
                        continue;
                    }
                    for x in 0..self.w {
                        n += 1;
                        let (a, b) = (
                            self.v[y as usize * self.w + x],
                            other.v[oy as usize * other.w + x],
                        );
                        if a.abs_diff(b) > 40 {
                            bad += 1;
                        }
                    }
                }
                bad as f64 / n.max(1) as f64
            })
            .fold(1.0, f64::min)
    }
}

/// Screenshots `page` `width` pixels wide and compares its blocks with
/// `tests/golden/report-{width}.blocks` (written anew with `OPTARCH_BLESS=1`).
fn compare_screenshot(bin: &Path, page: &Path, width: u32) {
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("shot.png");
    run_chromium(
        bin,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},2400"),
            "--hide-scrollbars".into(),
        ],
        page,
        "",
        &out.path().join("stdout.txt"),
    );
    let got = Blocks::of_png(&png);
    let white = got.v.iter().filter(|b| **b > 245).count() as f64 / got.v.len() as f64;
    assert!(
        white < 0.95,
        "the screenshot is {:.0} % white",
        100.0 * white
    );
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/report-{width}.blocks"));
    if std::env::var("OPTARCH_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, got.text()).unwrap();
        eprintln!("wrote {}", golden.display());
        return;
    }
    let want = Blocks::parse(&std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (OPTARCH_BLESS=1 cargo test -p optarch-search --test report writes it)",
            golden.display()
        )
    }));
    let d = got.differ(&want);
    eprintln!(
        "screenshot at {width} px: {:.1} % of blocks differ from the golden one",
        100.0 * d
    );
    if d > 0.10 {
        let keep = std::env::temp_dir().join(format!("optarch-report-{width}.png"));
        let _ = std::fs::copy(&png, &keep);
        panic!(
            "the page at {width} px differs from its golden layout in {:.1} % of its blocks \
             (the limit is 10 %); the screenshot is at {}; if the change is meant, \
             OPTARCH_BLESS=1 cargo test -p optarch-search --test report writes it anew",
            100.0 * d,
            keep.display()
        );
    }
}

/// Loads the page in headless Chromium: the page's own check must report `expect`, and a
/// screenshot must come out.
fn render_in_chromium(page: &Path, expect: &str) {
    let Some(bin) = browser() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let dom = out.path().join("dom.html");
    run_chromium(&bin, &["--dump-dom".into()], page, "", &dom);
    let dom = std::fs::read_to_string(&dom).unwrap();
    assert_eq!(
        element_text(&dom, "render-check"),
        expect,
        "the page's render check"
    );

    let png = out.path().join("shot.png");
    run_chromium(
        &bin,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,3000".into(),
            "--hide-scrollbars".into(),
        ],
        page,
        "",
        &out.path().join("stdout.txt"),
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "{} bytes",
        bytes.len()
    );
}

/// The page as people use it, in a real browser at 1400 and 800 pixels: a click on a heading
/// sorts the leaderboard both ways, the filter keeps matching rows, a hover over a chart mark
/// shows its tooltip, a click on a row shows the candidate's curves and topology, nothing is
/// wider than the window; and the layout matches its golden screenshot at both widths.
#[test]
fn the_report_page_sorts_filters_hovers_and_keeps_its_layout() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic(tmp.path(), FINAL_C);
    let (_, paths) = write_report(tmp.path(), &ReportOptions { top_k: 3 }).unwrap();
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert!(html.contains("<table id=board>"));
    assert_eq!(
        html.matches("<tr data-cand=").count(),
        7,
        "one row per candidate"
    );
    assert!(html.contains("class=\"chart parallel\"") && html.contains("class=\"chart timeline\""));
    let Some(bin) = browser() else {
        return;
    };
    for width in [1400, 800] {
        let report = selftest_in_chromium(&bin, &paths.html, width);
        assert!(
            report.starts_with("ok: sorted 7 rows"),
            "{width} px: {report}"
        );
        assert!(
            report.contains("details with 4 curves and 1 picture"),
            "rank 1 (B) has a picture among the top 3: {report}"
        );
        compare_screenshot(&bin, &paths.html, width);
    }
}

/// A search of 1,000 trials (1,000 candidates on the first rung, a third promoted, a ninth
/// promoted again) reports in one page of a few megabytes that still sorts and opens.
#[test]
fn a_report_of_a_thousand_trials_stays_small_and_interactive() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("search.db")).unwrap();
    let cfg = config::parse(Path::new("synthetic.yaml"), CONFIG_YAML).unwrap();
    let exp = store
        .create_experiment(
            "thousand",
            CONFIG_YAML,
            &serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
    let db = Db { store, exp };
    let started = Instant::now();
    for i in 0..1000usize {
        let beta = (i % 50) as f64 / 50.0;
        let h = 0.5 + (i / 50) as f64 / 20.0;
        let c = db.candidate(
            &format!("heavy_ball[beta={beta},h={h}]"),
            "heavy_ball.yaml",
            &[("beta", beta), ("h", h)],
            Some(0.5 + beta / 2.1),
            false,
        );
        let t = db.trial(c, Phase::Search, 1, 1);
        let base = 0.3 + 0.4 * beta - 0.1 * (h - 1.0).abs() + 0.01 * (i % 7) as f64;
        let val = move |e: usize| base + 0.02 * e as f64;
        let epochs = if i % 9 == 0 {
            9
        } else if i % 3 == 0 {
            3
        } else {
            1
        };
        db.train(t, 0..epochs, val, TrialStatus::Done);
    }
    let filled = started.elapsed();
    let started = Instant::now();
    let (_, paths) = write_report(tmp.path(), &ReportOptions::default()).unwrap();
    let wrote = started.elapsed();
    let size = std::fs::metadata(&paths.html).unwrap().len();
    eprintln!(
        "1,000 trials: store filled in {:.1} s, report written in {:.2} s, report.html {:.2} MB",
        filled.as_secs_f64(),
        wrote.as_secs_f64(),
        size as f64 / 1e6
    );
    assert!(size < 4_000_000, "report.html is {size} bytes");
    if let Some(keep) = std::env::var_os("OPTARCH_REPORT_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&paths.html, Path::new(&keep).join("report-1000.html")).unwrap();
    }
    let Some(bin) = browser() else {
        return;
    };
    let report = selftest_in_chromium(&bin, &paths.html, 1400);
    assert!(report.starts_with("ok: sorted 1000 rows"), "{report}");
}
