//! Redis and PostgreSQL rolled back under running agents: PostgreSQL decides.
//!
//! Real processes throughout (the `pvpn-backend` and `pvpn-agent` binaries, PostgreSQL, a private
//! Redis, `wireguard-go` interfaces in namespaces), with the agents' periodic reconcile set to 10
//! minutes so that only the relay's consistency check and its `Reconcile` can bring them back.
//! Redis restarts from an older RDB file while newer grants exist; later the database is
//! restored from a `pg_dump` while Redis keeps newer data. Each time, within 15 s every
//! interface holds exactly PostgreSQL's active devices, and a new grant arrives. Needs root.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};
use pvpn_tests::user::BotUser;

/// The deadline the issue sets for convergence after a rollback.
const CONVERGE: Duration = Duration::from_secs(15);
/// For the first grants, before anything is rolled back.
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolled_back_redis_or_database_never_leaves_wrong_peers() -> Result<()> {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let a = VpnSite::create(31, "ra", "Rollbackia")
        .context("creating network namespaces (this test must run as root)")?;
    let b = VpnSite::create(32, "rb", "Restoria")?;
    let mut stack = Stack::start().await?;
    let outcome = scenario(&mut stack, &a, &b).await;
    if let Err(e) = &outcome {
        eprintln!("rollback scenario failed: {e:#}\n{}", stack.logs());
    }
    outcome
}

/// The public keys of `site`'s node's active devices in PostgreSQL.
async fn active_in_database(stack: &Stack, site: &VpnSite) -> Result<BTreeSet<String>> {
    let sql = format!(
        "SELECT public_key FROM devices WHERE node = '{}' AND status = 'active'",
        site.node
    );
    Ok(stack.database.strings(&sql).await?.into_iter().collect())
}

fn on_interface(site: &VpnSite) -> Result<BTreeSet<String>> {
    Ok(site
        .wg
        .peers()?
        .iter()
        .map(|p| p.public_key.to_base64())
        .collect())
}

/// The public keys in `site`'s node snapshot in Redis.
fn in_redis(stack: &Stack, site: &VpnSite) -> Result<BTreeSet<String>> {
    let keys = RegionKeys::new(&site.region);
    let mut conn = stack.redis.connection()?;
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(keys.node_peers(&site.node))
        .query(&mut conn)?;
    Ok(fields.into_iter().collect())
}

/// Waits until every site's interface holds exactly its node's active devices in PostgreSQL.
async fn wait_exact(stack: &Stack, sites: &[&VpnSite], what: &str, limit: Duration) -> Result<()> {
    let mut expected = Vec::new();
    for site in sites {
        expected.push(active_in_database(stack, site).await?);
    }
    wait_until(what, limit, || {
        for (site, want) in sites.iter().zip(&expected) {
            if &on_interface(site)? != want {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

async fn grant(stack: &Stack, id: i64, region: &str, name: &str) -> Result<()> {
    BotUser::new(&stack.bot_api, id, "Rolf")
        .new_device(region, name)
        .await
        .with_context(|| format!("granting {name} in {region}"))?;
    Ok(())
}

async fn scenario(stack: &mut Stack, a: &VpnSite, b: &VpnSite) -> Result<()> {
    stack.register(a, 50)?;
    stack.register(b, 50)?;
    let slow_reconcile = [("PVPN_RECONCILE_INTERVAL_SECS", "600")];
    stack.start_agent_with(a, &slow_reconcile)?;
    stack.start_agent_with(b, &slow_reconcile)?;
    stack.start_backend(&[])?;
    let (ra, rb) = (a.display_name.as_str(), b.display_name.as_str());

    grant(stack, 8001, ra, "one").await?;
    grant(stack, 8002, rb, "two").await?;
    wait_exact(stack, &[a, b], "the first grants on both nodes", SETTLE).await?;

    // Redis comes back from an RDB older than the last grant: its snapshot of node A lacks
    // "three", which is active in PostgreSQL and on the interface.
    let older = stack.redis.save_copy("older")?;
    grant(stack, 8003, ra, "three").await?;
    wait_exact(stack, &[a, b], "the grant made after the RDB copy", SETTLE).await?;
    stack.redis.restart_from(&older)?;
    anyhow::ensure!(
        in_redis(stack, a)?.len() == 1,
        "the older RDB should lack the third device"
    );
    let want = active_in_database(stack, a).await?;
    wait_until(
        "node A's snapshot republished from PostgreSQL",
        CONVERGE,
        || Ok(in_redis(stack, a)? == want),
    )
    .await?;
    wait_exact(
        stack,
        &[a, b],
        "interfaces after Redis restarted from an older RDB",
        CONVERGE,
    )
    .await?;
    grant(stack, 8004, ra, "four").await?;
    wait_exact(stack, &[a, b], "a grant after the Redis rollback", CONVERGE).await?;

    // PostgreSQL is restored from a dump older than the last grant while Redis keeps it:
    // "five" is unknown to PostgreSQL and must leave the interface, and the revisions the
    // restored database hands out again must not be taken for published ones.
    let dump = stack.log_dir.join("before-five.dump");
    stack.database.dump(&dump)?;
    grant(stack, 8005, ra, "five").await?;
    wait_exact(stack, &[a, b], "the grant made after the dump", SETTLE).await?;
    stack.database.restore(&dump).await?;
    wait_exact(
        stack,
        &[a, b],
        "interfaces after the database was restored",
        CONVERGE,
    )
    .await?;
    grant(stack, 8006, ra, "six").await?;
    wait_exact(
        stack,
        &[a, b],
        "a grant after the database restore",
        CONVERGE,
    )
    .await?;
    anyhow::ensure!(
        active_in_database(stack, a).await?.len() == 4,
        "node A should hold one, three, four and six"
    );

    stack.check_processes()?;
    Ok(())
}
