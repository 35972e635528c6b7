//! Run-time control of a running relay or router, for scripted scenarios.
//!
//! A scenario script changes the link while traffic flows: switch to another profile, take the
//! link down for a while, force a NAT rebinding. The binary listens on a Unix socket (so it
//! works across network namespaces: the file system is shared) and reads one command per line:
//!
//! ```text
//! profile NAME        switch both directions (and NAT settings) to profile NAME
//! outage DURATION     drop everything in both directions for DURATION (e.g. 5s)
//! rebind              move every NAT mapping to a new port now
//! counters            print the counter table
//! ```
//!
//! Each command gets one reply, ending with an empty line: `ok …` or `error …`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::counters::FrontendCounters;
use crate::error::ControlError;
use crate::profile::Profile;
use crate::units::parse_duration;

/// Longest command line accepted; anything longer closes the connection.
const MAX_LINE: usize = 1024;

/// What a front end exposes to run-time control.
pub trait Controllable: Send + Sync + 'static {
    /// Switches both directions to `profile`.
    fn set_profile(&self, profile: Profile);
    /// Takes both directions down for `duration`, starting now.
    fn outage(&self, duration: Duration);
    /// Moves every NAT mapping to a new port now (no-op where there is no NAT).
    fn rebind(&self);
    /// A snapshot of the counters.
    fn counters(&self) -> FrontendCounters;
}

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Switch to the named profile.
    Profile(String),
    /// Outage for a duration.
    Outage(Duration),
    /// NAT rebinding now.
    Rebind,
    /// Print counters.
    Counters,
}

impl Command {
    /// Parses one command line.
    pub fn parse(line: &str) -> Result<Self, ControlError> {
        let mut words = line.split_whitespace();
        let command = match (words.next(), words.next(), words.next()) {
            (Some("profile"), Some(name), None) => Self::Profile(name.to_owned()),
            (Some("outage"), Some(d), None) => Self::Outage(parse_duration(d)?),
            (Some("rebind"), None, None) => Self::Rebind,
            (Some("counters"), None, None) => Self::Counters,
            _ => return Err(ControlError::Unknown(line.trim().to_owned())),
        };
        Ok(command)
    }

    /// Carries the command out on `target` and returns the reply text.
    pub fn apply(&self, target: &dyn Controllable) -> Result<String, ControlError> {
        match self {
            Self::Profile(name) => {
                let profile = Profile::load(name)?;
                target.set_profile(profile);
                Ok(format!("ok profile {name}"))
            }
            Self::Outage(d) => {
                target.outage(*d);
                Ok(format!("ok outage {d:?}"))
            }
            Self::Rebind => {
                target.rebind();
                Ok("ok rebind".to_owned())
            }
            Self::Counters => Ok(format!("ok\n{}", target.counters())),
        }
    }
}

/// Serves control connections on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, target: Arc<dyn Controllable>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(handle(stream, target.clone()));
    }
}

async fn handle(stream: UnixStream, target: Arc<dyn Controllable>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take_limited()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match Command::parse(&line).and_then(|c| c.apply(target.as_ref())) {
            Ok(text) => text,
            Err(e) => format!("error {e}"),
        };
        if write
            .write_all(format!("{reply}\n\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

trait TakeLimited: tokio::io::AsyncRead + Sized {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, (MAX_LINE * 64) as u64)
    }
}
impl<T: tokio::io::AsyncRead> TakeLimited for T {}

/// Sends one command to the control socket at `path` and returns the reply.
pub async fn send(path: &Path, command: &str) -> Result<String, ControlError> {
    if command.len() > MAX_LINE || command.contains('\n') {
        return Err(ControlError::Unknown(command.to_owned()));
    }
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let mut reply = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            break;
        }
        reply.push(line);
    }
    Ok(reply.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            Command::parse("profile lte").unwrap(),
            Command::Profile("lte".into())
        );
        assert_eq!(
            Command::parse(" outage 5s ").unwrap(),
            Command::Outage(Duration::from_secs(5))
        );
        assert_eq!(Command::parse("rebind").unwrap(), Command::Rebind);
        assert_eq!(Command::parse("counters").unwrap(), Command::Counters);
        assert!(matches!(
            Command::parse("reboot now"),
            Err(ControlError::Unknown(_))
        ));
        assert!(matches!(
            Command::parse("outage soon"),
            Err(ControlError::Unit(_))
        ));
        assert!(Command::parse("rebind everything").is_err());
    }
}
