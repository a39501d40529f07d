use std::time::Instant;
use pplaw_core::column::{F64Column, IntColumn};
use pplaw_core::corpus::Corpus;
use pplaw_core::hash::{chunk_key, unit_open};
use pplaw_core::members::{prepare, Window};
use pplaw_core::stats::Space;
fn main() {
    let n = 10_000_000usize;
    let ppl: Vec<f64> = (0..n).map(|i| { let (u1, u2) = (unit_open(chunk_key(1, 2 * i as u64)), unit_open(chunk_key(1, 2 * i as u64 + 1))); (2.5 + 0.6 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).exp() }).collect();
    let c = Corpus::new(F64Column::from_vec("ppl", ppl), IntColumn::from_vec_u64("tokens", vec![512; n]), Some(IntColumn::from_vec_u64("chunk_id", (0..n as u64).collect())), None).unwrap();
    let sorted = std::env::args().nth(1).as_deref() == Some("sorted");
    for _ in 0..3 {
        let t = Instant::now(); let p = prepare(&c, Space::Ppl, &Window::default(), 0, sorted).unwrap(); println!("prepare sorted={sorted} {:?} {}", t.elapsed(), p.members.len());
    }
}
