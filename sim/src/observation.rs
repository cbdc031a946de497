//! What a scenario lets the robot observe: the `observation:` field of every scenario file.
//!
//! ```ron
//! TwoRooms(observation: (state: false, image: Some((width: 64, height: 64, history: 1))))
//! ```
//!
//! The default is the state vector alone (what every scenario observed before cameras), so
//! files without the field behave exactly as before.

use crate::camera::Camera;
use crate::{Result, SimError};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use zplan_obs::{FieldSpec, ObsSpec, Observation, IMAGE, PROPRIO, STATE};

/// Smallest image side in pixels.
pub const MIN_IMAGE_SIDE: u32 = 16;
/// Largest image side in pixels.
pub const MAX_IMAGE_SIDE: u32 = 512;
/// Most frames an image observation may stack.
pub const MAX_HISTORY: u32 = 16;

/// Camera image settings; RON `(width: 64, height: 64, history: 1)`, every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Image width in pixels (16–512). Default 64.
    pub width: u32,
    /// Image height in pixels (16–512). Default 64.
    pub height: u32,
    /// Frames stacked along the channel axis, oldest first (`C = 3 × history`); at a reset
    /// the history is filled with the first frame. Default 1.
    pub history: u32,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            width: 64,
            height: 64,
            history: 1,
        }
    }
}

/// Which fields a scenario's observation has. RON:
/// `(state: false, image: Some((width: 64, height: 64)), proprio: true)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservationConfig {
    /// The scenario's state vector as field `state` (f32 `[D]`, named entries). Default true.
    pub state: bool,
    /// A top-down camera image as field `image` (u8 `[3 × history, height, width]`, no goal
    /// marker). Default none.
    pub image: Option<ImageConfig>,
    /// The robot's own state as field `proprio` (f32 `[P]`: joint angles and velocities, the
    /// pusher's position). Default false.
    pub proprio: bool,
}

impl Default for ObservationConfig {
    fn default() -> Self {
        ObservationConfig {
            state: true,
            image: None,
            proprio: false,
        }
    }
}

impl ObservationConfig {
    /// Whether this is the default (state only); such configs are not written out.
    pub fn is_default(&self) -> bool {
        *self == ObservationConfig::default()
    }

    /// Range checks. `proprio_names` is `None` for scenarios whose robot has no
    /// proprioception.
    pub(crate) fn validate(&self, proprio_names: Option<&[String]>) -> Result<()> {
        if !self.state && self.image.is_none() && !self.proprio {
            return Err(SimError::invalid(
                "observation",
                "observes nothing: enable at least one of `state`, `image`, `proprio`",
            ));
        }
        if self.proprio && proprio_names.is_none() {
            return Err(SimError::invalid(
                "observation.proprio",
                "this scenario's robot has no proprioception (observe its position through `state` or `image`)",
            ));
        }
        if let Some(im) = &self.image {
            for (name, v) in [("width", im.width), ("height", im.height)] {
                if !(MIN_IMAGE_SIDE..=MAX_IMAGE_SIDE).contains(&v) {
                    return Err(SimError::invalid(
                        format!("observation.image.{name}"),
                        format!("must be in [{MIN_IMAGE_SIDE}, {MAX_IMAGE_SIDE}] pixels, got {v}"),
                    ));
                }
            }
            if !(1..=MAX_HISTORY).contains(&im.history) {
                return Err(SimError::invalid(
                    "observation.image.history",
                    format!("must be in [1, {MAX_HISTORY}] frames, got {}", im.history),
                ));
            }
        }
        Ok(())
    }

    /// The observation spec: `state`, `image`, `proprio`, in that order, those enabled.
    pub(crate) fn spec(&self, state_names: &[String], proprio_names: Option<&[String]>) -> ObsSpec {
        let mut fields = Vec::new();
        if self.state {
            fields.push(FieldSpec::vector(STATE, state_names.to_vec()));
        }
        if let Some(im) = &self.image {
            fields.push(FieldSpec::image(
                im.width as usize,
                im.height as usize,
                im.history as usize,
            ));
        }
        if self.proprio {
            fields.push(FieldSpec::vector(
                PROPRIO,
                proprio_names.map(<[String]>::to_vec).unwrap_or_default(),
            ));
        }
        // Validated configs always give a valid spec; a fallback keeps this infallible.
        ObsSpec::new(fields).unwrap_or_else(|_| {
            ObsSpec::state(state_names.to_vec())
                .unwrap_or_else(|_| ObsSpec::unnamed_state(NonZeroUsize::MIN))
        })
    }

