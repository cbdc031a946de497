//! `reach`: a planar arm of N links whose end effector must reach a target point.
//!
//! The arm is a Rapier multibody (reduced coordinates): a fixed base at the origin and N
//! capsule links joined by revolute joints about z, each driven by a velocity motor. Zero
//! gravity, no self-contacts: links may pass over each other, as in a top-down view of an arm
//! whose links sit at different heights.
//!
//! Action: joint velocity targets in `[-1, 1]^N`, scaled by `max_joint_speed`.
//! Observation: per joint `cos q, sin q, qdot` (joint angle relative to the previous link),
//! then the end effector's `x, y`. The goal is sampled as joint angles `q_goal` (so it is always
//! reachable); the target is their forward kinematics, and the goal observation is the
//! observation at `q_goal` with zero velocities. Success: end effector within `goal_radius` of
//! the target.

use crate::camera::Camera;
use crate::common::{self, Counters};
use crate::config::Scenario;
use crate::observation::{stack_frames, History, ObservationConfig};
use crate::physics::{clone_world, new_world, WorldState};
use crate::render::{palette, Canvas};
use crate::validate;
use crate::{Env, EnvSpec, Image, Result, SimError, Snapshot, StepInfo};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rapier3d::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zplan_obs::Observation;

/// Most links an arm may have.
pub const MAX_LINKS: u32 = 16;
/// Sampling attempts before `reset` gives up.
const MAX_TRIES: usize = 10_000;

/// Configuration of [`Reach`]; RON: `Reach(links: 3, ...)`. All fields optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReachConfig {
    /// Number of links (and joints). Default 3.
    pub links: u32,
    /// Length of every link in metres (unless `link_lengths` is given). Default 0.3.
    pub link_length: f32,
    /// Per-link lengths, overriding `link_length`; must have `links` entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_lengths: Option<Vec<f32>>,
    /// Capsule radius of the links in metres. Default 0.02.
    pub link_radius: f32,
    /// Mass of each link in kg. Default 0.2.
    pub link_mass: f32,
    /// Joint speed (rad/s) an action of 1 commands. Default 1.5.
    pub max_joint_speed: f32,
    /// Velocity-motor gain (1/s): how fast a joint reaches its commanded speed. Default 1e4
    /// (commands are tracked within a few percent even when they change every step).
    pub motor_gain: f32,
    /// Rapier solver iterations per physics step (the multibody solve dominates a step's cost).
    /// Default 4.
    pub solver_iterations: u32,
    /// Interval every start joint angle is drawn from (radians). Default (-1.5, 1.5).
    pub start_angles: (f32, f32),
    /// Interval every goal joint angle is drawn from (radians). Default (-1.5, 1.5).
    pub goal_angles: (f32, f32),
    /// Least distance between the start end effector and the target (so an episode never
    /// starts solved). Default 0.1 m.
    pub min_goal_distance: f32,
    /// Success radius around the target in metres. Default 0.05.
    pub goal_radius: f32,
    /// Seconds per control step. Default 0.1.
    pub control_dt: f32,
    /// Physics steps per control step. Default 4 (physics dt 0.025 s).
    pub substeps: u32,
    /// Episode step limit. Default 100.
    pub max_steps: u32,
    /// What the robot observes. Default: the state vector only. Proprioception is the
    /// joint part of the state (`cos q, sin q, qdot` per joint).
    #[serde(skip_serializing_if = "ObservationConfig::is_default")]
    pub observation: ObservationConfig,
}

impl Default for ReachConfig {
    fn default() -> Self {
        ReachConfig {
            links: 3,
            link_length: 0.3,
            link_lengths: None,
            link_radius: 0.02,
            link_mass: 0.2,
            max_joint_speed: 1.5,
            motor_gain: 10_000.0,
            solver_iterations: 4,
            start_angles: (-1.5, 1.5),
            goal_angles: (-1.5, 1.5),
            min_goal_distance: 0.1,
            goal_radius: 0.05,
            control_dt: 0.1,
            substeps: 4,
            max_steps: 100,
            observation: ObservationConfig::default(),
        }
    }
}

