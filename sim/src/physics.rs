//! Copyable Rapier state: what a snapshot holds, and how a world is cloned.
//!
//! Rapier's [`PhysicsWorld`] is not `Clone` because its pipelines are reusable workspaces; every
//! structure that carries simulation state (bodies, colliders, joints, islands, broad and
//! narrow phase with their contact caches and warm-start impulses) is. The crate-private
//! `WorldState` holds exactly those, so restoring one into a world (keeping that world's
//! pipeline, as Rapier's own snapshot tests do) continues bit-identically.

use rapier3d::prelude::*;

/// Everything that determines how a [`PhysicsWorld`] evolves, minus the reusable workspaces.
#[derive(Clone)]
pub(crate) struct WorldState {
    gravity: Vector,
    integration_parameters: IntegrationParameters,
    islands: IslandManager,
    broad_phase: BroadPhaseBvh,
    narrow_phase: NarrowPhase,
    bodies: RigidBodySet,
    colliders: ColliderSet,
    impulse_joints: ImpulseJointSet,
    multibody_joints: MultibodyJointSet,
    soft_bodies: SoftBodySet,
}

impl WorldState {
    /// Copies the state out of `world`.
    pub(crate) fn capture(world: &PhysicsWorld) -> Self {
        WorldState {
            gravity: world.gravity,
            integration_parameters: world.integration_parameters,
            islands: world.islands.clone(),
            broad_phase: world.broad_phase.clone(),
            narrow_phase: world.narrow_phase.clone(),
            bodies: world.bodies.clone(),
            colliders: world.colliders.clone(),
            impulse_joints: world.impulse_joints.clone(),
            multibody_joints: world.multibody_joints.clone(),
            soft_bodies: world.soft_bodies.clone(),
        }
    }

    /// Overwrites `world`'s state with this one, keeping its pipelines (workspaces).
    pub(crate) fn apply(&self, world: &mut PhysicsWorld) {
        world.gravity = self.gravity;
        world.integration_parameters = self.integration_parameters;
        world.islands.clone_from(&self.islands);
        world.broad_phase.clone_from(&self.broad_phase);
        world.narrow_phase.clone_from(&self.narrow_phase);
        world.bodies.clone_from(&self.bodies);
        world.colliders.clone_from(&self.colliders);
        world.impulse_joints.clone_from(&self.impulse_joints);
        world.multibody_joints.clone_from(&self.multibody_joints);
        world.soft_bodies.clone_from(&self.soft_bodies);
    }

    /// A new world in this state, with fresh pipelines.
    pub(crate) fn to_world(&self) -> PhysicsWorld {
        let mut world = PhysicsWorld::new();
        self.apply(&mut world);
        world
    }
}

/// An independent copy of `world` (same state, fresh pipelines); stepping it gives the same
/// bits as stepping `world`.
pub fn clone_world(world: &PhysicsWorld) -> PhysicsWorld {
    WorldState::capture(world).to_world()
}

/// A world with the given gravity and physics step, nothing in it.
pub(crate) fn new_world(gravity: Vector, dt: f32) -> PhysicsWorld {
    let mut world = PhysicsWorld::new();
    world.gravity = gravity;
    world.integration_parameters.dt = dt;
    world
}
