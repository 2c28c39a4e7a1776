//! Regions as users see them: which exist, how loaded they are, whether they take new devices.

use super::types::*;
use super::{Service, ServiceError, convert};
use crate::db;

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
        rows.iter().map(convert::region).collect()
    }
}
