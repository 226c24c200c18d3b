use anyhow::Result;

use crate::Outcome;
use crate::cli::ScanArgs;

pub fn run(_a: &ScanArgs) -> Result<Outcome> {
    anyhow::bail!("scan: not yet")
}
