//! `make fuzz`: each fuzz target (`hooks_tests::fuzz`) for FUZZ_SECONDS
//! (default 60); prints executions and findings, and saves each finding
//! under target/fuzz-findings/ to be added to tests/fixtures/fuzz/.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hooks_tests::fuzz::{Target, run};

fn main() {
    let secs: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-findings");
    let mut total = 0;
    for target in Target::ALL {
        let report = run(target, Duration::from_secs(secs), seed);
        println!(
            "fuzz {:<14} {:>10} executions in {secs} s ({:.0}/s), {} findings (seed {seed})",
            target.name(),
            report.executions,
            report.executions as f64 / secs as f64,
            report.findings.len()
        );
        for (i, (input, why)) in report.findings.iter().enumerate() {
            std::fs::create_dir_all(&out).unwrap();
            let file = out.join(format!("{}-{seed}-{i}.bin", target.name()));
            std::fs::write(&file, input).unwrap();
            println!("   {why}: saved as {}", file.display());
        }
        total += report.findings.len();
    }
    if total > 0 {
        std::process::exit(1);
    }
}
