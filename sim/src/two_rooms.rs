//! `two_rooms`: a point mass in two rooms joined by a door.
//!
//! Top-down, in the xy plane with zero gravity. The arena is `[0, 2 * room_width] x [0,
//! room_height]`, enclosed by walls; a dividing wall at `x = room_width` has a door centred at
//! `y = door_center`. Extra wall segments (`walls`) turn it into a maze.
//!
//! The agent is a dynamic ball whose z translation and rotations are locked. The action is a
//! velocity command in `[-1, 1]^2`, scaled by `max_speed` and written to the ball's linear
//! velocity before each physics substep; contacts with the (frictionless) walls then remove the
//! component that would enter a wall, so the ball slides along walls instead of sticking.
//!
//! State: `[x, y, vx, vy]` (or `[x, y]` with `observe_velocity: false`), plus `door_y` when
//! the door moves per episode (`door_center: Range(lo, hi)`); goal state `[gx, gy, 0, 0]`.
//! Observation ([`ObservationConfig`]): the state vector without `door_y` (field `state`),
//! and/or a top-down camera image of walls and ball (field `image`; no goal marker). The
//! robot has no proprioception. Success: the ball centre within `goal_radius` of the goal.

use crate::camera::Camera;
use crate::common::{self, Counters, Region};
use crate::config::Scenario;
use crate::geometry::{clearance, Grid, Rect};
use crate::observation::{stack_frames, History, ObservationConfig};
use crate::physics::{clone_world, new_world, WorldState};
use crate::render::{palette, Canvas};
use crate::validate;
use crate::{Env, EnvSpec, Image, Result, SimError, Snapshot, StepInfo};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rapier3d::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use zplan_obs::Observation;

/// Extra clearance (metres) kept between sampled positions and walls.
const MARGIN: f32 = 0.02;
/// Cell size (metres) of the reachability grid; below `MARGIN` so a sampled position's cell is
/// always free.
const GRID_CELL: f32 = 0.02;
/// Sampling attempts before `reset` gives up.
const MAX_TRIES: usize = 10_000;

/// A wall segment: a box of the given thickness around the segment `from`–`to` (extended by
/// half the thickness at both ends, so segments that meet close the corner).
///
/// RON: `(from: (1.0, 0.0), to: (1.0, 1.2))` or with `thickness: 0.05`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallSegment {
    /// One end, `(x, y)` in metres.
    pub from: (f32, f32),
    /// The other end.
    pub to: (f32, f32),
    /// Thickness in metres; defaults to the scenario's `wall_thickness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thickness: Option<f32>,
}

/// Configuration of [`TwoRooms`]; RON: `TwoRooms(door_width: 0.6, ...)`. All fields optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoRoomsConfig {
    /// Width (x) of each room in metres. Default 2.
    pub room_width: f32,
    /// Height (y) of both rooms in metres. Default 2.
    pub room_height: f32,
    /// Thickness of the outer and dividing walls in metres. Default 0.1.
    pub wall_thickness: f32,
    /// Width of the door in the dividing wall, metres. Default 0.8 (the ball's diameter is 0.2).
    pub door_width: f32,
    /// y of the door's centre: a number (`door_center: 1.2`), or `Range(lo, hi)` to draw it
    /// uniformly per episode (visible in camera images, absent from the observed state
    /// vector; the true state then ends with `door_y`). Default: the middle of the wall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_center: Option<DoorCenter>,
    /// Extra wall segments inside the arena (mazes). Default none.
    pub walls: Vec<WallSegment>,
    /// Radius of the ball in metres. Default 0.1.
    pub ball_radius: f32,
    /// Speed (m/s) an action of norm 1 per axis commands. Default 1.
    pub max_speed: f32,
    /// Where starts are drawn from (uniformly, rejecting positions too close to walls).
    /// Default: the left room.
    pub start: Region,
    /// Where goals are drawn from (uniformly, rejecting positions too close to walls or not
    /// reachable from the start). Default: the right room.
    pub goal: Region,
    /// Success radius around the goal in metres. Default 0.1.
    pub goal_radius: f32,
    /// Seconds per control step. Default 0.1.
    pub control_dt: f32,
    /// Physics steps per control step. Default 2 (physics dt 0.05 s).
    pub substeps: u32,
    /// Episode step limit. Default 120.
    pub max_steps: u32,
    /// Whether the observation includes the ball's velocity (`[x, y, vx, vy]`) or only its
    /// position (`[x, y]`). The ball is velocity-commanded, so its position is the whole
    /// state either way; without velocity, distances between observations are pure position
    /// distances (no zero-velocity trap against walls). Default true.
    pub observe_velocity: bool,
    /// What the robot observes. Default: the state vector only.
    #[serde(skip_serializing_if = "ObservationConfig::is_default")]
    pub observation: ObservationConfig,
}

