//! The device reports the contract it was built with: labels and presets that deserialise
//! back to exactly what avsc-shared defines (what a bundle's manifest will be checked against).

mod common;

use avsc_shared::{FeaturePreset, LABELS};

#[test]
fn contract_matches_avsc_shared() {
    let o = common::bin().arg("contract").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let labels: Vec<String> = serde_json::from_value(v["labels"].clone()).unwrap();
    assert_eq!(labels, LABELS);
    let presets: Vec<FeaturePreset> = serde_json::from_value(v["presets"].clone()).unwrap();
    assert_eq!(presets, vec![FeaturePreset::paper(), FeaturePreset::hop14(), FeaturePreset::stream()]);
}
