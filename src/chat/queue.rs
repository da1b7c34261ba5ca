//! A connection's outgoing frames: a bounded queue of shared buffers, closed by the room with
//! a reason. Smaller than a tokio mpsc channel (no preallocated block of slots, no cache-padded
//! halves), which matters at tens of thousands of connections per room.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::protocol::ServerFrame;

struct State {
    frames: VecDeque<Utf8Bytes>,
    /// Set when the room lets go of the connection: the error frame to send before closing.
    closed: Option<ServerFrame>,
}

/// Bounded frame queue between the room (producer) and the connection task (consumer).
pub struct FrameQueue {
    capacity: usize,
    state: Mutex<State>,
    ready: Notify,
}

/// What the consumer gets next.
pub enum Next {
    Frame(Utf8Bytes),
    /// The room closed this connection; send this frame, then close.
    Closed(ServerFrame),
}

impl FrameQueue {
    pub fn new(capacity: usize) -> FrameQueue {
        FrameQueue {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                frames: VecDeque::new(),
                closed: None,
            }),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; false when the queue is full (the reader is too slow) or closed.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        {
            let mut s = self.lock();
            if s.closed.is_some() || s.frames.len() >= self.capacity {
                return false;
            }
            s.frames.push_back(frame);
        }
        // Stores a permit when the consumer is not waiting: no lost wake-ups.
        self.ready.notify_one();
        true
    }

    /// Closes with a reason; frames already queued are still delivered first.
    pub fn close(&self, reason: ServerFrame) {
        self.lock().closed.get_or_insert(reason);
        self.ready.notify_one();
    }

    /// Takes a frame without waiting.
    pub fn try_pop(&self) -> Option<Utf8Bytes> {
        self.lock().frames.pop_front()
    }

    /// Waits for the next frame or the close.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut s = self.lock();
                if let Some(f) = s.frames.pop_front() {
                    return Next::Frame(f);
                }
                if let Some(reason) = s.closed.take() {
                    return Next::Closed(reason);
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_then_closed_after_draining() {
        let q = FrameQueue::new(2);
        assert!(q.push("a".into()));
        assert!(q.push("b".into()));
        assert!(!q.push("c".into()), "full");
        q.close(ServerFrame::error("slow_reader", "x"));
        assert!(!q.push("d".into()), "closed");
        assert!(matches!(q.next().await, Next::Frame(f) if f.as_str() == "a"));
        assert_eq!(
            q.try_pop().map(|f| f.as_str().to_string()),
            Some("b".into())
        );
        assert!(matches!(
            q.next().await,
            Next::Closed(ServerFrame::Error {
                code: "slow_reader",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken() {
        let q = std::sync::Arc::new(FrameQueue::new(4));
        let q2 = q.clone();
        let t = tokio::spawn(async move { matches!(q2.next().await, Next::Frame(_)) });
        tokio::task::yield_now().await;
        q.push("x".into());
        assert!(t.await.unwrap());
    }
}
