//! Pictures of topologies: DOT, and SVG/PNG drawn by optarch itself (no Graphviz needed).
