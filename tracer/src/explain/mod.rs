//! Plain-language explanations of what the kernel tells us, for people:
//! detectors' sentences, hints and (later) text views and reports all read
//! from here, so one table says what a kernel name means.
//!
//! Static data only: looking an explanation up allocates nothing.

pub mod drop_reasons;

pub use drop_reasons::{explain_drop, Explanation};
