//! The server-wide budget of upload bytes held in memory.
//!
//! A put takes its whole share (what it can hold in memory at once: its
//! batch, the write in flight and the writer's frame buffers) before it
//! reads its first chunk, so no put holds bytes while it waits for more
//! (puts that did would wait on one another forever once the budget is
//! spent). When the budget is spent, puts wait before reading, so HTTP/2
//! flow control holds their clients back: slow or stalled clients cannot
//! make the server buffer without bound, and healthy ones are slowed, not
//! failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A claim that held bytes could not get more in time.
#[derive(Debug)]
pub struct Busy;

#[derive(Clone, Debug)]
pub struct UploadBudget {
    sem: Arc<Semaphore>,
    total: usize,
}

impl UploadBudget {
    pub fn new(bytes: u64) -> Self {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        Self { sem: Arc::new(Semaphore::new(total)), total }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not held by any put.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// An empty claim on the budget.
    pub fn claim(&self) -> Held {
        Held { budget: self.clone(), permit: None }
    }
}

/// One put's share; dropping it gives the bytes back.
pub struct Held {
    budget: UploadBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Holds at least `n` bytes (capped at the whole budget, so one large
    /// chunk cannot wait forever), waiting until they are free. A claim
    /// that holds nothing waits as long as it takes; one that already holds
    /// bytes waits at most `patience` and then fails, because holders each
    /// waiting for more than is left would otherwise wait for one another
    /// forever.
    pub async fn grow_to(&mut self, n: usize, patience: Duration) -> Result<(), Busy> {
        let want = n.min(self.budget.total);
        let have = self.bytes();
        if want <= have {
            return Ok(());
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        let acquire = self.budget.sem.clone().acquire_many_owned(more);
        let extra = if have == 0 { acquire.await } else { tokio::time::timeout(patience, acquire).await.map_err(|_| Busy)? };
        let Ok(extra) = extra else {
            return Ok(()); // never closed
        };
        match &mut self.permit {
            Some(p) => p.merge(extra),
            None => self.permit = Some(extra),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_wait_for_bytes_given_back() {
        let b = UploadBudget::new(100);
        let forever = std::time::Duration::from_secs(3600);
        let mut a = b.claim();
        a.grow_to(80, forever).await.unwrap();
        assert_eq!(b.available(), 20);
        let mut c = b.claim();
        // More than is free: waits until `a` is given back.
        let waiter = tokio::spawn(async move {
            c.grow_to(50, forever).await.unwrap();
            c.bytes()
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        assert_eq!(waiter.await.unwrap(), 50);
        assert_eq!(b.available(), 100);
        // A claim larger than the budget is capped, never stuck.
        let mut big = b.claim();
        big.grow_to(1000, forever).await.unwrap();
        assert_eq!(big.bytes(), 100);
    }

    /// Two claims that each hold half and want more do not wait for each
    /// other forever: the one that holds bytes gives up after its patience.
    #[tokio::test]
    async fn holders_waiting_on_each_other_give_up() {
        let b = UploadBudget::new(100);
        let patience = std::time::Duration::from_millis(50);
        let (mut x, mut y) = (b.claim(), b.claim());
        x.grow_to(50, patience).await.unwrap();
        y.grow_to(50, patience).await.unwrap();
        assert!(x.grow_to(60, patience).await.is_err());
        drop(x);
        y.grow_to(100, patience).await.unwrap();
        assert_eq!(y.bytes(), 100);
    }
}
