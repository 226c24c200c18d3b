use anyhow::Result;

use crate::Outcome;
use crate::cli::InspectArgs;

pub fn run(_a: &InspectArgs) -> Result<Outcome> {
    anyhow::bail!("inspect: not yet")
}
