//! Regions whose nodes speak AmneziaWG, for the bot's obfuscation tests: declared the way an
//! operator declares any region, then switched to AmneziaWG with a generated profile in the
//! database (what `pvpnctl node add --protocol amneziawg` stores).

use pvpn_backend::service::{Service, ServiceSettings};
use pvpn_common::obfuscation::AwgProfile;
use sqlx::PgPool;

use super::{BotEnv, OPERATOR, node, region_code};

/// One node of a test region: name, endpoint, client subnet, and whether it speaks AmneziaWG.
pub struct TestNode<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
    pub subnet: &'a str,
    pub amneziawg: bool,
}

/// Makes `node` an AmneziaWG node with a fresh valid profile.
pub async fn make_amneziawg(pool: &PgPool, node: &str) {
    let profile = serde_json::to_value(AwgProfile::generate()).expect("profile as JSON");
    let done =
        sqlx::query("UPDATE nodes SET protocol = 'amneziawg', awg_profile = $2 WHERE name = $1")
            .bind(node)
            .bind(profile)
            .execute(pool)
            .await
            .expect("switch the node to AmneziaWG");
    assert_eq!(done.rows_affected(), 1, "no node {node}");
}

impl BotEnv {
    /// Declares an active region `code` named `name` with `nodes`.
    pub async fn add_region(&self, code: &str, name: &str, nodes: &[TestNode<'_>]) {
        let service = Service::new(self.pool.clone(), ServiceSettings::default());
        service
            .declare_region(&OPERATOR, &region_code(code), name)
            .await
            .expect("region");
        for n in nodes {
            service
                .declare_node(&OPERATOR, &node(n.name, code, n.endpoint, n.subnet, 50))
                .await
                .expect("node");
            if n.amneziawg {
                make_amneziawg(&self.pool, n.name).await;
            }
        }
    }
}
