//! A tiny software rasteriser for top-down scene images, and PNG output.
//!
//! Shapes are filled by testing pixel centres, without anti-aliasing: images are meant for
//! pixel world models and episode filmstrips, where crisp, deterministic pixels matter more
//! than looks.

use crate::geometry::Rect;
use crate::{Image, Result, SimError};
use std::path::Path;

/// RGB colours used by all scenarios.
pub(crate) mod palette {
    /// Floor / background.
    pub const FLOOR: [u8; 3] = [236, 236, 232];
    /// Walls.
    pub const WALL: [u8; 3] = [110, 110, 110];
    /// The controlled body (ball, pusher).
    pub const AGENT: [u8; 3] = [40, 90, 220];
    /// Passive bodies (the pushed block).
    pub const OBJECT: [u8; 3] = [230, 140, 30];
    /// Goal marker.
    pub const GOAL: [u8; 3] = [30, 170, 60];
    /// Faint goal fill.
    pub const GOAL_FAINT: [u8; 3] = [175, 225, 180];
    /// Arm links.
    pub const LINK: [u8; 3] = [40, 90, 220];
    /// Arm joints.
    pub const JOINT: [u8; 3] = [30, 30, 30];
    /// Pusher.
    pub const PUSHER: [u8; 3] = [210, 40, 40];
}

/// Draws into an [`Image`] in world coordinates (metres, y up) mapped onto the pixels so that
/// the `view` rectangle fits, centred, with the same scale on both axes.
pub(crate) struct Canvas {
    img: Image,
    scale: f32,
    off: [f32; 2],
    view_min: [f32; 2],
}

impl Canvas {
    /// A canvas of `width x height` pixels showing `view = [x0, y0, x1, y1]`.
    pub(crate) fn new(width: u32, height: u32, view: [f32; 4], background: [u8; 3]) -> Self {
        let n = width as usize * height as usize;
        let mut rgb = Vec::with_capacity(n * 3);
        for _ in 0..n {
            rgb.extend_from_slice(&background);
        }
        let vw = (view[2] - view[0]).max(1e-6);
        let vh = (view[3] - view[1]).max(1e-6);
        let scale = (width as f32 / vw).min(height as f32 / vh);
        let off = [
            (width as f32 - vw * scale) * 0.5,
            (height as f32 - vh * scale) * 0.5,
        ];
        Canvas {
            img: Image { width, height, rgb },
            scale,
            off,
            view_min: [view[0], view[1]],
        }
    }

    /// World point to continuous pixel coordinates (x right, y down).
    fn px(&self, p: [f32; 2]) -> [f32; 2] {
        let x = (p[0] - self.view_min[0]) * self.scale + self.off[0];
        let y = (p[1] - self.view_min[1]) * self.scale + self.off[1];
        [x, self.img.height as f32 - y]
    }

    fn put(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width && (y as u32) < self.img.height {
            let k = (y as usize * self.img.width as usize + x as usize) * 3;
            self.img.rgb[k..k + 3].copy_from_slice(&color);
        }
    }

    /// Pixel index range covering `[lo, hi]` (continuous), clamped to `0..n`.
    fn span(lo: f32, hi: f32, n: u32) -> std::ops::Range<i64> {
        let a = (lo - 0.5).ceil().max(0.0) as i64;
        let b = ((hi - 0.5).floor() as i64 + 1).min(n as i64);
        a..b.max(a)
    }

