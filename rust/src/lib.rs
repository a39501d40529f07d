//! pplaw core: perplexity landscape, fine mergeable grid, subset statistics, target sampling and
//! Distance-to-Optimum Selection over Arrow columns.
//!
//! The algorithm modules are plain Rust over arrow-rs buffers (tested with `cargo test`); the PyO3
//! bindings live in `py/` behind the `python` feature and only convert inputs, release the GIL and map
//! [`error::Error`] onto `pplaw.exceptions`.

pub mod column;
pub mod corpus;
pub mod dos;
pub mod error;
pub mod grid;
pub mod hash;
pub mod landscape;
pub mod members;
pub mod refine;
pub mod sample;
pub mod select;
pub mod stats;
pub mod tilt;
pub mod wide;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
pub use py::_core;

/// Stage timing on stderr when `PPLAW_PROFILE` is set (development aid; wall-clock and process CPU).
pub(crate) fn profile(stage: &str, since: std::time::Instant) {
    if std::env::var_os("PPLAW_PROFILE").is_some() {
        let cpu = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
                Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
            })
            .unwrap_or(f64::NAN);
        eprintln!("[pplaw] {stage:<28} {:>8.3} s wall  (process cpu {cpu:.2} s)", since.elapsed().as_secs_f64());
    }
}
