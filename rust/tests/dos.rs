//! Distance-to-Optimum Selection: near-optimality against brute force, invariance, errors.

mod common;
use common::*;

use pplaw_core::dos::{objective, select_dos, DosRequest};
use pplaw_core::error::Error;
use pplaw_core::hash::{chunk_key, unit_open};
use pplaw_core::stats::Space;

fn req(budget: u64, mean: f64, std: f64, space: Space) -> DosRequest {
    DosRequest { budget: budget as i128, target_mean: mean, target_std: std, space, w_mu: None, w_s: None, seed: 3 }
}

/// Exhaustive optimum over subsets with B <= tokens < B + w_max.
fn brute(x: &[f64], tok: &[u64], budget: u64, mt: f64, st: f64) -> f64 {
    let n = x.len();
    let w_max = *tok.iter().max().unwrap();
    let (wm, ws) = (1.0 / (mt * mt), 1.0 / st.powi(4));
    let mut best = f64::INFINITY;
    for mask in 1u32..(1 << n) {
        let t: u64 = (0..n).filter(|&i| mask >> i & 1 == 1).map(|i| tok[i]).sum();
        if t < budget || t >= budget + w_max {
            continue;
        }
        let w = t as f64;
        let m = (0..n).filter(|&i| mask >> i & 1 == 1).map(|i| tok[i] as f64 * x[i]).sum::<f64>() / w;
        let v = (0..n).filter(|&i| mask >> i & 1 == 1).map(|i| tok[i] as f64 * (x[i] - m).powi(2)).sum::<f64>() / w;
        best = best.min(objective(m, v, mt, st, wm, ws));
    }
    best
}

#[test]
fn dos_matches_brute_force_on_small_inputs() {
    let (mut exact, mut total) = (0, 0);
    let mut gaps: Vec<f64> = Vec::new();
    for case in 0..400u64 {
        let n = 4 + (case % 11) as usize; // 4..=14
        let u = |k: u64| unit_open(chunk_key(case, k));
        let ppl: Vec<f64> = (0..n).map(|i| (1.5 + 1.2 * u(i as u64)).exp()).collect();
        let tok: Vec<u64> = if case % 2 == 0 { vec![100; n] } else { (0..n).map(|i| 20 + (chunk_key(case, 50 + i as u64) % 200)).collect() };
        let total_tok: u64 = tok.iter().sum();
        let budget = 1 + (u(99) * (total_tok - 1) as f64) as u64;
        let log = case % 3 == 0;
        let x: Vec<f64> = ppl.iter().map(|p| if log { p.ln() } else { *p }).collect();
        let (lo, hi) = x.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let mt = lo + (hi - lo) * (1.2 * u(100) - 0.1);
        let st = (hi - lo) * (0.02 + 0.6 * u(101));
        let space = if log { Space::LogPpl } else { Space::Ppl };
        let c = corpus(&ppl, &tok, None);
        let r = select_dos(&c, &req(budget, mt, st, space)).unwrap();
        let t: u64 = r.rows.iter().map(|&i| tok[i as usize]).sum();
        assert!(t >= budget && t < budget + tok.iter().max().unwrap(), "budget rule");
        let opt = brute(&x, &tok, budget, mt, st);
        assert!(r.objective >= opt - 1e-12 * (1.0 + opt), "better than brute force? {} < {opt}", r.objective);
        let gap = r.objective - opt;
        total += 1;
        if gap <= 1e-9 * (1.0 + opt) {
            exact += 1;
        }
        if gap > 1e-9 * (1.0 + opt) { println!("case {case} n={n} log={log} J={} opt={opt}", r.objective); }
        gaps.push(gap);
    }
    gaps.sort_by(f64::total_cmp);
    let max_gap = *gaps.last().unwrap();
    let p95 = gaps[gaps.len() * 95 / 100];
    println!("DOS vs brute force: {exact}/{total} exactly optimal; gap p95 {p95:.3e}, max {max_gap:.3e}");
    assert!(exact as f64 >= 0.97 * total as f64, "{exact}/{total} optimal");
    assert!(max_gap < 1e-3, "max gap {max_gap}");
}

#[test]
fn dos_hits_realisable_targets_and_is_shard_invariant() {
    let n = 60_000;
    let ppl = lognormal(n, 4, 2.3, 0.7);
    let tok: Vec<u64> = (0..n).map(|i| 100 + chunk_key(8, i as u64) % 400).collect();
    let ids: Vec<u64> = (0..n as u64).map(|i| i ^ 0xabcdef).collect();
    let total: u64 = tok.iter().sum();
    let a = corpus(&ppl, &tok, Some(&ids));
    let (p2, t2, i2) = permuted(&ppl, &tok, &ids, 5);
    let b = corpus(&p2, &t2, Some(&i2));
    for (mt, st, budget, log) in [(10.0, 4.0, total / 20, false), (2.2, 0.3, total / 5, true), (40.0, 1.0, total / 3, false)] {
        let space = if log { Space::LogPpl } else { Space::Ppl };
        let ra = select_dos(&a, &req(budget, mt, st, space)).unwrap();
        let rb = select_dos(&b, &req(budget, mt, st, space)).unwrap();
        assert_eq!(ids_of(&ra.rows, &ids), ids_of(&rb.rows, &i2));
        assert_eq!(ra.objective.to_bits(), rb.objective.to_bits());
        let (t, m, s) = stats(&ppl, &tok, &ra.rows, log);
        assert!(t >= budget && t < budget + 500);
        assert!((m - ra.mean).abs() < 1e-9 * m.abs() && (s - ra.std).abs() < 1e-9 * s);
        if mt == 40.0 {
            // Unrealisable (mean 40 with std 1 at a third of the corpus): the best compromise, not an error.
            assert!(ra.objective > 0.01);
        } else {
            assert!(ra.objective < 1e-6, "objective {} at a realisable target", ra.objective);
        }
    }
}

#[test]
fn dos_errors() {
    let c = corpus(&[2.0, 3.0, 4.0], &[10, 10, 10], None);
    assert!(matches!(select_dos(&c, &req(31, 3.0, 1.0, Space::Ppl)), Err(Error::Budget(_))));
    assert!(matches!(select_dos(&c, &req(10, -3.0, 1.0, Space::Ppl)), Err(Error::InvalidInput(m)) if m.contains("target_mean")));
    assert!(matches!(select_dos(&c, &req(10, 3.0, 0.0, Space::Ppl)), Err(Error::InvalidInput(m)) if m.contains("w_s")));
    let mut r = req(10, 3.0, 1.0, Space::Ppl);
    r.w_mu = Some(-1.0);
    assert!(matches!(select_dos(&c, &r), Err(Error::InvalidInput(m)) if m.contains("w_mu")));
    r.w_mu = Some(1.0);
    r.w_s = Some(0.0);
    let one = select_dos(&c, &r).unwrap();
    assert_eq!(one.rows, vec![1]); // mean only: the chunk at 3.0
}
