//! The server-wide budget of upload bytes held in memory.
//!
//! Every put holds permits for the bytes it has received but not yet
//! written (its batch and the writer's frame buffers), and asks for more
//! before it reads the next chunk. When the budget is spent, puts wait
//! before reading, so HTTP/2 flow control holds their clients back: slow or
//! stalled clients cannot make the server buffer without bound, and healthy
//! ones are slowed, not failed.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// chunk cannot wait forever), waiting until they are free.
    pub async fn grow_to(&mut self, n: usize) {
        let want = n.min(self.budget.total);
        let have = self.bytes();
        if want <= have {
            return;
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        let Ok(extra) = self.budget.sem.clone().acquire_many_owned(more).await else {
            return; // never closed
        };
        match &mut self.permit {
            Some(p) => p.merge(extra),
            None => self.permit = Some(extra),
        }
    }

    /// Gives back all but `n` bytes.
    pub fn shrink_to(&mut self, n: usize) {
        if let Some(p) = &mut self.permit
            && p.num_permits() > n
        {
            drop(p.split(p.num_permits() - n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_wait_for_bytes_given_back() {
        let b = UploadBudget::new(100);
        let mut a = b.claim();
        a.grow_to(80).await;
        assert_eq!(b.available(), 20);
        let mut c = b.claim();
        // More than is free: waits until `a` shrinks.
        let waiter = tokio::spawn(async move {
            c.grow_to(50).await;
            c.bytes()
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        a.shrink_to(10);
        assert_eq!(waiter.await.unwrap(), 50);
        drop(a);
        assert_eq!(b.available(), 100);
        // A claim larger than the budget is capped, never stuck.
        let mut big = b.claim();
        big.grow_to(1000).await;
        assert_eq!(big.bytes(), 100);
    }
}
