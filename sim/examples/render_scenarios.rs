//! Writes a top-down PNG of every scenario file given on the command line (after a reset and a
//! few steps), next to the output folder given first; for scenarios with a camera also what the
//! robot sees (`<name>_camera.png`, the newest frame, scaled 4×) and the goal image
//! (`<name>_goal_camera.png`).
//!
//! ```text
//! cargo run -p zplan-sim --example render_scenarios -- /tmp/out scenarios/*.ron
//! ```

use std::path::Path;
use zplan_sim::ScenarioConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = Path::new(args.first().map(String::as_str).unwrap_or("."));
    std::fs::create_dir_all(out)?;
    for file in &args[1..] {
        let config = ScenarioConfig::load(Path::new(file))?;
        let mut env = config.build()?;
        env.reset(3)?;
        let dim = env.spec().action_dim();
        for _ in 0..3 {
            env.step(&vec![0.5; dim])?;
        }
        let stem = Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        let path = out.join(format!("{stem}.png"));
        env.render(256, 256).save_png(&path)?;
        println!("{}", path.display());
        if let Some(f) = env.spec().observation.field("image") {
            let (c, h, w) = (f.shape[0], f.shape[1] as u32, f.shape[2] as u32);
            for (suffix, obs) in [
                ("camera", env.observe()),
                ("goal_camera", env.goal_observation()),
            ] {
                let pixels = obs.u8("image").unwrap_or_default();
                let img = zplan_sim::Image::from_chw(pixels, w, h, c / 3 - 1, 4)?;
                let path = out.join(format!("{stem}_{suffix}.png"));
                img.save_png(&path)?;
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}
