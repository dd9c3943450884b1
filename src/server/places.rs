//! A bounded count of places (jobs admitted to the pool, open live sessions): a place is taken
//! while fewer than the limit are, and given back when its guard drops. Every change is
//! reported to the count's gauge.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The places of one kind: how many are taken, the limit and the gauge that shows the count.
pub(crate) struct Places {
    taken: Arc<AtomicUsize>,
    max: usize,
    gauge: fn(usize),
}

/// One taken place: given back when dropped.
pub struct Place {
    taken: Arc<AtomicUsize>,
    gauge: fn(usize),
}

impl Places {
    pub(crate) fn new(max: usize, gauge: fn(usize)) -> Self {
        Places {
            taken: Arc::new(AtomicUsize::new(0)),
            max,
            gauge,
        }
    }

    /// A place, or `None` when `max` are taken.
    pub(crate) fn try_take(&self) -> Option<Place> {
        let before = self
            .taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        (self.gauge)(before + 1);
        Some(Place {
            taken: self.taken.clone(),
            gauge: self.gauge,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let now = self.taken.fetch_sub(1, Ordering::SeqCst) - 1;
        (self.gauge)(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back_on_drop() {
        let places = Places::new(2, |_| {});
        let (a, b) = (places.try_take(), places.try_take());
        assert!(a.is_some() && b.is_some());
        assert!(places.try_take().is_none());
        drop(a);
        assert!(places.try_take().is_some());
    }
}
