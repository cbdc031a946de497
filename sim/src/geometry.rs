//! Planar geometry shared by scene building, validation and rendering: oriented rectangles,
//! distances and an occupancy grid for reachability.

use std::collections::VecDeque;

/// An oriented rectangle in the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    /// Centre.
    pub c: [f32; 2],
    /// Half extents along the rectangle's own axes.
    pub h: [f32; 2],
    /// Rotation (radians, counter-clockwise).
    pub angle: f32,
    cos: f32,
    sin: f32,
}

impl Rect {
    /// A rectangle centred at `c` with half extents `h`, rotated by `angle`.
    pub(crate) fn new(c: [f32; 2], h: [f32; 2], angle: f32) -> Self {
        Rect {
            c,
            h,
            angle,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// The axis-aligned rectangle `[x0, x1] x [y0, y1]`.
    pub(crate) fn aabb(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Rect::new(
            [(x0 + x1) * 0.5, (y0 + y1) * 0.5],
            [(x1 - x0) * 0.5, (y1 - y0) * 0.5],
            0.0,
        )
    }

    /// A wall of the given thickness along the segment `from`–`to`, extended by half the
    /// thickness at both ends so that segments meeting at a point close the corner.
    pub(crate) fn segment(from: [f32; 2], to: [f32; 2], thickness: f32) -> Self {
        let d = [to[0] - from[0], to[1] - from[1]];
        let len = (d[0] * d[0] + d[1] * d[1]).sqrt();
        let c = [(from[0] + to[0]) * 0.5, (from[1] + to[1]) * 0.5];
        Rect::new(
            c,
            [len * 0.5 + thickness * 0.5, thickness * 0.5],
            d[1].atan2(d[0]),
        )
    }

    /// `p` in the rectangle's frame.
    fn local(&self, p: [f32; 2]) -> [f32; 2] {
        let d = [p[0] - self.c[0], p[1] - self.c[1]];
        [
            self.cos * d[0] + self.sin * d[1],
            -self.sin * d[0] + self.cos * d[1],
        ]
    }

    /// Signed distance from `p` to the rectangle (negative inside).
    pub(crate) fn signed_distance(&self, p: [f32; 2]) -> f32 {
        let l = self.local(p);
        let q = [l[0].abs() - self.h[0], l[1].abs() - self.h[1]];
        let outside = (q[0].max(0.0).powi(2) + q[1].max(0.0).powi(2)).sqrt();
        outside + q[0].max(q[1]).min(0.0)
    }

    /// The four corners, counter-clockwise.
    pub(crate) fn corners(&self) -> [[f32; 2]; 4] {
        let mut out = [[0.0; 2]; 4];
        for (k, (sx, sy)) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
            .iter()
            .enumerate()
        {
            let lx = sx * self.h[0];
            let ly = sy * self.h[1];
            out[k] = [
                self.c[0] + self.cos * lx - self.sin * ly,
                self.c[1] + self.sin * lx + self.cos * ly,
            ];
        }
        out
    }
}

/// Smallest signed distance from `p` to any of `rects` (`+inf` when there are none).
pub(crate) fn clearance(rects: &[Rect], p: [f32; 2]) -> f32 {
    rects
        .iter()
        .map(|r| r.signed_distance(p))
        .fold(f32::INFINITY, f32::min)
}

/// Wraps an angle to `(-pi, pi]`.
pub(crate) fn wrap_angle(a: f32) -> f32 {
    let two_pi = std::f32::consts::TAU;
    let mut r = a % two_pi;
    if r > std::f32::consts::PI {
        r -= two_pi;
    } else if r <= -std::f32::consts::PI {
        r += two_pi;
    }
    r
}

/// A grid of free/occupied cells over a rectangle with connected components of free cells,
/// used to decide whether a goal is reachable from a start.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    x0: f32,
    y0: f32,
    cell: f32,
    nx: usize,
    ny: usize,
    /// Component id of each cell, `u32::MAX` for occupied cells.
    comp: Vec<u32>,
}

impl Grid {
    /// Samples `is_free` at the cell centres of `[x0, x1] x [y0, y1]` and labels connected
    /// (4-neighbour) components of free cells.
    pub(crate) fn new(bounds: [f32; 4], cell: f32, is_free: impl Fn([f32; 2]) -> bool) -> Self {
        let [x0, y0, x1, y1] = bounds;
        let nx = (((x1 - x0) / cell).ceil() as usize).max(1);
        let ny = (((y1 - y0) / cell).ceil() as usize).max(1);
        let mut comp = vec![u32::MAX; nx * ny];
        let mut free = vec![false; nx * ny];
        for j in 0..ny {
            for i in 0..nx {
                let p = [x0 + (i as f32 + 0.5) * cell, y0 + (j as f32 + 0.5) * cell];
                free[j * nx + i] = is_free(p);
            }
        }
        let mut next = 0u32;
        let mut queue = VecDeque::new();
        for start in 0..nx * ny {
            if !free[start] || comp[start] != u32::MAX {
                continue;
            }
            comp[start] = next;
            queue.push_back(start);
            while let Some(k) = queue.pop_front() {
                let (i, j) = (k % nx, k / nx);
                let mut visit = |n: usize| {
                    if free[n] && comp[n] == u32::MAX {
                        comp[n] = next;
                        queue.push_back(n);
                    }
                };
                if i > 0 {
                    visit(k - 1);
                }
                if i + 1 < nx {
                    visit(k + 1);
                }
                if j > 0 {
                    visit(k - nx);
                }
                if j + 1 < ny {
                    visit(k + nx);
                }
            }
            next += 1;
        }
        Grid {
            x0,
            y0,
            cell,
            nx,
            ny,
            comp,
        }
    }

