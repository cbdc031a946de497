//! The robot's camera: small, anti-aliased, channel-major RGB frames of the scene.
//!
//! Observation images differ from the filmstrip renderer ([`crate::render`]) in three ways:
//! they are channel-major (`[3, H, W]`, what a CNN reads), they show only what a camera would
//! see (no goal marker, no success colouring), and their edges are anti-aliased by coverage, so
//! that motion by a fraction of a pixel changes pixel values. Coverage is estimated from the
//! signed distance of each pixel centre to the shape's edge, in pixels: a pixel whose centre
//! lies on the edge is half covered, one a pixel inside is fully covered (the exact coverage of
//! a straight edge under a one-pixel box filter, and a close estimate at corners). Blending is
//! done in f32 with one rounding per pixel and shape, in a fixed order, so frames are
//! bit-identical for the same state on every run and platform with IEEE floats.
//!
//! Static parts (floor, walls) are drawn once per layout into a background frame that every
//! observation starts from by a copy; only moving bodies are drawn per frame, and each only
//! over its bounding box. That keeps a 64 × 64 frame at a few microseconds.

use crate::geometry::Rect;

/// Maps world coordinates (metres, y up) onto the pixels of a `width × height` frame so that
/// a view rectangle fits, centred, with the same scale on both axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Camera {
    width: usize,
    height: usize,
    /// Pixels per metre.
    scale: f32,
    /// World x of the left image edge.
    x0: f32,
    /// World y of the top image edge.
    y1: f32,
}

impl Camera {
    /// A camera of `width × height` pixels showing `view = [x0, y0, x1, y1]`.
    pub(crate) fn new(width: usize, height: usize, view: [f32; 4]) -> Self {
        let vw = (view[2] - view[0]).max(1e-6);
        let vh = (view[3] - view[1]).max(1e-6);
        let scale = (width as f32 / vw).min(height as f32 / vh);
        // Centre the view: the image spans width/scale metres around the view's centre.
        let cx = (view[0] + view[2]) * 0.5;
        let cy = (view[1] + view[3]) * 0.5;
        Camera {
            width,
            height,
            scale,
            x0: cx - width as f32 * 0.5 / scale,
            y1: cy + height as f32 * 0.5 / scale,
        }
    }

    /// Bytes of one RGB frame.
    pub(crate) fn frame_len(&self) -> usize {
        3 * self.width * self.height
    }