    /// Fills a convex polygon given in world coordinates (either winding).
    pub(crate) fn polygon(&mut self, pts: &[[f32; 2]], color: [u8; 3]) {
        if pts.len() < 3 {
            return;
        }
        let p: Vec<[f32; 2]> = pts.iter().map(|&q| self.px(q)).collect();
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for q in &p {
            x0 = x0.min(q[0]);
            y0 = y0.min(q[1]);
            x1 = x1.max(q[0]);
            y1 = y1.max(q[1]);
        }
        // Very thin shapes still get at least one pixel row/column.
        if x1 - x0 < 1.0 {
            let m = (x0 + x1) * 0.5;
            x0 = m - 0.5;
            x1 = m + 0.5;
        }
        if y1 - y0 < 1.0 {
            let m = (y0 + y1) * 0.5;
            y0 = m - 0.5;
            y1 = m + 0.5;
        }
        let area: f32 = (0..p.len())
            .map(|i| {
                let (a, b) = (p[i], p[(i + 1) % p.len()]);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum();
        let sign = if area >= 0.0 { 1.0 } else { -1.0 };
        let thin = (x1 - x0) <= 1.0 || (y1 - y0) <= 1.0;
        for y in Self::span(y0, y1, self.img.height) {
            for x in Self::span(x0, x1, self.img.width) {
                let c = [x as f32 + 0.5, y as f32 + 0.5];
                let inside = thin
                    || (0..p.len()).all(|i| {
                        let (a, b) = (p[i], p[(i + 1) % p.len()]);
                        sign * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
                            >= 0.0
                    });
                if inside {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// Fills an oriented rectangle.
    pub(crate) fn rect(&mut self, r: &Rect, color: [u8; 3]) {
        self.polygon(&r.corners(), color);
    }

    /// Fills the ring between radii `r_in` and `r_out` (world units) around `c`; `r_in = 0` gives
    /// a disc. Radii are at least half a pixel so tiny shapes stay visible.
    pub(crate) fn ring(&mut self, c: [f32; 2], r_in: f32, r_out: f32, color: [u8; 3]) {
        let pc = self.px(c);
        let ro = (r_out * self.scale).max(0.75);
        let ri = (r_in * self.scale).min(ro - 0.75).max(0.0);
        for y in Self::span(pc[1] - ro, pc[1] + ro, self.img.height) {
            for x in Self::span(pc[0] - ro, pc[0] + ro, self.img.width) {
                let dx = x as f32 + 0.5 - pc[0];
                let dy = y as f32 + 0.5 - pc[1];
                let d2 = dx * dx + dy * dy;
                if d2 <= ro * ro && (ri <= 0.0 || d2 >= ri * ri) {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// Fills a disc.
    pub(crate) fn disc(&mut self, c: [f32; 2], r: f32, color: [u8; 3]) {
        self.ring(c, 0.0, r, color);
    }

    /// Draws a segment of the given width (world units, at least one pixel).
    pub(crate) fn line(&mut self, a: [f32; 2], b: [f32; 2], width: f32, color: [u8; 3]) {
        let w = width.max(1.0 / self.scale);
        let d = [b[0] - a[0], b[1] - a[1]];
        let len = (d[0] * d[0] + d[1] * d[1]).sqrt();
        if len <= 0.0 {
            self.disc(a, w * 0.5, color);
            return;
        }
        let c = [(a[0] + b[0]) * 0.5, (a[1] + b[1]) * 0.5];
        self.rect(&Rect::new(c, [len * 0.5, w * 0.5], d[1].atan2(d[0])), color);
    }

    /// Draws the outline of a convex polygon.
    pub(crate) fn outline(&mut self, pts: &[[f32; 2]], width: f32, color: [u8; 3]) {
        for i in 0..pts.len() {
            self.line(pts[i], pts[(i + 1) % pts.len()], width, color);
        }
    }

    /// The finished image.
    pub(crate) fn finish(self) -> Image {
        self.img
    }
}

impl Image {
    /// Writes the image as an 8-bit RGB PNG file.
    ///
    /// # Errors
    /// [`SimError::Png`] when the file cannot be created or the data does not match the size.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let err = |message: String| SimError::Png {
            path: path.to_path_buf(),
            message,
        };
        let expected = self.width as usize * self.height as usize * 3;
        if self.rgb.len() != expected || self.width == 0 || self.height == 0 {
            return Err(err(format!(
                "image is {}x{} with {} bytes (expected {expected}, non-empty)",
                self.width,
                self.height,
                self.rgb.len()
            )));
        }
        let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        writer
            .write_image_data(&self.rgb)
            .map_err(|e| err(e.to_string()))?;
        writer.finish().map_err(|e| err(e.to_string()))
    }

    /// The RGB frame `k` of a channel-major observation image `[3 × frames, height, width]`
    /// (as [`crate::Env::observe`] returns in its `image` field), as an RGB image; `scale`
    /// repeats every pixel `scale × scale` times (nearest neighbour), for viewing.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] when `chw` is too short for frame `k`, or a size is 0.
    pub fn from_chw(chw: &[u8], width: u32, height: u32, k: usize, scale: u32) -> Result<Image> {
        let (w, h) = (width as usize, height as usize);
        let plane = w * h;
        if plane == 0 || scale == 0 || chw.len() < 3 * plane * (k + 1) {
            return Err(SimError::invalid(
                "image",
                format!(
                    "{} bytes cannot hold frame {k} of {width}x{height} RGB (scale {scale})",
                    chw.len()
                ),
            ));
        }
        let s = scale as usize;
        let frame = &chw[3 * plane * k..3 * plane * (k + 1)];
        let (sw, sh) = (w * s, h * s);
        let mut rgb = vec![0u8; sw * sh * 3];
        for y in 0..sh {
            for x in 0..sw {
                let src = (y / s) * w + x / s;
                for c in 0..3 {
                    rgb[(y * sw + x) * 3 + c] = frame[c * plane + src];
                }
            }
        }
        Ok(Image {
            width: sw as u32,
            height: sh as u32,
            rgb,
        })
    }

    /// The RGB value of pixel `(x, y)` (`y = 0` is the top row), or `None` when the pixel is
    /// outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let k = (y as usize * self.width as usize + x as usize) * 3;
        match self.rgb.get(k..k + 3)? {
            &[r, g, b] => Some([r, g, b]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_inside_the_view() {
        let mut c = Canvas::new(20, 10, [0.0, 0.0, 2.0, 1.0], [0, 0, 0]);
        c.rect(&Rect::aabb(0.0, 0.0, 1.0, 1.0), [255, 0, 0]);
        c.disc([1.5, 0.5], 0.2, [0, 255, 0]);
        let img = c.finish();
        assert_eq!(img.rgb.len(), 600);
        assert_eq!(img.pixel(2, 2), Some([255, 0, 0]));
        assert_eq!(img.pixel(15, 5), Some([0, 255, 0]));
        assert_eq!(img.pixel(19, 0), Some([0, 0, 0]));
        assert_eq!(img.pixel(20, 0), None);
        assert_eq!(img.pixel(0, 10), None);
        let short = Image {
            rgb: vec![1, 2, 3],
            ..img
        };
        assert_eq!(short.pixel(0, 0), Some([1, 2, 3]));
        assert_eq!(short.pixel(1, 0), None);
    }

    #[test]
    fn y_axis_points_up() {
        let mut c = Canvas::new(10, 10, [0.0, 0.0, 1.0, 1.0], [0, 0, 0]);
        c.rect(&Rect::aabb(0.0, 0.8, 1.0, 1.0), [9, 9, 9]);
        let img = c.finish();
        assert_eq!(img.pixel(5, 0), Some([9, 9, 9]));
        assert_eq!(img.pixel(5, 9), Some([0, 0, 0]));
    }

    #[test]
    fn zero_sized_images_do_not_panic() {
        let mut c = Canvas::new(0, 0, [0.0, 0.0, 1.0, 1.0], [0, 0, 0]);
        c.disc([0.5, 0.5], 0.1, [1, 1, 1]);
        c.line([0.0, 0.0], [1.0, 1.0], 0.1, [1, 1, 1]);
        assert!(c.finish().rgb.is_empty());
    }

    #[test]
    fn png_round_trip_writes_a_file() {
        let mut c = Canvas::new(8, 4, [0.0, 0.0, 2.0, 1.0], [10, 20, 30]);
        c.disc([1.0, 0.5], 0.25, [200, 0, 0]);
        let img = c.finish();
        let path =
            std::env::temp_dir().join(format!("zplan_sim_render_{}.png", std::process::id()));
        img.save_png(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_file(&path);
        let empty = Image {
            width: 0,
            height: 0,
            rgb: vec![],
        };
        assert!(empty.save_png(&path).is_err());
    }
}
