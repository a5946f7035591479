//! Writes a deterministic scale catalog of N seed-shaped lessons built from real sentences.
//!
//! ```text
//! cargo run --release --example gen-catalog -- 2116 /tmp/catalog [SENTENCE_SOURCE_DIR]
//! ```
//! The source defaults to the SQuAD 2.0 lessons of the evaluation data beside the checkout, or
//! the checkout's own `lessons/` without them. The same N and source give the same files.

#[path = "../benches/support/catalog.rs"]
mod catalog;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(out)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: gen-catalog N OUT_DIR [SENTENCE_SOURCE_DIR]");
    };
    let n: usize = n
        .parse()
        .map_err(|_| anyhow::anyhow!("N must be a whole number"))?;
    let source_dir = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(catalog::default_source_dir);
    let source = catalog::Source::read(&source_dir)?;
    let out = PathBuf::from(out);
    catalog::write(&source, n, &out)?;
    println!("wrote {n} lessons to {}", out.display());
    Ok(())
}
