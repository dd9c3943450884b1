//! `serve`'s flags for the live endpoints (`/v1/audio/stream`, `/v1/realtime`), flattened into
//! `ServeArgs`.

use std::time::Duration;

use clap::Args;
use dattavani_asr::server::ServerConfig;
use dattavani_asr::{Error, Result};

#[derive(Args)]
pub struct LiveArgs {
    /// Live WebSocket sessions open at once (429 before the upgrade past it).
    #[arg(long, default_value_t = 8)]
    max_sessions: usize,
    /// Close a live session whose client sent nothing for this many seconds.
    #[arg(long, default_value_t = 30)]
    stream_idle_timeout: u64,
}

impl LiveArgs {
    pub fn apply(&self, config: &mut ServerConfig) -> Result<()> {
        if self.stream_idle_timeout == 0 {
            return Err(Error::Usage(
                "--stream-idle-timeout must be at least 1 second".into(),
            ));
        }
        config.max_sessions = self.max_sessions;
        config.stream_idle_timeout = Duration::from_secs(self.stream_idle_timeout);
        Ok(())
    }
}
