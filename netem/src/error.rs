//! Typed errors, one enum per failure domain, each variant saying what the user can do about it.

use std::io;
use std::path::PathBuf;

/// A quantity in a profile (duration, rate, size) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// The text does not start with a number; write e.g. `"300ms"`.
    #[error("`{0}` is not a number followed by a unit")]
    NotANumber(String),
    /// The unit is not one we know; the message lists the accepted units.
    #[error("`{text}` has an unknown unit; use one of: {accepted}")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The units that are accepted here.
        accepted: &'static str,
    },
    /// The value is zero, negative or absurdly large for this quantity.
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

impl UnitError {
    pub(crate) fn not_a_number(text: &str) -> Self {
        Self::NotANumber(text.to_owned())
    }
    pub(crate) fn unknown_unit(text: &str, accepted: &'static str) -> Self {
        Self::UnknownUnit {
            text: text.to_owned(),
            accepted,
        }
    }
    pub(crate) fn out_of_range(text: &str) -> Self {
        Self::OutOfRange(text.to_owned())
    }
}

/// A mahimahi capacity trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The trace file could not be opened or read.
    #[error("cannot read trace {path}: {source}")]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line is not a millisecond timestamp; fix or regenerate the trace.
    #[error("trace line {line}: `{text}` is not a timestamp in milliseconds")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// Timestamps must never decrease; the trace is corrupt or not in mahimahi format.
    #[error("trace line {line}: timestamp {ms} is earlier than the line before")]
    NotMonotonic {
        /// 1-based line number.
        line: usize,
        /// The offending timestamp.
        ms: u64,
    },
    /// The trace has no delivery opportunity, or ends at 0 ms so it cannot repeat.
    #[error("trace is empty or lasts 0 ms; it needs at least one opportunity after 0 ms")]
    Empty,
}

/// A link profile could not be found, read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No `NAME.toml` in the profile directory; `outpost-netem profiles` lists what exists.
    #[error("no profile `{name}` in {dir} (set OUTPOST_NETEM_PROFILES to another directory)")]
    NotFound {
        /// The name asked for.
        name: String,
        /// Where we looked.
        dir: PathBuf,
    },
    /// The profile directory could not be found anywhere; set OUTPOST_NETEM_PROFILES.
    #[error("cannot find the profiles directory; set OUTPOST_NETEM_PROFILES")]
    NoDirectory,
    /// The file exists but could not be read.
    #[error("cannot read profile {path}: {source}")]
    Io {
        /// The profile file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("profile {name}: {source}")]
    Toml {
        /// The profile's name.
        name: String,
        /// What the TOML parser said.
        source: toml::de::Error,
    },
    /// A quantity in the profile has a bad unit or value.
    #[error("profile {name}, key `{key}`: {source}")]
    Unit {
        /// The profile's name.
        name: String,
        /// The key holding the value.
        key: String,
        /// What was wrong with it.
        source: UnitError,
    },
    /// A probability is outside 0..=1 (write 1 % as `0.01`).
    #[error("profile {name}, key `{key}`: probability {value} is not within 0..=1")]
    Probability {
        /// The profile's name.
        name: String,
        /// The key holding the value.
        key: String,
        /// The value as written.
        value: f64,
    },
    /// The trace the profile refers to could not be loaded.
    #[error("profile {name}: {source}")]
    Trace {
        /// The profile's name.
        name: String,
        /// What went wrong with the trace.
        source: TraceError,
    },
    /// Two settings contradict each other (e.g. both `rate` and `trace`).
    #[error("profile {name}: {message}")]
    Invalid {
        /// The profile's name.
        name: String,
        /// What contradicts what.
        message: String,
    },
}

/// The UDP relay or the TUN router could not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The listen socket could not be bound (address in use, or not local).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// A TUN device could not be created (needs root or CAP_NET_ADMIN, and /dev/net/tun).
    #[error("cannot create TUN device {name}: {source}")]
    Tun {
        /// The device name.
        name: String,
        /// What the tun crate reported.
        source: tun::Error,
    },
    /// Any other I/O error while setting up.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A control command could not be understood or carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The command line is not one of `profile NAME`, `outage DURATION`, `rebind`, `counters`.
    #[error(
        "unknown control command `{0}`; try: profile NAME | outage DURATION | rebind | counters"
    )]
    Unknown(String),
    /// A duration argument could not be read.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// The profile named in the command could not be loaded.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Talking to the control socket failed; is the relay or router running?
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}
