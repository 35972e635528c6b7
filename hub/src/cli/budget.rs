//! `outpost-hub budget …` and `window …`: byte budgets a period per device and transfer windows,
//! set on the fleet, a group or one device (the most specific applies). `endpoint show ID` prints what the device spent this
//! period by class, and whether its image transfers are deferred.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use outpost_api::{Budget, BudgetTarget, Window};

use super::admin::{asked, connect, failed, text};
use super::ApiArgs;

/// `outpost-hub budget …`.
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set a budget: bytes a period per device (`500MB`, `2GiB`, `750000`). Past it the device's
    /// image transfers wait for the next period (`deferred: budget`), resuming where they
    /// stopped; Docker calls through the hub are never held back.
    Set {
        /// Bytes a period, with an optional unit: B, kB, MB, GB (powers of 1000) or KiB, MiB,
        /// GiB (powers of 1024).
        #[arg(value_parser = parse_bytes)]
        bytes: u64,
        /// Where it applies.
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List the budgets set.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a budget.
    Remove {
        /// Which.
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// `outpost-hub window …`.
#[derive(Debug, Subcommand)]
pub enum WindowCommand {
    /// Set a transfer window (`01:00-05:00`, on each device's own clock; `22:00-05:00` runs over
    /// midnight): outside it the device's image transfers wait (`deferred: window`), resuming
    /// where they stopped when it opens. Docker calls through the hub are never held back.
    Set {
        /// `HH:MM-HH:MM`.
        window: String,
        /// Where it applies.
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List the transfer windows set.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a transfer window.
    Remove {
        /// Which.
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// Exactly one of the fleet, a group or a device.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// Every device without a more specific budget.
    #[arg(long)]
    fleet: bool,
    /// Each device of this group without its own budget.
    #[arg(long)]
    group: Option<String>,
    /// This device.
    #[arg(long)]
    endpoint: Option<u64>,
}

impl ScopeArgs {
    fn target(&self) -> BudgetTarget {
        let (scope, name) = match (&self.group, self.endpoint) {
            (Some(group), _) => ("group", Some(group.clone())),
            (None, Some(id)) => ("endpoint", Some(id.to_string())),
            (None, None) => ("fleet", None),
        };
        BudgetTarget {
            scope: scope.to_owned(),
            name,
        }
    }
}

/// Run a budget command.
pub async fn run(args: &ApiArgs, command: BudgetCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        BudgetCommand::Set { bytes, scope } => {
            let BudgetTarget { scope, name } = scope.target();
            let budget = Budget { scope, name, bytes };
            let set = api.set_budget(&budget).await.map_err(failed)?;
            let on = place(&set.scope, set.name.as_deref());
            println!("budget set: {} bytes a period on {on}", set.bytes);
        }
        BudgetCommand::List { json } => {
            let Some(budgets) = asked(&api, api.budgets(), json).await? else {
                return Ok(());
            };
            let rows = budgets
                .iter()
                .map(|b| (&b.scope, &b.name, b.bytes.to_string()));
            print_table("BYTES", 16, rows);
        }
        BudgetCommand::Remove { scope } => {
            let removed = api.remove_budget(&scope.target()).await.map_err(failed)?;
            print_removed("budget", removed);
        }
    }
    Ok(())
}

/// Run a transfer-window command.
pub async fn run_window(args: &ApiArgs, command: WindowCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        WindowCommand::Set { window, scope } => {
            let BudgetTarget { scope, name } = scope.target();
            let window = Window {
                scope,
                name,
                window,
            };
            let set = api.set_window(&window).await.map_err(failed)?;
            let on = place(&set.scope, set.name.as_deref());
            println!("transfer window set: {} (device time) on {on}", set.window);
        }
        WindowCommand::List { json } => {
            let Some(windows) = asked(&api, api.windows(), json).await? else {
                return Ok(());
            };
            let rows = windows
                .iter()
                .map(|w| (&w.scope, &w.name, w.window.clone()));
            print_table("WINDOW", 12, rows);
        }
        WindowCommand::Remove { scope } => {
            let removed = api.remove_window(&scope.target()).await.map_err(failed)?;
            print_removed("transfer window", removed);
        }
    }
    Ok(())
}

/// Where a budget or window applies, as an admin reads it: `group stores-eu`, or the fleet.
fn place(scope: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{scope} {}", text(Some(name))),
        None => "the fleet".to_owned(),
    }
}

/// Budgets or windows as a table: where each applies, and its value under `heading`.
fn print_table<'a>(
    heading: &str,
    width: usize,
    rows: impl Iterator<Item = (&'a String, &'a Option<String>, String)>,
) {
    println!("{:<10} {:<24} {heading:>width$}", "SCOPE", "NAME");
    for (scope, name, value) in rows {
        println!("{scope:<10} {:<24} {value:>width$}", text(name.as_deref()));
    }
}

/// That a budget or window (`what`) no longer applies where it did.
fn print_removed(what: &str, removed: BudgetTarget) {
    let name = removed.name.map(|n| format!(" {n}")).unwrap_or_default();
    println!("{what} removed from {}{name}", removed.scope);
}

/// `500MB`, `2GiB`, `750000` as bytes.
fn parse_bytes(text: &str) -> Result<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => bail!("unit {other:?}: say B, kB, MB, GB, KiB, MiB or GiB"),
    };
    let Ok(number) = number.parse::<u64>() else {
        bail!("{text:?} is not a number of bytes");
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_bytes("750000").ok(), Some(750_000));
        assert_eq!(parse_bytes("50MB").ok(), Some(50_000_000));
        assert_eq!(parse_bytes("2GiB").ok(), Some(2 << 30));
        assert_eq!(parse_bytes("64 KiB").ok(), Some(65_536));
        for bad in [
            "",
            "MB",
            "5 furlongs",
            "-5",
            "1.5GB",
            "99999999999999999999",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
