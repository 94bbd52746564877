//! The engine gateway (`proto::engine`): a provider's node, which has no
//! container engine of its own, runs its container tasks through its
//! provider's engine here. Only agents (the join token) may call it, and
//! only for a node its provider runs now; what the container may do is the
//! provider's rule (`NodeProvider::task_engine`).

use crate::state::App;
use axum::body::Body;
use axum::http::{HeaderMap, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use proto::engine::{EngineRequest, Frame};
use std::time::Duration;

/// How often a running container's client hears from the gateway.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

fn answer(code: u16, text: &str) -> Response<Body> {
    Response::builder().status(code).body(Body::from(text.to_string())).unwrap_or_default()
}

fn frames(frames: impl futures_util::Stream<Item = Frame> + Send + 'static) -> Response<Body> {
    let body = frames.map(|f| Ok::<_, std::convert::Infallible>(Bytes::from(f.encode())));
    Response::builder().status(200).header("content-type", "application/octet-stream").body(Body::from_stream(body)).unwrap_or_default()
}

pub async fn serve(app: &App, headers: &HeaderMap, mut body: Body) -> Response<Body> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let bytes = match crate::server::read_body(&mut body, headers, Some(deadline)).await {
        Ok(b) if b.len() <= proto::engine::MAX_REQUEST => b,
        Ok(_) => return answer(413, "the request is too large"),
        Err(e) => return answer(400, &e.to_string()),
    };
    let request: EngineRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return answer(400, &format!("not an engine request: {e}")),
    };
    let node = match &request {
        EngineRequest::Run(r) => r.node.clone(),
        EngineRequest::Image { node, .. } => node.clone(),
    };
    let engine = app.cluster.providers().owner(&node).and_then(|e| e.provider.task_engine());
    let Some(engine) = engine else {
        return answer(404, &format!("node {node} is not a node whose provider runs its container tasks"));
    };
    match request {
        EngineRequest::Image { node, image } => {
            let frame = match engine.has_image(&node, &image).await {
                Ok(()) => Frame::Exit(0),
                Err(why) => Frame::Failed(why),
            };
            frames(futures_util::stream::iter([frame]))
        }
        EngineRequest::Run(run) => {
            let (attempt, node) = (run.attempt, run.node.clone());
            tracing::debug!(%node, attempt, image = %run.image, "a container task through the engine gateway");
            // The container's frames, with a keep-alive whenever it is
            // silent for a second: writing one to a client that is gone
            // ends the response, which drops (and so removes) the container.
            let output = engine.run(run);
            let ticks = ticks(KEEP_ALIVE).map(|_| Frame::KeepAlive);
            let merged = futures_util::stream::select(output.map(Some).chain(futures_util::stream::iter([None])), ticks.map(Some))
                .take_while(|f| std::future::ready(f.is_some()))
                .filter_map(std::future::ready);
            frames(merged)
        }
    }
}

/// A tick every `period`, forever.
fn ticks(period: Duration) -> impl futures_util::Stream<Item = ()> + Send {
    futures_util::stream::unfold(tokio::time::interval_at(tokio::time::Instant::now() + period, period), |mut t| async move {
        t.tick().await;
        Some(((), t))
    })
}
