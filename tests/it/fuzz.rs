//! The fuzz targets in the suite: every regression input (tests/fixtures/fuzz/)
//! and every seed keeps its promises, and a short deterministic run of each
//! target finds nothing. `make fuzz` runs them for longer.

use std::path::Path;
use std::time::Duration;

use hooks_tests::fuzz::{Target, run};

#[test]
fn every_regression_input_and_seed_keeps_its_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz");
    let mut checked = 0;
    for target in Target::ALL {
        let mut inputs = target.seeds();
        for entry in std::fs::read_dir(root.join(target.name())).unwrap() {
            inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
        for input in inputs {
            assert_eq!(
                target.check(&input),
                Ok(()),
                "{}: {}",
                target.name(),
                String::from_utf8_lossy(&input[..input.len().min(200)])
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} inputs");
}

#[test]
fn a_short_fuzz_run_of_each_target_finds_nothing() {
    for target in Target::ALL {
        let report = run(target, Duration::from_secs(2), 0x5eed);
        assert!(
            report.executions > 100,
            "{}: {} executions",
            target.name(),
            report.executions
        );
        assert!(
            report.findings.is_empty(),
            "{}: {:?}",
            target.name(),
            report
                .findings
                .iter()
                .map(|(i, why)| format!(
                    "{why}: {}",
                    String::from_utf8_lossy(&i[..i.len().min(200)])
                ))
                .collect::<Vec<_>>()
        );
    }
}
