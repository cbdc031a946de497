//! `push`: a velocity-controlled pusher moves a block to a goal pose on a plane with friction.
//!
//! Gravity is on (along -z) so friction between the block and the ground has a normal force;
//! the block's tilting rotations are locked, so it slides in the plane and turns about z only.
//! The pusher is a heavy dynamic ball gliding just above the ground (z translation and
//! rotations locked, no gravity); the action, a velocity command in `[-1, 1]^2` scaled by
//! `max_speed`, is written to its velocity before each physics substep.
//!
//! The block is a box, or a T (a compound of two boxes) with `shape: T`. Its pose is its body
//! origin (the centre of mass) and yaw.
//!
//! Observation (11): `pusher_x, pusher_y, pusher_vx, pusher_vy, block_x, block_y,
//! block_cos_yaw, block_sin_yaw, block_vx, block_vy, block_yaw_rate`; with
//! `observe_velocity: false` only the poses (6): `pusher_x, pusher_y, block_x, block_y,
//! block_cos_yaw, block_sin_yaw`. Goal observation: the
//! block at the goal pose, the pusher touching it from behind (opposite the push direction;
//! `goal_pusher: Start` puts it at its start position instead), zero velocities. Success: block
//! position within `position_tolerance` and yaw within `yaw_tolerance` of the goal.
//! `distance_to_goal` = position error + `yaw_scale` x |yaw error|.

use crate::camera::Camera;
use crate::common::{self, Counters, Region};
use crate::config::Scenario;
use crate::geometry::{wrap_angle, Rect};
use crate::observation::{stack_frames, History, ObservationConfig};
use crate::physics::{clone_world, new_world, WorldState};
use crate::render::{palette, Canvas};
use crate::validate;
use crate::{Env, EnvSpec, Image, Result, SimError, Snapshot, StepInfo};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rapier3d::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::PI;
use std::sync::Arc;
use zplan_obs::Observation;

/// Gap (metres) kept between sampled pusher positions and the block.
const MARGIN: f32 = 0.02;
/// Sampling attempts before `reset` gives up.
const MAX_TRIES: usize = 10_000;
/// Height of the pusher ball's lowest point above the ground (it never touches it).
const PUSHER_GAP: f32 = 0.005;

/// Names of the full (with velocities) observation.
const FULL_NAMES: [&str; 11] = [
    "pusher_x",
    "pusher_y",
    "pusher_vx",
    "pusher_vy",
    "block_x",
    "block_y",
    "block_cos_yaw",
    "block_sin_yaw",
    "block_vx",
    "block_vy",
    "block_yaw_rate",
];
/// Indices into the full observation kept with `observe_velocity: false`.
const POSE_INDICES: [usize; 6] = [0, 1, 4, 5, 6, 7];

/// Shape of the pushed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BlockShape {
    /// A rectangular box of `block_size`.
    #[default]
    Box,
    /// A T: a bar of `block_size.0 x t_thickness` on top of a stem `t_thickness` wide, the
    /// whole `block_size.1` tall.
    T,
}

/// Where [`Env::goal_observation`] puts the pusher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GoalPusher {
    /// Touching the goal block from behind (opposite the direction from the block's start to
    /// its goal): where a straight push that ends at the goal leaves the pusher. With this, a
    /// plain distance between observations and the goal observation rewards pushing.
    #[default]
    Behind,
    /// At the pusher's start position.
    Start,
}