/// Where the door is: fixed, or drawn per episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DoorCenter {
    /// Always at this y (metres).
    Fixed(f32),
    /// Drawn uniformly from `[lo, hi]` at every reset.
    Range(f32, f32),
}

impl Serialize for DoorCenter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTupleVariant;
        match *self {
            // A plain number, as files wrote the door before ranges existed.
            DoorCenter::Fixed(v) => s.serialize_f32(v),
            DoorCenter::Range(lo, hi) => {
                let mut t = s.serialize_tuple_variant("DoorCenter", 1, "Range", 2)?;
                t.serialize_field(&lo)?;
                t.serialize_field(&hi)?;
                t.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for DoorCenter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DoorCenter;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number (metres) or `Range(lo, hi)`")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<DoorCenter, E> {
                Ok(DoorCenter::Fixed(v as f32))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<DoorCenter, E> {
                Ok(DoorCenter::Fixed(v as f32))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<DoorCenter, E> {
                Ok(DoorCenter::Fixed(v as f32))
            }
            fn visit_some<D2: serde::Deserializer<'de>>(
                self,
                d: D2,
            ) -> std::result::Result<DoorCenter, D2::Error> {
                DoorCenter::deserialize(d)
            }
            // RON `Range(0.4, 1.6)` arrives as a sequence of its two bounds.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<DoorCenter, A::Error> {
                use serde::de::Error;
                let lo: f32 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &"Range(lo, hi)"))?;
                let hi: f32 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &"Range(lo, hi)"))?;
                if seq.next_element::<f32>()?.is_some() {
                    return Err(A::Error::invalid_length(3, &"Range(lo, hi)"));
                }
                Ok(DoorCenter::Range(lo, hi))
            }
            // JSON `{"Range": [0.4, 1.6]}` (how the range is serialised there).
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<DoorCenter, A::Error> {
                use serde::de::Error;
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| A::Error::custom("expected `Range`"))?;
                match key.as_str() {
                    "Range" => {
                        let (lo, hi): (f32, f32) = map.next_value()?;
                        Ok(DoorCenter::Range(lo, hi))
                    }
                    "Fixed" => Ok(DoorCenter::Fixed(map.next_value()?)),
                    other => Err(A::Error::unknown_variant(other, &["Range", "Fixed"])),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for TwoRoomsConfig {
    fn default() -> Self {
        TwoRoomsConfig {
            room_width: 2.0,
            room_height: 2.0,
            wall_thickness: 0.1,
            door_width: 0.8,
            door_center: None,
            walls: Vec::new(),
            ball_radius: 0.1,
            max_speed: 1.0,
            start: Region {
                x: (0.3, 1.6),
                y: (0.3, 1.7),
            },
            goal: Region {
                x: (2.4, 3.7),
                y: (0.3, 1.7),
            },
            goal_radius: 0.1,
            control_dt: 0.1,
            substeps: 2,
            max_steps: 120,
            observe_velocity: true,
            observation: ObservationConfig::default(),
        }
    }
}

impl TwoRoomsConfig {
    /// The door's centre when it does not move, else the middle of its range.
    fn door_center(&self) -> f32 {
        match self.door_center {
            None => self.room_height * 0.5,
            Some(DoorCenter::Fixed(c)) => c,
            Some(DoorCenter::Range(lo, hi)) => (lo + hi) * 0.5,
        }
    }

    /// Whether the door is drawn per episode.
    fn moving_door(&self) -> bool {
        matches!(self.door_center, Some(DoorCenter::Range(..)))
    }

    /// This config with the door fixed at `y`.
    fn with_door(&self, y: f32) -> TwoRoomsConfig {
        TwoRoomsConfig {
            door_center: Some(DoorCenter::Fixed(y)),
            ..self.clone()
        }
    }

    /// Names of the observed state vector (`x, y[, vx, vy]`).
    fn observed_state_names(&self) -> Vec<String> {
        let all = ["x", "y", "vx", "vy"];
        let n = if self.observe_velocity { 4 } else { 2 };
        all[..n].iter().map(|s| s.to_string()).collect()
    }

    /// The camera's view: the arena with its outer walls.
    fn view(&self) -> [f32; 4] {
        let t = self.wall_thickness;
        [-t, -t, 2.0 * self.room_width + t, self.room_height + t]
    }

    /// `[x0, y0, x1, y1]` of the free interior of the arena.
    fn interior(&self) -> [f32; 4] {
        [0.0, 0.0, 2.0 * self.room_width, self.room_height]
    }

    /// Every wall as an oriented rectangle: outer walls, the divider (two parts around the
    /// door), then the extra segments.
    fn wall_rects(&self) -> Vec<Rect> {
        let (w, h, t) = (self.room_width, self.room_height, self.wall_thickness);
        let mut rects = vec![
            Rect::aabb(-t, -t, 0.0, h + t),
            Rect::aabb(2.0 * w, -t, 2.0 * w + t, h + t),
            Rect::aabb(0.0, -t, 2.0 * w, 0.0),
            Rect::aabb(0.0, h, 2.0 * w, h + t),
        ];
        let (d0, d1) = (
            self.door_center() - self.door_width * 0.5,
            self.door_center() + self.door_width * 0.5,
        );
        if d0 > 0.0 {
            rects.push(Rect::aabb(w - t * 0.5, 0.0, w + t * 0.5, d0));
        }
        if d1 < h {
            rects.push(Rect::aabb(w - t * 0.5, d1, w + t * 0.5, h));
        }
        for s in &self.walls {
            let th = s.thickness.unwrap_or(t);
            rects.push(Rect::segment([s.from.0, s.from.1], [s.to.0, s.to.1], th));
        }
        rects
    }

    fn grid(&self, rects: &[Rect]) -> Grid {
        let r = self.ball_radius;
        Grid::new(self.interior(), GRID_CELL, |p| clearance(rects, p) >= r)
    }
}

impl Scenario for TwoRoomsConfig {
    const KIND: &'static str = "two_rooms";

    fn validate(&self) -> Result<()> {
        validate::positive("room_width", self.room_width)?;
        validate::within("room_width", self.room_width, 0.1, 100.0)?;
        validate::positive("room_height", self.room_height)?;
        validate::within("room_height", self.room_height, 0.1, 100.0)?;
        validate::positive("wall_thickness", self.wall_thickness)?;
        validate::within(
            "wall_thickness",
            self.wall_thickness,
            0.001,
            self.room_width * 0.5,
        )?;
        validate::positive("ball_radius", self.ball_radius)?;
        let small = self.room_width.min(self.room_height) * 0.25;
        validate::within("ball_radius", self.ball_radius, 0.001, small)?;
        let h = self.room_height;
        if !(self.door_width > 0.0 && self.door_width < h) {
            return Err(SimError::invalid(
                "door_width",
                format!(
                    "must be > 0 and < the wall length ({h}), got {}",
                    self.door_width
                ),
            ));
        }
        if !(self.door_width > 2.0 * self.ball_radius) {
            return Err(SimError::invalid(
                "door_width",
                format!(
                    "must be wider than the ball's diameter ({}), got {}",
                    2.0 * self.ball_radius,
                    self.door_width
                ),
            ));
        }
        if let Some(DoorCenter::Range(lo, hi)) = self.door_center {
            if !(lo <= hi) {
                return Err(SimError::invalid(
                    "door_center",
                    format!("Range(lo, hi) needs lo <= hi, got Range({lo}, {hi})"),
                ));
            }
        }
        if let Some(door) = self.door_center {
            let half = self.door_width * 0.5;
            let (lo, hi) = match door {
                DoorCenter::Fixed(c) => (c, c),
                DoorCenter::Range(lo, hi) => (lo, hi),
            };
            let c = if lo - half >= 0.0 { hi } else { lo };
            if !(lo - half >= 0.0 && hi + half <= h) {
                return Err(SimError::invalid(
                    "door_center",
                    format!(
                        "the door [{}, {}] must lie within the wall [0, {h}], got centre {c}",
                        c - half,
                        c + half
                    ),
                ));
            }
        }
        validate::clocks(self.control_dt, self.substeps, self.max_steps)?;
        validate::positive("max_speed", self.max_speed)?;
        let physics_dt = self.control_dt / self.substeps as f32;
        // Keep a physics step's travel below the ball radius so walls cannot be tunnelled.
        if !(self.max_speed * physics_dt <= self.ball_radius) {
            return Err(SimError::invalid(
                "max_speed",
                format!(
                    "travels {} m per physics step (max_speed * control_dt / substeps), more than ball_radius ({}); \
                     lower it or raise substeps",
                    self.max_speed * physics_dt,
                    self.ball_radius
                ),
            ));
        }
        validate::positive("goal_radius", self.goal_radius)?;
        let interior = self.interior();
        for (i, s) in self.walls.iter().enumerate() {
            let field = format!("walls[{i}]");
            for (name, p) in [("from", s.from), ("to", s.to)] {
                validate::within(&format!("{field}.{name}.0"), p.0, interior[0], interior[2])?;
                validate::within(&format!("{field}.{name}.1"), p.1, interior[1], interior[3])?;
            }
            if !((s.to.0 - s.from.0).hypot(s.to.1 - s.from.1) > 1e-4) {
                return Err(SimError::invalid(field, "`from` and `to` must differ"));
            }
            if let Some(t) = s.thickness {
                validate::positive(&format!("{field}.thickness"), t)?;
            }
        }
        self.start.validate("start", interior)?;
        self.goal.validate("goal", interior)?;
        self.observation.validate(None)?;
        // Start and goal regions must contain free positions, connected to each other, for
        // every door position (checked at both ends and the middle of a range).
        match self.door_center {
            Some(DoorCenter::Range(lo, hi)) => {
                for y in [lo, (lo + hi) * 0.5, hi] {
                    self.with_door(y).check_regions()?;
                }
                Ok(())
            }
            _ => self.check_regions(),
        }
    }

    fn spec(&self) -> EnvSpec {
        let observed = self.observed_state_names();
        let mut names = observed.clone();
        if self.moving_door() {
            names.push("door_y".into());
        }
        let observation = self.observation.spec(&observed, None);
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
        Ok(Box::new(TwoRooms::new(self.clone())?))
    }
}

impl TwoRoomsConfig {
    /// Start and goal regions hold free positions, connected to each other (door fixed).
    fn check_regions(&self) -> Result<()> {
        let rects = self.wall_rects();
        let grid = self.grid(&rects);
        let starts = grid.components_in(self.start.x, self.start.y);
        if starts.is_empty() {
            return Err(SimError::invalid(
                "start",
                format!(
                    "no position in the region is free (at least ball_radius = {} from walls)",
                    self.ball_radius
                ),
            ));
        }
        let goals = grid.components_in(self.goal.x, self.goal.y);
        if goals.is_empty() {
            return Err(SimError::invalid(
                "goal",
                format!(
                    "no position in the region is free (at least ball_radius = {} from walls)",
                    self.ball_radius
                ),
            ));
        }
        if !goals.iter().any(|g| starts.contains(g)) {
            return Err(SimError::invalid(
                "goal",
                "no free position in the region is reachable from the `start` region (walls block every path)",
            ));
        }
        Ok(())
    }
}

/// Static data of one door position, shared by clones of an environment.
struct Layout {
    /// The config as given (its door may be a range).
    config: TwoRoomsConfig,
    /// The door's centre in this layout.
    door: f32,
    walls: Vec<Rect>,
    grid: Grid,
    /// The world as built, before any reset: what `reset` starts from.
    pristine: WorldState,
    /// Handle of the ball in `pristine`.
    ball: RigidBodyHandle,
    /// The observation camera and its background (floor and walls), if images are observed.
    camera: Option<(Camera, Vec<u8>)>,
}

impl Layout {
    /// Builds the scene of `config` with the door at `door`.
    fn new(config: &TwoRoomsConfig, door: f32) -> Layout {
        let fixed = config.with_door(door);
        let walls = fixed.wall_rects();
        let grid = fixed.grid(&walls);
        let mut world = new_world(Vector::ZERO, fixed.control_dt / fixed.substeps as f32);
        let anchor = world.bodies.insert(RigidBodyBuilder::fixed());
        let half_z = config.ball_radius * 2.0;
        for r in &walls {
            world.colliders.insert_with_parent(
                ColliderBuilder::cuboid(r.h[0], r.h[1], half_z)
                    .translation(Vector::new(r.c[0], r.c[1], 0.0))
                    .rotation(Vector::new(0.0, 0.0, r.angle))
                    .friction(0.0)
                    .friction_combine_rule(CoefficientCombineRule::Min)
                    .restitution(0.0),
                anchor,
                &mut world.bodies,
            );
        }
        let start = [
            (config.start.x.0 + config.start.x.1) * 0.5,
            (config.start.y.0 + config.start.y.1) * 0.5,
        ];
        let ball = world.bodies.insert(
            RigidBodyBuilder::dynamic()
                .translation(Vector::new(start[0], start[1], 0.0))
                .locked_axes(LockedAxes::TRANSLATION_LOCKED_Z | LockedAxes::ROTATION_LOCKED)
                .can_sleep(false),
        );
        world.colliders.insert_with_parent(
            ColliderBuilder::ball(config.ball_radius)
                .density(1.0)
                .friction(0.0)
                .friction_combine_rule(CoefficientCombineRule::Min)
                .restitution(0.0),
            ball,
            &mut world.bodies,
        );
        let camera = config.observation.camera(config.view()).map(|cam| {
            let bg = cam.background(palette::FLOOR, &walls, palette::WALL);
            (cam, bg)
        });
        Layout {
            config: config.clone(),
            door,
            walls,
            grid,
            pristine: WorldState::capture(&world),
            ball,
            camera,
        }
    }
}

/// The layouts built so far (one per door position; one in all for a fixed door), shared by
/// clones so that the simulator-backed model's copies find a door's layout without rebuilding.
struct Layouts {
    config: TwoRoomsConfig,
    built: Mutex<Vec<Arc<Layout>>>,
}

/// Layouts kept per environment family before the oldest are dropped.
const MAX_LAYOUTS: usize = 64;

impl Layouts {
    fn get(&self, door: f32) -> Arc<Layout> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = built.iter().find(|l| l.door.to_bits() == door.to_bits()) {
            return l.clone();
        }
        let layout = Arc::new(Layout::new(&self.config, door));
        if built.len() >= MAX_LAYOUTS {
            built.remove(0);
        }
        built.push(layout.clone());
        layout
    }
}

