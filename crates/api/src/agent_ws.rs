//! The agents' WebSocket transport: the handshake (protocol version, join),
//! one writer that batches messages into frames, and a reader that hands each
//! report to the control plane (`control::agents`).

use control::{lock, Cluster};
use proto::{ToAgent, ToServer};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Handles one agent WebSocket connection until it closes.
pub async fn serve_agent(cluster: Arc<Cluster>, socket: axum::extract::ws::WebSocket, account_url: Arc<Mutex<Option<String>>>) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let hello = match stream.next().await {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ToServer>(t.as_str()) {
            Ok(ToServer::Hello(h)) => h,
            _ => return,
        },
        _ => return,
    };
    if hello.version != proto::VERSION {
        tracing::warn!(version = hello.version, "refusing an agent that speaks another protocol version");
        // Told in the close frame, so the agent's log says why.
        let reason =
            format!("agent protocol version {} is not the server's ({}): run matching openbatch versions", hello.version, proto::VERSION);
        let frame = axum::extract::ws::CloseFrame { code: 1008, reason: reason.into() };
        let _ = sink.send(Message::Close(Some(frame))).await;
        return;
    }
    let Some(pool) = cluster.pool_to_join(&hello.pool_id).await else { return };
    let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
    let base = lock(&account_url).clone().unwrap_or_default();
    let node_id = match cluster.join(&hello, &pool, tx.clone(), &base).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "agent join failed");
            return;
        }
    };
    let _ = tx.send(cluster.welcome(&node_id, &pool));
    // Whatever has queued up by the time the writer runs goes in one frame.
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            let text = proto::encode_frame(&batch);
            batch.clear();
            let Ok(text) = text else { continue };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    // Outcomes the agent still holds from before (the server may not have
    // committed them): applied now, each acknowledged once settled.
    for f in hello.finished {
        cluster.report_finished(&node_id, f.outcome, lock(&account_url).clone().unwrap_or_default());
    }
    while let Some(msg) = stream.next().await {
        // A node declared lost (e.g. its agent was stopped for a while) is
        // sent away: it rejoins with a new connection, and its stale
        // attempts are killed as after any reconnect.
        if cluster.superseded(&node_id, &tx) {
            tracing::warn!(node = %node_id, "a node that was declared lost is back; asking it to rejoin");
            break;
        }
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        cluster.heartbeat(&node_id);
        let msgs = match proto::decode_frame::<ToServer>(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, node = %node_id, "unreadable agent message");
                continue;
            }
        };
        for msg in msgs {
            cluster.on_report(&node_id, msg, || lock(&account_url).clone().unwrap_or_default());
        }
    }
    writer.abort();
    cluster.disconnected(&node_id, &tx);
}
