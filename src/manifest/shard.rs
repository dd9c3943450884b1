//! Which items of a manifest one task of a batch job takes.
//!
//! Assignment is by position: item `k` (0-based, in manifest order) belongs to shard
//! `k mod N`. It needs no coordination between tasks, balances item counts to within one, and
//! keeps the assignment of existing items when lines are appended to the manifest. (A hash of
//! the path would survive reordering too, but balances only statistically.)

use crate::error::{Error, Result};

/// One task's share: items whose index mod `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based, below `count`.
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole manifest.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(Error::Usage("shard count must be at least 1".into()));
        }
        if index >= count {
            return Err(Error::Usage(format!(
                "shard index {index} is out of range for {count} shards (indices run from 0 to {})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// `I/N` as `--shard` takes it (0-based `I`).
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || {
            Error::Usage(format!(
                "--shard '{text}': give I/N (0-based index I below the count N, e.g. 0/4) or auto"
            ))
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse::<usize>().map_err(|_| bad())?;
        let n = n.trim().parse::<usize>().map_err(|_| bad())?;
        Shard::new(i, n).map_err(|e| Error::Usage(format!("--shard '{text}': {e}")))
    }

    /// Whether item `item` (0-based position in the manifest) is this shard's.
    pub fn owns(&self, item: usize) -> bool {
        item % self.count == self.index
    }

    /// The shard item `item` belongs to among `self.count`.
    pub fn of(&self, item: usize) -> usize {
        item % self.count
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard auto`: the task's index and count from the batch engine's environment, and which
/// variables they came from (for the log). `env` reads one variable (`std::env::var` in the
/// CLI; a map in tests). Tried in this order:
///
/// 1. Slurm array: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN` (an
///    array need not start at 0: `--array=1-8` gives ids 1..8) and `SLURM_ARRAY_TASK_STEP`
///    (`--array=0-15:4`). Index = (id - min) / step.
/// 2. Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`, with the count from `shard_count`
///    (`--shard-count`, set it to the Job's `completions`) or else one item per index
///    (`manifest_len`, for a Job whose `completions` is the number of items).
/// 3. torchrun / MPI style: `RANK` and `WORLD_SIZE`.
pub fn shard_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    shard_count: Option<usize>,
    manifest_len: usize,
) -> Result<(Shard, &'static str)> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let number = |name: &str, value: String| {
        value.trim().parse::<usize>().map_err(|_| {
            Error::Usage(format!(
                "--shard auto: {name}='{value}' is not a non-negative whole number"
            ))
        })
    };
    if let Some(id) = get("SLURM_ARRAY_TASK_ID") {
        const FROM: &str = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT";
        let id = number("SLURM_ARRAY_TASK_ID", id)?;
        let count =
            match (get("SLURM_ARRAY_TASK_COUNT"), shard_count) {
                (_, Some(n)) => n,
                (Some(c), None) => number("SLURM_ARRAY_TASK_COUNT", c)?,
                (None, None) => return Err(Error::Usage(
                    "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not \
                     (Slurm older than 18.08?); give --shard-count"
                        .into(),
                )),
            };
        let min = get("SLURM_ARRAY_TASK_MIN")
            .map(|v| number("SLURM_ARRAY_TASK_MIN", v))
            .transpose()?
            .unwrap_or(0);
        let step = get("SLURM_ARRAY_TASK_STEP")
            .map(|v| number("SLURM_ARRAY_TASK_STEP", v))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        let offset = id.checked_sub(min).ok_or_else(|| {
            Error::Usage(format!(
                "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            ))
        })?;
        if offset % step != 0 {
            return Err(Error::Usage(format!(
                "--shard auto: SLURM_ARRAY_TASK_ID {id} is not min {min} plus a multiple of the \
                 step {step}; arrays given as lists of ids need --shard I/N"
            )));
        }
        let shard = Shard::new(offset / step, count).map_err(|e| {
            Error::Usage(format!(
                "--shard auto ({FROM}): {e}; arrays given as lists of ids need --shard I/N"
            ))
        })?;
        return Ok((shard, FROM));
    }
    if let Some(index) = get("JOB_COMPLETION_INDEX") {
        let index = number("JOB_COMPLETION_INDEX", index)?;
        let (count, from) = match shard_count {
            Some(n) => (n, "JOB_COMPLETION_INDEX and --shard-count"),
            None => (
                manifest_len,
                "JOB_COMPLETION_INDEX, one manifest item per index",
            ),
        };
        let shard = Shard::new(index, count)
            .map_err(|e| Error::Usage(format!("--shard auto ({from}): {e}")))?;
        return Ok((shard, from));
    }
    if let Some(rank) = get("RANK") {
        const FROM: &str = "RANK/WORLD_SIZE";
        let rank = number("RANK", rank)?;
        let count = match (get("WORLD_SIZE"), shard_count) {
            (_, Some(n)) => n,
            (Some(w), None) => number("WORLD_SIZE", w)?,
            (None, None) => {
                return Err(Error::Usage(
                    "--shard auto: RANK is set but WORLD_SIZE is not; give --shard-count".into(),
                ))
            }
        };
        let shard = Shard::new(rank, count)
            .map_err(|e| Error::Usage(format!("--shard auto ({FROM}): {e}")))?;
        return Ok((shard, FROM));
    }
    Err(Error::Usage(
        "--shard auto: no batch engine index in the environment (looked for \
         SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, RANK); give --shard I/N"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_item_is_in_exactly_one_shard() {
        for count in 1..=7 {
            for item in 0..50 {
                let owners = (0..count)
                    .filter(|&i| Shard::new(i, count).unwrap().owns(item))
                    .count();
                assert_eq!(owners, 1, "item {item} with {count} shards");
            }
        }
    }

    #[test]
    fn parse_takes_zero_based_index_over_count() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2", ""] {
            assert!(matches!(Shard::parse(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn slurm_array_minds_min_and_step() {
        let env = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        let (s, _) = shard_from_env(&env, None, 10).unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        let env = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ]);
        assert_eq!(shard_from_env(&env, None, 10).unwrap().0.index, 2);
        // A list of ids (--array=1,5,9) maps to indices past the count: refused, not guessed.
        let env = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        let e = shard_from_env(&env, None, 10).unwrap_err().to_string();
        assert!(e.contains("--shard I/N"), "{e}");
    }

    #[test]
    fn indexed_job_counts_from_flag_or_manifest() {
        let env = env_of(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            shard_from_env(&env, Some(3), 10).unwrap().0,
            Shard { index: 2, count: 3 }
        );
        assert_eq!(
            shard_from_env(&env, None, 10).unwrap().0,
            Shard {
                index: 2,
                count: 10
            }
        );
        assert!(shard_from_env(&env, Some(2), 10).is_err());
    }

    #[test]
    fn rank_and_world_size() {
        let env = env_of(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        assert_eq!(
            shard_from_env(&env, None, 10).unwrap().0,
            Shard { index: 1, count: 2 }
        );
        let env = env_of(&[("RANK", "1")]);
        assert!(shard_from_env(&env, None, 10).is_err());
    }

    #[test]
    fn no_engine_is_a_clear_error() {
        let env = env_of(&[("SLURM_ARRAY_TASK_ID", "")]);
        let e = shard_from_env(&env, None, 10).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, RANK"),
            "{e}"
        );
    }
}
