//! The typed error of the core. Every variant maps 1:1 onto a class of `pplaw.exceptions` in the bindings
//! (`py/errors.rs`; the core names no Python class), so a Python user sees the same error whichever layer
//! detected it.

use std::fmt;

/// What the corpus can realise at a token budget, attached to [`Error::UnreachableTarget`].
/// Ranges are `(lo, hi)` in the statistic's space (`ppl` or `log_ppl`).
#[derive(Debug, Clone, PartialEq)]
pub struct Realisable {
    /// Range of subset means over all subsets at the budget.
    pub mean: (f64, f64),
    /// Range of subset standard deviations over all subsets at the budget.
    pub std: (f64, f64),
    /// Range of standard deviations among subsets whose mean equals the target mean
    /// (`None` when no target mean was given or it is outside `mean`).
    pub std_at_target_mean: Option<(f64, f64)>,
    /// The token budget the ranges refer to.
    pub budget: u64,
    /// Chunks and tokens inside the allowed PPL window.
    pub window_chunks: u64,
    pub window_tokens: u64,
    /// `"ppl"` or `"log_ppl"`.
    pub space: &'static str,
}

impl fmt::Display for Realisable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at a budget of {} tokens ({} chunks, {} tokens in the window) the {} subset mean can range over \
             [{:.6}, {:.6}] and the std over [{:.6}, {:.6}]",
            self.budget,
            self.window_chunks,
            self.window_tokens,
            self.space,
            self.mean.0,
            self.mean.1,
            self.std.0,
            self.std.1
        )?;
        if let Some((lo, hi)) = self.std_at_target_mean {
            write!(f, "; at the target mean the std can range over [{lo:.6}, {hi:.6}]")?;
        }
        Ok(())
    }
}

/// The core's error. Messages name the column/argument and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not what was expected (NaN/inf/non-positive PPL, zero-token chunk, bad dtype, bad option).
    #[error("{0}")]
    InvalidInput(String),
    /// A required column is absent.
    #[error("{0}")]
    MissingColumn(String),
    /// Columns that need one value per chunk have different lengths.
    #[error("{0}")]
    LengthMismatch(String),
    /// No rows.
    #[error("{0}")]
    EmptyInput(String),
    /// Token budget not positive or larger than the corpus/window.
    #[error("{0}")]
    Budget(String),
    /// The requested target statistics cannot be realised; `realisable` says what can.
    #[error("{message}")]
    UnreachableTarget { message: String, realisable: Box<Realisable> },
    /// A serialised landscape/grid cannot be read (corrupt, truncated or another version).
    #[error("{0}")]
    Serialization(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand constructors used throughout the crate.
pub fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

pub fn serialization(msg: impl Into<String>) -> Error {
    Error::Serialization(msg.into())
}
