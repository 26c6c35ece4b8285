use super::fixtures::{self, Build};
use super::layout::{columns, layout, legibility_faults, EdgeStyle};
use super::png::svg_options;
use super::*;
use crate::coef::Coef;
use crate::topology::NodeKind;
use resvg::tiny_skia::Pixmap;
use resvg::usvg;

fn all_fixtures() -> Vec<Topology> {
    vec![
        fixtures::resnet(4),
        fixtures::heavy_ball(5, 0.9),
        fixtures::lm_resnet(4),
        fixtures::nesterov(5),
        fixtures::dense_concat(4),
        fixtures::dense_sum(4),
        fixtures::midpoint(3),
        fixtures::trivial(),
        fixtures::single_node(),
    ]
}

/// The labels every non-1 edge must show.
fn non_unit_labels(topo: &Topology) -> Vec<String> {
    topo.graph
        .edge_references()
        .filter(|e| !e.weight().coef.is_one())
        .map(|e| topo.coef_label(&e.weight().coef))
        .collect()
}

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>().ok(), Some(f));
    }
    assert_eq!("PNG".parse::<Format>().ok(), Some(Format::Png));
    assert_eq!("gv".parse::<Format>().ok(), Some(Format::Dot));
    let err = "jpeg"
        .parse::<Format>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("jpeg"), "{err}");
}

#[test]
fn dot_has_one_statement_per_node_and_edge() {
    for topo in all_fixtures() {
        let dot = to_dot(&topo);
        assert!(dot.starts_with("digraph "), "{dot}");
        assert!(dot.contains("rankdir=LR"));
        assert!(dot.trim_end().ends_with('}'));
        let node_lines: Vec<&str> = dot
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with('n') && l.contains(" [label=") && !l.contains("->")
            })
            .collect();
        assert_eq!(node_lines.len(), topo.graph.node_count(), "{dot}");
        for idx in topo.graph.node_indices() {
            let decl = format!("  n{} [label=", idx.index());
            assert!(dot.contains(&decl), "missing {decl} in\n{dot}");
        }
        let edge_lines = dot.lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(edge_lines, topo.graph.edge_count(), "{dot}");
    }
}

#[test]
fn dot_labels_every_coefficient_but_one() {
    let topo = fixtures::heavy_ball(4, 0.9);
    let dot = to_dot(&topo);
    assert!(dot.contains("label=\"-0.9\""), "{dot}");
    assert!(dot.contains("label=\"1.9\""), "{dot}");
    assert!(!dot.contains("label=\"1\""), "{dot}");
    assert!(
        dot.contains("style=dashed"),
        "negative edges are dashed:\n{dot}"
    );
    for topo in all_fixtures() {
        let dot = to_dot(&topo);
        for label in non_unit_labels(&topo) {
            assert!(
                dot.contains(&format!("label=\"{label}\"")),
                "{label} missing:\n{dot}"
            );
        }
        let labelled_edges = dot
            .lines()
            .filter(|l| l.contains(" -> ") && l.contains("label="))
            .count();
        assert_eq!(labelled_edges, non_unit_labels(&topo).len());
    }
    let lm = to_dot(&fixtures::lm_resnet(3));
    assert!(lm.contains("label=\"1 - c_1\""), "{lm}");
    assert!(lm.contains("label=\"c_2\""), "{lm}");
}

#[test]
fn dot_escapes_quotes_and_backslashes() {
    let mut b = Build::new();
    let x = b.input();
    let c = b.combine(0, "say \"hi\"\\", &[(x, Coef::constant(2.0))]);
    let mut topo = b.finish("my \"net\"", 1, c);
    topo.name = "my \"net\" \\ v2".into();
    let dot = to_dot(&topo);
    assert!(dot.contains("digraph \"my \\\"net\\\" \\\\ v2\""), "{dot}");
    assert!(dot.contains("say \\\"hi\\\"\\\\"), "{dot}");
    // Every quote inside a statement is escaped: an even number of unescaped quotes per line.
    for line in dot.lines() {
        let bytes = line.as_bytes();
        let mut unescaped = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 1,
                b'"' => unescaped += 1,
                _ => {}
            }
            i += 1;
        }
        assert_eq!(unescaped % 2, 0, "unbalanced quotes in {line}");
    }
}

