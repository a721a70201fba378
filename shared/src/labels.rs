//! The ten scene classes. Index = alphabetical order, the DCASE 2021 Task 1B baseline's order.

use std::fmt;
use std::str::FromStr;

pub const NUM_CLASSES: usize = 10;

/// Scene labels, index-ordered. Every model output column `i` means `LABELS[i]`.
pub const LABELS: [&str; NUM_CLASSES] = [
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
];

/// A scene label, stored as its index into [`LABELS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(u8);

impl Label {
    pub fn from_index(i: usize) -> Option<Label> {
        (i < NUM_CLASSES).then_some(Label(i as u8))
    }
    pub fn index(self) -> usize {
        self.0 as usize
    }
    pub fn name(self) -> &'static str {
        LABELS[self.index()]
    }
    pub fn all() -> impl Iterator<Item = Label> {
        (0..NUM_CLASSES).map(|i| Label(i as u8))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Label {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Label> {
        LABELS
            .iter()
            .position(|l| *l == s)
            .map(|i| Label(i as u8))
            .ok_or_else(|| anyhow::anyhow!("unknown scene label {s:?} (expected one of {})", LABELS.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_round_trip() {
        let mut sorted = LABELS;
        sorted.sort();
        assert_eq!(sorted, LABELS, "index order must be alphabetical");
        for l in Label::all() {
            assert_eq!(l.name().parse::<Label>().unwrap(), l);
        }
        assert_eq!("metro_station".parse::<Label>().unwrap().index(), 3);
        assert!("subway".parse::<Label>().is_err());
    }
}