impl ReachConfig {
    /// Length of each link.
    pub fn lengths(&self) -> Vec<f32> {
        match &self.link_lengths {
            Some(l) => l.clone(),
            None => vec![self.link_length; self.links as usize],
        }
    }
}

impl ReachConfig {
    /// Names of the joint part of the state: `cos_q{i}, sin_q{i}, qdot{i}` per joint.
    fn proprio_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(3 * self.links as usize);
        for i in 0..self.links {
            names.push(format!("cos_q{i}"));
            names.push(format!("sin_q{i}"));
            names.push(format!("qdot{i}"));
        }
        names
    }

    /// The camera's view: the workspace disc with a margin.
    fn view(&self) -> [f32; 4] {
        let reach: f32 = self.lengths().iter().sum();
        let m = reach * 1.08 + self.link_radius;
        [-m, -m, m, m]
    }
}

/// End-effector position for joint angles `q` (relative angles, summed along the chain).
pub fn forward_kinematics(lengths: &[f32], q: &[f32]) -> [f32; 2] {
    let (mut x, mut y, mut theta) = (0.0f32, 0.0f32, 0.0f32);
    for (l, qi) in lengths.iter().zip(q) {
        theta += qi;
        x += l * theta.cos();
        y += l * theta.sin();
    }
    [x, y]
}

impl Scenario for ReachConfig {
    const KIND: &'static str = "reach";

    fn validate(&self) -> Result<()> {
        validate::count("links", self.links, 1, MAX_LINKS)?;
        match &self.link_lengths {
            Some(l) => {
                if l.len() != self.links as usize {
                    return Err(SimError::invalid(
                        "link_lengths",
                        format!(
                            "must have `links` = {} entries, got {}",
                            self.links,
                            l.len()
                        ),
                    ));
                }
                for (i, &li) in l.iter().enumerate() {
                    validate::positive(&format!("link_lengths[{i}]"), li)?;
                    validate::within(&format!("link_lengths[{i}]"), li, 0.01, 10.0)?;
                }
            }
            None => {
                validate::positive("link_length", self.link_length)?;
                validate::within("link_length", self.link_length, 0.01, 10.0)?;
            }
        }
        let shortest = self.lengths().into_iter().fold(f32::INFINITY, f32::min);
        validate::positive("link_radius", self.link_radius)?;
        validate::within("link_radius", self.link_radius, 0.001, shortest * 0.5)?;
        validate::positive("link_mass", self.link_mass)?;
        validate::within("link_mass", self.link_mass, 1e-3, 1e3)?;
        validate::positive("max_joint_speed", self.max_joint_speed)?;
        validate::within("max_joint_speed", self.max_joint_speed, 1e-3, 100.0)?;
        validate::positive("motor_gain", self.motor_gain)?;
        validate::within("motor_gain", self.motor_gain, 1e-3, 1e6)?;
        validate::count("solver_iterations", self.solver_iterations, 1, 64)?;
        let pi = std::f32::consts::PI;
        validate::interval("start_angles", self.start_angles, -pi, pi)?;
        validate::interval("goal_angles", self.goal_angles, -pi, pi)?;
        validate::non_negative("min_goal_distance", self.min_goal_distance)?;
        validate::positive("goal_radius", self.goal_radius)?;
        validate::clocks(self.control_dt, self.substeps, self.max_steps)?;
        let reach: f32 = self.lengths().iter().sum();
        if !(self.min_goal_distance < 2.0 * reach) {
            return Err(SimError::invalid(
                "min_goal_distance",
                format!(
                    "must be below the workspace diameter ({}), got {}",
                    2.0 * reach,
                    self.min_goal_distance
                ),
            ));
        }
        // A target farther than min_goal_distance from the start must be possible: the end
        // effector must move with the joint angles at all.
        if self.min_goal_distance > 0.0
            && self.goal_angles.0 == self.goal_angles.1
            && self.start_angles.0 == self.start_angles.1
        {
            let n = self.links as usize;
            let l = self.lengths();
            let s = forward_kinematics(&l, &vec![self.start_angles.0; n]);
            let g = forward_kinematics(&l, &vec![self.goal_angles.0; n]);
            if !((s[0] - g[0]).hypot(s[1] - g[1]) >= self.min_goal_distance) {
                return Err(SimError::invalid(
                    "min_goal_distance",
                    "fixed start and goal angles put the target closer than this to the start",
                ));
            }
        }
        self.observation.validate(Some(&self.proprio_names()))?;
        Ok(())
    }