#[test]
fn columns_follow_the_longest_path() {
    let topo = fixtures::resnet(4);
    let col = columns(&topo);
    // x, B0, z[1], B1, z[2], ... out
    assert_eq!(col, (0..topo.graph.node_count()).collect::<Vec<_>>());
    let topo = fixtures::midpoint(1);
    let col = columns(&topo);
    let labels: Vec<(String, usize)> = topo
        .graph
        .node_indices()
        .map(|i| (topo.graph[i].label(), col[i.index()]))
        .collect();
    let find = |l: &str| labels.iter().find(|(n, _)| n == l).map(|(_, c)| *c);
    assert_eq!(find("m[0]"), find("s[0]"), "{labels:?}");
    assert_eq!(find("z[1]"), find("B0.1").map(|c| c + 1));
}

#[test]
fn main_path_is_straight_and_skips_are_arcs() {
    let topo = fixtures::resnet(5);
    let lay = layout(&topo);
    assert!(lay.nodes.iter().all(|p| p.y == 0.0));
    let xs: Vec<f64> = lay.nodes.iter().map(|p| p.x).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    // The identity of each step spans two columns: one arc per step.
    assert_eq!(lay.arcs.len(), 5);
    assert_eq!(lay.lines.len(), topo.graph.edge_count() - 5);
    // Same-column nodes get different rows.
    let lay = layout(&fixtures::midpoint(2));
    let mut seen = std::collections::HashSet::new();
    for p in &lay.nodes {
        assert!(
            seen.insert((p.x.to_bits(), p.y.to_bits())),
            "two nodes at one place"
        );
    }
}

#[test]
fn heavy_ball_momentum_arcs_go_to_the_other_side() {
    let topo = fixtures::heavy_ball(6, 0.9);
    let lay = layout(&topo);
    let negative: Vec<_> = lay
        .arcs
        .iter()
        .filter(|a| a.style == EdgeStyle::Negative)
        .collect();
    let positive: Vec<_> = lay
        .arcs
        .iter()
        .filter(|a| a.style == EdgeStyle::Positive)
        .collect();
    assert_eq!(negative.len(), 5);
    assert_eq!(positive.len(), 6);
    assert!(
        positive.iter().all(|a| a.point(0.5).1 < 0.0),
        "identity/1+β arcs above"
    );
    assert!(
        negative.iter().all(|a| a.point(0.5).1 > 0.0),
        "-β arcs below"
    );
    assert!(negative.iter().all(|a| a.label.as_deref() == Some("-0.9")));
}

#[test]
fn nested_arcs_never_share_a_height() {
    for topo in [
        fixtures::dense_concat(6),
        fixtures::dense_sum(5),
        fixtures::heavy_ball(8, 0.5),
    ] {
        let lay = layout(&topo);
        let span = |a: &super::layout::Arc| (a.from.0.min(a.to.0), a.from.0.max(a.to.0));
        for a in &lay.arcs {
            for b in &lay.arcs {
                let (sa, sb) = (span(a), span(b));
                let same_side = (a.point(0.5).1 < 0.0) == (b.point(0.5).1 < 0.0);
                let strictly_inside = sb.0 >= sa.0 - 20.0 && sb.1 <= sa.1 + 20.0 && sb != sa;
                if same_side && strictly_inside && (sb.1 - sb.0) < (sa.1 - sa.0) - 30.0 {
                    assert!(
                        a.point(0.5).1.abs() > b.point(0.5).1.abs() + 5.0,
                        "{}: outer arc {sa:?} at {} not beyond inner {sb:?} at {}",
                        topo.name,
                        a.point(0.5).1,
                        b.point(0.5).1
                    );
                }
            }
        }
    }
}

fn parse(svg: &str) -> usvg::Tree {
    match usvg::Tree::from_str(svg, &svg_options()) {
        Ok(tree) => tree,
        Err(e) => unreachable!("SVG does not parse: {e}\n{svg}"),
    }
}

fn count_text(group: &usvg::Group) -> usize {
    group
        .children()
        .iter()
        .map(|n| match n {
            usvg::Node::Group(g) => count_text(g),
            usvg::Node::Text(_) => 1,
            _ => 0,
        })
        .sum()
}

