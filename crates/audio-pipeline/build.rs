//! Builds libopus's own `silk_decode_core` (from opusic-sys's sources) under another name,
//! `botmedia_reference_silk_decode_core`, for the bit-exactness tests of
//! `src/opus_decode_core.rs`, which replaces that symbol in the linked libopus. The
//! archive is only linked into a binary that refers to it, which only the unit tests do.
//! When the sources cannot be found, `opus_decode_core_reference` is left unset and the
//! comparison test fails with a message saying so.

use std::path::PathBuf;

/// The opusic-sys release whose libopus (1.6.1) the replacement mirrors.
const OPUSIC_SYS: &str = "opusic-sys-0.7.7";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(opus_decode_core_reference)");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return;
    }
    let Some(opus) = find_opus_sources() else {
        println!(
            "cargo:warning=libopus sources ({OPUSIC_SYS}) not found: the decode-core comparison test will fail"
        );
        return;
    };
    cc::Build::new()
        .file(opus.join("silk/decode_core.c"))
        .include(opus.join("include"))
        .include(&opus)
        .include(opus.join("celt"))
        .include(opus.join("silk"))
        .include(opus.join("silk/float"))
        // The defines opusic-sys's CMake build compiles this file with (no OSCE, no DRED).
        .define("OPUS_BUILD", None)
        .define("VAR_ARRAYS", None)
        .define("ENABLE_HARDENING", None)
        .define("HAVE_LRINT", None)
        .define("HAVE_LRINTF", None)
        .define("silk_decode_core", "botmedia_reference_silk_decode_core")
        .opt_level(3)
        .warnings(false)
        .compile("opus_decode_core_reference");
    println!("cargo:rustc-cfg=opus_decode_core_reference");
}

fn find_opus_sources() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registry = home.join("registry/src");
    for entry in std::fs::read_dir(registry).ok()?.flatten() {
        let opus = entry.path().join(OPUSIC_SYS).join("opus");
        if opus.join("silk/decode_core.c").is_file() {
            println!(
                "cargo:rerun-if-changed={}",
                opus.join("silk/decode_core.c").display()
            );
            return Some(opus);
        }
    }
    None
}