    fn spec(&self) -> EnvSpec {
        let mut names = self.proprio_names();
        names.push("ee_x".into());
        names.push("ee_y".into());
        let observation = self.observation.spec(&names, Some(&self.proprio_names()));
        common::spec(
            Self::KIND,
            names,
            observation,
            self.links as usize,
            self.control_dt,
            self.substeps,
            self.max_steps,
        )
    }

    fn build(&self) -> Result<Box<dyn Env>> {
        Ok(Box::new(Reach::new(self.clone())?))
    }
}

/// Static data shared by clones of one environment.
struct Layout {
    config: ReachConfig,
    lengths: Vec<f32>,
    pristine: WorldState,
    /// The observation camera and its background (floor, base), if images are observed.
    camera: Option<(Camera, Vec<u8>)>,
}

/// The reach environment. Build it from a [`ReachConfig`].
pub struct Reach {
    layout: Arc<Layout>,
    spec: EnvSpec,
    world: PhysicsWorld,
    /// Multibody joint handles, base to tip.
    joints: Vec<MultibodyJointHandle>,
    /// Link index of each joint in the multibody.
    link_ids: Vec<usize>,
    q_goal: Vec<f32>,
    target: [f32; 2],
    counters: Counters,
    action: Vec<f32>,
    /// Recent joint angles, for the frames of an image observation.
    history: History<Vec<f32>>,
}

#[derive(Clone)]
struct ReachSnapshot {
    layout: Arc<Layout>,
    world: WorldState,
    q_goal: Vec<f32>,
    target: [f32; 2],
    counters: Counters,
    history: History<Vec<f32>>,
}

impl Reach {
    /// Validates `config` and builds the arm, all joints at 0 (stretched along +x). Call
    /// [`Env::reset`] to sample a start and a goal.
    ///
    /// # Errors
    /// Validation errors.
    pub fn new(config: ReachConfig) -> Result<Self> {
        config.validate()?;
        let spec = config.spec();
        let lengths = config.lengths();
        let mut world = new_world(Vector::ZERO, spec.physics_dt);
        world.integration_parameters.num_solver_iterations = config.solver_iterations as usize;
        let base = world.bodies.insert(RigidBodyBuilder::fixed());
        let mut parent = base;
        let mut parent_len = 0.0;
        let mut x = 0.0;
        let mut joints = Vec::with_capacity(lengths.len());
        for &len in &lengths {
            let body = world.bodies.insert(
                RigidBodyBuilder::dynamic()
                    .translation(Vector::new(x, 0.0, 0.0))
                    .can_sleep(false),
            );
            world.colliders.insert_with_parent(
                ColliderBuilder::capsule_from_endpoints(
                    Vector::ZERO,
                    Vector::new(len, 0.0, 0.0),
                    config.link_radius,
                )
                .mass(config.link_mass),
                body,
                &mut world.bodies,
            );
            let joint = RevoluteJointBuilder::new(Vector::Z)
                .local_anchor1(Vector::new(parent_len, 0.0, 0.0))
                .local_anchor2(Vector::ZERO)
                .motor_velocity(0.0, config.motor_gain);
            let handle = world
                .multibody_joints
                .insert(parent, body, joint, true)
                .ok_or_else(|| {
                    SimError::invalid("links", "Rapier rejected the arm's joint chain")
                })?;
            joints.push(handle);
            parent = body;
            parent_len = len;
            x += len;
        }
        let mut link_ids = Vec::with_capacity(joints.len());
        for h in &joints {
            let (mb, link) = world
                .multibody_joints
                .get_mut(*h)
                .ok_or_else(|| SimError::invalid("links", "joint missing from its multibody"))?;
            mb.set_self_contacts_enabled(false);
            link_ids.push(link);
        }
        let pristine = WorldState::capture(&world);
        let n = lengths.len();
        let q_goal = vec![0.0; n];
        let target = forward_kinematics(&lengths, &q_goal);
        let camera = config.observation.camera(config.view()).map(|cam| {
            let mut bg = cam.fill(palette::FLOOR);
            cam.disc(&mut bg, [0.0, 0.0], config.link_radius * 2.0, palette::WALL);
            (cam, bg)
        });
        let history = History::new(config.observation.history(), vec![0.0; n]);
        Ok(Reach {
            layout: Arc::new(Layout {
                config,
                lengths,
                pristine,
                camera,
            }),
            history,
            spec,
            world,
            joints,
            link_ids,
            q_goal,
            target,
            counters: Counters::default(),
            action: vec![0.0; n],
        })
    }

