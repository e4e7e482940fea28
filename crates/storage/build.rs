//! `embed_migrations!` only notices edits to files it already embeds; a newly added migration
//! directory would be silently left out of the binary without this.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
