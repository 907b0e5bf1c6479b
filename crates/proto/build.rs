//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates the tonic
//! services. The encoded descriptor set is written to OUT_DIR for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["ordo/sequencer/v1/sequencer.proto"];
    println!("cargo:rerun-if-changed={}", root.display());
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("ordo_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