    /// The configuration this environment was built from.
    pub fn config(&self) -> &ReachConfig {
        &self.layout.config
    }

    /// The target point `[x, y]`.
    pub fn target(&self) -> [f32; 2] {
        self.target
    }

    /// The goal joint angles the target was computed from.
    pub fn goal_angles(&self) -> &[f32] {
        &self.q_goal
    }

    /// The Rapier world (for inspection and benchmarks; do not add or remove objects).
    pub fn world(&self) -> &PhysicsWorld {
        &self.world
    }

    /// Handles of the arm's multibody joints, base to tip.
    pub fn joint_handles(&self) -> &[MultibodyJointHandle] {
        &self.joints
    }

    /// Current joint angles and velocities, read from the multibody's generalised coordinates.
    pub fn joint_state(&self) -> (Vec<f32>, Vec<f32>) {
        let mut q = Vec::with_capacity(self.joints.len());
        let mut qd = Vec::with_capacity(self.joints.len());
        if let Some((mb, _)) = self.world.multibody_joints.get(self.joints[0]) {
            for &id in &self.link_ids {
                if let Some(link) = mb.link(id) {
                    q.push(link.joint.coords()[3]);
                    qd.push(mb.joint_velocity(link)[0]);
                }
            }
        }
        (q, qd)
    }

    /// End-effector position read from the last link's rigid body (the physical pose, as
    /// opposed to the forward kinematics of the joint angles used in observations).
    pub fn end_effector_body(&self) -> [f32; 2] {
        let last = self.joints.len() - 1;
        let body = self
            .world
            .multibody_joints
            .get(self.joints[last])
            .and_then(|(mb, id)| mb.link(id))
            .map(|l| l.rigid_body_handle());
        match body {
            Some(h) => {
                let p = self.world.bodies[h].position().transform_point(Vector::new(
                    self.layout.lengths[last],
                    0.0,
                    0.0,
                ));
                [p.x, p.y]
            }
            None => [f32::NAN, f32::NAN],
        }
    }

    fn end_effector(&self) -> [f32; 2] {
        let (q, _) = self.joint_state();
        forward_kinematics(&self.layout.lengths, &q)
    }

    /// Sets joint angles and velocities exactly and moves the link bodies accordingly.
    fn set_joints(&mut self, q: &[f32], qd: &[f32]) {
        let PhysicsWorld {
            multibody_joints,
            bodies,
            ..
        } = &mut self.world;
        let Some((mb, _)) = multibody_joints.get_mut(self.joints[0]) else {
            return;
        };
        for (k, &id) in self.link_ids.iter().enumerate() {
            let assembly = match mb.link_mut(id) {
                Some(link) => {
                    // Subtract then add, so the coordinate ends exactly at q[k].
                    let current = link.joint.coords()[3];
                    link.joint.apply_displacement(&[-current]);
                    link.joint.apply_displacement(&[q[k]]);
                    link.assembly_id()
                }
                None => continue,
            };
            mb.generalized_velocity_mut()[assembly] = qd[k];
        }
        mb.forward_kinematics(bodies, false);
        mb.update_rigid_bodies(bodies, true);
        for &id in &self.link_ids {
            if let Some(link) = mb.link(id) {
                let h = link.rigid_body_handle();
                bodies[h].wake_up(true);
            }
        }
    }

