//! Maximum-entropy inclusion probabilities that hit target moments.
//!
//! Among all inclusion probabilities `p_i` in [0, 1] with expected tokens `sum w_i p_i = B` and expected
//! token-weighted moments `E[z] = t1`, `E[z^2] = t2` (`z = (x - center) / scale`), the one maximising the
//! total binary entropy `sum w_i H(p_i)` is `p_i = sigmoid(l0 + l1 z_i + l2 z_i^2)`: the corpus density
//! tilted smoothly (a Gaussian-shaped window for narrow targets, a U-shape for wide ones), as random as
//! the constraints allow. The multipliers minimise the convex dual
//! `D(l) = sum w_i softplus(l . phi_i) / B - l . (1, t1, t2)`; we run damped Newton on ~8k groups of
//! consecutive sorted members (cheap), then one exact Newton step over all members.
//! Features can be switched off (mean-only or std-only targets).

use rayon::prelude::*;

use crate::members::Member;

#[derive(Clone, Copy, Debug)]
pub struct Tilt {
    pub center: f64,
    pub scale: f64,
    pub lam: [f64; 3],
}

impl Tilt {
    /// Log-odds of inclusion at statistic value `x`.
    #[inline]
    pub fn eta(&self, x: f64) -> f64 {
        let z = (x - self.center) / self.scale;
        self.lam[0] + self.lam[1] * z + self.lam[2] * z * z
    }
}

#[inline]
fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

/// Weighted feature points: (weight, phi1, phi2).
type Point = (f64, f64, f64);

#[derive(Clone, Copy, Default)]
struct Sums {
    d: f64,
    g: [f64; 3],
    h: [[f64; 3]; 3],
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.d += o.d;
        for a in 0..3 {
            self.g[a] += o.g[a];
            for b in 0..3 {
                self.h[a][b] += o.h[a][b];
            }
        }
    }
    /// Gradient and Hessian terms only (no dual value), upper triangle mirrored.
    #[inline]
    fn push_grad(&mut self, w: f64, phi: [f64; 3], lam: &[f64; 3]) {
        let t = lam[0] * phi[0] + lam[1] * phi[1] + lam[2] * phi[2];
        let s = sigmoid(t);
        let (ws, wv) = (w * s, w * s * (1.0 - s));
        for a in 0..3 {
            self.g[a] += ws * phi[a];
            for b in a..3 {
                self.h[a][b] += wv * phi[a] * phi[b];
            }
        }
    }

    fn symmetrise(&mut self) {
        for a in 0..3 {
            for b in 0..a {
                self.h[a][b] = self.h[b][a];
            }
        }
    }

    fn push(&mut self, w: f64, phi: [f64; 3], lam: &[f64; 3]) {
        let t = lam[0] * phi[0] + lam[1] * phi[1] + lam[2] * phi[2];
        let s = sigmoid(t);
        let v = s * (1.0 - s);
        self.d += w * softplus(t);
        for a in 0..3 {
            self.g[a] += w * s * phi[a];
            for b in 0..3 {
                self.h[a][b] += w * v * phi[a] * phi[b];
            }
        }
    }
}

