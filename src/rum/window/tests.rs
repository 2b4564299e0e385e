//! Tests of the parent module (filled in by the next commit).