    /// Camera frames of the arm at joint angles `poses` (oldest first), channel-stacked.
    fn frames(&self, poses: &[Vec<f32>]) -> Vec<u8> {
        let Some((cam, bg)) = &self.layout.camera else {
            return Vec::new();
        };
        let r = self.layout.config.link_radius;
        stack_frames(bg, poses, |f, q| {
            let (mut p, mut theta) = ([0.0f32, 0.0f32], 0.0f32);
            for (l, qi) in self.layout.lengths.iter().zip(q) {
                theta += qi;
                let next = [p[0] + l * theta.cos(), p[1] + l * theta.sin()];
                cam.capsule(f, p, next, r, palette::LINK);
                cam.disc(f, p, r * 1.2, palette::JOINT);
                p = next;
            }
            cam.disc(f, p, r * 1.2, palette::JOINT);
        })
    }

    /// The joint part of the state vector for angles `q` and velocities `qd`.
    fn proprio(q: &[f32], qd: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(3 * q.len());
        for (qi, qdi) in q.iter().zip(qd) {
            out.push(qi.cos());
            out.push(qi.sin());
            out.push(*qdi);
        }
        out
    }

    fn fill_obs(&self, q: &[f32], qd: &[f32], out: &mut Vec<f32>) {
        for (qi, qdi) in q.iter().zip(qd) {
            out.push(qi.cos());
            out.push(qi.sin());
            out.push(*qdi);
        }
        let ee = forward_kinematics(&self.layout.lengths, q);
        out.push(ee[0]);
        out.push(ee[1]);
    }
}

