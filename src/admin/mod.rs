//! Operator surfaces: in-band status queries (`checkproxystatus`), the admin port and
//! `/metrics`. They read the status region; they never take part in the query path.
//!
//! This version exposes the status region itself ([`crate::status`]); the query surfaces
//! are built on it next.