    /// A frame of one colour.
    pub(crate) fn fill(&self, color: [u8; 3]) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![0u8; 3 * n];
        for (c, plane) in out.chunks_exact_mut(n).enumerate() {
            plane.fill(color[c]);
        }
        out
    }

    /// World coordinates of the centre of pixel `(i, j)` (`j = 0` is the top row).
    #[inline]
    fn world(&self, i: usize, j: usize) -> [f32; 2] {
        [
            self.x0 + (i as f32 + 0.5) / self.scale,
            self.y1 - (j as f32 + 0.5) / self.scale,
        ]
    }

    /// Pixel index ranges (columns, rows) covering the world box `[x0, x1] × [y0, y1]` plus one
    /// pixel, clamped to the frame.
    fn pixel_box(
        &self,
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let to_col = |x: f32| (x - self.x0) * self.scale;
        let to_row = |y: f32| (self.y1 - y) * self.scale;
        let clamp = |v: f32, n: usize| -> usize {
            if v.is_nan() || v <= 0.0 {
                0
            } else {
                (v as usize).min(n)
            }
        };
        let c0 = clamp(to_col(x0) - 1.0, self.width);
        let c1 = clamp(to_col(x1) + 2.0, self.width);
        let r0 = clamp(to_row(y1) - 1.0, self.height);
        let r1 = clamp(to_row(y0) + 2.0, self.height);
        (c0..c1.max(c0), r0..r1.max(r0))
    }

    /// Blends `color` into `frame` with per-pixel coverage `cov(p)` over the world box, where
    /// `sd(p)` is the signed distance (metres, negative inside) of the shape at world point `p`.
    fn shade(
        &self,
        frame: &mut [u8],
        bbox: [f32; 4],
        color: [u8; 3],
        sd: impl Fn([f32; 2]) -> f32,
    ) {
        debug_assert_eq!(frame.len(), self.frame_len());
        let n = self.width * self.height;
        let (cols, rows) = self.pixel_box(bbox[0], bbox[1], bbox[2], bbox[3]);
        let col = [color[0] as f32, color[1] as f32, color[2] as f32];
        for j in rows {
            for i in cols.clone() {
                let d = sd(self.world(i, j)) * self.scale;
                let cov = (0.5 - d).clamp(0.0, 1.0);
                if cov <= 0.0 {
                    continue;
                }
                let k = j * self.width + i;
                for (c, &target) in col.iter().enumerate() {
                    let px = &mut frame[c * n + k];
                    let bg = *px as f32;
                    *px = (bg + (target - bg) * cov).round() as u8;
                }
            }
        }
    }

    /// Draws a disc.
    pub(crate) fn disc(&self, frame: &mut [u8], c: [f32; 2], r: f32, color: [u8; 3]) {
        let bbox = [c[0] - r, c[1] - r, c[0] + r, c[1] + r];
        self.shade(frame, bbox, color, |p| (p[0] - c[0]).hypot(p[1] - c[1]) - r);
    }

    /// Draws an oriented rectangle.
    pub(crate) fn rect(&self, frame: &mut [u8], r: &Rect, color: [u8; 3]) {
        let mut bbox = [
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ];
        for c in r.corners() {
            bbox = [
                bbox[0].min(c[0]),
                bbox[1].min(c[1]),
                bbox[2].max(c[0]),
                bbox[3].max(c[1]),
            ];
        }
        self.shade(frame, bbox, color, |p| r.signed_distance(p));
    }

    /// Draws a capsule: the points within `radius` of the segment `a`–`b`.
    pub(crate) fn capsule(
        &self,
        frame: &mut [u8],
        a: [f32; 2],
        b: [f32; 2],
        radius: f32,
        color: [u8; 3],
    ) {
        let bbox = [
            a[0].min(b[0]) - radius,
            a[1].min(b[1]) - radius,
            a[0].max(b[0]) + radius,
            a[1].max(b[1]) + radius,
        ];
        let d = [b[0] - a[0], b[1] - a[1]];
        let len2 = (d[0] * d[0] + d[1] * d[1]).max(f32::MIN_POSITIVE);
        self.shade(frame, bbox, color, |p| {
            let t = (((p[0] - a[0]) * d[0] + (p[1] - a[1]) * d[1]) / len2).clamp(0.0, 1.0);
            (p[0] - a[0] - t * d[0]).hypot(p[1] - a[1] - t * d[1]) - radius
        });
    }

    /// A background frame: `floor` everywhere, then every rectangle in `rects` drawn in
    /// `color` (drawn once per layout; frames start from a copy of it).
    pub(crate) fn background(&self, floor: [u8; 3], rects: &[Rect], color: [u8; 3]) -> Vec<u8> {
        let mut frame = self.fill(floor);
        for r in rects {
            self.rect(&mut frame, r, color);
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> Camera {
        Camera::new(16, 8, [0.0, 0.0, 2.0, 1.0])
    }

    fn px(frame: &[u8], cam: &Camera, i: usize, j: usize) -> [u8; 3] {
        let n = cam.width * cam.height;
        let k = j * cam.width + i;
        [frame[k], frame[n + k], frame[2 * n + k]]
    }

    #[test]
    fn maps_world_to_channel_major_pixels() {
        let c = cam();
        let mut f = c.fill([0, 0, 0]);
        assert_eq!(f.len(), 3 * 16 * 8);
        // The top-left quarter of the view in red.
        c.rect(&mut f, &Rect::aabb(0.0, 0.5, 1.0, 1.0), [255, 0, 0]);
        assert_eq!(px(&f, &c, 0, 0), [255, 0, 0]);
        assert_eq!(px(&f, &c, 6, 2), [255, 0, 0]);
        assert_eq!(px(&f, &c, 0, 7), [0, 0, 0]);
        assert_eq!(px(&f, &c, 15, 0), [0, 0, 0]);
    }

    #[test]
    fn edges_are_anti_aliased_and_sub_pixel_motion_shows() {
        let c = cam();
        let draw = |x: f32| {
            let mut f = c.fill([0, 0, 0]);
            c.disc(&mut f, [x, 0.5], 0.2, [200, 200, 200]);
            f
        };
        let a = draw(1.0);
        // Partially covered pixels exist (strictly between background and colour).
        assert!(a.iter().any(|&v| v > 0 && v < 200), "no anti-aliasing");
        // A shift of a tenth of a pixel (pixels are 1/8 m) changes the frame.
        let b = draw(1.0 + 0.1 / 8.0);
        assert_ne!(a, b);
        // Bit-identical when redrawn.
        assert_eq!(a, draw(1.0));
    }

    #[test]
    fn shapes_outside_the_frame_draw_nothing() {
        let c = cam();
        let mut f = c.fill([1, 2, 3]);
        let before = f.clone();
        c.disc(&mut f, [-5.0, -5.0], 0.3, [9, 9, 9]);
        c.capsule(&mut f, [10.0, 10.0], [11.0, 10.0], 0.1, [9, 9, 9]);
        c.disc(&mut f, [f32::NAN, 0.0], 0.3, [9, 9, 9]);
        assert_eq!(f, before);
    }
}
