//! Writes `include/fdring.h` from this crate's `extern "C"` items with
//! cbindgen (settings in `cbindgen.toml`). The header is checked in, so C
//! users need no Rust toolchain to read it; CI builds this crate and fails
//! if the header changed (`git diff --exit-code fdring-c/include/fdring.h`).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("fdring-c/cbindgen.toml is readable and valid");
    let header = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can read fdring-c's sources");
    // Written only when it changed, so that a build does not touch the
    // checked-in file's time stamp for nothing.
    header.write_to_file(crate_dir.join("include").join("fdring.h"));
}
