//! Regions as users see them: which exist, how loaded they are, whether they take new devices.

use super::devices::node_capacity;
use super::types::*;
use super::{Service, ServiceError, convert};
use crate::db;
use crate::db::regions::RegionRow;

impl Service {
    /// Regions a user may see: active and draining ones (disabled ones are hidden), with load.
    /// Offer only those with [`RegionView::accepts_new_devices`] for new devices.
    pub async fn list_regions(&self) -> Result<Vec<RegionView>, ServiceError> {
        let all = self.list_all_regions().await?;
        Ok(all
            .into_iter()
            .filter(|r| r.status != RegionStatus::Disabled)
            .collect())
    }

    /// Every region including disabled ones (admins).
    pub async fn list_all_regions(&self) -> Result<Vec<RegionView>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let rows = db::regions::list(&mut conn).await?;
        let nodes = db::nodes::list(&mut conn, None).await?;
        let active = |region: &RegionRow| {
            nodes
                .iter()
                .filter(|n| n.region == region.code && n.status == NodeState::Active)
                .collect::<Vec<_>>()
        };
        Ok(rows
            .iter()
            .map(|r| {
                let nodes = active(r);
                let capacity = nodes.iter().map(|n| u64::from(node_capacity(n))).sum();
                let protocol =
                    RegionProtocol::of_active_nodes(nodes.iter().map(|n| n.interface.protocol));
                convert::region(r, capacity, protocol)
            })
            .collect())
    }
}
