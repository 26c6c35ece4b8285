//! PNG output: the SVG picture rasterised by resvg with a font compiled into the binary.

use super::svg::to_svg;
use super::RenderError;
use crate::topology::Topology;
use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{self, fontdb};
use std::sync::Arc;

/// The family name of the embedded font.
const EMBEDDED_FAMILY: &str = "DejaVu Sans";

/// Pictures are drawn at twice their SVG size (crisp text) while they stay below these
/// bounds; larger ones are drawn smaller, so a dense graph of a few hundred nodes still
/// rasterises and encodes in seconds.
const MAX_SCALE: f32 = 2.0;
const MAX_SIDE: f32 = 32_000.0;
const MAX_PIXELS: f32 = 12_000_000.0;

/// Parsing options whose font database holds only DejaVu Sans (regular and bold), loaded from
/// bytes compiled into the binary: no system font is looked up, so the PNG is the same on
/// every machine, headless ones included.
pub(super) fn svg_options() -> usvg::Options<'static> {
    let mut opt = usvg::Options {
        font_family: EMBEDDED_FAMILY.to_string(),
        ..usvg::Options::default()
    };
    let db = opt.fontdb_mut();
    db.load_font_source(fontdb::Source::Binary(Arc::new(dejavu::sans::regular())));
    db.load_font_source(fontdb::Source::Binary(Arc::new(dejavu::sans::bold())));
    db.set_sans_serif_family(EMBEDDED_FAMILY);
    db.set_serif_family(EMBEDDED_FAMILY);
    db.set_monospace_family(EMBEDDED_FAMILY);
    db.set_cursive_family(EMBEDDED_FAMILY);
    db.set_fantasy_family(EMBEDDED_FAMILY);
    opt
}

/// Rasterises an SVG document to PNG bytes on a white background, with the embedded font.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, RenderError> {
    let tree = usvg::Tree::from_str(svg, &svg_options())?;
    let size = tree.size();
    let (w, h) = (size.width(), size.height());
    let scale = MAX_SCALE
        .min(MAX_SIDE / w.max(h))
        .min((MAX_PIXELS / (w * h)).sqrt());
    let (pw, ph) = ((w * scale).ceil() as u32, (h * scale).ceil() as u32);
    let mut pixmap = Pixmap::new(pw, ph).ok_or(RenderError::Pixmap {
        width: pw,
        height: ph,
    })?;
    pixmap.fill(Color::WHITE);
    resvg::render(
        &tree,
        Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| RenderError::Png(e.to_string()))
}

/// A PNG picture of `topo`: [`to_svg`](super::to_svg) rasterised at up to twice its size,
/// with the DejaVu Sans font embedded in the binary (no system fonts needed).
pub fn to_png(topo: &Topology) -> Result<Vec<u8>, RenderError> {
    svg_to_png(&to_svg(topo))
}