/// The two-rooms environment. Build it from a [`TwoRoomsConfig`].
pub struct TwoRooms {
    layouts: Arc<Layouts>,
    layout: Arc<Layout>,
    spec: EnvSpec,
    world: PhysicsWorld,
    ball: RigidBodyHandle,
    goal: [f32; 2],
    counters: Counters,
    action: [f32; 2],
    /// Recent ball positions, for the frames of an image observation.
    history: History<[f32; 2]>,
}

#[derive(Clone)]
struct TwoRoomsSnapshot {
    layout: Arc<Layout>,
    world: WorldState,
    goal: [f32; 2],
    counters: Counters,
    history: History<[f32; 2]>,
}

impl TwoRooms {
    /// Validates `config` and builds the scene. The ball starts at the centre of the start
    /// region (and a moving door at the middle of its range); call [`Env::reset`] to sample
    /// a start and a goal.
    ///
    /// # Errors
    /// Validation errors.
    pub fn new(config: TwoRoomsConfig) -> Result<Self> {
        config.validate()?;
        let spec = config.spec();
        let history = History::new(config.observation.history(), [0.0; 2]);
        let layouts = Arc::new(Layouts {
            config: config.clone(),
            built: Mutex::new(Vec::new()),
        });
        let layout = layouts.get(config.door_center());
        let goal = [
            (config.goal.x.0 + config.goal.x.1) * 0.5,
            (config.goal.y.0 + config.goal.y.1) * 0.5,
        ];
        let mut env = TwoRooms {
            world: layout.pristine.to_world(),
            ball: layout.ball,
            layouts,
            layout,
            spec,
            goal,
            counters: Counters::default(),
            action: [0.0; 2],
            history,
        };
        env.history.fill(env.position());
        Ok(env)
    }

