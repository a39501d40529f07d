//! Sampling: budget rule, targets met when realisable, errors, and shard/row-order invariance.

mod common;
use common::*;

use pplaw_core::error::Error;
use pplaw_core::hash::chunk_key;
use pplaw_core::members::Window;
use pplaw_core::sample::{realisable_edges, realisable_range, sample_subset, SampleRequest};
use pplaw_core::stats::Space;

fn req(budget: u64, mean: Option<f64>, std: Option<f64>, space: Space) -> SampleRequest {
    SampleRequest { budget: budget as i128, target_mean: mean, target_std: std, space, window: Window::default(), seed: 7 }
}

fn check_budget_rule(tok: &[u64], rows: &[u64], budget: u64, w_max: u64) {
    let t: u64 = rows.iter().map(|&r| tok[r as usize]).sum();
    assert!(t >= budget && t < budget + w_max, "tokens {t} budget {budget} w_max {w_max}");
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows must be sorted and unique");
}

#[test]
fn targets_from_real_subsets_are_met() {
    // Targets are the statistics of actual random subsets at the budget, so they are realisable.
    let mut cases = 0;
    for (n, equal, log) in [(300usize, true, false), (2000, false, false), (20_000, true, true), (50_000, false, false)] {
        let ppl = lognormal(n, n as u64, 2.6, 0.6);
        let tok: Vec<u64> = if equal { vec![256; n] } else { (0..n).map(|i| 64 + chunk_key(1, i as u64) % 448).collect() };
        let w_max = *tok.iter().max().unwrap();
        let total: u64 = tok.iter().sum();
        let c = corpus(&ppl, &tok, None);
        let space = if log { Space::LogPpl } else { Space::Ppl };
        for frac in [0.02, 0.1, 0.3, 0.6] {
            let budget = (total as f64 * frac) as u64;
            for trial in 0..4u64 {
                // A random subset biased towards low or high PPL: a different (mean, std) each time.
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&i| {
                    let u = (chunk_key(trial + 100, i as u64) >> 11) as f64;
                    let tilt = if trial % 2 == 0 { ppl[i].ln() } else { -ppl[i].ln() };
                    ((u.ln() + 3.0 * tilt * trial as f64 / 3.0) * 1e6) as i64
                });
                let mut rows = Vec::new();
                let mut t = 0;
                for &i in &order {
                    if t >= budget {
                        break;
                    }
                    rows.push(i as u64);
                    t += tok[i];
                }
                let (_, mt, st) = stats(&ppl, &tok, &rows, log);
                let got = sample_subset(&c, &req(budget, Some(mt), Some(st), space))
                    .unwrap_or_else(|e| panic!("n={n} frac={frac} trial={trial}: {e}"));
                check_budget_rule(&tok, &got, budget, w_max);
                let (_, m, s) = stats(&ppl, &tok, &got, log);
                assert!((m / mt - 1.0).abs() <= 0.01, "mean {m} vs {mt} (n={n} frac={frac})");
                assert!((s / st - 1.0).abs() <= 0.02, "std {s} vs {st} (n={n} frac={frac})");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 64);
}

#[test]
fn targets_across_the_realisable_region_are_met() {
    let n = 30_000;
    let ppl = lognormal(n, 3, 2.2, 0.7);
    let tok = vec![512u64; n];
    let c = corpus(&ppl, &tok, None);
    let budget = 512 * 3000;
    let reg = realisable_range(&c, budget as i128, Space::Ppl, &Window::default()).unwrap();
    let (mut met, mut total) = (0, 0);
    for a in 1..8 {
        let mt = reg.mean.0 + (reg.mean.1 - reg.mean.0) * a as f64 / 8.0;
        let probe = sample_subset(&c, &req(budget, Some(mt), None, Space::Ppl)).unwrap();
        let (_, m, _) = stats(&ppl, &tok, &probe, false);
        assert!((m / mt - 1.0).abs() <= 0.01);
        // The std range at this mean, from the error's realisable dict.
        let err = sample_subset(&c, &req(budget, Some(mt), Some(1e-9), Space::Ppl)).unwrap_err();
        let Error::UnreachableTarget { realisable, .. } = err else { panic!("expected UnreachableTarget") };
        let (lo, hi) = realisable.std_at_target_mean.unwrap();
        for b in 1..5 {
            let st = lo + (hi - lo) * b as f64 / 5.0;
            total += 1;
            let got = sample_subset(&c, &req(budget, Some(mt), Some(st), Space::Ppl)).unwrap();
            check_budget_rule(&tok, &got, budget, 512);
            let (_, m, s) = stats(&ppl, &tok, &got, false);
            if (m / mt - 1.0).abs() <= 0.01 && (s / st - 1.0).abs() <= 0.02 {
                met += 1;
            }
        }
    }
    assert_eq!(met, total);
}

#[test]
fn realisable_edges_span_the_realisable_range() {
    // The edges are the candidates `realisable_range` reduces: their extremes are its ranges, exactly.
    let n = 5000;
    let ppl = lognormal(n, 11, 2.4, 0.6);
    let tok: Vec<u64> = (0..n).map(|i| 64 + chunk_key(2, i as u64) % 448).collect();
    let c = corpus(&ppl, &tok, None);
    let budget: u64 = tok.iter().sum::<u64>() / 7;
    for space in [Space::Ppl, Space::LogPpl] {
        let reg = realisable_range(&c, budget as i128, space, &Window::default()).unwrap();
        let e = realisable_edges(&c, budget as i128, space, &Window::default()).unwrap();
        assert!(!e.lower.is_empty() && !e.upper.is_empty());
        let all = e.lower.iter().chain(&e.upper);
        let mean_lo = all.clone().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let mean_hi = all.map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((mean_lo, mean_hi), reg.mean);
        assert_eq!(e.lower.iter().map(|p| p.1).fold(f64::INFINITY, f64::min), reg.std.0);
        assert_eq!(e.upper.iter().map(|p| p.1).fold(0.0, f64::max), reg.std.1);
        // sliding a window right drops its smallest values and adds larger ones
        for w in e.lower.windows(2) {
            assert!(w[0].0 <= w[1].0, "window means ascend with the window start");
        }
    }
    assert!(matches!(realisable_edges(&c, 0, Space::Ppl, &Window::default()), Err(Error::Budget(_))));
}

#[test]
fn uniform_and_windowed_sampling() {
    let n = 10_000;
    let ppl = lognormal(n, 5, 2.0, 0.5);
    let tok: Vec<u64> = (0..n).map(|i| 1 + i as u64 % 100).collect();
    let c = corpus(&ppl, &tok, None);
    let rows = sample_subset(&c, &req(12_345, None, None, Space::Ppl)).unwrap();
    check_budget_rule(&tok, &rows, 12_345, 100);
    let mut r = req(5000, None, None, Space::Ppl);
    r.window = Window { ppl_min: Some(6.0), ppl_max: Some(9.0), ..Window::default() };
    let rows = sample_subset(&c, &r).unwrap();
    assert!(rows.iter().all(|&i| (6.0..=9.0).contains(&ppl[i as usize])));
    r.window = Window { quantile_min: Some(0.9), ..Window::default() };
    r.target_mean = Some(20.0);
    let rows = sample_subset(&c, &r).unwrap();
    let mut sorted = ppl.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(rows.iter().all(|&i| ppl[i as usize] >= sorted[n * 85 / 100]));
    // Budget equal to the corpus takes everything.
    let total: u64 = tok.iter().sum();
    assert_eq!(sample_subset(&c, &req(total, None, None, Space::Ppl)).unwrap().len(), n);
}

#[test]
fn errors() {
    let n = 1000;
    let ppl = lognormal(n, 9, 2.0, 0.4);
    let tok = vec![100u64; n];
    let c = corpus(&ppl, &tok, None);
    let e = sample_subset(&c, &req(100 * 1001, None, None, Space::Ppl)).unwrap_err();
    assert!(matches!(&e, Error::Budget(m) if m.contains("100100") && m.contains("100000")), "{e}");
    assert!(matches!(sample_subset(&c, &req(0, None, None, Space::Ppl)), Err(Error::Budget(_))));
    let mut r = req(100, None, None, Space::Ppl);
    r.window = Window { ppl_min: Some(1e6), ..Window::default() };
    assert!(matches!(sample_subset(&c, &r), Err(Error::EmptyInput(_))));
    r.window = Window { quantile_min: Some(1.5), ..Window::default() };
    assert!(matches!(sample_subset(&c, &r), Err(Error::InvalidInput(m)) if m.contains("quantile_min")));
    r.window = Window { ppl_min: Some(0.99), ppl_max: Some(7.0), ..Window::default() };
    r.budget = 100 * 900;
    assert!(matches!(sample_subset(&c, &r), Err(Error::Budget(m)) if m.contains("window")));
    // Unreachable mean / std carry the realisable ranges.
    let e = sample_subset(&c, &req(100 * 500, Some(1000.0), None, Space::Ppl)).unwrap_err();
    match e {
        Error::UnreachableTarget { message, realisable } => {
            assert!(message.contains("target_mean") && message.contains("range"));
            assert!(realisable.mean.0 < realisable.mean.1 && realisable.mean.1 < 1000.0);
            assert!(realisable.std.0 <= realisable.std.1);
        }
        other => panic!("{other}"),
    }
    let e = sample_subset(&c, &req(100 * 500, None, Some(1000.0), Space::Ppl)).unwrap_err();
    assert!(matches!(e, Error::UnreachableTarget { .. }));
    assert!(matches!(sample_subset(&c, &req(100, Some(f64::NAN), None, Space::Ppl)), Err(Error::InvalidInput(m)) if m.contains("target_mean")));
    assert!(matches!(sample_subset(&c, &req(100, None, Some(-1.0), Space::Ppl)), Err(Error::InvalidInput(m)) if m.contains("target_std")));
}

#[test]
fn subsets_are_invariant_to_row_order_and_shards() {
    let n = 40_000;
    let ppl = lognormal(n, 21, 2.4, 0.6);
    let tok: Vec<u64> = (0..n).map(|i| 50 + chunk_key(2, i as u64) % 200).collect();
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 7 + 1_000_000).collect();
    let (p2, t2, i2) = permuted(&ppl, &tok, &ids, 99);
    let a = corpus(&ppl, &tok, Some(&ids));
    let b = corpus(&p2, &t2, Some(&i2));
    // Shards concatenated in another order = another permutation; also via a rows mapping.
    let cut = 12_345;
    let (p3, t3, i3) = (
        [&ppl[cut..], &ppl[..cut]].concat(),
        [&tok[cut..], &tok[..cut]].concat(),
        [&ids[cut..], &ids[..cut]].concat(),
    );
    let d = corpus(&p3, &t3, Some(&i3));
    let total: u64 = tok.iter().sum();
    for (mean, std, log, q) in [
        (None, None, false, None),
        (Some(12.0), Some(5.0), false, None),
        (Some(2.3), Some(0.4), true, None),
        (Some(14.0), None, false, Some(0.2)),
        (None, Some(3.0), false, None),
    ] {
        let space = if log { Space::LogPpl } else { Space::Ppl };
        let mut r = req(total / 10, mean, std, space);
        r.window.quantile_min = q;
        let ra = ids_of(&sample_subset(&a, &r).unwrap(), &ids);
        let rb = ids_of(&sample_subset(&b, &r).unwrap(), &i2);
        let rd = ids_of(&sample_subset(&d, &r).unwrap(), &i3);
        assert_eq!(ra, rb);
        assert_eq!(ra, rd);
        r.seed = 8;
        let other = ids_of(&sample_subset(&a, &r).unwrap(), &ids);
        assert_ne!(ra, other, "a different seed gives a different subset");
    }
}