    /// Assembles an observation from its parts; `image` is called only when an image is
    /// observed, `proprio` only when proprioception is.
    pub(crate) fn assemble(
        &self,
        state: impl FnOnce() -> Vec<f32>,
        image: impl FnOnce() -> Vec<u8>,
        proprio: impl FnOnce() -> Vec<f32>,
    ) -> Observation {
        let mut obs = Observation::new();
        if self.state {
            obs.insert(STATE, state());
        }
        if self.image.is_some() {
            obs.insert(IMAGE, image());
        }
        if self.proprio {
            obs.insert(PROPRIO, proprio());
        }
        obs
    }

    /// The camera for a view rectangle, if an image is observed.
    pub(crate) fn camera(&self, view: [f32; 4]) -> Option<Camera> {
        self.image
            .map(|im| Camera::new(im.width as usize, im.height as usize, view))
    }

    /// Frames an image observation stacks (1 without an image).
    pub(crate) fn history(&self) -> usize {
        self.image.map_or(1, |im| im.history as usize)
    }
}

/// The last `k` poses of the scene (oldest first), from which the frames of an image
/// observation are drawn. Keeping poses rather than frames makes stepping free of rendering:
/// frames are drawn only when an observation is asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct History<P> {
    poses: Vec<P>,
}

impl<P: Clone> History<P> {
    /// A history of `k >= 1` copies of `pose`.
    pub(crate) fn new(k: usize, pose: P) -> Self {
        History {
            poses: vec![pose; k.max(1)],
        }
    }

    /// Forgets the past: every slot becomes `pose` (after a reset or a state change).
    pub(crate) fn fill(&mut self, pose: P) {
        for p in &mut self.poses {
            *p = pose.clone();
        }
    }

    /// Appends the newest pose, dropping the oldest.
    pub(crate) fn push(&mut self, pose: P) {
        if self.poses.len() > 1 {
            self.poses.rotate_left(1);
        }
        if let Some(last) = self.poses.last_mut() {
            *last = pose;
        }
    }

    /// The poses, oldest first.
    pub(crate) fn poses(&self) -> &[P] {
        &self.poses
    }
}

/// Draws one frame per pose (each starting from `background`) and stacks them channel-wise.
pub(crate) fn stack_frames<P>(
    background: &[u8],
    poses: &[P],
    mut draw: impl FnMut(&mut [u8], &P),
) -> Vec<u8> {
    let n = background.len();
    let mut out = Vec::with_capacity(n * poses.len());
    for p in poses {
        out.extend_from_slice(background);
        let start = out.len() - n;
        draw(&mut out[start..], p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let names = vec!["a".to_string()];
        let err =
            |c: ObservationConfig, p: Option<&[String]>| c.validate(p).unwrap_err().to_string();
        let none = ObservationConfig {
            state: false,
            ..Default::default()
        };
        assert!(err(none, None).contains("observes nothing"));
        let small = ObservationConfig {
            image: Some(ImageConfig {
                width: 8,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(err(small, None).contains("observation.image.width"));
        let hist = ObservationConfig {
            image: Some(ImageConfig {
                history: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(err(hist, None).contains("observation.image.history"));
        let proprio = ObservationConfig {
            proprio: true,
            ..Default::default()
        };
        assert!(err(proprio.clone(), None).contains("no proprioception"));
        proprio.validate(Some(&names)).unwrap();
    }

    #[test]
    fn spec_orders_fields() {
        let c = ObservationConfig {
            state: true,
            image: Some(ImageConfig {
                width: 32,
                height: 16,
                history: 2,
            }),
            proprio: true,
        };
        let s = c.spec(&["x".into()], Some(&["p".into()]));
        assert_eq!(
            s.to_string(),
            "state [1] f32 (x), image [6, 16, 32] u8, proprio [1] f32 (p)"
        );
    }

    #[test]
    fn history_shifts_oldest_out() {
        let mut h = History::new(3, 0);
        h.push(1);
        h.push(2);
        assert_eq!(h.poses(), [0, 1, 2]);
        h.push(3);
        assert_eq!(h.poses(), [1, 2, 3]);
        h.fill(9);
        assert_eq!(h.poses(), [9, 9, 9]);
        let frames = stack_frames(&[7u8, 7], h.poses(), |f, p| f[0] = *p as u8);
        assert_eq!(frames, [9, 7, 9, 7, 9, 7]);
    }
}
