//! Theory of a spec on quadratics.
