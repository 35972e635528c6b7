//! The TOML shape of a profile and its conversion into typed model configs.
//!
//! The file keeps human units (strings like `"300ms"`); conversion checks every value and names
//! the key at fault, so a typo in a profile fails loudly at load time instead of emulating a
//! different link.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::Profile;
use crate::error::ProfileError;
use crate::model::{
    Capacity, DelayConfig, DelayStep, GilbertElliott, JitterDistribution, LinkConfig, LossConfig,
    NatConfig, OutageSchedule, OutageWindow, PeriodicOutage, Rule, Trace,
};
use crate::units::{parse_duration, parse_rate, parse_size};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    both: RawLink,
    #[serde(default)]
    up: RawLink,
    #[serde(default)]
    down: RawLink,
    #[serde(default)]
    nat: RawNat,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLink {
    delay: Option<String>,
    jitter: Option<String>,
    jitter_distribution: Option<String>,
    reorder: Option<f64>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    rate: Option<String>,
    trace: Option<String>,
    queue: Option<String>,
    mtu: Option<usize>,
    gilbert_elliott: Option<RawGilbertElliott>,
    step: Option<RawStep>,
    outage: Option<RawPeriodic>,
    outage_at: Option<Vec<RawWindow>>,
    rules: Option<Vec<RawRule>>,
}

