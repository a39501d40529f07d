//! Timing check on 10 million chunks (release): `cargo run --release --example bench10m [n]`.
//! Not a test; prints wall-clock times for each entry point.

use std::time::Instant;

use pplaw_core::column::{F64Column, IntColumn};
use pplaw_core::corpus::Corpus;
use pplaw_core::dos::{select_dos, DosRequest};
use pplaw_core::grid::{build_grid, GridSpec};
use pplaw_core::hash::{chunk_key, unit_open};
use pplaw_core::landscape::build_landscape;
use pplaw_core::members::Window;
use pplaw_core::sample::{realisable_range, sample_subset, SampleRequest};
use pplaw_core::stats::{subset_stats, Selection, Space, Weighting};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let ppl: Vec<f64> = (0..n)
        .map(|i| {
            let (u1, u2) = (unit_open(chunk_key(1, 2 * i as u64)), unit_open(chunk_key(1, 2 * i as u64 + 1)));
            (2.5 + 0.6 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).exp()
        })
        .collect();
    let equal = std::env::var("VARLEN").is_err();
    let tok: Vec<u64> = (0..n).map(|i| if equal { 512 } else { 64 + chunk_key(2, i as u64) % 960 }).collect();
    let total: u64 = tok.iter().sum();
    let c = Corpus::new(
        F64Column::from_vec("ppl", ppl),
        IntColumn::from_vec_u64("tokens", tok),
        Some(IntColumn::from_vec_u64("chunk_id", (0..n as u64).collect())),
        None,
    )
    .unwrap();
    println!("n = {n}, equal lengths = {equal}, threads = {}", rayon::current_num_threads());
    // Process CPU seconds (user + system), to read timings on a shared machine.
    let cpu = || -> f64 {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<String> = s.rsplit(')').next()?.split_whitespace().map(String::from).collect();
                Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
            })
            .unwrap_or(f64::NAN)
    };
    let time = |name: &str, f: &mut dyn FnMut() -> String| {
        let (t, c0) = (Instant::now(), cpu());
        let info = f();
        println!("{name:<34} {:>7.3} s wall {:>7.2} s cpu   {info}", t.elapsed().as_secs_f64(), cpu() - c0);
    };
    time("build_landscape (100 bins + grid)", &mut || {
        let l = build_landscape(&c, 100, GridSpec::default()).unwrap();
        format!("mean {:.4} std {:.4}", l.summary.mean, l.summary.std)
    });
    time("build_grid", &mut || format!("chunks {}", build_grid(&c, GridSpec::default()).unwrap().n_chunks));
    let sel: Vec<u64> = (0..n as u64).step_by(3).collect();
    let sel = Selection::Indices(IntColumn::from_vec_u64("selection", sel));
    time("subset_stats (n/3 indices)", &mut || format!("{:?}", subset_stats(&c, &sel, Space::Ppl, Weighting::Auto).unwrap().mean));
    let b = (total / 10) as i128;
    time("realisable_range (10% budget)", &mut || {
        let r = realisable_range(&c, b, Space::Ppl, &Window::default()).unwrap();
        format!("mean {:.3?} std {:.3?}", r.mean, r.std)
    });
    let req = |m: Option<f64>, s: Option<f64>| SampleRequest {
        budget: b,
        target_mean: m,
        target_std: s,
        space: Space::Ppl,
        window: Window::default(),
        seed: 0,
    };
    time("sample_subset uniform (10%)", &mut || format!("{} rows", sample_subset(&c, &req(None, None)).unwrap().len()));
    time("sample_subset mean+std (10%)", &mut || {
        format!("{} rows", sample_subset(&c, &req(Some(15.0), Some(6.0))).unwrap().len())
    });
    time("sample_subset narrow (10%)", &mut || format!("{} rows", sample_subset(&c, &req(Some(11.0), Some(2.0))).unwrap().len()));
    let mut r = req(Some(20.0), Some(5.0));
    r.window.quantile_min = Some(0.5);
    time("sample_subset window q>=0.5", &mut || format!("{} rows", sample_subset(&c, &r).unwrap().len()));
    for (m, s) in [(15.0, 6.0), (40.0, 2.0)] {
        let d = DosRequest { budget: b, target_mean: m, target_std: s, space: Space::Ppl, w_mu: None, w_s: None, seed: 0 };
        time(&format!("select_dos ({m}, {s})"), &mut || {
            let r = select_dos(&c, &d).unwrap();
            format!("{} rows, J = {:.3e}, mean {:.4}, std {:.4}", r.rows.len(), r.objective, r.mean, r.std)
        });
    }
}
