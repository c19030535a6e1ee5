//! `ratchet chaos`: runs the crash matrix and prints its table, then one
//! JSON line `{"points", "passed", "failed"}`.

use anyhow::{Context, Result, bail};
use ratchet_testkit::chaos::{ChaosOptions, Victim};

/// Runs the matrix; fails when any point failed.
pub async fn run(quick: bool, scenario: Option<String>) -> Result<()> {
    let opts = ChaosOptions {
        quick,
        bin: std::env::current_exe().context("cannot find the ratchet binary")?,
        progress: true,
        scenario,
    };
    let report = ratchet_testkit::chaos::run(&opts).await?;
    println!("{:<10} {:<8} {:<42} result", "scenario", "kills", "point");
    for r in &report.results {
        let victim = match r.point.victim {
            Victim::Service => "service",
            Victim::Restate => "restate",
            Victim::Invocation => "kill",
        };
        let result = match &r.failure {
            None => "pass".to_string(),
            Some(f) => format!("FAIL: {f}"),
        };
        println!(
            "{:<10} {:<8} {:<42} {result}",
            r.scenario, victim, r.point.spec
        );
    }
    println!(
        "{}",
        serde_json::json!({"points": report.points(), "passed": report.passed(), "failed": report.failed()})
    );
    if report.failed() > 0 {
        bail!(
            "{} of {} fault points failed",
            report.failed(),
            report.points()
        );
    }
    Ok(())
}