/// Configuration of [`Push`]; RON: `Push(shape: Box, ...)`. All fields optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Block shape. Default `Box`.
    pub shape: BlockShape,
    /// Footprint `(x, y)` extent of the block in metres (of the T's bounding box). Default
    /// (0.2, 0.2).
    pub block_size: (f32, f32),
    /// Bar and stem thickness of the T, metres. Default 0.06.
    pub t_thickness: f32,
    /// Block height in metres; must exceed the pusher radius so contacts are horizontal.
    /// Default 0.1.
    pub block_height: f32,
    /// Block mass in kg. Default 0.5.
    pub block_mass: f32,
    /// Friction coefficient of the ground, block and pusher. Default 0.5.
    pub friction: f32,
    /// Pusher radius in metres. Default 0.04.
    pub pusher_radius: f32,
    /// Pusher mass in kg (heavy, so the block barely slows it). Default 10.
    pub pusher_mass: f32,
    /// Pusher speed (m/s) an action of 1 per axis commands. Default 0.5.
    pub max_speed: f32,
    /// Half extent of the square arena (the picture; goals stay inside it), metres. Default 1.
    pub arena: f32,
    /// Where the block's start position is drawn from. Default within 0.1 m of the origin.
    pub block_start: Region,
    /// Interval of the block's start yaw (radians). Default (-pi, pi).
    pub block_start_yaw: (f32, f32),
    /// Interval of the goal's distance from the block's start position, metres. Default
    /// (0.2, 0.4).
    pub goal_distance: (f32, f32),
    /// Interval of the goal yaw minus the start yaw, radians. Default (-0.4, 0.4).
    pub goal_yaw_change: (f32, f32),
    /// Interval of the pusher's start distance from the block centre, metres. Default
    /// (0.2, 0.3).
    pub pusher_start_distance: (f32, f32),
    /// Interval of the pusher's start direction, radians, relative to "behind the block" (the
    /// direction opposite to the goal). Default (-0.8, 0.8); (-pi, pi) is uniform.
    pub pusher_start_angle: (f32, f32),
    /// Where the goal observation puts the pusher. Default `Behind`.
    pub goal_pusher: GoalPusher,
    /// Success tolerance on the block position, metres. Default 0.05.
    pub position_tolerance: f32,
    /// Success tolerance on the block yaw, radians. Default 0.2.
    pub yaw_tolerance: f32,
    /// Metres per radian of yaw error in `distance_to_goal`. Default 0.2.
    pub yaw_scale: f32,
    /// Seconds per control step. Default 0.1.
    pub control_dt: f32,
    /// Physics steps per control step. Default 5 (physics dt 0.02 s).
    pub substeps: u32,
    /// Episode step limit. Default 150.
    pub max_steps: u32,
    /// Whether the observation includes the velocities (11 values) or only the pusher
    /// position and the block pose (6). The pusher is velocity-commanded and friction stops
    /// the block within about one control step, so the poses are nearly the whole state;
    /// without velocities, distances between observations are pure pose distances (a moving
    /// block is not penalised for its nonzero velocity against the goal's zero). Default true.
    pub observe_velocity: bool,
    /// What the robot observes. Default: the state vector only. Proprioception is the
    /// pusher's position (and velocity, with `observe_velocity`).
    #[serde(skip_serializing_if = "ObservationConfig::is_default")]
    pub observation: ObservationConfig,
    /// Half extent (metres) of the observation camera's square view, centred on the origin.
    /// Default `None`: the whole arena plus a 2 % margin. A smaller view frames the workspace
    /// (the block starts near the origin and its goals lie within `block_start` +
    /// `goal_distance` of it), so the block covers more pixels; the pusher may leave the view
    /// (its position stays in the proprio field). Must lie in [0.1, 1.02 × arena].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_half_extent: Option<f32>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            shape: BlockShape::Box,
            block_size: (0.2, 0.2),
            t_thickness: 0.06,
            block_height: 0.1,
            block_mass: 0.5,
            friction: 0.5,
            pusher_radius: 0.04,
            pusher_mass: 10.0,
            max_speed: 0.5,
            arena: 1.0,
            block_start: Region {
                x: (-0.1, 0.1),
                y: (-0.1, 0.1),
            },
            block_start_yaw: (-PI, PI),
            goal_distance: (0.2, 0.4),
            goal_yaw_change: (-0.4, 0.4),
            pusher_start_distance: (0.2, 0.3),
            pusher_start_angle: (-0.8, 0.8),
            goal_pusher: GoalPusher::Behind,
            position_tolerance: 0.05,
            yaw_tolerance: 0.2,
            yaw_scale: 0.2,
            control_dt: 0.1,
            substeps: 5,
            max_steps: 150,
            observe_velocity: true,
            observation: ObservationConfig::default(),
            camera_half_extent: None,
        }
    }
}

impl PushConfig {
    /// The block's parts as rectangles in its body frame (origin at the centre of mass).
    fn parts(&self) -> Vec<Rect> {
        let (w, h) = self.block_size;
        match self.shape {
            BlockShape::Box => vec![Rect::new([0.0, 0.0], [w * 0.5, h * 0.5], 0.0)],
            BlockShape::T => {
                let t = self.t_thickness;
                // Bar on top, stem below, in a frame where the T spans y in [-h/2, h/2].
                let bar = (w * t, h * 0.5 - t * 0.5);
                let stem_len = h - t;
                let stem = (t * stem_len, -h * 0.5 + stem_len * 0.5);
                let com = (bar.0 * bar.1 + stem.0 * stem.1) / (bar.0 + stem.0);
                vec![
                    Rect::new([0.0, bar.1 - com], [w * 0.5, t * 0.5], 0.0),
                    Rect::new([0.0, stem.1 - com], [t * 0.5, stem_len * 0.5], 0.0),
                ]
            }
        }
    }

    /// Order of the block's rotational symmetry seen from above: 4 for a square box (its
    /// image repeats every quarter turn), 2 for an oblong box, 1 for the T.
    pub fn image_symmetry(&self) -> u32 {
        match self.shape {
            BlockShape::Box if self.block_size.0 == self.block_size.1 => 4,
            BlockShape::Box => 2,
            BlockShape::T => 1,
        }
    }

    /// Rewrites a state vector (as [`Env::state`] writes it) into what a camera image
    /// determines: the block's `(cos yaw, sin yaw)` become `(cos n·yaw, sin n·yaw)` for a block
    /// of [`image_symmetry`](Self::image_symmetry) `n`, since the image of a square at yaw
    /// `θ` and at `θ + π/2` is the same. Other entries, and states of another length, are left
    /// as they are.
    pub fn identifiable_state(&self, state: &mut [f32]) {
        let n = self.image_symmetry();
        let at = if self.observe_velocity {
            if state.len() != FULL_NAMES.len() {
                return;
            }
            6
        } else {
            if state.len() != POSE_INDICES.len() {
                return;
            }
            4
        };
        if n > 1 {
            let yaw = state[at + 1].atan2(state[at]) * n as f32;
            state[at] = yaw.cos();
            state[at + 1] = yaw.sin();
        }
    }