impl RawLink {
    /// `self` with missing fields taken from `defaults`.
    fn or(self, defaults: &Self) -> Self {
        let d = defaults.clone();
        Self {
            delay: self.delay.or(d.delay),
            jitter: self.jitter.or(d.jitter),
            jitter_distribution: self.jitter_distribution.or(d.jitter_distribution),
            reorder: self.reorder.or(d.reorder),
            loss: self.loss.or(d.loss),
            duplicate: self.duplicate.or(d.duplicate),
            rate: self.rate.or(d.rate),
            trace: self.trace.or(d.trace),
            queue: self.queue.or(d.queue),
            mtu: self.mtu.or(d.mtu),
            gilbert_elliott: self.gilbert_elliott.or(d.gilbert_elliott),
            step: self.step.or(d.step),
            outage: self.outage.or(d.outage),
            outage_at: self.outage_at.or(d.outage_at),
            rules: self.rules.or(d.rules),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawGilbertElliott {
    p: f64,
    r: f64,
    #[serde(default = "one")]
    one_minus_h: f64,
    #[serde(default)]
    one_minus_k: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawStep {
    every: String,
    min: String,
    max: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawPeriodic {
    every: String,
    duration: String,
    #[serde(default)]
    offset: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    start: String,
    duration: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRule {
    drop_first: Option<u64>,
    drop_every: Option<u64>,
    drop_between: Option<[String; 2]>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNat {
    rebind_every: Option<String>,
    binding_timeout: Option<String>,
}

/// Context for converting one profile: its name (for errors) and directory (for traces).
struct Ctx<'a> {
    name: &'a str,
    dir: &'a Path,
}

impl Ctx<'_> {
    fn duration(&self, key: &str, text: &str) -> Result<std::time::Duration, ProfileError> {
        parse_duration(text).map_err(|source| self.unit(key, source))
    }

    fn unit(&self, key: &str, source: crate::error::UnitError) -> ProfileError {
        ProfileError::Unit {
            name: self.name.to_owned(),
            key: key.to_owned(),
            source,
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ProfileError {
        ProfileError::Invalid {
            name: self.name.to_owned(),
            message: message.into(),
        }
    }

    fn probability(&self, key: &str, value: Option<f64>) -> Result<f64, ProfileError> {
        let value = value.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&value) {
            return Err(ProfileError::Probability {
                name: self.name.to_owned(),
                key: key.to_owned(),
                value,
            });
        }
        Ok(value)
    }
}

pub(super) fn parse(name: &str, text: &str, dir: &Path) -> Result<Profile, ProfileError> {
    let raw: RawProfile = toml::from_str(text).map_err(|source| ProfileError::Toml {
        name: name.to_owned(),
        source,
    })?;
    let ctx = Ctx { name, dir };
    let up = link(&ctx, "up", raw.up.or(&raw.both))?;
    let down = link(&ctx, "down", raw.down.or(&raw.both))?;
    let nat = NatConfig {
        rebind_every: raw
            .nat
            .rebind_every
            .map(|t| ctx.duration("nat.rebind_every", &t))
            .transpose()?,
        binding_timeout: raw
            .nat
            .binding_timeout
            .map(|t| ctx.duration("nat.binding_timeout", &t))
            .transpose()?,
    };
    Ok(Profile {
        name: name.to_owned(),
        description: raw.description,
        up,
        down,
        nat,
    })
}

fn link(ctx: &Ctx<'_>, dir: &str, raw: RawLink) -> Result<LinkConfig, ProfileError> {
    let key = |k: &str| format!("{dir}.{k}");
    let opt_duration =
        |k: &str, v: &Option<String>| v.as_deref().map(|t| ctx.duration(&key(k), t)).transpose();
    let distribution = match raw.jitter_distribution.as_deref() {
        None | Some("uniform") => JitterDistribution::Uniform,
        Some("normal") => JitterDistribution::Normal,
        Some(other) => {
            return Err(ctx.invalid(format!(
                "{}: unknown distribution `{other}`",
                key("jitter_distribution")
            )))
        }
    };
    let step = raw
        .step
        .map(|s| -> Result<DelayStep, ProfileError> {
            Ok(DelayStep {
                every: ctx.duration(&key("step.every"), &s.every)?,
                min: ctx.duration(&key("step.min"), &s.min)?,
                max: ctx.duration(&key("step.max"), &s.max)?,
            })
        })
        .transpose()?;
    let delay = DelayConfig {
        base: opt_duration("delay", &raw.delay)?.unwrap_or_default(),
        jitter: opt_duration("jitter", &raw.jitter)?.unwrap_or_default(),
        distribution,
        step,
        reorder: ctx.probability(&key("reorder"), raw.reorder)?,
    };
    let gilbert_elliott = raw
        .gilbert_elliott
        .map(|g| -> Result<GilbertElliott, ProfileError> {
            Ok(GilbertElliott {
                p: ctx.probability(&key("gilbert_elliott.p"), Some(g.p))?,
                r: ctx.probability(&key("gilbert_elliott.r"), Some(g.r))?,
                one_minus_h: ctx
                    .probability(&key("gilbert_elliott.one_minus_h"), Some(g.one_minus_h))?,
                one_minus_k: ctx
                    .probability(&key("gilbert_elliott.one_minus_k"), Some(g.one_minus_k))?,
            })
        })
        .transpose()?;
    Ok(LinkConfig {
        delay,
        loss: LossConfig {
            random: ctx.probability(&key("loss"), raw.loss)?,
            gilbert_elliott,
        },
        duplicate: ctx.probability(&key("duplicate"), raw.duplicate)?,
        capacity: capacity(ctx, dir, raw.rate.as_deref(), raw.trace.as_deref())?,
        queue_bytes: raw
            .queue
            .as_deref()
            .map(|q| parse_size(q).map_err(|e| ctx.unit(&key("queue"), e)))
            .transpose()?,
        mtu: raw.mtu,
        outages: outages(ctx, dir, raw.outage, raw.outage_at.unwrap_or_default())?,
        rules: rules(ctx, dir, raw.rules.unwrap_or_default())?,
    })
}

fn capacity(
    ctx: &Ctx<'_>,
    dir: &str,
    rate: Option<&str>,
    trace: Option<&str>,
) -> Result<Capacity, ProfileError> {
    match (rate, trace) {
        (Some(_), Some(_)) => {
            Err(ctx.invalid(format!("{dir}: set either `rate` or `trace`, not both")))
        }
        (Some(rate), None) => parse_rate(rate)
            .map(Capacity::Rate)
            .map_err(|e| ctx.unit(&format!("{dir}.rate"), e)),
        (None, Some(trace)) => load_trace(ctx, trace).map(|t| Capacity::Trace(Arc::new(t))),
        (None, None) => Ok(Capacity::Unlimited),
    }
}

fn load_trace(ctx: &Ctx<'_>, name: &str) -> Result<Trace, ProfileError> {
    Trace::load(&ctx.dir.join(name)).map_err(|source| ProfileError::Trace {
        name: ctx.name.to_owned(),
        source,
    })
}

fn outages(
    ctx: &Ctx<'_>,
    dir: &str,
    periodic: Option<RawPeriodic>,
    windows: Vec<RawWindow>,
) -> Result<OutageSchedule, ProfileError> {
    let periodic = periodic
        .map(|p| -> Result<PeriodicOutage, ProfileError> {
            Ok(PeriodicOutage {
                every: ctx.duration(&format!("{dir}.outage.every"), &p.every)?,
                duration: ctx.duration(&format!("{dir}.outage.duration"), &p.duration)?,
                offset: ctx.duration(
                    &format!("{dir}.outage.offset"),
                    p.offset.as_deref().unwrap_or("0"),
                )?,
            })
        })
        .transpose()?;
    let windows = windows
        .iter()
        .map(|w| -> Result<OutageWindow, ProfileError> {
            Ok(OutageWindow {
                start: ctx.duration(&format!("{dir}.outage_at.start"), &w.start)?,
                duration: ctx.duration(&format!("{dir}.outage_at.duration"), &w.duration)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(OutageSchedule { periodic, windows })
}

fn rules(ctx: &Ctx<'_>, dir: &str, raw: Vec<RawRule>) -> Result<Vec<Rule>, ProfileError> {
    raw.into_iter()
        .map(|r| match (r.drop_first, r.drop_every, r.drop_between) {
            (Some(n), None, None) => Ok(Rule::DropFirst(n)),
            (None, Some(n), None) if n > 0 => Ok(Rule::DropEvery(n)),
            (None, None, Some([from, to])) => Ok(Rule::DropBetween {
                from: ctx.duration(&format!("{dir}.rules.drop_between"), &from)?,
                to: ctx.duration(&format!("{dir}.rules.drop_between"), &to)?,
            }),
            _ => Err(ctx.invalid(format!(
                "{dir}.rules: each rule has exactly one of drop_first, drop_every (> 0), drop_between"
            ))),
        })
        .collect()
}