    /// The component of the cell containing `p`; `None` outside the grid or in an occupied cell.
    pub(crate) fn component(&self, p: [f32; 2]) -> Option<u32> {
        let fi = ((p[0] - self.x0) / self.cell).floor();
        let fj = ((p[1] - self.y0) / self.cell).floor();
        if !(fi >= 0.0 && fj >= 0.0) {
            return None;
        }
        let (i, j) = (fi as usize, fj as usize);
        if i >= self.nx || j >= self.ny {
            return None;
        }
        let c = self.comp[j * self.nx + i];
        (c != u32::MAX).then_some(c)
    }

    /// Components of the free cells whose centres lie in `[x0, x1] x [y0, y1]`.
    pub(crate) fn components_in(&self, x: (f32, f32), y: (f32, f32)) -> Vec<u32> {
        let mut out = Vec::new();
        for j in 0..self.ny {
            for i in 0..self.nx {
                let p = [
                    self.x0 + (i as f32 + 0.5) * self.cell,
                    self.y0 + (j as f32 + 0.5) * self.cell,
                ];
                let c = self.comp[j * self.nx + i];
                if c != u32::MAX && p[0] >= x.0 && p[0] <= x.1 && p[1] >= y.0 && p[1] <= y.1 {
                    out.push(c);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn rect_distance_and_corners() {
        let r = Rect::aabb(0.0, 0.0, 2.0, 1.0);
        assert_relative_eq!(r.signed_distance([1.0, 0.5]), -0.5);
        assert_relative_eq!(r.signed_distance([3.0, 0.5]), 1.0);
        assert_relative_eq!(r.signed_distance([3.0, 2.0]), 2f32.sqrt());
        let s = Rect::segment([0.0, 0.0], [0.0, 2.0], 0.2);
        assert_relative_eq!(s.signed_distance([0.5, 1.0]), 0.4, epsilon = 1e-6);
        assert_relative_eq!(s.signed_distance([0.0, 2.5]), 0.4, epsilon = 1e-6);
        let c = s.corners();
        assert_relative_eq!(c[0][1], -0.1, epsilon = 1e-6);
        assert_relative_eq!(c[2][1], 2.1, epsilon = 1e-6);
    }

    #[test]
    fn wrap() {
        assert_relative_eq!(
            wrap_angle(3.0 * std::f32::consts::PI),
            std::f32::consts::PI,
            epsilon = 1e-5
        );
        assert_relative_eq!(wrap_angle(-0.5), -0.5);
        assert_relative_eq!(wrap_angle(7.0), 7.0 - std::f32::consts::TAU, epsilon = 1e-6);
    }

    #[test]
    fn grid_components_split_by_a_wall() {
        let wall = [Rect::aabb(0.95, 0.0, 1.05, 1.0)];
        let g = Grid::new([0.0, 0.0, 2.0, 1.0], 0.05, |p| clearance(&wall, p) > 0.0);
        assert_ne!(g.component([0.5, 0.5]), g.component([1.5, 0.5]));
        assert_eq!(g.component([1.0, 0.5]), None);
        let door = [Rect::aabb(0.95, 0.0, 1.05, 0.6)];
        let g = Grid::new([0.0, 0.0, 2.0, 1.0], 0.05, |p| clearance(&door, p) > 0.0);
        assert_eq!(g.component([0.5, 0.5]), g.component([1.5, 0.5]));
    }
}