impl Env for Reach {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cfg = &self.layout.config;
        let n = self.joints.len();
        let q0: Vec<f32> = (0..n)
            .map(|_| common::uniform(&mut rng, cfg.start_angles))
            .collect();
        let ee0 = forward_kinematics(&self.layout.lengths, &q0);
        let mut found = None;
        for _ in 0..MAX_TRIES {
            let qg: Vec<f32> = (0..n)
                .map(|_| common::uniform(&mut rng, cfg.goal_angles))
                .collect();
            let t = forward_kinematics(&self.layout.lengths, &qg);
            if (t[0] - ee0[0]).hypot(t[1] - ee0[1]) >= cfg.min_goal_distance {
                found = Some((qg, t));
                break;
            }
        }
        let (qg, target) = found.ok_or_else(|| SimError::Reset {
            seed,
            message: format!(
                "no goal at least min_goal_distance = {} from the start found",
                cfg.min_goal_distance
            ),
        })?;
        let layout = self.layout.clone();
        layout.pristine.apply(&mut self.world);
        self.set_joints(&q0, &vec![0.0; n]);
        self.history.fill(q0);
        self.q_goal = qg;
        self.target = target;
        self.counters = Counters::default();
        Ok(())
    }

    fn state(&self) -> Vec<f32> {
        let (q, qd) = self.joint_state();
        let mut out = Vec::with_capacity(self.spec.state_dim());
        self.fill_obs(&q, &qd, &mut out);
        out
    }

    fn observe(&self) -> Observation {
        let obs = &self.layout.config.observation;
        obs.assemble(
            || self.state(),
            || self.frames(self.history.poses()),
            || {
                let (q, qd) = self.joint_state();
                Self::proprio(&q, &qd)
            },
        )
    }

    fn goal_observation(&self) -> Observation {
        let k = self.history.poses().len();
        let zeros = vec![0.0; self.q_goal.len()];
        self.layout.config.observation.assemble(
            || self.goal_state(),
            || self.frames(&vec![self.q_goal.clone(); k]),
            || Self::proprio(&self.q_goal, &zeros),
        )
    }

    fn goal_state(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.spec.state_dim());
        self.fill_obs(&self.q_goal, &vec![0.0; self.q_goal.len()], &mut out);
        out
    }

    fn step(&mut self, action: &[f32]) -> Result<StepInfo> {
        let clipped = common::clip_action(&self.spec, action, &mut self.action)?;
        let cfg = &self.layout.config;
        if let Some((mb, _)) = self.world.multibody_joints.get_mut(self.joints[0]) {
            for (k, &id) in self.link_ids.iter().enumerate() {
                if let Some(link) = mb.link_mut(id) {
                    link.joint.data.set_motor_velocity(
                        JointAxis::AngX,
                        self.action[k] * cfg.max_joint_speed,
                        cfg.motor_gain,
                    );
                }
            }
        }
        for _ in 0..self.spec.substeps {
            self.world.step();
        }
        self.counters.record(clipped);
        if self.layout.camera.is_some() {
            let (q, _) = self.joint_state();
            self.history.push(q);
        }
        Ok(StepInfo { clipped })
    }

    fn success(&self) -> bool {
        self.distance_to_goal() <= self.layout.config.goal_radius
    }

    fn distance_to_goal(&self) -> f32 {
        let ee = self.end_effector();
        (ee[0] - self.target[0]).hypot(ee[1] - self.target[1])
    }

    fn steps(&self) -> u32 {
        self.counters.steps
    }

    fn clipped_total(&self) -> u64 {
        self.counters.clipped_total
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot(Arc::new(ReachSnapshot {
            layout: self.layout.clone(),
            world: WorldState::capture(&self.world),
            q_goal: self.q_goal.clone(),
            target: self.target,
            counters: self.counters,
            history: self.history.clone(),
        }))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let s = snapshot
            .0
            .downcast_ref::<ReachSnapshot>()
            .ok_or_else(|| SimError::SnapshotMismatch("not a reach snapshot".into()))?;
        if !Arc::ptr_eq(&s.layout, &self.layout) && s.layout.config != self.layout.config {
            return Err(SimError::SnapshotMismatch(
                "taken from a reach environment with another config".into(),
            ));
        }
        s.world.apply(&mut self.world);
        self.q_goal.clone_from(&s.q_goal);
        self.target = s.target;
        self.counters = s.counters;
        self.history.clone_from(&s.history);
        Ok(())
    }

    fn set_state(&mut self, obs: &[f32]) -> Result<()> {
        common::check_state(&self.spec, obs)?;
        let n = self.joints.len();
        let mut q = Vec::with_capacity(n);
        let mut qd = Vec::with_capacity(n);
        for k in 0..n {
            let (c, s) = (obs[3 * k], obs[3 * k + 1]);
            if !(c.hypot(s) > 1e-6) {
                return Err(SimError::InvalidState {
                    index: 3 * k,
                    name: self.spec.state_names[3 * k].clone(),
                    message: format!("(cos, sin) = ({c}, {s}) has no direction"),
                });
            }
            q.push(s.atan2(c));
            qd.push(obs[3 * k + 2]);
        }
        self.set_joints(&q, &qd);
        self.history.fill(q);
        Ok(())
    }

    fn render(&self, width: u32, height: u32) -> Image {
        let cfg = &self.layout.config;
        let reach: f32 = self.layout.lengths.iter().sum();
        let m = reach * 1.08 + cfg.link_radius;
        let mut c = Canvas::new(width, height, [-m, -m, m, m], palette::FLOOR);
        c.ring([0.0, 0.0], reach, reach + 0.004 * m, palette::WALL);
        c.disc(self.target, cfg.goal_radius, palette::GOAL_FAINT);
        c.ring(
            self.target,
            cfg.goal_radius * 0.6,
            cfg.goal_radius,
            palette::GOAL,
        );
        c.disc([0.0, 0.0], cfg.link_radius * 2.0, palette::WALL);
        let (q, _) = self.joint_state();
        let (mut p, mut theta) = ([0.0f32, 0.0f32], 0.0f32);
        for (l, qi) in self.layout.lengths.iter().zip(&q) {
            theta += qi;
            let next = [p[0] + l * theta.cos(), p[1] + l * theta.sin()];
            c.line(p, next, cfg.link_radius * 2.0, palette::LINK);
            c.disc(p, cfg.link_radius * 1.2, palette::JOINT);
            p = next;
        }
        c.disc(p, cfg.link_radius * 1.2, palette::JOINT);
        c.finish()
    }

    fn boxed_clone(&self) -> Box<dyn Env> {
        Box::new(Reach {
            layout: self.layout.clone(),
            spec: self.spec.clone(),
            world: clone_world(&self.world),
            joints: self.joints.clone(),
            link_ids: self.link_ids.clone(),
            q_goal: self.q_goal.clone(),
            target: self.target,
            counters: self.counters,
            action: self.action.clone(),
            history: self.history.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn env() -> Reach {
        let mut e = Reach::new(ReachConfig::default()).unwrap();
        e.reset(5).unwrap();
        e
    }

    #[test]
    fn spec_layout() {
        let s = ReachConfig::default().spec();
        assert_eq!(s.state_dim(), 11);
        assert_eq!(s.state_names[0..3], ["cos_q0", "sin_q0", "qdot0"]);
        assert_eq!(s.state_names[9..], ["ee_x", "ee_y"]);
        assert_eq!(s.action_dim(), 3);
    }

    #[test]
    fn kinematics_of_joint_angles_match_the_bodies() {
        let mut e = env();
        e.set_state(&{
            let q = [0.3f32, -0.7, 1.1];
            let mut o = Vec::new();
            e.fill_obs(&q, &[0.0; 3], &mut o);
            o
        })
        .unwrap();
        let (q, _) = e.joint_state();
        assert_relative_eq!(q[1], -0.7, epsilon = 1e-6);
        let fk = e.end_effector();
        let body = e.end_effector_body();
        assert_relative_eq!(fk[0], body[0], epsilon = 1e-4);
        assert_relative_eq!(fk[1], body[1], epsilon = 1e-4);
        for _ in 0..3 {
            e.step(&[0.5, -1.0, 1.0]).unwrap();
        }
        let fk = e.end_effector();
        let body = e.end_effector_body();
        assert_relative_eq!(fk[0], body[0], epsilon = 1e-3);
        assert_relative_eq!(fk[1], body[1], epsilon = 1e-3);
    }

    #[test]
    fn motors_track_commanded_speeds() {
        let mut e = env();
        let q0 = e.joint_state().0;
        for _ in 0..5 {
            e.step(&[1.0, -0.5, 0.2]).unwrap();
        }
        let (q, qd) = e.joint_state();
        let v = e.config().max_joint_speed;
        for (k, a) in [1.0f32, -0.5, 0.2].iter().enumerate() {
            assert_relative_eq!(qd[k], a * v, epsilon = 0.05 * v);
            // Five control steps of 0.1 s at the commanded speed, minus a short ramp-up.
            assert_relative_eq!(q[k] - q0[k], a * v * 0.5, epsilon = 0.05);
        }
    }

    #[test]
    fn success_predicate_and_goal_observation() {
        let mut e = env();
        let g = e.goal_state();
        assert_eq!(g.len(), 11);
        assert_relative_eq!(g[9], e.target()[0], epsilon = 1e-6);
        e.set_state(&g).unwrap();
        assert!(e.success(), "distance {}", e.distance_to_goal());
        let mut q = e.goal_angles().to_vec();
        q[0] += 0.3;
        let mut o = Vec::new();
        e.fill_obs(&q, &[0.0; 3], &mut o);
        e.set_state(&o).unwrap();
        assert!(!e.success());
    }

    #[test]
    fn validation_names_fields() {
        let bad = |c: ReachConfig| c.validate().unwrap_err().to_string();
        assert!(bad(ReachConfig {
            links: 0,
            ..Default::default()
        })
        .contains("links"));
        assert!(bad(ReachConfig {
            link_lengths: Some(vec![0.3]),
            ..Default::default()
        })
        .contains("link_lengths"));
        assert!(bad(ReachConfig {
            goal_angles: (1.0, -1.0),
            ..Default::default()
        })
        .contains("goal_angles"));
        assert!(bad(ReachConfig {
            motor_gain: f32::NAN,
            ..Default::default()
        })
        .contains("motor_gain"));
    }
}
