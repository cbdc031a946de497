// A 20 Hz robot control loop in C++ against a zplan scenario, through the C ABI only
// (zplan.h, libzplan_capi). The C++ twin of examples/realtime_controller.rs.
//
// Every tick (50 ms): observe the simulation, push the observation to the controller, read
// the latest action without waiting for the planner (hold the last one, or the centre of the
// bounds, while there is none), step the simulation, sleep until the next tick. The planner
// replans on its own thread, with a deadline per plan.
//
// Build and run from the repository root (capi/README.md has the details):
//
//   cargo build --release -p zplan-capi
//   g++ -std=c++17 -O2 -Wall -Wextra -I capi/include examples/cpp/realtime_controller.cpp
//       -L target/release -lzplan_capi -Wl,-rpath,"$PWD/target/release" -o realtime_controller
//       (one command)
//   ./realtime_controller                                   # reach, simulator-backed model
//   ./realtime_controller --model 'Jepa("models/trained/reach")'   # the trained JEPA
//
// It checks the real-time behaviour and exits with status 1 when the controller never
// produced an action, when the first action of an episode took longer than
// --max-first-action-ms after the first observation, or when more than
// --max-missed-fraction of the ticks ran on a stale plan (no new plan for
// 2 x action_block + lookahead ticks) or without an action. Status 2 is an API error. The
// last line is a machine-readable summary ending in `result=OK` or `result=FAIL`.

#include "zplan.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// An API error is fatal here: print the function, the status and the message, and exit.
[[noreturn]] void fail(const char *call, ZplanStatus status) {
    std::fprintf(stderr, "error: %s returned %s: %s\n", call, zplan_status_name(status),
                 zplan_last_error_message());
    std::exit(2);
}

#define ZCHECK(call)                                  \
    do {                                              \
        ZplanStatus zcheck_status_ = (call);          \
        if (zcheck_status_ != ZPLAN_STATUS_OK) {      \
            fail(#call, zcheck_status_);              \
        }                                             \
    } while (0)

struct Args {
    std::string scenario = "scenarios/reach.ron";
    // The model, as a suite entry writes it (`Sim`, `Jepa("models/trained/reach")`,
    // `TorchScript("m.pt")`), or `sim` / `jepa:PATH` / `torchscript:PATH`.
    std::string model = "Sim";
    // A preset for reach under a tight deadline (examples/realtime_controller.rs).
    std::string planner =
        "Cem(samples: 32, elites: 6, iterations: 3, horizon: 5, init_std: 0.8, momentum: 0.0)";
    std::string energy = "(metric: L2, reduction: Sum)";
    std::string mpc = "(replan_every: 2, action_block: 2)";
    std::string entry;  // a whole suite entry in RON; overrides the five above
    std::string base_dir = ".";
    std::string device = "auto";
    double hz = 20.0;
    double seconds = 5.0;
    int episodes = 2;
    uint64_t seed = 50000;
    double deadline_ms = 0.0;  // 0: the MPC settings' deadline_ms, else 80 % of the period
    unsigned sim_threads = 0;
    double max_first_action_ms = 1000.0;
    double max_missed_fraction = 0.25;
};

void usage() {
    std::printf(
        "usage: realtime_controller [options]\n"
        "  --scenario FILE            scenario RON file (default scenarios/reach.ron)\n"
        "  --model MODEL              Sim | Jepa(\"models/trained/reach\") | jepa:PATH | sim\n"
        "  --planner RON --energy RON --mpc RON   planner, energy and MPC settings\n"
        "  --entry RON                a whole suite entry (overrides scenario/model/planner/...)\n"
        "  --base-dir DIR             relative paths in the entry are taken from here (.)\n"
        "  --device DEV               auto | cpu | cuda | cuda:N (learned models)\n"
        "  --hz HZ                    control rate (20)\n"
        "  --seconds S                stop after this much wall time (5)\n"
        "  --episodes N               stop after this many episodes (2)\n"
        "  --seed N                   seed of the first episode (50000)\n"
        "  --deadline-ms MS           per-plan deadline (default 80 %% of the period)\n"
        "  --sim-threads N            rollout threads of the Sim model (0: all cores)\n"
        "  --max-first-action-ms MS   fail when a first action takes longer (1000)\n"
        "  --max-missed-fraction F    fail when more ticks were missed (0.25)\n");
}

Args parse(int argc, char **argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        if (k == "--help" || k == "-h") {
            usage();
            std::exit(0);
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "error: %s needs a value\n", k.c_str());
            usage();
            std::exit(2);
        }
        std::string v = argv[++i];
        if (k == "--scenario") a.scenario = v;
        else if (k == "--model") a.model = v;
        else if (k == "--planner") a.planner = v;
        else if (k == "--energy") a.energy = v;
        else if (k == "--mpc") a.mpc = v;
        else if (k == "--entry") a.entry = v;
        else if (k == "--base-dir") a.base_dir = v;
        else if (k == "--device") a.device = v;
        else if (k == "--hz") a.hz = std::atof(v.c_str());
        else if (k == "--seconds") a.seconds = std::atof(v.c_str());
        else if (k == "--episodes") a.episodes = std::atoi(v.c_str());
        else if (k == "--seed") a.seed = std::strtoull(v.c_str(), nullptr, 10);
        else if (k == "--deadline-ms") a.deadline_ms = std::atof(v.c_str());
        else if (k == "--sim-threads") a.sim_threads = static_cast<unsigned>(std::atoi(v.c_str()));
        else if (k == "--max-first-action-ms") a.max_first_action_ms = std::atof(v.c_str());
        else if (k == "--max-missed-fraction") a.max_missed_fraction = std::atof(v.c_str());
        else {
            std::fprintf(stderr, "error: unknown option %s\n", k.c_str());
            usage();
            std::exit(2);
        }
    }
    if (!(a.hz > 0.0) || !(a.seconds > 0.0) || a.episodes < 1) {
        std::fprintf(stderr, "error: --hz and --seconds must be positive, --episodes >= 1\n");
        std::exit(2);
    }
    return a;
}