#[test]
fn svg_parses_and_shows_every_label() {
    for topo in all_fixtures() {
        let svg = to_svg(&topo);
        let tree = parse(&svg);
        assert!(tree.size().width() > 100.0 && tree.size().height() > 50.0);
        assert!(
            svg.contains(&format!(">{}</text>", topo.name)),
            "title missing"
        );
        assert!(svg.contains(&format!("{} step", topo.steps)));
        for label in non_unit_labels(&topo) {
            assert!(
                svg.contains(&format!(">{}</text>", xml_escape(&label))),
                "{label}\n{svg}"
            );
        }
        for idx in topo.graph.node_indices() {
            let node = &topo.graph[idx];
            let shown = match node.kind {
                NodeKind::Combine | NodeKind::Concat if !node.names.is_empty() => {
                    node.names.join("=")
                }
                NodeKind::Combine => "Σ".into(),
                NodeKind::Concat => "cat".into(),
                _ => node.label(),
            };
            assert!(
                svg.contains(&format!(">{}</text>", xml_escape(&shown))),
                "{shown}"
            );
        }
        assert!(svg.contains("font-family=\"'DejaVu Sans', Arial, Helvetica, sans-serif\""));
        // Text survives parsing with the embedded font (usvg drops text it cannot shape).
        assert!(
            count_text(tree.root()) >= topo.graph.node_count() + 2,
            "{}",
            topo.name
        );
    }
}

#[test]
fn svg_escapes_markup_in_names() {
    let mut b = Build::new();
    let x = b.input();
    let c = b.combine(0, "a<b>&c", &[(x, Coef::constant(-3.0))]);
    let mut topo = b.finish("x & <y>", 1, c);
    topo.name = "net <&> \"q\"".into();
    let svg = to_svg(&topo);
    parse(&svg);
    assert!(svg.contains("a&lt;b&gt;&amp;c"));
    assert!(svg.contains("net &lt;&amp;&gt; &quot;q&quot;"));
}

fn decode(png: &[u8]) -> Pixmap {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    match Pixmap::decode_png(png) {
        Ok(p) => p,
        Err(e) => unreachable!("PNG does not decode: {e}"),
    }
}

