//! The engine gateway: how a node whose provider owns the container engine
//! (a Docker provider's node is itself a container, with no engine inside)
//! runs its container tasks through the server.
//!
//! The node's agent starts `openbatch engine-run SPEC` as the attempt's
//! process instead of the engine's client. That process sends `POST
//! {server}{ENGINE_PATH}` with the join token (`Authorization: Bearer`) and an
//! [`EngineRequest`] as JSON; the server hands it to the node's provider,
//! which creates and starts the container, and answers with a stream of
//! [frames](Frame): the container's id once created, its output as it comes,
//! then its exit code — or a failure. The process writes the output to its
//! own stdout and stderr (the task's files) and exits with the container's
//! code, as the engine's client does, so the agent treats both alike. The
//! connection is the container's lifeline: when the process is killed (the
//! task is terminated or times out) the server removes the container.
//! Keep-alive frames every second let the server notice a silent
//! container's client is gone.

use serde::{Deserialize, Serialize};

/// Where container tasks of a provider's node go.
pub const ENGINE_PATH: &str = "/_openbatch/agent/v1/engine";

/// The largest request body the gateway reads.
pub const MAX_REQUEST: usize = 1 << 20;

/// What an agent asks of its provider's engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineRequest {
    /// Run a container task and stream it.
    Run(EngineRun),
    /// Whether the engine has an image (nothing is pulled); the answer is
    /// 200 with a [`Frame::Exit`] of 0 when it has, else a [`Frame::Failed`].
    Image { node: String, image: String },
}

/// One container task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRun {
    /// The node it runs for (its volume holds the node root).
    pub node: String,
    /// The attempt (names the container).
    pub attempt: u64,
    pub image: String,
    /// The task's command line, split into words.
    pub command: Vec<String>,
    /// The task's environment, by value.
    pub env: Vec<(String, String)>,
    /// The working directory inside (the task's `wd`); None: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Directories relative to the node root, mounted at the same path
    /// inside, with read-only flags; None: the whole node root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<(String, bool)>>,
    /// The task's `containerRunOptions`, as given (the provider accepts a
    /// safe subset of the engine client's options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_options: Option<String>,
}

/// One piece of the gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Nothing happened (sent every second while the container runs).
    KeepAlive,
    /// The container exists: its id.
    Created(String),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container ended with this code.
    Exit(i64),
    /// The container could not be created or run: why.
    Failed(String),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::KeepAlive => 0,
            Frame::Created(_) => 1,
            Frame::Stdout(_) => 2,
            Frame::Stderr(_) => 3,
            Frame::Exit(_) => 4,
            Frame::Failed(_) => 5,
        }
    }

    /// A kind byte, the payload's length (4 bytes, big-endian), the payload.
    pub fn encode(&self) -> Vec<u8> {
        let payload: Vec<u8> = match self {
            Frame::KeepAlive => Vec::new(),
            Frame::Created(s) | Frame::Failed(s) => s.as_bytes().to_vec(),
            Frame::Stdout(b) | Frame::Stderr(b) => b.clone(),
            Frame::Exit(code) => code.to_be_bytes().to_vec(),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Takes the first whole frame off `buf`; None until one is complete.
    pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Frame>, String> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > 16 << 20 {
            return Err(format!("a gateway frame of {len} bytes"));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = buf[0];
        let payload: Vec<u8> = buf.drain(..5 + len).skip(5).collect();
        let text = |p: Vec<u8>| String::from_utf8_lossy(&p).into_owned();
        Ok(Some(match kind {
            0 => Frame::KeepAlive,
            1 => Frame::Created(text(payload)),
            2 => Frame::Stdout(payload),
            3 => Frame::Stderr(payload),
            4 => {
                let bytes: [u8; 8] = payload.as_slice().try_into().map_err(|_| "an exit frame of the wrong size".to_string())?;
                Frame::Exit(i64::from_be_bytes(bytes))
            }
            5 => Frame::Failed(text(payload)),
            k => return Err(format!("an unknown gateway frame kind {k}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_or_in_pieces() {
        let frames = vec![
            Frame::Created("abc".into()),
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::KeepAlive,
            Frame::Stderr(vec![0, 255, 10]),
            Frame::Exit(-3),
            Frame::Failed("no such image".into()),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        // Fed one byte at a time, as a slow connection would.
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        for b in bytes {
            buf.push(b);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
        assert!(Frame::decode(&mut vec![9, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&mut vec![4, 0, 0, 0, 1, 0]).is_err());
    }

    #[test]
    fn requests_are_tagged_json() {
        let r = EngineRequest::Image { node: "n".into(), image: "i".into() };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains(r#""type":"image""#), "{s}");
        assert_eq!(serde_json::from_str::<EngineRequest>(&s).unwrap(), r);
    }
}