/// Solve a 3x3 system by Gaussian elimination with partial pivoting (None if singular).
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let piv = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for r in col + 1..3 {
            let f = a[r][col] / a[col][col];
            for k in col..3 {
                a[r][k] -= f * a[col][k];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for r in (0..3).rev() {
        let s: f64 = (r + 1..3).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

struct Problem {
    target: [f64; 3],
    active: [bool; 3],
    budget: f64,
}

impl Problem {
    /// Dual value, gradient and Hessian (inactive features pinned to zero) from raw sums.
    fn finish(&self, s: &Sums, lam: &[f64; 3]) -> (f64, [f64; 3], [[f64; 3]; 3]) {
        let mut g = [0.0; 3];
        let mut h = [[0.0; 3]; 3];
        let mut d = s.d / self.budget;
        for a in 0..3 {
            d -= lam[a] * self.target[a];
            if !self.active[a] {
                h[a][a] = 1.0;
                continue;
            }
            g[a] = s.g[a] / self.budget - self.target[a];
            for b in 0..3 {
                if self.active[b] {
                    h[a][b] = s.h[a][b] / self.budget;
                }
            }
            h[a][a] *= 1.0 + 1e-12;
        }
        (d, g, h)
    }
}

fn eval_points(pts: &[Point], lam: &[f64; 3]) -> Sums {
    let mut s = Sums::default();
    for &(w, z1, z2) in pts {
        s.push(w, [1.0, z1, z2], lam);
    }
    s
}

fn norm(g: &[f64; 3]) -> f64 {
    g.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Fit the tilt for sorted members. `t1`, `t2`: targets for E[z] and E[z^2]; `use_mean`/`use_sq` select features.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    m: &[Member],
    budget: u64,
    total: u64,
    center: f64,
    scale: f64,
    t1: f64,
    t2: f64,
    use_mean: bool,
    use_sq: bool,
) -> Tilt {
    let prob = Problem { target: [1.0, t1, t2], active: [true, use_mean, use_sq], budget: budget as f64 };
    let z = |x: f64| (x - center) / scale;
    // Stage 1: groups of consecutive members (feature = group's weighted mean of z and z^2).
    let n = m.len();
    let g = n.min(8192);
    let pts: Vec<Point> = (0..g)
        .map(|k| {
            let (a, b) = (k * n / g, (k + 1) * n / g);
            let (mut w, mut s1, mut s2) = (0.0, 0.0, 0.0);
            for e in &m[a..b] {
                let (wf, zz) = (e.w as f64, z(e.x()));
                w += wf;
                s1 += wf * zz;
                s2 += wf * zz * zz;
            }
            (w, s1 / w, s2 / w)
        })
        .collect();
    let p0 = (budget as f64 / total as f64).clamp(1e-12, 1.0 - 1e-12);
    let mut lam = [(p0 / (1.0 - p0)).ln(), 0.0, 0.0];
    let mut iters = 0;
    for _ in 0..100 {
        iters += 1;
        let (d, gr, h) = prob.finish(&eval_points(&pts, &lam), &lam);
        if norm(&gr) < 1e-10 {
            break;
        }
        let Some(step) = solve3(h, [-gr[0], -gr[1], -gr[2]]) else { break };
        let mut alpha = 1.0;
        let mut moved = false;
        for _ in 0..60 {
            let cand = [lam[0] + alpha * step[0], lam[1] + alpha * step[1], lam[2] + alpha * step[2]];
            let (dc, _, _) = prob.finish(&eval_points(&pts, &cand), &cand);
            if dc.is_finite() && dc <= d {
                lam = cand;
                moved = true;
                break;
            }
            alpha *= 0.5;
        }
        if !moved {
            break;
        }
    }
    if std::env::var_os("PPLAW_PROFILE").is_some() {
        eprintln!("[pplaw] tilt: {iters} group Newton iterations, lambda = {lam:?}");
    }
    // Stage 2: one exact Newton step over all members (the group solution is already close; the
    // step removes the grouping error). Fixed chunking and ordered reduction: reproducible.
    if n > g {
        let parts: Vec<Sums> = m
            .par_chunks(1 << 16)
            .map(|chunk| {
                let mut s = Sums::default();
                for e in chunk {
                    let zz = z(e.x());
                    s.push_grad(e.w as f64, [1.0, zz, zz * zz], &lam);
                }
                s
            })
            .collect();
        let mut s = Sums::default();
        parts.iter().for_each(|p| s.add(p));
        s.symmetrise();
        let (_, gr, h) = prob.finish(&s, &lam);
        if norm(&gr) > 1e-9 {
            if let Some(step) = solve3(h, [-gr[0], -gr[1], -gr[2]]) {
                // Damped if large: the group fit is a good start, a big step means trouble.
                let big = norm(&step).max(1e-300);
                let f = if big > 0.5 { 0.5 / big } else { 1.0 };
                lam = [lam[0] + f * step[0], lam[1] + f * step[1], lam[2] + f * step[2]];
            }
        }
    }
    Tilt { center, scale, lam }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_small_systems() {
        let a = [[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]];
        let x = solve3(a, [1.0, 2.0, 3.0]).unwrap();
        for r in 0..3 {
            let v: f64 = (0..3).map(|k| a[r][k] * x[k]).sum();
            assert!((v - [1.0, 2.0, 3.0][r]).abs() < 1e-12);
        }
    }
}
