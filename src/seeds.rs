//! Seed ranges that keep evaluation honest.
//!
//! Data collection (`zplan collect`) draws episode seeds from [`COLLECTION`]; evaluation
//! (`zplan run`, `zplan bench`) from [`EVALUATION`]. The ranges are disjoint, so a learned model is
//! never evaluated on a start/goal pair it was trained on. An episode's evaluation seed depends
//! only on (suite seed, entry name, episode index), so results never depend on sharding or on
//! worker scheduling.
use std::ops::Range;

/// Seeds used to collect training data.
pub const COLLECTION: Range<u64> = 0..(1 << 32);
/// Seeds used for evaluation episodes.
pub const EVALUATION: Range<u64> = (1 << 32)..(1 << 33);

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn in_range(range: &Range<u64>, h: u64) -> u64 {
    range.start + h % (range.end - range.start)
}

/// The evaluation seed of `episode` of the suite entry named `entry`.
pub fn evaluation_seed(suite_seed: u64, entry: &str, episode: u64) -> u64 {
    let h = splitmix64(splitmix64(suite_seed ^ fnv1a(entry)) ^ splitmix64(episode));
    in_range(&EVALUATION, h)
}

/// The collection seed of `episode` of a dataset collected with `base_seed`.
pub fn collection_seed(base_seed: u64, episode: u64) -> u64 {
    in_range(
        &COLLECTION,
        splitmix64(splitmix64(base_seed) ^ splitmix64(episode)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The ranges are disjoint, checked at compile time.
    const _: () = assert!(COLLECTION.end <= EVALUATION.start);

    proptest! {
        #[test]
        fn seeds_stay_in_their_ranges(s in any::<u64>(), e in any::<u64>(), name in "[a-z/]{0,12}") {
            prop_assert!(EVALUATION.contains(&evaluation_seed(s, &name, e)));
            prop_assert!(COLLECTION.contains(&collection_seed(s, e)));
        }
    }

    #[test]
    fn seed_depends_on_entry_and_episode() {
        assert_ne!(evaluation_seed(1, "a", 0), evaluation_seed(1, "b", 0));
        assert_ne!(evaluation_seed(1, "a", 0), evaluation_seed(1, "a", 1));
        assert_eq!(evaluation_seed(1, "a", 3), evaluation_seed(1, "a", 3));
    }
}
