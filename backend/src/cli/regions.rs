//! `pvpnctl region ...`

use clap::Subcommand;
use pvpn_common::RegionCode;
use serde_json::json;

use super::{actor, output};
use crate::service::{RegionStatus, Service};

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// Create a region, or rename it (idempotent: prints created, updated or unchanged).
    Add {
        /// Region code: lowercase letters, digits and inner hyphens (e.g. `nl`, `us-east`).
        code: RegionCode,
        /// The name users see (e.g. "Netherlands").
        #[arg(long)]
        name: String,
    },
    /// List regions with their load.
    List,
    /// Stop placing new devices in the region; existing devices keep working.
    Drain { code: RegionCode },
    /// Let the region take new devices again.
    Enable { code: RegionCode },
    /// Hide the region from users; existing devices keep working until revoked.
    Disable { code: RegionCode },
}

pub async fn run(service: &Service, cmd: RegionCommand, json: bool) -> anyhow::Result<()> {
    let status = |code: RegionCode, status: RegionStatus| async move {
        service.set_region_status(&actor(), &code, status).await?;
        if json {
            output::json(&json!({ "region": code.as_str(), "status": status }))
        } else {
            println!("region {code} is {}", status.as_str());
            Ok(())
        }
    };
    match cmd {
        RegionCommand::Add { code, name } => {
            let change = service.declare_region(&actor(), &code, &name).await?;
            if json {
                output::json(&json!({ "region": code.as_str(), "change": change }))
            } else {
                println!("{}", change.as_str());
                Ok(())
            }
        }
        RegionCommand::List => {
            let regions = service.list_all_regions().await?;
            if json {
                return output::json(&regions);
            }
            let rows: Vec<Vec<String>> = regions
                .iter()
                .map(|r| {
                    vec![
                        r.code.to_string(),
                        r.display_name.clone(),
                        r.status.as_str().into(),
                        r.active_nodes.to_string(),
                        format!("{}/{}", r.devices, r.capacity),
                        format!("{}%", r.load_percent()),
                        r.protocol.as_str().into(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "CODE", "NAME", "STATUS", "NODES", "DEVICES", "LOAD", "PROTOCOL",
                ],
                &rows,
            );
            Ok(())
        }
        RegionCommand::Drain { code } => status(code, RegionStatus::Draining).await,
        RegionCommand::Enable { code } => status(code, RegionStatus::Active).await,
        RegionCommand::Disable { code } => status(code, RegionStatus::Disabled).await,
    }
}
