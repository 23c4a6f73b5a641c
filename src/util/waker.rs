//! The one-waker slot a single-threaded future parks in: a session waiting to be
//! interrupted, a pipe's driver waiting for work, a session queued for a pool connection.
//!
//! Single-threaded by design (a `RefCell`, not a lock): every user lives on one shard.

use std::cell::RefCell;
use std::task::{Context, Waker};

/// Holds the waker of the task that waits; `wake` wakes it once.
#[derive(Default)]
pub struct WakerSlot(RefCell<Option<Waker>>);

impl WakerSlot {
    /// Records the polling task's waker, replacing the one held unless it would wake the
    /// same task (no clone, no allocation, when the same task polls again).
    pub fn register(&self, cx: &Context<'_>) {
        let mut slot = self.0.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
    }

    /// Wakes the waiting task, if any, and forgets it.
    pub fn wake(&self) {
        // Taken out first: waking may poll code that registers again.
        let waker = self.0.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl std::fmt::Debug for WakerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.borrow().is_some() { "WakerSlot(waiting)" } else { "WakerSlot(empty)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn wakes_the_registered_task_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let slot = WakerSlot::default();
        slot.register(&Context::from_waker(&waker));
        slot.register(&Context::from_waker(&waker));
        slot.wake();
        slot.wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }
}