    /// Radius of the smallest origin-centred circle containing the block.
    fn block_radius(&self) -> f32 {
        self.parts()
            .iter()
            .flat_map(|r| r.corners())
            .map(|c| c[0].hypot(c[1]))
            .fold(0.0, f32::max)
    }
}

impl PushConfig {
    /// Names of the pusher's own state: its position, and velocity with `observe_velocity`.
    fn proprio_names(&self) -> Vec<String> {
        let n = if self.observe_velocity { 4 } else { 2 };
        FULL_NAMES[..n].iter().map(|s| s.to_string()).collect()
    }

    /// The camera's view: `camera_half_extent` around the origin, or the arena and a thin
    /// margin of its surroundings.
    fn view(&self) -> [f32; 4] {
        let m = self.camera_half_extent.unwrap_or(self.arena * 1.02);
        [-m, -m, m, m]
    }
}

/// The block's parts placed at pose `(x, y, yaw)`.
fn placed(parts: &[Rect], x: f32, y: f32, yaw: f32) -> Vec<Rect> {
    let (c, s) = (yaw.cos(), yaw.sin());
    parts
        .iter()
        .map(|r| {
            let p = [x + c * r.c[0] - s * r.c[1], y + s * r.c[0] + c * r.c[1]];
            Rect::new(p, r.h, r.angle + yaw)
        })
        .collect()
}

impl Scenario for PushConfig {
    const KIND: &'static str = "push";

    fn validate(&self) -> Result<()> {
        validate::positive("block_size.0", self.block_size.0)?;
        validate::positive("block_size.1", self.block_size.1)?;
        validate::within("block_size.0", self.block_size.0, 0.01, 10.0)?;
        validate::within("block_size.1", self.block_size.1, 0.01, 10.0)?;
        if self.shape == BlockShape::T {
            validate::positive("t_thickness", self.t_thickness)?;
            let max = self.block_size.0.min(self.block_size.1) * 0.8;
            if !(self.t_thickness < max) {
                return Err(SimError::invalid(
                    "t_thickness",
                    format!(
                        "must be below 0.8 x the smaller block_size ({max}), got {}",
                        self.t_thickness
                    ),
                ));
            }
        }
        validate::positive("pusher_radius", self.pusher_radius)?;
        validate::within("pusher_radius", self.pusher_radius, 0.005, 1.0)?;
        validate::positive("block_height", self.block_height)?;
        if !(self.block_height > self.pusher_radius + PUSHER_GAP) {
            return Err(SimError::invalid(
                "block_height",
                format!(
                    "must exceed pusher_radius + {PUSHER_GAP} ({}) so the pusher meets the block's side, got {}",
                    self.pusher_radius + PUSHER_GAP,
                    self.block_height
                ),
            ));
        }
        validate::positive("block_mass", self.block_mass)?;
        validate::within("block_mass", self.block_mass, 1e-3, 1e3)?;
        validate::non_negative("friction", self.friction)?;
        validate::within("friction", self.friction, 0.0, 5.0)?;
        validate::positive("pusher_mass", self.pusher_mass)?;
        validate::within("pusher_mass", self.pusher_mass, 1e-3, 1e5)?;
        validate::positive("max_speed", self.max_speed)?;
        validate::positive("arena", self.arena)?;
        validate::within("arena", self.arena, 0.1, 100.0)?;
        if let Some(h) = self.camera_half_extent {
            validate::positive("camera_half_extent", h)?;
            validate::within("camera_half_extent", h, 0.1, self.arena * 1.02)?;
        }
        validate::clocks(self.control_dt, self.substeps, self.max_steps)?;
        let physics_dt = self.control_dt / self.substeps as f32;
        if !(self.max_speed * physics_dt <= self.pusher_radius) {
            return Err(SimError::invalid(
                "max_speed",
                format!(
                    "travels {} m per physics step, more than pusher_radius ({}); lower it or raise substeps",
                    self.max_speed * physics_dt,
                    self.pusher_radius
                ),
            ));
        }
        let a = self.arena;
        let br = self.block_radius();
        self.block_start
            .validate("block_start", [-a + br, -a + br, a - br, a - br])?;
        validate::interval("block_start_yaw", self.block_start_yaw, -2.0 * PI, 2.0 * PI)?;
        validate::interval("goal_distance", self.goal_distance, 0.0, 2.0 * a)?;
        validate::interval("goal_yaw_change", self.goal_yaw_change, -PI, PI)?;
        validate::interval(
            "pusher_start_distance",
            self.pusher_start_distance,
            0.0,
            2.0 * a,
        )?;
        validate::interval("pusher_start_angle", self.pusher_start_angle, -PI, PI)?;
        // The pusher must be able to start clear of the block, inside the arena.
        let clear = br + self.pusher_radius + MARGIN;
        if !(self.pusher_start_distance.1 >= clear) {
            return Err(SimError::invalid(
                "pusher_start_distance",
                format!("the upper end must be at least block radius + pusher_radius + {MARGIN} = {clear}"),
            ));
        }
        validate::positive("position_tolerance", self.position_tolerance)?;
        validate::positive("yaw_tolerance", self.yaw_tolerance)?;
        validate::non_negative("yaw_scale", self.yaw_scale)?;
        if !(self.goal_distance.0 + br <= a) {
            return Err(SimError::invalid(
                "goal_distance",
                format!(
                    "goals at the lower end ({}) already leave the arena (half extent {a})",
                    self.goal_distance.0
                ),
            ));
        }
        self.observation.validate(Some(&self.proprio_names()))?;
        Ok(())
    }

