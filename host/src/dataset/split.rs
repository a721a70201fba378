//! A validation split carved from training items, grouped by recording location: no
//! location appears on both sides, so validation measures generalisation to new places,
//! as TAU's official fold does.

use super::Item;
use crate::rng::SplitMix64;
use std::collections::BTreeMap;

/// Deterministic per `seed`: whole locations go to validation until it holds at least
/// `fraction` of the items. Locations are shuffled within each label so every class gets
/// validation clips when it has at least two locations.
pub fn grouped_validation_split(items: &[Item], fraction: f64, seed: u64) -> (Vec<Item>, Vec<Item>) {
    // location -> item indices, and each location's majority label for stratification.
    let mut by_loc: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        by_loc.entry(it.location.as_str()).or_default().push(i);
    }
    let mut by_label: BTreeMap<Option<usize>, Vec<&str>> = BTreeMap::new();
    for (loc, idx) in &by_loc {
        by_label.entry(items[idx[0]].label.map(|l| l.index())).or_default().push(loc);
    }
    let mut rng = SplitMix64::new(seed);
    let mut val_locs = std::collections::BTreeSet::new();
    for locs in by_label.values_mut() {
        rng.shuffle(locs);
        let total: usize = locs.iter().map(|l| by_loc[l].len()).sum();
        let mut taken = 0;
        // Keep at least one location of the class for training.
        for loc in &locs[..locs.len().saturating_sub(1)] {
            if (taken as f64) >= fraction * total as f64 {
                break;
            }
            taken += by_loc[loc].len();
            val_locs.insert(*loc);
        }
    }
    let (val, train): (Vec<Item>, Vec<Item>) =
        items.iter().cloned().partition(|it| val_locs.contains(it.location.as_str()));
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use avsc_shared::Label;

    fn items() -> Vec<Item> {
        let mut v = Vec::new();
        for label in Label::all() {
            for loc in 0..4 {
                for take in 0..(1 + loc % 3) {
                    v.push(Item {
                        id: format!("{label}-{loc}-{take}"),
                        audio: None,
                        visual: None,
                        label: Some(label),
                        location: format!("{label}-city-{loc}"),
                        folds: Vec::new(),
                    });
                }
            }
        }
        v
    }

    #[test]
    fn no_location_on_both_sides_and_every_class_validated() {
        let all = items();
        let (train, val) = grouped_validation_split(&all, 0.25, 7);
        assert_eq!(train.len() + val.len(), all.len());
        for v in &val {
            assert!(train.iter().all(|t| t.location != v.location), "{} on both sides", v.location);
        }
        for label in Label::all() {
            assert!(val.iter().any(|v| v.label == Some(label)), "{label} has no validation clip");
            assert!(train.iter().any(|v| v.label == Some(label)), "{label} has no training clip");
        }
        let frac = val.len() as f64 / all.len() as f64;
        assert!((0.2..0.5).contains(&frac), "validation fraction {frac}");
        // Deterministic per seed, different across seeds.
        assert_eq!(grouped_validation_split(&all, 0.25, 7).1, val);
        assert_ne!(grouped_validation_split(&all, 0.25, 8).1, val);
    }
}
