//! Deterministic partitioning of a suite's episodes across machines.

use std::fmt;
use std::str::FromStr;

/// One part of a suite: episodes whose global index `g` satisfies `g % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Zero-based shard index, `< count`.
    pub index: u32,
    /// Number of shards, `>= 1`.
    pub count: u32,
}

/// A shard specification that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard `{given}`: {why} (expected `i/N` with 0 <= i < N, e.g. `0/4`)")]
pub struct ShardError {
    /// What the user gave.
    pub given: String,
    /// Why it was rejected.
    pub why: String,
}

impl Shard {
    /// The whole suite.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Builds a shard, checking `index < count` and `count >= 1`.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError {
                given: format!("{index}/{count}"),
                why: "index must be below the count and the count at least 1".into(),
            });
        }
        Ok(Shard { index, count })
    }

    /// Whether the episode with global index `global` belongs to this shard.
    pub fn contains(&self, global: u64) -> bool {
        global % self.count as u64 == self.index as u64
    }

    /// The shard implied by the environment: Slurm job arrays (`SLURM_ARRAY_TASK_ID`,
    /// `SLURM_ARRAY_TASK_COUNT`, offset by `SLURM_ARRAY_TASK_MIN`) or Kubernetes Indexed Jobs
    /// (`JOB_COMPLETION_INDEX` with the count from `count` or `ZPLAN_SHARD_COUNT`).
    pub fn from_env_with(
        get: impl Fn(&str) -> Option<String>,
        count: Option<u32>,
    ) -> Result<Option<Self>, ShardError> {
        let num = |k: &str| -> Result<Option<u32>, ShardError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| ShardError {
                    given: format!("{k}={v}"),
                    why: "not a non-negative integer".into(),
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let n = match count {
                Some(c) => c,
                None => num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| ShardError {
                    given: format!("SLURM_ARRAY_TASK_ID={id}"),
                    why: "SLURM_ARRAY_TASK_COUNT is not set; pass --shard-count".into(),
                })?,
            };
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Shard::new(id.saturating_sub(min), n).map(Some);
        }
        if let Some(id) = num("JOB_COMPLETION_INDEX")? {
            let n = match count {
                Some(c) => c,
                None => num("ZPLAN_SHARD_COUNT")?.ok_or_else(|| ShardError {
                    given: format!("JOB_COMPLETION_INDEX={id}"),
                    why: "the shard count is unknown; pass --shard-count or set ZPLAN_SHARD_COUNT"
                        .into(),
                })?,
            };
            return Shard::new(id, n).map(Some);
        }
        Ok(None)
    }

    /// [`Shard::from_env_with`] on the process environment.
    pub fn from_env(count: Option<u32>) -> Result<Option<Self>, ShardError> {
        Self::from_env_with(|k| std::env::var(k).ok(), count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| ShardError {
            given: s.to_string(),
            why: why.to_string(),
        };
        let (i, n) = s.split_once('/').ok_or_else(|| err("missing `/`"))?;
        let i = i
            .trim()
            .parse::<u32>()
            .map_err(|_| err("index is not an integer"))?;
        let n = n
            .trim()
            .parse::<u32>()
            .map_err(|_| err("count is not an integer"))?;
        Shard::new(i, n).map_err(|e| err(&e.why))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
        assert!("3"
            .parse::<Shard>()
            .unwrap_err()
            .to_string()
            .contains("expected `i/N`"));
    }

    #[test]
    fn env_slurm_and_k8s() {
        let env: HashMap<&str, &str> = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]
        .into();
        let s = Shard::from_env_with(|k| env.get(k).map(|v| v.to_string()), None).unwrap();
        assert_eq!(s, Some(Shard { index: 2, count: 4 }));
        let env: HashMap<&str, &str> = [("JOB_COMPLETION_INDEX", "1")].into();
        assert!(Shard::from_env_with(|k| env.get(k).map(|v| v.to_string()), None).is_err());
        let s = Shard::from_env_with(|k| env.get(k).map(|v| v.to_string()), Some(2)).unwrap();
        assert_eq!(s, Some(Shard { index: 1, count: 2 }));
        assert_eq!(Shard::from_env_with(|_| None, None).unwrap(), None);
    }

    proptest! {
        #[test]
        fn shards_partition(n in 1u32..9, g in 0u64..10_000) {
            let owners = (0..n).filter(|&i| Shard::new(i, n).unwrap().contains(g)).count();
            prop_assert_eq!(owners, 1);
        }
    }
}