// `sim` -> `Sim`, `jepa:PATH` -> `Jepa("PATH")`, `torchscript:PATH` -> `TorchScript("PATH")`;
// anything else is taken as RON already.
std::string model_ron(const std::string &m) {
    if (m == "sim") return "Sim";
    if (m.rfind("jepa:", 0) == 0) return "Jepa(\"" + m.substr(5) + "\")";
    if (m.rfind("torchscript:", 0) == 0) return "TorchScript(\"" + m.substr(12) + "\")";
    return m;
}

// The observation fields of a handle, with buffers: fill them with zplan_env_observe, pass
// them to zplan_controller_push_observation.
class Fields {
public:
    void add(const std::string &name, ZplanDtype dtype, const size_t *shape, size_t ndim) {
        Buffer b;
        b.name = name;
        b.dtype = dtype;
        b.shape.assign(shape, shape + ndim);
        size_t numel = 1;
        for (size_t d : b.shape) numel *= d;
        b.data.assign(numel * (dtype == ZPLAN_DTYPE_F32 ? sizeof(float) : 1), 0);
        buffers_.push_back(std::move(b));
    }

    // The ZplanField array; valid until the next add().
    const ZplanField *fields() {
        fields_.clear();
        for (Buffer &b : buffers_) {
            fields_.push_back(ZplanField{b.name.c_str(), static_cast<int32_t>(b.dtype),
                                         b.data.data(), b.shape.data(), b.shape.size()});
        }
        return fields_.data();
    }

    size_t size() const { return buffers_.size(); }

private:
    struct Buffer {
        std::string name;
        ZplanDtype dtype;
        std::vector<size_t> shape;
        std::vector<unsigned char> data;  // no alignment needed
    };
    std::vector<Buffer> buffers_;
    std::vector<ZplanField> fields_;
};

const char *dtype_name(ZplanDtype d) { return d == ZPLAN_DTYPE_F32 ? "f32" : "u8"; }

}  // namespace

