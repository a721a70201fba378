//! avsc-device: runs an exported model bundle on live or recorded audio and video.
//! Capture, windowing and tract inference land with the device issue; today the binary
//! reports what it knows about the contract it was built against.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "avsc-device", version, about = "avsc on the edge: classify scenes from a microphone and a camera")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the labels and the feature presets this build computes, as JSON.
    Contract,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Contract => {
            let presets: Vec<_> = avsc_shared::FeaturePreset::NAMES
                .iter()
                .map(|n| avsc_shared::FeaturePreset::by_name(n))
                .collect::<Result<_>>()?;
            let v = serde_json::json!({ "labels": avsc_shared::LABELS, "presets": presets });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