    fn spec(&self) -> EnvSpec {
        let names = if self.observe_velocity {
            FULL_NAMES.to_vec()
        } else {
            POSE_INDICES.iter().map(|&i| FULL_NAMES[i]).collect()
        };
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let observation = self.observation.spec(&names, Some(&self.proprio_names()));
        common::spec(
            Self::KIND,
            names,
            observation,
            2,
            self.control_dt,
            self.substeps,
            self.max_steps,
        )
    }

    fn build(&self) -> Result<Box<dyn Env>> {
        Ok(Box::new(Push::new(self.clone())?))
    }
}

/// Static data shared by clones of one environment.
struct Layout {
    config: PushConfig,
    parts: Vec<Rect>,
    pristine: WorldState,
    /// The observation camera and its background (arena floor and surroundings).
    camera: Option<(Camera, Vec<u8>)>,
}

/// A planar pose.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Pose2 {
    x: f32,
    y: f32,
    yaw: f32,
}

/// The push environment. Build it from a [`PushConfig`].
pub struct Push {
    layout: Arc<Layout>,
    spec: EnvSpec,
    world: PhysicsWorld,
    pusher: RigidBodyHandle,
    block: RigidBodyHandle,
    goal: Pose2,
    pusher_start: [f32; 2],
    pusher_goal: [f32; 2],
    counters: Counters,
    action: [f32; 2],
    /// Recent pusher positions and block poses, for the frames of an image observation.
    history: History<([f32; 2], Pose2)>,
}

#[derive(Clone)]
struct PushSnapshot {
    layout: Arc<Layout>,
    world: WorldState,
    goal: Pose2,
    pusher_start: [f32; 2],
    pusher_goal: [f32; 2],
    counters: Counters,
    history: History<([f32; 2], Pose2)>,
}

impl Push {
    /// Validates `config` and builds the scene (block at the origin, pusher behind it). Call
    /// [`Env::reset`] to sample a start and a goal.
    ///
    /// # Errors
    /// Validation errors.
    pub fn new(config: PushConfig) -> Result<Self> {
        config.validate()?;
        let spec = config.spec();
        let parts = config.parts();
        let mut world = new_world(Vector::new(0.0, 0.0, -9.81), spec.physics_dt);
        let ground = world.bodies.insert(RigidBodyBuilder::fixed());
        let g = config.arena + 1.0;
        world.colliders.insert_with_parent(
            ColliderBuilder::cuboid(g, g, 0.05)
                .translation(Vector::new(0.0, 0.0, -0.05))
                .friction(config.friction),
            ground,
            &mut world.bodies,
        );
        let hz = config.block_height * 0.5;
        let block = world.bodies.insert(
            RigidBodyBuilder::dynamic()
                .translation(Vector::new(0.0, 0.0, hz))
                .locked_axes(LockedAxes::ROTATION_LOCKED_X | LockedAxes::ROTATION_LOCKED_Y)
                .can_sleep(false),
        );
        let area: f32 = parts.iter().map(|r| 4.0 * r.h[0] * r.h[1]).sum();
        let density = config.block_mass / (area * config.block_height);
        for r in &parts {
            world.colliders.insert_with_parent(
                ColliderBuilder::cuboid(r.h[0], r.h[1], hz)
                    .translation(Vector::new(r.c[0], r.c[1], 0.0))
                    .density(density)
                    .friction(config.friction),
                block,
                &mut world.bodies,
            );
        }
        let pz = config.pusher_radius + PUSHER_GAP;
        let pusher_start = [-config.pusher_start_distance.1, 0.0];
        let pusher = world.bodies.insert(
            RigidBodyBuilder::dynamic()
                .translation(Vector::new(pusher_start[0], pusher_start[1], pz))
                .locked_axes(LockedAxes::TRANSLATION_LOCKED_Z | LockedAxes::ROTATION_LOCKED)
                .gravity_scale(0.0)
                .can_sleep(false),
        );
        world.colliders.insert_with_parent(
            ColliderBuilder::ball(config.pusher_radius)
                .mass(config.pusher_mass)
                .friction(config.friction),
            pusher,
            &mut world.bodies,
        );
        let pristine = WorldState::capture(&world);
        let camera = config.observation.camera(config.view()).map(|cam| {
            let a = config.arena;
            let floor = Rect::aabb(-a, -a, a, a);
            (cam, cam.background(palette::WALL, &[floor], palette::FLOOR))
        });
        let history = History::new(
            config.observation.history(),
            (pusher_start, Pose2::default()),
        );
        Ok(Push {
            layout: Arc::new(Layout {
                config,
                parts,
                pristine,
                camera,
            }),
            history,
            spec,
            world,
            pusher,
            block,
            goal: Pose2 {
                x: 0.3,
                y: 0.0,
                yaw: 0.0,
            },
            pusher_start,
            pusher_goal: pusher_start,
            counters: Counters::default(),
            action: [0.0; 2],
        })
    }

