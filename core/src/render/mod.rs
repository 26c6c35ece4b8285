//! Pictures of topologies: DOT, and SVG/PNG drawn by optarch itself (no Graphviz needed).
//!
//! * [`to_dot`] writes Graphviz DOT (`rankdir=LR`) for those who have Graphviz or want to feed
//!   the graph to other tools.
//! * [`to_svg`] draws a layered picture without any external program: one column per
//!   longest-path layer, read left to right, the main path on a straight line, and every skip
//!   connection (an edge spanning more than one column) as an arc above or below it, labelled
//!   with its coefficient.
//! * [`to_png`] rasterises that SVG in pure Rust (resvg) with a DejaVu Sans font compiled into
//!   the binary, so the picture looks the same on a headless machine without system fonts.
//!
//! Every function takes the [`Topology`] as it is; none of them fails on a well-formed graph.
//! Only the PNG path can fail (an SVG the rasteriser rejects, a picture too large to allocate,
//! an encoder error), which is what [`RenderError`] reports.

pub mod chart;
mod dot;
mod layout;
mod png;
mod svg;
mod wrap;

pub use dot::to_dot;
pub use png::{svg_to_png, to_png};
pub use svg::to_svg;

use crate::topology::Topology;
use std::fmt;
use std::str::FromStr;

/// What can go wrong while rendering a picture.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The SVG we produced was rejected by the rasteriser (a bug in the SVG writer).
    #[error("the generated SVG could not be parsed: {0}")]
    Svg(#[from] resvg::usvg::Error),
    /// The picture is empty or too large for a pixel buffer.
    #[error("cannot allocate a {width}×{height} pixel image")]
    Pixmap { width: u32, height: u32 },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// A format name that is not one of `dot`, `svg`, `png`.
    #[error("unknown picture format `{0}` (expected dot, svg or png)")]
    UnknownFormat(String),
    /// Too many edges to lay out and draw legibly (and quickly).
    #[error(
        "the topology has {edges} edges, more than the {max} a picture draws: unroll fewer \
         steps, or write DOT (`--format dot`), which has no limit"
    )]
    TooLarge { edges: usize, max: usize },
}

/// The most edges an SVG or PNG picture draws (a DenseNet of 200 steps has 20,300).
pub const MAX_DRAWN_EDGES: usize = 25_000;

/// A picture format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Graphviz DOT source.
    Dot,
    /// Scalable vector graphics, laid out by optarch.
    Svg,
    /// The SVG rasterised to PNG.
    Png,
}

impl Format {
    /// All formats, in the order they are documented.
    pub const ALL: [Format; 3] = [Format::Dot, Format::Svg, Format::Png];

    /// The usual file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Dot => "dot",
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = RenderError;

    /// Accepts `dot` (or `gv`), `svg` and `png`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dot" | "gv" => Ok(Format::Dot),
            "svg" => Ok(Format::Svg),
            "png" => Ok(Format::Png),
            _ => Err(RenderError::UnknownFormat(s.to_string())),
        }
    }
}

/// Renders `topo` in `format`; DOT and SVG come back as UTF-8 bytes.
pub fn render(topo: &Topology, format: Format) -> Result<Vec<u8>, RenderError> {
    let edges = topo.graph.edge_count();
    if format != Format::Dot && edges > MAX_DRAWN_EDGES {
        return Err(RenderError::TooLarge {
            edges,
            max: MAX_DRAWN_EDGES,
        });
    }
    match format {
        Format::Dot => Ok(to_dot(topo).into_bytes()),
        Format::Svg => Ok(to_svg(topo).into_bytes()),
        Format::Png => to_png(topo),
    }
}

/// The colour of text and lines in every picture and chart optarch draws.
pub const INK: &str = "#263238";

/// The colours series take, in order, in every chart optarch draws.
pub const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// Escapes text for XML (and HTML) character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
