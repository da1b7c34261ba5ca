//! Chat in the media: every stored chat event also rides in the stream's next LL-HLS part of
//! every rendition, as an ID3 tag in an `emsg` box ([`crate::package::emsg`]) at the event's
//! program date-time. A viewer who only reads the HLS stream (through any CDN) gets the chat
//! in step with the picture, and a recording carries it.
//!
//! The ID3 tag holds one `TXXX` frame, description [`CHAT_DESCRIPTION`], whose value is the
//! same JSON object the WebSocket sends (`{"type":"message",...}` or `{"type":"deleted","id":..}`).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::protocol::ServerFrame;
use super::{ChatEvent, ChatRooms};
use crate::config::Config;
use crate::hub::Hub;
use crate::package::emsg::{id3_txxx, TimedMetadata, CHAT_DESCRIPTION};
use crate::store::Store;
use crate::util::time::now_ms;

/// `emsg` ids of deletions are kept apart from message ids (players drop repeated ids).
const DELETE_ID_BIT: u32 = 1 << 31;

/// The timed metadata for one chat event. A deletion has no `pdt` of its own: it takes
/// `edge_pdt_ms`, the live edge when it happened.
pub fn event_metadata(event: &ChatEvent, edge_pdt_ms: u64) -> TimedMetadata {
    let (id, pdt_ms, frame) = match event {
        ChatEvent::Message(m) => (
            (m.id as u32) & !DELETE_ID_BIT,
            m.pdt,
            ServerFrame::Message(m.clone()),
        ),
        ChatEvent::Deleted { id } => (
            (*id as u32) | DELETE_ID_BIT,
            edge_pdt_ms,
            ServerFrame::Deleted { id: *id },
        ),
    };
    TimedMetadata {
        id,
        pdt_ms,
        id3: id3_txxx(CHAT_DESCRIPTION, frame.encode().as_str()),
    }
}

/// Forwards every configured stream's chat events into its media until the server stops.
pub fn spawn_carriers(rooms: &Arc<ChatRooms>, hub: &Arc<Hub>, store: &Arc<Store>, config: &Config) {
    for stream in &config.streams {
        let Some(mut rx) = rooms.subscribe(&stream.name) else {
            continue;
        };
        let hub = hub.clone();
        let store = store.clone();
        let name = stream.name.clone();
        tokio::spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(stream = %name, missed = n, "chat events not carried into the media (fell behind)");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let edge = store
                    .get(&name)
                    .and_then(|e| e.live_edge_pdt_ms())
                    .unwrap_or_else(now_ms);
                // Not live: nothing to carry it (the WebSocket and the store still have it).
                hub.send_metadata(&name, Arc::new(event_metadata(&event, edge)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::protocol::ChatMessage;

    #[test]
    fn messages_and_deletions_become_id3_json() {
        let m = ChatMessage {
            id: 42,
            name: "ann".into(),
            text: "<b>hi</b>".into(),
            ts: 1_700_000_000_500,
            pdt: 1_700_000_000_000,
        };
        let md = event_metadata(&ChatEvent::Message(m), 5);
        assert_eq!((md.id, md.pdt_ms), (42, 1_700_000_000_000));
        let tag = String::from_utf8_lossy(&md.id3);
        assert!(tag.contains(CHAT_DESCRIPTION));
        assert!(tag.contains(r#""type":"message""#) && tag.contains(r#""text":"<b>hi</b>""#));
        let d = event_metadata(&ChatEvent::Deleted { id: 42 }, 1_700_000_009_000);
        assert_eq!((d.id, d.pdt_ms), (42 | DELETE_ID_BIT, 1_700_000_009_000));
        assert!(String::from_utf8_lossy(&d.id3).contains(r#"{"type":"deleted","id":42}"#));
    }
}