    /// The configuration this environment was built from.
    pub fn config(&self) -> &PushConfig {
        &self.layout.config
    }

    /// The goal pose `[x, y, yaw]` of the block.
    pub fn goal_pose(&self) -> [f32; 3] {
        [self.goal.x, self.goal.y, self.goal.yaw]
    }

    /// The block's pose `[x, y, yaw]`.
    pub fn block_pose(&self) -> [f32; 3] {
        let p = self.block_pose2();
        [p.x, p.y, p.yaw]
    }

    /// Where the pusher started this episode.
    pub fn pusher_start(&self) -> [f32; 2] {
        self.pusher_start
    }

    /// Where the goal observation puts the pusher (see [`GoalPusher`]).
    pub fn pusher_goal(&self) -> [f32; 2] {
        self.pusher_goal
    }

    /// The Rapier world (for inspection and benchmarks; do not add or remove objects).
    pub fn world(&self) -> &PhysicsWorld {
        &self.world
    }

    /// Handles of the pusher and the block in [`Push::world`].
    pub fn handles(&self) -> (RigidBodyHandle, RigidBodyHandle) {
        (self.pusher, self.block)
    }

    /// Smallest distance between the pusher disc at `p` and the block at `pose` `[x, y, yaw]`
    /// (negative when they overlap).
    pub fn pusher_block_gap(&self, p: [f32; 2], pose: [f32; 3]) -> f32 {
        placed(&self.layout.parts, pose[0], pose[1], pose[2])
            .iter()
            .map(|r| r.signed_distance(p))
            .fold(f32::INFINITY, f32::min)
            - self.layout.config.pusher_radius
    }

    /// Whether the block at `pose` lies entirely inside the arena.
    pub fn inside_arena(&self, pose: [f32; 3]) -> bool {
        let a = self.layout.config.arena;
        placed(&self.layout.parts, pose[0], pose[1], pose[2])
            .iter()
            .flat_map(|r| r.corners())
            .all(|c| c[0].abs() <= a && c[1].abs() <= a)
    }

    fn block_pose2(&self) -> Pose2 {
        let rb = &self.world.bodies[self.block];
        let t = rb.translation();
        let x_axis = rb.rotation() * Vector::X;
        Pose2 {
            x: t.x,
            y: t.y,
            yaw: x_axis.y.atan2(x_axis.x),
        }
    }

    /// The observation from the full 11-value state (drops the velocities with
    /// `observe_velocity: false`).
    fn project(&self, full: Vec<f32>) -> Vec<f32> {
        if self.layout.config.observe_velocity {
            full
        } else {
            POSE_INDICES.iter().map(|&i| full[i]).collect()
        }
    }

    /// The proprioceptive part of a state vector: the pusher's entries (the first 2 or 4).
    fn proprio(&self, state: &[f32]) -> Vec<f32> {
        let n = if self.layout.config.observe_velocity {
            4
        } else {
            2
        };
        state[..n].to_vec()
    }

    /// The full 11-value state from an observation (zero velocities where not observed).
    fn unproject(&self, obs: &[f32]) -> Vec<f32> {
        if self.layout.config.observe_velocity {
            obs.to_vec()
        } else {
            let mut full = vec![0.0; FULL_NAMES.len()];
            for (&i, &v) in POSE_INDICES.iter().zip(obs) {
                full[i] = v;
            }
            full
        }
    }

    fn place(&mut self, pusher: [f32; 4], block: Pose2, block_vel: [f32; 3]) {
        let cfg = &self.layout.config;
        let pz = cfg.pusher_radius + PUSHER_GAP;
        let rb = &mut self.world.bodies[self.pusher];
        rb.set_translation(Vector::new(pusher[0], pusher[1], pz), true);
        rb.set_linvel(Vector::new(pusher[2], pusher[3], 0.0), true);
        let hz = cfg.block_height * 0.5;
        let rb = &mut self.world.bodies[self.block];
        rb.set_position(
            rapier3d::math::Pose::from_parts(
                Vector::new(block.x, block.y, hz),
                rapier3d::math::Rotation::from_rotation_z(block.yaw),
            ),
            true,
        );
        rb.set_linvel(Vector::new(block_vel[0], block_vel[1], 0.0), true);
        rb.set_angvel(Vector::new(0.0, 0.0, block_vel[2]), true);
        let pose = self.poses();
        self.history.fill(pose);
    }

    /// The pusher position and block pose now (what a camera frame shows).
    fn poses(&self) -> ([f32; 2], Pose2) {
        let p = self.world.bodies[self.pusher].translation();
        ([p.x, p.y], self.block_pose2())
    }

    /// Camera frames of the scene at `poses` (oldest first), channel-stacked.
    fn frames(&self, poses: &[([f32; 2], Pose2)]) -> Vec<u8> {
        let Some((cam, bg)) = &self.layout.camera else {
            return Vec::new();
        };
        let r = self.layout.config.pusher_radius;
        stack_frames(bg, poses, |f, (p, b)| {
            for part in &placed(&self.layout.parts, b.x, b.y, b.yaw) {
                cam.rect(f, part, palette::OBJECT);
            }
            cam.disc(f, *p, r, palette::PUSHER);
        })
    }