int main(int argc, char **argv) {
    const Args args = parse(argc, argv);
    const double period_ms = 1000.0 / args.hz;
    const auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(period_ms));

    // The simulation stands in for the robot.
    ZplanEnv *env = nullptr;
    ZCHECK(zplan_env_create(args.scenario.c_str(), &env));
    ZplanEnvInfo env_info;
    ZCHECK(zplan_env_info(env, &env_info));
    std::vector<float> low(env_info.action_dim), high(env_info.action_dim);
    ZCHECK(zplan_env_action_bounds(env, low.data(), high.data(), env_info.action_dim));
    std::vector<float> idle(env_info.action_dim);
    for (size_t i = 0; i < idle.size(); ++i) idle[i] = 0.5f * (low[i] + high[i]);

    // The controller, from one suite entry.
    std::string entry = args.entry;
    if (entry.empty()) {
        entry = "(name: \"cpp/realtime\", scenario: File(\"" + args.scenario + "\"), model: " +
                model_ron(args.model) + ", planner: " + args.planner +
                ", energy: " + args.energy + ", mpc: " + args.mpc + ")";
    }
    ZplanControllerOptions opts = zplan_controller_options_default();
    opts.control_period_ms = period_ms;
    opts.deadline_ms = args.deadline_ms;
    opts.sim_threads = args.sim_threads;
    opts.device = args.device.c_str();
    ZplanController *ctl = nullptr;
    ZCHECK(zplan_controller_create_from_entry(entry.c_str(), args.base_dir.c_str(), &opts, &ctl));
    ZplanControllerInfo info;
    ZCHECK(zplan_controller_info(ctl, &info));
    if (info.action_dim != env_info.action_dim) {
        std::fprintf(stderr, "error: the controller plans %zu actions, the scenario takes %zu\n",
                     info.action_dim, env_info.action_dim);
        return 2;
    }

    // Observation buffers: the controller's fields (the scenario's), plus the true state when
    // the model plans from it (Sim).
    Fields obs, goal;
    std::string spec;
    for (size_t i = 0; i < info.num_fields; ++i) {
        ZplanFieldInfo f;
        ZCHECK(zplan_controller_field(ctl, i, &f));
        obs.add(f.name, f.dtype, f.shape, f.ndim);
        goal.add(f.name, f.dtype, f.shape, f.ndim);
        spec += (i ? ", " : "") + std::string(f.name) + " " + dtype_name(f.dtype) + " [" +
                std::to_string(f.numel) + "]";
    }
    if (info.needs_true_state) {
        const size_t shape[1] = {info.state_dim};
        obs.add(ZPLAN_TRUE_STATE_FIELD, ZPLAN_DTYPE_F32, shape, 1);
        goal.add(ZPLAN_TRUE_STATE_FIELD, ZPLAN_DTYPE_F32, shape, 1);
    }
    std::printf("scenario %s (%s), %zu actions; entry %s\n", args.scenario.c_str(), spec.c_str(),
                info.action_dim, entry.c_str());
    std::printf("%.1f Hz, deadline %.1f ms, action block %u, lookahead %u\n", args.hz,
                info.deadline_ms, info.action_block, info.lookahead);

    // A plan is stale when none was published for this many ticks (the controller replans
    // once per action block, and a plan made now starts `lookahead` periods later).
    const uint64_t stale_after = 2 * uint64_t(info.action_block) + info.lookahead;
    std::vector<float> action(info.action_dim), held(info.action_dim);
    uint64_t ticks = 0, ticks_with_plan = 0, late_ticks = 0, stale_ticks = 0, no_action_ticks = 0;
    uint64_t actions = 0;
    double worst_first_action_ms = 0.0, sum_first_action_ms = 0.0;
    int episodes = 0, successes = 0, episodes_with_action = 0;
    const auto run_start = Clock::now();
    const auto run_end = run_start + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(args.seconds));

    for (int ep = 0; ep < args.episodes && Clock::now() < run_end; ++ep) {
        const uint64_t seed = args.seed + uint64_t(ep);
        ZCHECK(zplan_env_reset(env, seed));
        ZCHECK(zplan_env_goal_observation(env, goal.fields(), goal.size()));
        // The first goal starts the planner thread (encoding the goal here); later ones return
        // at once.
        ZCHECK(zplan_controller_set_goal(ctl, goal.fields(), goal.size(), seed));
        held = idle;
        bool have_action = false;
        Clock::time_point first_push{};
        uint64_t last_plans = 0, last_plan_tick = 0, ep_tick = 0;
        ZplanControllerStats stats;
        ZCHECK(zplan_controller_stats(ctl, &stats));
        last_plans = stats.plans;

        bool success = false;
        uint32_t steps = 0;
        auto next = Clock::now();
        while (Clock::now() < run_end) {
            ZCHECK(zplan_env_success(env, &success));
            ZCHECK(zplan_env_steps(env, &steps));
            if (success || steps >= env_info.max_steps) break;

            const auto tick_start = Clock::now();
            ZCHECK(zplan_env_observe(env, obs.fields(), obs.size()));
            ZCHECK(zplan_controller_push_observation(ctl, obs.fields(), obs.size()));
            if (ep_tick == 0) first_push = tick_start;
            // Never blocks: the action the latest plan schedules for now, if any.
            const ZplanStatus st = zplan_controller_latest_action(ctl, action.data(), action.size());
            if (st == ZPLAN_STATUS_OK) {
                if (!have_action) {
                    const double ms = ms_between(first_push, Clock::now());
                    worst_first_action_ms = std::max(worst_first_action_ms, ms);
                    sum_first_action_ms += ms;
                    ++episodes_with_action;
                    std::printf("episode %d: first action %.1f ms after the first observation\n",
                                ep, ms);
                    have_action = true;
                    last_plan_tick = ep_tick;
                }
                held = action;
                ++actions;
            } else if (st == ZPLAN_STATUS_NO_ACTION_YET) {
                if (have_action) ++no_action_ticks;  // hold the last action
            } else {
                fail("zplan_controller_latest_action", st);
            }
            if (have_action) {
                ++ticks_with_plan;
                ZCHECK(zplan_controller_stats(ctl, &stats));
                if (stats.plans != last_plans) {
                    last_plans = stats.plans;
                    last_plan_tick = ep_tick;
                } else if (ep_tick - last_plan_tick > stale_after) {
                    ++stale_ticks;
                }
            }
            ZCHECK(zplan_env_step(env, held.data(), held.size()));
            ++ticks;
            ++ep_tick;

            next += period;
            const auto now = Clock::now();
            if (now > next) {
                ++late_ticks;  // this tick overran its period
                next = now;
            } else {
                std::this_thread::sleep_until(next);
            }
        }
        float distance = 0.0f;
        ZCHECK(zplan_env_success(env, &success));
        ZCHECK(zplan_env_steps(env, &steps));
        ZCHECK(zplan_env_distance_to_goal(env, &distance));
        ++episodes;
        successes += success ? 1 : 0;
        std::printf("episode %d (seed %" PRIu64 "): %s after %u steps, distance to goal %.3f\n", ep,
                    seed, success ? "success" : "no success", steps, distance);
    }

    // Shut down: stop (waits for the current plan), destroy, and check that the handle is dead.
    ZplanControllerReport report;
    ZCHECK(zplan_controller_stop(ctl, &report));
    ZCHECK(zplan_controller_destroy(ctl));
    const ZplanStatus again = zplan_controller_destroy(ctl);
    ZCHECK(zplan_env_destroy(env));
    const ZplanStatus env_again = zplan_env_destroy(env);

    const uint64_t missed = stale_ticks + no_action_ticks;
    std::vector<std::string> problems;
    if (actions == 0) problems.push_back("the controller never produced an action");
    if (worst_first_action_ms > args.max_first_action_ms)
        problems.push_back("a first action took " + std::to_string(worst_first_action_ms) +
                           " ms (limit " + std::to_string(args.max_first_action_ms) + " ms)");
    if (double(missed) > args.max_missed_fraction * double(std::max<uint64_t>(ticks_with_plan, 1)))
        problems.push_back(std::to_string(missed) + " of " + std::to_string(ticks_with_plan) +
                           " ticks ran on a stale plan or without an action");
    if (again != ZPLAN_STATUS_INVALID_HANDLE || env_again != ZPLAN_STATUS_INVALID_HANDLE)
        problems.push_back(std::string("a second destroy returned ") + zplan_status_name(again) +
                           " / " + zplan_status_name(env_again) +
                           ", expected ZPLAN_STATUS_INVALID_HANDLE");
    if (report.stats.errors > 0)
        problems.push_back(std::to_string(report.stats.errors) + " planning errors");

    std::printf("loop: %" PRIu64 " ticks, %" PRIu64 " overran the period, %" PRIu64
                " on a stale plan, %" PRIu64 " without an action after the first\n",
                ticks, late_ticks, stale_ticks, no_action_ticks);
    std::printf("planner: %" PRIu64 " plans, %" PRIu64 " deadline misses, %" PRIu64
                " observations replaced unplanned; latency p50 %.1f p95 %.1f p99 %.1f max %.1f ms;"
                " plan compute p50 %.1f p95 %.1f ms\n",
                report.stats.plans, report.stats.deadline_misses,
                report.stats.dropped_observations, report.latency_p50_ms, report.latency_p95_ms,
                report.latency_p99_ms, report.latency_max_ms, report.plan_time_p50_ms,
                report.plan_time_p95_ms);
    for (const std::string &p : problems) std::printf("FAIL: %s\n", p.c_str());
    std::printf("summary: hz=%.1f episodes=%d successes=%d ticks=%" PRIu64
                " first_action_ms_max=%.1f first_action_ms_mean=%.1f missed_ticks=%" PRIu64
                " late_ticks=%" PRIu64 " plans=%" PRIu64 " deadline_misses=%" PRIu64
                " deadline_ms=%.1f latency_p50_ms=%.1f latency_p99_ms=%.1f plan_p50_ms=%.1f"
                " result=%s\n",
                args.hz, episodes, successes, ticks, worst_first_action_ms,
                episodes_with_action ? sum_first_action_ms / episodes_with_action : 0.0, missed,
                late_ticks, report.stats.plans, report.stats.deadline_misses, info.deadline_ms,
                report.latency_p50_ms, report.latency_p99_ms, report.plan_time_p50_ms,
                problems.empty() ? "OK" : "FAIL");
    return problems.empty() ? 0 : 1;
}
