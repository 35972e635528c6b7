//! Named link profiles: `netem/profiles/NAME.toml` resolved into a [`Profile`] of model configs.
//!
//! A profile describes both directions of a device's link: `[up]` is device → hub (agent to hub,
//! client to upstream in the relay), `[down]` is hub → device; `[both]` holds defaults for the two;
//! `[nat]` the NAT's behaviour. Each file cites where its numbers come from, so a result measured
//! under `geo-satellite` can be traced back to the field. The same files drive `tc netem` on a field
//! rig whose kernel has it (see `rig.sh`), through [`Profile::tc_netem_args`].
//!
//! The profile directory is found, in order, from `OUTPOST_NETEM_PROFILES`, the crate's source
//! tree at build time, and `profiles/` next to the running binary.
//!
//! A profile names its mahimahi traces by a path relative to its own file (the shipped ones are
//! in `netem/traces/`, so `../traces/NAME`), never to the working directory, and a trace that is
//! not there fails the load with its path. Traces used to be looked up outside the repository as
//! well, and on a clone without them the tests skipped `lte-trace` and still passed.

mod raw;

use std::path::{Path, PathBuf};

use crate::error::ProfileError;
use crate::model::{Capacity, LinkConfig, NatConfig};

/// Environment variable naming the profile directory.
pub const PROFILES_ENV: &str = "OUTPOST_NETEM_PROFILES";

/// A named, two-direction link profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The profile's name (its file stem).
    pub name: String,
    /// One line saying what link this is.
    pub description: String,
    /// Device → hub.
    pub up: LinkConfig,
    /// Hub → device.
    pub down: LinkConfig,
    /// NAT behaviour seen by the device's flows.
    pub nat: NatConfig,
}

impl Profile {
    /// A profile that changes nothing: no delay, no loss, no limit.
    pub fn transparent() -> Self {
        Self {
            name: "transparent".to_owned(),
            description: "no emulation".to_owned(),
            up: LinkConfig::default(),
            down: LinkConfig::default(),
            nat: NatConfig::default(),
        }
    }

    /// Loads a profile by name from the profile directory, or from a path if `name_or_path` ends
    /// in `.toml`.
    pub fn load(name_or_path: &str) -> Result<Self, ProfileError> {
        if name_or_path.ends_with(".toml") {
            return Self::load_file(Path::new(name_or_path));
        }
        if name_or_path == "transparent" && profiles_dir().is_err() {
            return Ok(Self::transparent());
        }
        Self::load_from(&profiles_dir()?, name_or_path)
    }

    /// Loads `dir/NAME.toml`.
    pub fn load_from(dir: &Path, name: &str) -> Result<Self, ProfileError> {
        let path = dir.join(format!("{name}.toml"));
        if !path.is_file() {
            return Err(ProfileError::NotFound {
                name: name.to_owned(),
                dir: dir.to_owned(),
            });
        }
        Self::load_file(&path)
    }

    /// Loads a profile file; its name is the file stem, and traces resolve relative to it.
    pub fn load_file(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&name, &text, dir)
    }

    /// Parses profile text; relative trace paths are relative to `dir`.
    pub fn from_toml(name: &str, text: &str, dir: &Path) -> Result<Self, ProfileError> {
        raw::parse(name, text, dir)
    }

    /// The `tc qdisc … netem` arguments approximating one direction, for kernels that have
    /// `sch_netem` (trace capacity and exact rules have no tc equivalent and are left out).
    pub fn tc_netem_args(config: &LinkConfig) -> Vec<String> {
        let mut args = vec!["netem".to_owned()];
        let d = &config.delay;
        if !d.base.is_zero() || !d.jitter.is_zero() {
            args.extend(["delay".to_owned(), format!("{}us", d.base.as_micros())]);
            if !d.jitter.is_zero() {
                args.push(format!("{}us", d.jitter.as_micros()));
                if d.distribution == crate::model::JitterDistribution::Normal {
                    args.extend(["distribution".to_owned(), "normal".to_owned()]);
                }
            }
        }
        if let Some(ge) = config.loss.gilbert_elliott {
            args.extend(["loss", "gemodel"].map(str::to_owned));
            for p in [ge.p, ge.r, ge.one_minus_h, ge.one_minus_k] {
                args.push(format!("{}%", p * 100.0));
            }
        } else if config.loss.random > 0.0 {
            args.extend([
                "loss".to_owned(),
                format!("{}%", config.loss.random * 100.0),
            ]);
        }
        if config.duplicate > 0.0 {
            args.extend([
                "duplicate".to_owned(),
                format!("{}%", config.duplicate * 100.0),
            ]);
        }
        if d.reorder > 0.0 {
            args.extend(["reorder".to_owned(), format!("{}%", d.reorder * 100.0)]);
        }
        let rate = match &config.capacity {
            Capacity::Unlimited => None,
            Capacity::Rate(bps) => Some(*bps),
            Capacity::Trace(t) => Some(t.mean_rate_bps() as u64),
        };
        if let Some(bps) = rate {
            args.extend(["rate".to_owned(), format!("{bps}bit")]);
        }
        if let Some(bytes) = config.queue_bytes {
            // netem's limit is in packets; assume full-size packets.
            args.extend(["limit".to_owned(), (bytes / 1500).max(1).to_string()]);
        }
        args
    }
}

/// The profile directory: `$OUTPOST_NETEM_PROFILES`, else the source tree's `netem/profiles`,
/// else `profiles/` next to the running binary (or one level up).
pub fn profiles_dir() -> Result<PathBuf, ProfileError> {
    if let Some(dir) = std::env::var_os(PROFILES_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    if built.is_dir() {
        return Ok(built);
    }
    let exe = std::env::current_exe().map_err(|_| ProfileError::NoDirectory)?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("profiles"))
        .find(|dir| dir.is_dir())
        .ok_or(ProfileError::NoDirectory)
}

/// Names of the profiles in `dir`, sorted.
pub fn list(dir: &Path) -> Result<Vec<String>, ProfileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ProfileError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests;