    /// Samples the block's start and goal poses, the pusher's start and its goal position.
    fn sample(&self, rng: &mut ChaCha8Rng) -> Option<(Pose2, Pose2, [f32; 2], [f32; 2])> {
        let cfg = &self.layout.config;
        let start = {
            let p = cfg.block_start.sample(rng);
            Pose2 {
                x: p[0],
                y: p[1],
                yaw: wrap_angle(common::uniform(rng, cfg.block_start_yaw)),
            }
        };
        for _ in 0..MAX_TRIES {
            let d = common::uniform(rng, cfg.goal_distance);
            let dir = common::uniform(rng, (-PI, PI));
            let goal = Pose2 {
                x: start.x + d * dir.cos(),
                y: start.y + d * dir.sin(),
                yaw: wrap_angle(start.yaw + common::uniform(rng, cfg.goal_yaw_change)),
            };
            let r = common::uniform(rng, cfg.pusher_start_distance);
            let a = dir + PI + common::uniform(rng, cfg.pusher_start_angle);
            let p = [start.x + r * a.cos(), start.y + r * a.sin()];
            let g = [goal.x, goal.y, goal.yaw];
            let pg = match cfg.goal_pusher {
                GoalPusher::Start => p,
                GoalPusher::Behind => {
                    // Walk back from the goal centre until the pusher clears the block by 5 mm.
                    let back = [-dir.cos(), -dir.sin()];
                    let mut d = 0.0;
                    while self.pusher_block_gap([g[0] + back[0] * d, g[1] + back[1] * d], g) < 0.005
                        && d < 2.0
                    {
                        d += 0.0025;
                    }
                    [g[0] + back[0] * d, g[1] + back[1] * d]
                }
            };
            let inside = |q: [f32; 2]| {
                q[0].abs() <= cfg.arena - cfg.pusher_radius
                    && q[1].abs() <= cfg.arena - cfg.pusher_radius
            };
            let ok = self.inside_arena(g)
                && inside(p)
                && inside(pg)
                && self.pusher_block_gap(p, [start.x, start.y, start.yaw]) >= MARGIN
                && self.pusher_block_gap(p, g) >= MARGIN;
            if ok {
                return Some((start, goal, p, pg));
            }
        }
        None
    }
}

