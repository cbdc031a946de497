#!/usr/bin/env bash
# Reproduces the shipped default JEPA world models in models/trained/ (CPU, single torch thread,
# fixed seeds). Each model: collect exploration data from collection-range seeds, then train.
# Usage: scripts/train_default_models.sh [reach|two_rooms|push|two_rooms_pixels|two_rooms_doors|reach_pixels|push_pixels]...
# (default: all). Pixel models train on 64 x 64 camera images with a keypoint image head
# (--keypoints): about 24 min each on one core of a 2-vCPU VM. --time-limit-min 45 (the issue's
# budget) keeps the default 15-minute limit from cutting the run short: a run that reaches its
# step count is deterministic, a time-limited one is not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh >/dev/null
cargo build --release --bin zplan
Z=target/release/zplan
mkdir -p data models/trained
# push's data recipe (push and push_pixels): 40-step episodes near the block, half of them
# pushed by MPC with the simulator-backed model plus action noise. Usage: collect_push SCENARIO OUT
collect_push() {
  $Z collect "$1" --episodes 2000 --steps 40 --beta 1.5 \
    --planner-fraction 0.5 --planner-noise 0.3 \
    --planner "ICem(samples: 40, elites: 8, iterations: 2, horizon: 8, init_std: 0.8, beta: 2.0)" \
    --energy "(metric: L2, reduction: Sum, latent_weights: [0.2, 0.2, 1.0, 1.0, 0.5, 0.5])" \
    --out "$2"
}
for m in "${@:-reach two_rooms push two_rooms_pixels two_rooms_doors reach_pixels push_pixels}"; do
  for name in $m; do
    case "$name" in
      reach)
        $Z collect scenarios/reach.ron --episodes 1000 --beta 1.0 --out data/reach
        $Z train --data data/reach --out models/trained/reach.safetensors --device cpu --enc-layers 0
        ;;
      two_rooms)
        # Starts anywhere in both rooms so the model sees both rooms and the door.
        $Z collect scenarios/collect/two_rooms_wide.ron --episodes 2000 --beta 1.5 --out data/two_rooms
        $Z train --data data/two_rooms --out models/trained/two_rooms.safetensors --device cpu --enc-layers 0 --latent-dim 2 --steps 4000
        ;;
      push)
        # Short episodes near the block; half of them pushed by MPC with the simulator-backed
        # model (plus action noise) so the data holds many pushes and turns of the block.
        collect_push scenarios/push.ron data/push
        # The pusher's own position gets its own encoder (and latent entries), so the planning
        # energy can weight it apart (proprio_weight in scenarios/default.ron).
        $Z train --data data/push --out models/trained/push.safetensors --device cpu --enc-layers 0 \
          --hidden 256 --steps 8000 --proprio pusher_x,pusher_y
        ;;
      two_rooms_pixels)
        # One keypoint: where the ball is in the image.
        $Z collect scenarios/collect/two_rooms_pixels_wide.ron --episodes 1000 --steps 60 --beta 1.5 --out data/two_rooms_pixels
        $Z train --data data/two_rooms_pixels --out models/trained/two_rooms_pixels.safetensors --device cpu \
          --keypoints 1 --conv-widths 8,16 --batch 128 --steps 3000 --inverse-weight 1.0 --threads 1 --time-limit-min 45
        ;;
      two_rooms_doors)
        # The door moves per episode and is seen only in the image: two keypoints (ball, door).
        # The second is static (held still within each window, uncorrelated with the first),
        # so the only thing it can follow is what is drawn per episode: the door (probe R²
        # 0.80). Then the predictor is retrained on the frozen latents with the windows drawn
        # by their prediction loss (--refit-predictor, priority 2), so the rare steps where the
        # wall stops the ball are learnt: 19/20 against 13/20 (models/trained/README.md).
        $Z collect scenarios/collect/two_rooms_doors_wide.ron --episodes 1000 --steps 60 --beta 1.5 --out data/two_rooms_doors
        $Z train --data data/two_rooms_doors --out models/trained/two_rooms_doors_joint.safetensors --device cpu \
          --keypoints 2 --keypoint-std 0.1 --static-keypoints 1 --static-weight 300 --keypoint-decorrelation 1.0 \
          --conv-widths 8,16 --batch 128 --steps 3000 --inverse-weight 1.0 --threads 1 --time-limit-min 45
        $Z train --data data/two_rooms_doors --out models/trained/two_rooms_doors.safetensors \
          --refit-predictor models/trained/two_rooms_doors_joint.safetensors --hidden 256 --layers 2 \
          --steps 20000 --eval-every 1000 --device cpu
        ;;
      reach_pixels)
        # Three image keypoints plus a linear encoder of the joint encoders (proprio field:
        # cos q, sin q, qdot of 3 joints = 9 inputs) into 12 latent entries: a linear map into
        # fewer entries than inputs (8 before) loses a direction, and with it the last few
        # centimetres of precision at the goal (30/40 against 38/40 on tuning episodes).
        $Z collect scenarios/reach_pixels.ron --episodes 2000 --steps 60 --beta 1.0 --out data/reach_pixels
        $Z train --data data/reach_pixels --out models/trained/reach_pixels.safetensors --device cpu \
          --keypoints 3 --proprio-latent-dim 12 --enc-layers 0 --conv-widths 8,16 --batch 128 \
          --steps 2500 --inverse-weight 1.0 --threads 1 --time-limit-min 45
        ;;
      push_pixels)
        # push's data recipe (half the episodes pushed by the simulator-backed iCEM plus noise)
        # through the camera. The block is one mask keypoint on a full-resolution map (its
        # centroid, and the fourth moment of its silhouette in a window about it: the yaw of
        # a square), the pusher's position (proprio) a linear encoder; then the predictor is
        # retrained on the frozen latents in standardised units, two control steps per
        # predictor step (--frameskip 2), on that data plus 1200 episodes all pushed by the
        # simulator-backed iCEM (models/trained/README.md).
        collect_push scenarios/push_pixels.ron data/push_pixels
        $Z collect scenarios/push_pixels.ron --episodes 1200 --steps 40 --out data/push_pixels_expert \
          --seed 3 --beta 1.5 --planner-fraction 1.0 --planner-noise 0.3 --workers 2 \
          --planner "ICem(samples: 40, elites: 8, iterations: 2, horizon: 8, init_std: 0.8, beta: 2.0)" \
          --energy "(metric: L2, reduction: Sum, latent_weights: [0.2, 0.2, 1.0, 1.0, 0.5, 0.5])"
        $Z train --data data/push_pixels --out models/trained/push_pixels_joint.safetensors --device cpu \
          --keypoints 1 --keypoint-mask --keypoint-moment 4 --keypoint-moment-radius 0.2 --image-norm channel \
          --keypoint-gain 5 --keypoint-std 0.1 --keypoint-spread 0.01 --proprio-decorrelation 1.0 \
          --enc-layers 0 --proprio-latent-dim 4 --conv-widths 8 --conv-strides 1 --batch 64 --steps 3000 \
          --inverse-weight 1.0 --threads 2 --time-limit-min 45
        $Z train --data data/push_pixels --data data/push_pixels_expert \
          --out models/trained/push_pixels.safetensors \
          --refit-predictor models/trained/push_pixels_joint.safetensors --standardize-predictor \
          --hidden 288 --layers 3 --frameskip 2 --steps 40000 --eval-every 5000 \
          --time-limit-min 60 --device cpu --threads 1
        ;;
      *) echo "unknown model $name (reach|two_rooms|push|two_rooms_pixels|two_rooms_doors|reach_pixels|push_pixels)" >&2; exit 2 ;;
    esac
  done
done
