//! `ratchet chaos`: runs the crash matrix and prints its table, then one
//! JSON line `{"points", "passed", "failed"}`.

use anyhow::{Context, Result, bail};
use ratchet_testkit::chaos::ChaosOptions;

/// Runs the matrix; fails when any point failed.
pub async fn run(quick: bool, scenario: Option<String>) -> Result<()> {
    let opts = ChaosOptions {
        quick,
        bin: std::env::current_exe().context("cannot find the ratchet binary")?,
        progress: true,
        scenario,
    };
    let report = ratchet_testkit::chaos::run(&opts).await?;
    print!("{}", report.table());
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