/// Pixels darker than mid grey inside `[x0, x1) × [y0, y1)`.
fn dark_pixels(p: &Pixmap, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    let mut n = 0;
    for y in y0..y1.min(p.height()) {
        for x in x0..x1.min(p.width()) {
            if let Some(c) = p.pixel(x, y) {
                let luma = 0.3 * c.red() as f64 + 0.59 * c.green() as f64 + 0.11 * c.blue() as f64;
                if luma < 128.0 {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn png_decodes_at_the_svg_size_and_is_not_blank() {
    for topo in [
        fixtures::resnet(4),
        fixtures::heavy_ball(4, 0.9),
        fixtures::dense_concat(4),
    ] {
        let png = match render(&topo, Format::Png) {
            Ok(png) => png,
            Err(e) => unreachable!("{e}"),
        };
        let pix = decode(&png);
        let size = parse(&to_svg(&topo)).size();
        assert_eq!(pix.width(), (size.width() * 2.0).ceil() as u32);
        assert_eq!(pix.height(), (size.height() * 2.0).ceil() as u32);
        let (w, h) = (pix.width(), pix.height());
        let dark = dark_pixels(&pix, 0, 0, w, h);
        assert!(dark > 2000, "{}: only {dark} dark pixels", topo.name);
        assert!(dark < (w * h / 4) as usize, "{}: mostly dark", topo.name);
        // The title is plain text at (16, 26) in SVG units: dark pixels there mean the
        // embedded font rendered.
        let title_w = (super::layout::text_width(&topo.name, 16.0) * 2.0) as u32;
        let title = dark_pixels(&pix, 32, 24, 32 + title_w, 60);
        assert!(
            title > 150,
            "{}: title not rendered ({title} dark pixels)",
            topo.name
        );
        // Left of the title and above it is background.
        assert_eq!(dark_pixels(&pix, 0, 0, 24, 20), 0);
    }
}

#[test]
fn png_uses_only_the_embedded_font() {
    let opt = svg_options();
    assert_eq!(
        opt.fontdb.len(),
        2,
        "regular and bold DejaVu Sans, no system fonts"
    );
    let families: Vec<String> = opt
        .fontdb
        .faces()
        .flat_map(|f| f.families.iter().map(|(n, _)| n.clone()))
        .collect();
    assert!(families.iter().all(|f| f == "DejaVu Sans"), "{families:?}");
}

#[test]
fn tiny_and_large_topologies_render() {
    for topo in [fixtures::single_node(), fixtures::trivial()] {
        for f in Format::ALL {
            assert!(
                render(&topo, f).is_ok_and(|b| !b.is_empty()),
                "{} {f}",
                topo.name
            );
        }
    }
    // Wide pictures stay within the pixel budget.
    for topo in [fixtures::resnet(300), fixtures::dense_concat(30)] {
        let png = to_png(&topo).unwrap_or_default();
        let pix = decode(&png);
        assert!(pix.width() <= 32_000, "{}", pix.width());
        assert!(pix.width() as u64 * pix.height() as u64 <= 12_100_000);
        assert!(dark_pixels(&pix, 0, 0, pix.width(), pix.height()) > 10_000);
    }
}

/// Writes sample pictures when `OPTARCH_RENDER_SAMPLES` names a folder (for looking at them).
#[test]
fn write_samples_when_asked() {
    let Some(dir) = std::env::var_os("OPTARCH_RENDER_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let mut topos = all_fixtures();
    topos.extend([
        fixtures::resnet(24),
        fixtures::heavy_ball(24, 0.9),
        fixtures::dense_concat(16),
    ]);
    topos.extend([fixtures::dense_sum(12), fixtures::nesterov(20)]);
    topos.extend(shipped(6).into_iter().map(|mut t| {
        t.name = format!("spec_{}", t.name);
        t
    }));
    topos.extend(shipped(20).into_iter().map(|mut t| {
        t.name = format!("spec_{}", t.name);
        t
    }));
    for topo in topos {
        let stem = format!("{}_{}", topo.name, topo.steps);
        for f in Format::ALL {
            let bytes = render(&topo, f).unwrap_or_default();
            assert!(std::fs::write(dir.join(format!("{stem}.{f}")), bytes).is_ok());
        }
    }
}

/// The YAML specs shipped in `specs/`, unrolled.
fn shipped(steps: usize) -> Vec<Topology> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    paths.sort();
    let mut topos = Vec::new();
    for path in paths {
        let spec = match crate::spec::load(&path) {
            Ok(s) => s,
            Err(e) => unreachable!("{}: {e}", path.display()),
        };
        match crate::topology::unroll(&spec, steps, &Default::default()) {
            Ok(t) => topos.push(t),
            Err(e) => unreachable!("{}: {e}", path.display()),
        }
    }
    topos
}

#[test]
fn shipped_specs_render_in_every_format() {
    let topos = shipped(6);
    assert!(topos.len() >= 5, "specs/ holds the shipped specs");
    for topo in topos {
        let svg = to_svg(&topo);
        parse(&svg);
        for label in non_unit_labels(&topo) {
            assert!(
                svg.contains(&format!(">{}</text>", xml_escape(&label))),
                "{label}"
            );
        }
        let dot = to_dot(&topo);
        assert_eq!(
            dot.lines().filter(|l| l.contains(" -> ")).count(),
            topo.graph.edge_count()
        );
        let pix = decode(&to_png(&topo).unwrap_or_default());
        assert!(
            dark_pixels(&pix, 0, 0, pix.width(), pix.height()) > 2000,
            "{}",
            topo.name
        );
    }
}

#[test]
fn pictures_past_the_edge_limit_are_refused_and_dot_is_not() {
    let spec = crate::spec::load_str(
        "d.yaml",
        "name: d\nstate: [z]\nstep:\n  z[k+1]: -grad(cat(z[0..=k]))\noutput: cat(z[0..=K])\n",
    )
    .unwrap();
    let t = crate::topology::unroll(&spec, 230, &Default::default()).unwrap();
    assert!(t.graph.edge_count() > MAX_DRAWN_EDGES);
    for f in [Format::Svg, Format::Png] {
        let e = render(&t, f).unwrap_err();
        assert!(matches!(e, RenderError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("--format dot"), "{e}");
    }
    assert!(render(&t, Format::Dot).is_ok());
    // The closed-form table has a size bound too, said in its place.
    let gd = crate::spec::load_str(
        "g.yaml",
        "name: g\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n",
    )
    .unwrap();
    let big =
        crate::analysis::analyse(&crate::topology::unroll(&gd, 300, &Default::default()).unwrap())
            .unwrap();
    assert!(big.coefficients.rows.is_empty());
    assert!(big.to_string().contains("closed form       omitted"));
    let small =
        crate::analysis::analyse(&crate::topology::unroll(&gd, 250, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(small.coefficients.rows.len(), 251);
}

/// The pictures people read: every shipped spec (Adams–Bashforth 3, a three-step method, among
/// them), a generated three-step recurrence and the midpoint rule, at 4 and at 8 steps.
fn legibility_set() -> Vec<Topology> {
    let mut topos = shipped(8);
    topos.extend(shipped(4));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/methods");
    let three_step = crate::spec::load_str(
        "three.yaml",
        "name: three_step\nstate: [z]\ninit:\n  z[-1]: z[0]\n  z[-2]: z[0]\nstep:\n  \
         z[k+1]: 1.5 * z[k] - 0.8 * z[k-1] + 0.3 * z[k-2] - grad(1.25 * z[k] - 0.25 * z[k-2])\n\
         output: z\n",
    );
    let specs = vec![three_step, crate::spec::load(dir.join("midpoint.yaml"))];
    for spec in specs {
        let spec = match spec {
            Ok(s) => s,
            Err(e) => unreachable!("{e}"),
        };
        for steps in [4, 8] {
            match crate::topology::unroll(&spec, steps, &Default::default()) {
                Ok(t) => topos.push(t),
                Err(e) => unreachable!("{e}"),
            }
        }
    }
    topos
}

#[test]
fn labels_stay_clear_of_labels_nodes_and_edges() {
    let mut bad = Vec::new();
    for topo in legibility_set() {
        let lines = super::wrap::drawn_lines(&topo);
        let faults: Vec<String> = lines
            .iter()
            .flat_map(|l| legibility_faults(&l.lay))
            .collect();
        if !faults.is_empty() {
            bad.push(format!(
                "{} at {} steps: {} faults, e.g. {}",
                topo.name,
                topo.steps,
                faults.len(),
                faults[..faults.len().min(3)].join("; ")
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn wide_pictures_wrap_onto_lines_that_repeat_what_they_read() {
    use super::wrap::{drawn_lines, MAX_LINE_WIDTH};
    let mut wrapped = 0;
    for topo in legibility_set() {
        let lines = drawn_lines(&topo);
        let full = layout(&topo);
        if full.max_x - full.min_x <= MAX_LINE_WIDTH {
            assert_eq!(lines.len(), 1, "{} fits on one line", topo.name);
            continue;
        }
        wrapped += 1;
        assert!(lines.len() >= 2, "{} at {} steps", topo.name, topo.steps);
        // Every line fits, every node is drawn once (plus ghosts), every edge exactly once.
        let own_nodes: usize = lines
            .iter()
            .map(|l| l.ghosts.iter().filter(|g| !**g).count())
            .sum();
        let edges: usize = lines.iter().map(|l| l.topo.graph.edge_count()).sum();
        assert_eq!(own_nodes, topo.graph.node_count(), "{}", topo.name);
        assert_eq!(edges, topo.graph.edge_count(), "{}", topo.name);
        let mut seen: Vec<String> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let w = l.lay.max_x - l.lay.min_x;
            assert!(w <= MAX_LINE_WIDTH, "{} line {i}: {w}", topo.name);
            // A line after the first starts from a ghost of the line above; ghosts are values
            // drawn before, and only ghosts have no operands in the line.
            assert_eq!(l.ghosts.get(l.topo.input.index()), Some(&(i > 0)));
            for n in l.topo.graph.node_indices() {
                let label = l.topo.graph[n].label();
                if l.ghosts[n.index()] {
                    assert!(seen.contains(&label), "{}: ghost {label}", topo.name);
                } else {
                    seen.push(label);
                }
            }
        }
    }
    assert!(
        wrapped >= 4,
        "the 8-step Nesterov, AB3 and others wrap: {wrapped}"
    );
    // DenseNet's concatenations read every earlier map: no cut needs few enough ghosts, and it
    // stays on one line.
    let dense = fixtures::dense_concat(8);
    assert_eq!(drawn_lines(&dense).len(), 1);
}
