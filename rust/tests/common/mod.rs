//! Shared helpers for the integration tests.
#![allow(dead_code)]

use pplaw_core::column::{F64Column, IntColumn};
use pplaw_core::corpus::Corpus;
use pplaw_core::hash::{chunk_key, unit_open};

pub fn lognormal(n: usize, seed: u64, mu: f64, sigma: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let u1 = unit_open(chunk_key(seed, 2 * i as u64));
            let u2 = unit_open(chunk_key(seed, 2 * i as u64 + 1));
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (mu + sigma * z).exp()
        })
        .collect()
}

pub fn corpus(ppl: &[f64], tok: &[u64], ids: Option<&[u64]>) -> Corpus {
    Corpus::new(
        F64Column::from_vec("ppl", ppl.to_vec()),
        IntColumn::from_vec_u64("tokens", tok.to_vec()),
        ids.map(|v| IntColumn::from_vec_u64("chunk_id", v.to_vec())),
        None,
    )
    .unwrap()
}

/// The same corpus with rows in another order; returns (ppl, tokens, ids).
pub fn permuted(ppl: &[f64], tok: &[u64], ids: &[u64], seed: u64) -> (Vec<f64>, Vec<u64>, Vec<u64>) {
    let mut perm: Vec<usize> = (0..ppl.len()).collect();
    perm.sort_by_key(|&i| chunk_key(seed, i as u64));
    (perm.iter().map(|&i| ppl[i]).collect(), perm.iter().map(|&i| tok[i]).collect(), perm.iter().map(|&i| ids[i]).collect())
}

/// Token-weighted (tokens, mean, std) of rows in a space (`log` = ln).
pub fn stats(ppl: &[f64], tok: &[u64], rows: &[u64], log: bool) -> (u64, f64, f64) {
    let x = |i: usize| if log { ppl[i].ln() } else { ppl[i] };
    let t: u64 = rows.iter().map(|&r| tok[r as usize]).sum();
    let w = t as f64;
    let m = rows.iter().map(|&r| tok[r as usize] as f64 * x(r as usize)).sum::<f64>() / w;
    let v = rows.iter().map(|&r| tok[r as usize] as f64 * (x(r as usize) - m).powi(2)).sum::<f64>() / w;
    (t, m, v.sqrt())
}

pub fn ids_of(rows: &[u64], ids: &[u64]) -> Vec<u64> {
    let mut v: Vec<u64> = rows.iter().map(|&r| ids[r as usize]).collect();
    v.sort_unstable();
    v
}
