// `sqlx::migrate!` embeds the migrations at build time; without this, adding a migration file
// would not trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
