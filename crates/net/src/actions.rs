//! One action at a time per player: the requests that act (travel, refuel, trade, attack, loot)
//! of one player are handled one after the other, so two conflicting actions sent at once get
//! clear answers (two travels: the first jumps, the second finds the player in a jump: 409
//! `in_jump`) instead of racing inside the mesh.
//!
//! Owns the per-player locks; never decides a game rule (the shard does) and never holds a
//! lock for a landing (only for the commit of an action).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use super::error::ApiError;

/// Actions of one player that may wait behind the one being handled; more get 429 `busy`.
pub const MAX_QUEUED_ACTIONS_PER_PLAYER: usize = 4;

type PlayerLock = Arc<tokio::sync::Mutex<()>>;

/// The locks of the players who have an action under way (none for idle players).
#[derive(Default)]
pub struct ActionLocks {
    /// std mutex: held for a map lookup only, never across an await.
    by_player: Arc<Mutex<HashMap<String, PlayerLock>>>,
}

/// Held while one action of a player is handled; the next waits for its drop.
pub struct ActionGuard {
    name: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    by_player: Arc<Mutex<HashMap<String, PlayerLock>>>,
}

impl ActionLocks {
    /// Waits for the player's previous action to finish.
    pub async fn acquire(&self, name: &str) -> Result<ActionGuard, ApiError> {
        let lock = {
            let mut map = self.by_player.lock().unwrap_or_else(|e| e.into_inner());
            let lock = map.entry(name.to_string()).or_default();
            // One reference is the map's; each other is a request holding or awaiting it.
            if Arc::strong_count(lock) > 1 + MAX_QUEUED_ACTIONS_PER_PLAYER {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "busy",
                    "too many of your actions are waiting; wait for their answers",
                )
                .retry_after_s(1));
            }
            lock.clone()
        };
        let guard = lock.lock_owned().await;
        Ok(ActionGuard {
            name: name.to_string(),
            guard: Some(guard),
            by_player: self.by_player.clone(),
        })
    }

    /// Players with an action under way or waiting (for tests).
    pub fn len(&self) -> usize {
        self.by_player
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ActionGuard {
    fn drop(&mut self) {
        // Release first, so that the count below sees only the map and the waiters.
        drop(self.guard.take());
        let mut map = self.by_player.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn actions_of_one_player_run_one_at_a_time_and_leave_nothing_behind() {
        let locks = Arc::new(ActionLocks::default());
        let first = locks.acquire("ann").await.unwrap();
        let l2 = locks.clone();
        let second = tokio::spawn(async move { l2.acquire("ann").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "the second action waits for the first"
        );
        // Another player is not held up.
        drop(locks.acquire("bob").await.unwrap());
        drop(first);
        second.await.unwrap().unwrap();
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn too_many_waiting_actions_are_refused() {
        let locks = Arc::new(ActionLocks::default());
        let held = locks.acquire("ann").await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..MAX_QUEUED_ACTIONS_PER_PLAYER {
            let l = locks.clone();
            waiting.push(tokio::spawn(
                async move { l.acquire("ann").await.map(|_| ()) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let refused = locks.acquire("ann").await.err().unwrap();
        assert_eq!(refused.code, "busy");
        drop(held);
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert!(locks.is_empty());
    }
}