    /// The configuration this environment was built from.
    pub fn config(&self) -> &TwoRoomsConfig {
        &self.layout.config
    }

    /// The goal position `[x, y]`.
    pub fn goal(&self) -> [f32; 2] {
        self.goal
    }

    /// The y of the door's centre in the current episode.
    pub fn door_center(&self) -> f32 {
        self.layout.door
    }

    /// The Rapier world (for inspection and benchmarks; do not add or remove objects).
    pub fn world(&self) -> &PhysicsWorld {
        &self.world
    }

    /// Handle of the ball in [`TwoRooms::world`].
    pub fn ball_handle(&self) -> RigidBodyHandle {
        self.ball
    }

    /// Smallest distance from `p` to any wall (negative inside a wall).
    pub fn wall_clearance(&self, p: [f32; 2]) -> f32 {
        clearance(&self.layout.walls, p)
    }

    /// Whether a ball centred at `b` can roll to a ball centred at `a` without crossing walls
    /// (on a 2 cm grid of positions at least one radius from every wall).
    pub fn connected(&self, a: [f32; 2], b: [f32; 2]) -> bool {
        match (self.layout.grid.component(a), self.layout.grid.component(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    fn position(&self) -> [f32; 2] {
        let t = self.world.bodies[self.ball].translation();
        [t.x, t.y]
    }

    fn place(&mut self, p: [f32; 2], v: [f32; 2]) {
        let rb = &mut self.world.bodies[self.ball];
        rb.set_translation(Vector::new(p[0], p[1], 0.0), true);
        rb.set_linvel(Vector::new(v[0], v[1], 0.0), true);
        self.history.fill(p);
    }

    /// Switches to the layout with the door at `door` (the world restarts from its pristine
    /// state); nothing happens when the door is already there.
    fn use_door(&mut self, door: f32) {
        if door.to_bits() != self.layout.door.to_bits() {
            self.layout = self.layouts.get(door);
            self.layout.pristine.apply(&mut self.world);
            self.ball = self.layout.ball;
        }
    }

    fn sample_free(
        &self,
        rng: &mut ChaCha8Rng,
        region: &Region,
        ok: impl Fn([f32; 2]) -> bool,
    ) -> Option<[f32; 2]> {
        let r = self.layout.config.ball_radius;
        (0..MAX_TRIES).map(|_| region.sample(rng)).find(|&p| {
            clearance(&self.layout.walls, p) >= r + MARGIN
                && self.layout.grid.component(p).is_some()
                && ok(p)
        })
    }

    /// The observed state vector: the true state without `door_y`.
    fn observed_state(&self, full: Vec<f32>) -> Vec<f32> {
        let mut v = full;
        if self.layout.config.moving_door() {
            v.pop();
        }
        v
    }

    /// Camera frames of the ball at `positions` (oldest first), channel-stacked.
    fn frames(&self, positions: &[[f32; 2]]) -> Vec<u8> {
        let Some((cam, bg)) = &self.layout.camera else {
            return Vec::new();
        };
        let r = self.layout.config.ball_radius;
        stack_frames(bg, positions, |f, p| cam.disc(f, *p, r, palette::AGENT))
    }
}

impl Env for TwoRooms {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A moving door is drawn first; a fixed door draws nothing (seeded episodes of fixed
        // layouts are as they always were).
        if let Some(DoorCenter::Range(lo, hi)) = self.layout.config.door_center {
            let door = common::uniform(&mut rng, (lo, hi));
            self.use_door(door);
        }
        let cfg = &self.layout.config;
        let start = self
            .sample_free(&mut rng, &cfg.start, |_| true)
            .ok_or_else(|| SimError::Reset {
                seed,
                message: "no free start position found in `start`".into(),
            })?;
        let min_dist = cfg.goal_radius * 2.0;
        let goal = self
            .sample_free(&mut rng, &cfg.goal, |g| {
                (g[0] - start[0]).hypot(g[1] - start[1]) > min_dist && self.connected(start, g)
            })
            .ok_or_else(|| SimError::Reset {
                seed,
                message: "no free goal reachable from the start found in `goal`".into(),
            })?;
        self.layout.pristine.apply(&mut self.world);
        self.place(start, [0.0, 0.0]);
        self.goal = goal;
        self.counters = Counters::default();
        Ok(())
    }

    fn state(&self) -> Vec<f32> {
        let rb = &self.world.bodies[self.ball];
        let (t, v) = (rb.translation(), rb.linvel());
        let mut s = if self.layout.config.observe_velocity {
            vec![t.x, t.y, v.x, v.y]
        } else {
            vec![t.x, t.y]
        };
        if self.layout.config.moving_door() {
            s.push(self.layout.door);
        }
        s
    }

    fn goal_state(&self) -> Vec<f32> {
        let mut s = if self.layout.config.observe_velocity {
            vec![self.goal[0], self.goal[1], 0.0, 0.0]
        } else {
            vec![self.goal[0], self.goal[1]]
        };
        if self.layout.config.moving_door() {
            s.push(self.layout.door);
        }
        s
    }

    fn observe(&self) -> Observation {
        self.layout.config.observation.assemble(
            || self.observed_state(self.state()),
            || self.frames(self.history.poses()),
            Vec::new,
        )
    }

    fn goal_observation(&self) -> Observation {
        let k = self.history.poses().len();
        self.layout.config.observation.assemble(
            || self.observed_state(self.goal_state()),
            || self.frames(&vec![self.goal; k]),
            Vec::new,
        )
    }

    fn step(&mut self, action: &[f32]) -> Result<StepInfo> {
        let clipped = common::clip_action(&self.spec, action, &mut self.action)?;
        let s = self.layout.config.max_speed;
        let v = Vector::new(self.action[0] * s, self.action[1] * s, 0.0);
        for _ in 0..self.spec.substeps {
            self.world.bodies[self.ball].set_linvel(v, true);
            self.world.step();
        }
        self.counters.record(clipped);
        let p = self.position();
        self.history.push(p);
        Ok(StepInfo { clipped })
    }

    fn success(&self) -> bool {
        self.distance_to_goal() <= self.layout.config.goal_radius
    }

    fn distance_to_goal(&self) -> f32 {
        let p = self.position();
        (p[0] - self.goal[0]).hypot(p[1] - self.goal[1])
    }

    fn steps(&self) -> u32 {
        self.counters.steps
    }

    fn clipped_total(&self) -> u64 {
        self.counters.clipped_total
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot(Arc::new(TwoRoomsSnapshot {
            layout: self.layout.clone(),
            world: WorldState::capture(&self.world),
            goal: self.goal,
            counters: self.counters,
            history: self.history.clone(),
        }))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let s = snapshot
            .0
            .downcast_ref::<TwoRoomsSnapshot>()
            .ok_or_else(|| SimError::SnapshotMismatch("not a two_rooms snapshot".into()))?;
        if !Arc::ptr_eq(&s.layout, &self.layout) && s.layout.config != self.layout.config {
            return Err(SimError::SnapshotMismatch(
                "taken from a two_rooms environment with another config".into(),
            ));
        }
        self.layout = s.layout.clone();
        self.ball = self.layout.ball;
        s.world.apply(&mut self.world);
        self.goal = s.goal;
        self.counters = s.counters;
        self.history.clone_from(&s.history);
        Ok(())
    }

    fn set_state(&mut self, state: &[f32]) -> Result<()> {
        common::check_state(&self.spec, state)?;
        if self.layout.config.moving_door() {
            let door = state[state.len() - 1];
            let cfg = &self.layout.config;
            let half = cfg.door_width * 0.5;
            if !(door - half >= 0.0 && door + half <= cfg.room_height) {
                return Err(SimError::InvalidState {
                    index: state.len() - 1,
                    name: "door_y".into(),
                    message: format!(
                        "the door must lie within the wall [0, {}], got centre {door}",
                        cfg.room_height
                    ),
                });
            }
            self.use_door(door);
        }
        let v = if self.layout.config.observe_velocity {
            [state[2], state[3]]
        } else {
            [0.0, 0.0]
        };
        self.place([state[0], state[1]], v);
        Ok(())
    }

    fn render(&self, width: u32, height: u32) -> Image {
        let cfg = &self.layout.config;
        let mut c = Canvas::new(width, height, cfg.view(), palette::FLOOR);
        for r in &self.layout.walls {
            c.rect(r, palette::WALL);
        }
        c.disc(self.goal, cfg.goal_radius, palette::GOAL_FAINT);
        let arm = cfg.goal_radius.max(cfg.ball_radius) * 0.9;
        let w = cfg.ball_radius * 0.3;
        c.line(
            [self.goal[0] - arm, self.goal[1]],
            [self.goal[0] + arm, self.goal[1]],
            w,
            palette::GOAL,
        );
        c.line(
            [self.goal[0], self.goal[1] - arm],
            [self.goal[0], self.goal[1] + arm],
            w,
            palette::GOAL,
        );
        c.disc(self.position(), cfg.ball_radius, palette::AGENT);
        c.finish()
    }

    fn boxed_clone(&self) -> Box<dyn Env> {
        Box::new(TwoRooms {
            layouts: self.layouts.clone(),
            layout: self.layout.clone(),
            spec: self.spec.clone(),
            world: clone_world(&self.world),
            ball: self.ball,
            goal: self.goal,
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

    fn env() -> TwoRooms {
        let mut e = TwoRooms::new(TwoRoomsConfig::default()).unwrap();
        e.reset(3).unwrap();
        e
    }

    #[test]
    fn defaults_validate_and_spec_matches() {
        let c = TwoRoomsConfig::default();
        c.validate().unwrap();
        let s = c.spec();
        assert_eq!(s.state_names, ["x", "y", "vx", "vy"]);
        assert_eq!(s.action_dim(), 2);
        assert_relative_eq!(s.physics_dt * s.substeps as f32, s.control_dt);
    }

    #[test]
    fn velocity_command_is_tracked_in_free_space() {
        let mut e = env();
        e.set_state(&[1.0, 1.0, 0.0, 0.0]).unwrap();
        e.step(&[0.5, -0.5]).unwrap();
        let o = e.state();
        assert_relative_eq!(o[0], 1.05, epsilon = 1e-4);
        assert_relative_eq!(o[1], 0.95, epsilon = 1e-4);
        assert_relative_eq!(o[2], 0.5, epsilon = 1e-4);
    }

    #[test]
    fn walls_stop_and_slide_the_ball() {
        let mut e = env();
        // Pushing right-and-up into the divider below the door: x is blocked, y slides.
        e.set_state(&[1.7, 0.3, 0.0, 0.0]).unwrap();
        for _ in 0..5 {
            e.step(&[1.0, 0.2]).unwrap();
        }
        let o = e.state();
        assert!(o[0] <= 2.0 - 0.05 - 0.1 + 0.01, "{o:?}");
        assert!(o[1] > 0.35, "{o:?}");
    }

    #[test]
    fn the_door_lets_the_ball_through() {
        let mut e = env();
        e.set_state(&[1.5, 1.0, 0.0, 0.0]).unwrap();
        for _ in 0..12 {
            e.step(&[1.0, 0.0]).unwrap();
        }
        assert!(e.state()[0] > 2.4, "{:?}", e.state());
    }

    #[test]
    fn success_predicate() {
        let mut e = env();
        let g = e.goal();
        e.set_state(&[g[0] + 0.09, g[1], 0.0, 0.0]).unwrap();
        assert!(e.success());
        e.set_state(&[g[0] + 0.11, g[1], 0.0, 0.0]).unwrap();
        assert!(!e.success());
        assert_relative_eq!(e.distance_to_goal(), 0.11, epsilon = 1e-5);
    }

    #[test]
    fn validation_names_fields() {
        let bad = |c: TwoRoomsConfig| c.validate().unwrap_err().to_string();
        assert!(bad(TwoRoomsConfig {
            door_width: -1.0,
            ..Default::default()
        })
        .contains("door_width"));
        assert!(bad(TwoRoomsConfig {
            door_width: f32::NAN,
            ..Default::default()
        })
        .contains("door_width"));
        assert!(bad(TwoRoomsConfig {
            door_width: 0.15,
            ..Default::default()
        })
        .contains("diameter"));
        assert!(bad(TwoRoomsConfig {
            door_center: Some(DoorCenter::Fixed(1.9)),
            ..Default::default()
        })
        .contains("door_center"));
        assert!(bad(TwoRoomsConfig {
            max_speed: 50.0,
            ..Default::default()
        })
        .contains("max_speed"));
        let blocked = TwoRoomsConfig {
            walls: vec![WallSegment {
                from: (2.5, 0.0),
                to: (2.5, 2.0),
                thickness: None,
            }],
            goal: Region {
                x: (3.0, 3.7),
                y: (0.3, 1.7),
            },
            ..Default::default()
        };
        assert!(bad(blocked).contains("reachable"));
        let e = bad(TwoRoomsConfig {
            walls: vec![WallSegment {
                from: (1.0, 0.0),
                to: (1.0, 9.0),
                thickness: None,
            }],
            ..Default::default()
        });
        assert!(e.contains("walls[0].to.1"), "{e}");
    }

    #[test]
    fn render_shows_ball_goal_and_walls() {
        let e = env();
        let img = e.render(84, 44);
        assert_eq!(img.rgb.len(), 84 * 44 * 3);
        let has = |c: [u8; 3]| img.rgb.chunks(3).any(|p| p == c);
        assert!(has(palette::AGENT) && has(palette::GOAL) && has(palette::WALL));
    }
}