impl Env for Push {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (start, goal, p, pg) = self.sample(&mut rng).ok_or_else(|| SimError::Reset {
            seed,
            message: "no goal inside the arena with a clear pusher start found".into(),
        })?;
        let layout = self.layout.clone();
        layout.pristine.apply(&mut self.world);
        self.place([p[0], p[1], 0.0, 0.0], start, [0.0; 3]);
        self.goal = goal;
        self.pusher_start = p;
        self.pusher_goal = pg;
        self.counters = Counters::default();
        Ok(())
    }

    fn observe(&self) -> Observation {
        self.layout.config.observation.assemble(
            || self.state(),
            || self.frames(self.history.poses()),
            || self.proprio(&self.state()),
        )
    }

    fn goal_observation(&self) -> Observation {
        let k = self.history.poses().len();
        self.layout.config.observation.assemble(
            || self.goal_state(),
            || self.frames(&vec![(self.pusher_goal, self.goal); k]),
            || self.proprio(&self.goal_state()),
        )
    }

    fn state(&self) -> Vec<f32> {
        let p = &self.world.bodies[self.pusher];
        let b = &self.world.bodies[self.block];
        let (pt, pv) = (p.translation(), p.linvel());
        let (bt, bv, bw) = (b.translation(), b.linvel(), b.angvel());
        let x_axis = b.rotation() * Vector::X;
        let n = x_axis.x.hypot(x_axis.y).max(f32::MIN_POSITIVE);
        self.project(vec![
            pt.x,
            pt.y,
            pv.x,
            pv.y,
            bt.x,
            bt.y,
            x_axis.x / n,
            x_axis.y / n,
            bv.x,
            bv.y,
            bw.z,
        ])
    }

    fn goal_state(&self) -> Vec<f32> {
        let g = self.goal;
        let s = self.pusher_goal;
        self.project(vec![
            s[0],
            s[1],
            0.0,
            0.0,
            g.x,
            g.y,
            g.yaw.cos(),
            g.yaw.sin(),
            0.0,
            0.0,
            0.0,
        ])
    }

    fn step(&mut self, action: &[f32]) -> Result<StepInfo> {
        let clipped = common::clip_action(&self.spec, action, &mut self.action)?;
        let s = self.layout.config.max_speed;
        let v = Vector::new(self.action[0] * s, self.action[1] * s, 0.0);
        for _ in 0..self.spec.substeps {
            self.world.bodies[self.pusher].set_linvel(v, true);
            self.world.step();
        }
        self.counters.record(clipped);
        if self.layout.camera.is_some() {
            let pose = self.poses();
            self.history.push(pose);
        }
        Ok(StepInfo { clipped })
    }

    fn success(&self) -> bool {
        let b = self.block_pose2();
        let cfg = &self.layout.config;
        (b.x - self.goal.x).hypot(b.y - self.goal.y) <= cfg.position_tolerance
            && wrap_angle(b.yaw - self.goal.yaw).abs() <= cfg.yaw_tolerance
    }

    fn distance_to_goal(&self) -> f32 {
        let b = self.block_pose2();
        (b.x - self.goal.x).hypot(b.y - self.goal.y)
            + self.layout.config.yaw_scale * wrap_angle(b.yaw - self.goal.yaw).abs()
    }

    fn steps(&self) -> u32 {
        self.counters.steps
    }

    fn clipped_total(&self) -> u64 {
        self.counters.clipped_total
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot(Arc::new(PushSnapshot {
            layout: self.layout.clone(),
            world: WorldState::capture(&self.world),
            goal: self.goal,
            pusher_start: self.pusher_start,
            pusher_goal: self.pusher_goal,
            counters: self.counters,
            history: self.history.clone(),
        }))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let s = snapshot
            .0
            .downcast_ref::<PushSnapshot>()
            .ok_or_else(|| SimError::SnapshotMismatch("not a push snapshot".into()))?;
        if !Arc::ptr_eq(&s.layout, &self.layout) && s.layout.config != self.layout.config {
            return Err(SimError::SnapshotMismatch(
                "taken from a push environment with another config".into(),
            ));
        }
        s.world.apply(&mut self.world);
        self.goal = s.goal;
        self.pusher_start = s.pusher_start;
        self.pusher_goal = s.pusher_goal;
        self.counters = s.counters;
        self.history.clone_from(&s.history);
        Ok(())
    }

    fn set_state(&mut self, obs: &[f32]) -> Result<()> {
        common::check_state(&self.spec, obs)?;
        let cos_index = if self.layout.config.observe_velocity {
            6
        } else {
            4
        };
        let obs = &self.unproject(obs);
        let (c, s) = (obs[6], obs[7]);
        if !(c.hypot(s) > 1e-6) {
            return Err(SimError::InvalidState {
                index: cos_index,
                name: self.spec.state_names[cos_index].clone(),
                message: format!("(cos, sin) = ({c}, {s}) has no direction"),
            });
        }
        let block = Pose2 {
            x: obs[4],
            y: obs[5],
            yaw: s.atan2(c),
        };
        self.place(
            [obs[0], obs[1], obs[2], obs[3]],
            block,
            [obs[8], obs[9], obs[10]],
        );
        Ok(())
    }

    fn render(&self, width: u32, height: u32) -> Image {
        let cfg = &self.layout.config;
        let a = cfg.arena;
        let m = a * 1.02;
        let mut c = Canvas::new(width, height, [-m, -m, m, m], palette::WALL);
        c.rect(&Rect::aabb(-a, -a, a, a), palette::FLOOR);
        let g = self.goal;
        let goal_parts = placed(&self.layout.parts, g.x, g.y, g.yaw);
        for r in &goal_parts {
            c.rect(r, palette::GOAL_FAINT);
        }
        let b = self.block_pose2();
        for r in &placed(&self.layout.parts, b.x, b.y, b.yaw) {
            c.rect(r, palette::OBJECT);
        }
        let w = (a * 0.006).max(0.002);
        for r in &goal_parts {
            c.outline(&r.corners(), w, palette::GOAL);
        }
        let p = self.world.bodies[self.pusher].translation();
        c.disc([p.x, p.y], cfg.pusher_radius, palette::PUSHER);
        c.finish()
    }

    fn boxed_clone(&self) -> Box<dyn Env> {
        Box::new(Push {
            layout: self.layout.clone(),
            spec: self.spec.clone(),
            world: clone_world(&self.world),
            pusher: self.pusher,
            block: self.block,
            goal: self.goal,
            pusher_start: self.pusher_start,
            pusher_goal: self.pusher_goal,
            counters: self.counters,
            action: self.action,
            history: self.history.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn env(shape: BlockShape) -> Push {
        let mut e = Push::new(PushConfig {
            shape,
            ..Default::default()
        })
        .unwrap();
        e.reset(11).unwrap();
        e
    }

    #[test]
    fn t_parts_are_centred_on_the_centre_of_mass() {
        let c = PushConfig {
            shape: BlockShape::T,
            ..Default::default()
        };
        let parts = c.parts();
        let moment: f32 = parts.iter().map(|r| r.h[0] * r.h[1] * r.c[1]).sum();
        assert_relative_eq!(moment, 0.0, epsilon = 1e-7);
        let e = Push::new(c).unwrap();
        let com = e.world.bodies[e.block].center_of_mass();
        assert_relative_eq!(com.y, 0.0, epsilon = 1e-5);
    }

    #[test]
    fn block_rests_and_pusher_moves_it() {
        for shape in [BlockShape::Box, BlockShape::T] {
            let mut e = env(shape);
            // Pusher 0.2 m left of the block, block at the origin with yaw 0; push right.
            e.set_state(&[-0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
                .unwrap();
            for _ in 0..3 {
                e.step(&[0.0, 0.0]).unwrap();
            }
            let o = e.state();
            assert_relative_eq!(o[4], 0.0, epsilon = 1e-3);
            let z = e.world.bodies[e.block].translation().z;
            assert_relative_eq!(z, e.config().block_height * 0.5, epsilon = 5e-3);
            for _ in 0..10 {
                e.step(&[1.0, 0.0]).unwrap();
            }
            let o = e.state();
            assert!(o[4] > 0.2, "{shape:?}: block did not move: {o:?}");
            assert!(
                o[0] < o[4],
                "{shape:?}: pusher passed through the block: {o:?}"
            );
            // Friction stops the block soon after the pusher stops.
            for _ in 0..5 {
                e.step(&[-1.0, 0.0]).unwrap();
            }
            let o = e.state();
            assert!(o[8].abs() < 1e-2, "{shape:?}: block still sliding: {o:?}");
        }
    }

    #[test]
    fn success_predicate() {
        let mut e = env(BlockShape::Box);
        let g = e.goal_state();
        e.set_state(&g).unwrap();
        assert!(e.success(), "{}", e.distance_to_goal());
        let [gx, gy, gyaw] = e.goal_pose();
        let mut o = g.clone();
        o[4] = gx + 0.04;
        assert!({
            e.set_state(&o).unwrap();
            e.success()
        });
        o[4] = gx + 0.06;
        e.set_state(&o).unwrap();
        assert!(!e.success());
        let mut o = g.clone();
        o[6] = (gyaw + 0.25).cos();
        o[7] = (gyaw + 0.25).sin();
        e.set_state(&o).unwrap();
        assert!(!e.success());
        assert_relative_eq!(e.distance_to_goal(), 0.2 * 0.25, epsilon = 1e-4);
        let _ = gy;
    }

    #[test]
    fn pose_only_observation_matches_the_full_one() {
        let mut full = env(BlockShape::Box);
        let mut pose = Push::new(PushConfig {
            observe_velocity: false,
            ..Default::default()
        })
        .unwrap();
        pose.reset(11).unwrap();
        assert_eq!(pose.spec().state_dim(), 6);
        assert_eq!(pose.spec().state_names[2], "block_x");
        let keep = |o: &[f32]| POSE_INDICES.iter().map(|&i| o[i]).collect::<Vec<_>>();
        assert_eq!(pose.goal_state(), keep(&full.goal_state()));
        for _ in 0..8 {
            full.step(&[0.7, -0.3]).unwrap();
            pose.step(&[0.7, -0.3]).unwrap();
            assert_eq!(pose.state(), keep(&full.state()));
        }
        // set_state takes the 6 values and zeroes the velocities.
        let o = pose.state();
        pose.set_state(&o).unwrap();
        assert_eq!(pose.state(), o);
        let err = pose.set_state(&[0.0; 11]).unwrap_err().to_string();
        assert!(err.contains('6'), "{err}");
        let err = pose.set_state(&[0.0; 6]).unwrap_err().to_string();
        assert!(err.contains("block_cos_yaw"), "{err}");
    }

    #[test]
    fn identifiable_state_keeps_what_a_camera_can_tell() {
        let (yaw, quarter) = (0.3f32, std::f32::consts::FRAC_PI_2);
        let pose = |c: &PushConfig, yaw: f32| {
            let mut s = vec![0.1, 0.2, -0.3, 0.4, yaw.cos(), yaw.sin()];
            c.identifiable_state(&mut s);
            s
        };
        let square = PushConfig {
            observe_velocity: false,
            ..Default::default()
        };
        assert_eq!(square.image_symmetry(), 4);
        // A square turned a quarter turn further looks the same, and labels the same.
        let (a, b) = (pose(&square, yaw), pose(&square, yaw + quarter));
        for (x, y) in a.iter().zip(&b) {
            assert_relative_eq!(x, y, epsilon = 1e-5);
        }
        assert_eq!(a[..4], [0.1, 0.2, -0.3, 0.4]);
        assert_relative_eq!(a[4], (4.0 * yaw).cos(), epsilon = 1e-5);
        assert_relative_eq!(a[5], (4.0 * yaw).sin(), epsilon = 1e-5);
        // An oblong box repeats every half turn; the T never.
        let oblong = PushConfig {
            block_size: (0.3, 0.1),
            ..square.clone()
        };
        assert_eq!(oblong.image_symmetry(), 2);
        assert_relative_eq!(pose(&oblong, yaw)[4], (2.0 * yaw).cos(), epsilon = 1e-5);
        let t = PushConfig {
            shape: BlockShape::T,
            ..square.clone()
        };
        assert_eq!(pose(&t, yaw)[4..], [yaw.cos(), yaw.sin()]);
        // With velocities the yaw is entries 6 and 7; other lengths are left alone.
        let full = PushConfig::default();
        let mut s = vec![0.0; 11];
        s[6] = yaw.cos();
        s[7] = yaw.sin();
        full.identifiable_state(&mut s);
        assert_relative_eq!(s[6], (4.0 * yaw).cos(), epsilon = 1e-5);
        let mut short = vec![1.0, 0.0];
        square.identifiable_state(&mut short);
        assert_eq!(short, [1.0, 0.0]);
    }

    #[test]
    fn validation_names_fields() {
        let bad = |c: PushConfig| c.validate().unwrap_err().to_string();
        assert!(bad(PushConfig {
            block_height: 0.01,
            ..Default::default()
        })
        .contains("block_height"));
        assert!(bad(PushConfig {
            friction: f32::NAN,
            ..Default::default()
        })
        .contains("friction"));
        assert!(bad(PushConfig {
            goal_distance: (0.3, 0.2),
            ..Default::default()
        })
        .contains("goal_distance"));
        assert!(bad(PushConfig {
            pusher_start_distance: (0.05, 0.1),
            ..Default::default()
        })
        .contains("pusher_start_distance"));
    }
}
