//! `outpost-hub stack …`: store Compose files as stack versions, list, show and remove them.
//!
//! `stack create` sends the file as written, the `--env-file` for `${…}`, and every service
//! `env_file` it names, read from beside the Compose file (as Compose resolves them): the hub
//! reads and checks it all, so a refusal names the key and line before anything is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use outpost_api::{ApiClient, NewRollout, NewStackVersion};

use super::admin::{asked, connect, failed, text};
use super::escape::escape_controls;
use super::{ApiArgs, PageArgs, Selection};

/// `outpost-hub stack …`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Store a Compose file as the stack's next version (v1 for a new stack). A file that reads
    /// the same as the latest version stores nothing.
    Create {
        /// The stack's name: the Compose project name on every device.
        name: String,
        /// The Compose file.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Variables for `${…}` in the file (`KEY=value` lines), as Compose's `--env-file`.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the stacks.
    List(PageArgs),
    /// Show a stack's versions and one version's Compose file (the newest unless --version).
    Show {
        /// The stack's name.
        name: String,
        /// The version to show.
        #[arg(long)]
        version: Option<u32>,
        /// Print JSON, with the version as devices receive it.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stack and every version (refused while devices should run it).
    Rm {
        /// The stack's name.
        name: String,
    },
    /// Roll a version out to devices, wave by wave: `pos` (the newest version) or `pos:3`.
    Deploy {
        /// `NAME` or `NAME:VERSION`.
        stack: String,
        /// The devices.
        #[command(flatten)]
        selection: Selection,
        /// Wave sizes, cumulative (`1%,10%,100%`, `1,100%`); the hub's default when absent.
        #[arg(long)]
        waves: Option<String>,
        /// Failures that pause the rollout (`5%`, `0`, `3`).
        #[arg(long)]
        max_failures: Option<String>,
        /// How long a device must stay healthy to count as done (`2m`).
        #[arg(long)]
        soak: Option<String>,
        /// When a container of the stack dies or is removed: `reapply` it (the default) or only
        /// `report` it, for devices someone works on by hand.
        #[arg(long, value_name = "reapply|report")]
        on_drift: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a stack command.
pub async fn run(args: &ApiArgs, command: StackCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        StackCommand::Create {
            name,
            file,
            env_file,
            json,
        } => {
            let new = read_stack(name, &file, env_file.as_deref())?;
            let Some(saved) = asked(&api, api.save_stack(&new), json).await? else {
                return Ok(());
            };
            let what = if saved.created {
                "stored"
            } else {
                "unchanged, already"
            };
            println!(
                "stack {} {what} as version {} ({} services: {})",
                text(Some(&saved.name)),
                saved.version,
                saved.services.len(),
                saved.services.join(", ")
            );
            Ok(())
        }
        StackCommand::List(page) => list(&api, page).await,
        StackCommand::Show {
            name,
            version,
            json,
        } => {
            let Some(detail) = asked(&api, api.stack(&name, version), json).await? else {
                return Ok(());
            };
            println!("stack {}", text(Some(&detail.name)));
            for v in &detail.versions {
                let shown = if v.version == detail.version {
                    "  <- shown"
                } else {
                    ""
                };
                println!(
                    "  v{:<4} created {}  digest {}{shown}",
                    v.version,
                    v.created_at,
                    &v.digest[..12]
                );
            }
            println!("--- version {} ---", detail.version);
            for line in detail.compose.lines() {
                println!("{}", escape_controls(line));
            }
            Ok(())
        }
        StackCommand::Deploy {
            stack,
            selection,
            waves,
            max_failures,
            soak,
            on_drift,
            json,
        } => {
            let (stack, version) = stack_and_version(&stack)?;
            let new = NewRollout {
                stack,
                version,
                groups: selection.groups,
                tags: selection.tags,
                endpoints: selection.endpoints,
                waves,
                max_failures,
                soak,
                on_drift,
            };
            let Some(started) = asked(&api, api.start_rollout(&new), json).await? else {
                return Ok(());
            };
            println!(
                "rollout {} started: {}:{} to {} devices ({}); follow it with `outpost-hub rollout show {}`",
                started.id,
                text(Some(&started.stack)),
                started.version,
                started.counts.get("total").copied().unwrap_or_default(),
                started.plan,
                started.id
            );
            Ok(())
        }
        StackCommand::Rm { name } => {
            let removed = api.remove_stack(&name).await.map_err(failed)?;
            println!(
                "stack {} removed with {} versions",
                text(Some(&removed.name)),
                removed.versions
            );
            Ok(())
        }
    }
}

async fn list(api: &ApiClient, page: PageArgs) -> Result<()> {
    let Some(stacks) = asked(api, api.stacks(&page.query()), page.json).await? else {
        return Ok(());
    };
    println!(
        "{:<32} {:>7} {:>9} {:>12}",
        "NAME", "LATEST", "VERSIONS", "UPDATED"
    );
    for stack in &stacks.items {
        println!(
            "{:<32} {:>7} {:>9} {:>12}",
            text(Some(&stack.name)),
            stack.latest_version,
            stack.versions,
            stack.updated_at
        );
    }
    println!("({} in all)", stacks.total);
    Ok(())
}

/// `pos` or `pos:3`.
fn stack_and_version(text: &str) -> Result<(String, Option<u32>)> {
    match text.split_once(':') {
        None => Ok((text.to_owned(), None)),
        Some((name, version)) => {
            let version = version
                .parse()
                .with_context(|| format!("{text:?}: the version after ':' is a number"))?;
            Ok((name.to_owned(), Some(version)))
        }
    }
}

/// The request for `stack create`: the file, the env file, and every service `env_file` the
/// file names, read relative to the Compose file's directory.
fn read_stack(name: String, file: &Path, env_file: Option<&Path>) -> Result<NewStackVersion> {
    let compose = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the Compose file {}", file.display()))?;
    let env_file = env_file
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the env file {}", path.display()))
        })
        .transpose()?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut env_files = BTreeMap::new();
    for path in service_env_files(&compose) {
        let full = base.join(&path);
        let content = std::fs::read_to_string(&full).with_context(|| {
            format!(
                "the Compose file names env_file {path}, and {} is not readable",
                full.display()
            )
        })?;
        env_files.insert(path, content);
    }
    Ok(NewStackVersion {
        name,
        compose,
        env_file,
        env_files,
    })
}

/// Every `services.*.env_file` path the file names. A file this cannot read names none: the hub
/// then refuses it with the line, which says more than this could.
fn service_env_files(compose: &str) -> Vec<String> {
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(compose) else {
        return vec![];
    };
    let services = doc.get("services").and_then(|s| s.as_mapping());
    let mut paths = Vec::new();
    for service in services.into_iter().flat_map(|s| s.values()) {
        match service.get("env_file") {
            Some(serde_yaml::Value::String(path)) => paths.push(path.clone()),
            Some(serde_yaml::Value::Sequence(items)) => {
                paths.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)));
            }
            _ => {}
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_found_in_both_forms() {
        let compose = "services:\n  a:\n    env_file: one.env\n  b:\n    env_file: [two.env, sub/three.env]\n  c:\n    image: x\n";
        assert_eq!(
            service_env_files(compose),
            ["one.env", "two.env", "sub/three.env"]
        );
        assert!(service_env_files("not: [yaml").is_empty());
    }

    #[test]
    fn create_reads_env_files_beside_the_compose_file() {
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yml");
        std::fs::write(
            &compose,
            "services:\n  a:\n    image: x\n    env_file: site.env\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("site.env"), "A=1\n").unwrap();
        let vars = dir.path().join("vars.env");
        std::fs::write(&vars, "TAG=2\n").unwrap();
        let new = read_stack("pos".into(), &compose, Some(&vars)).unwrap();
        assert_eq!(
            new.env_files.get("site.env").map(String::as_str),
            Some("A=1\n")
        );
        assert_eq!(new.env_file.as_deref(), Some("TAG=2\n"));
        std::fs::remove_file(dir.path().join("site.env")).unwrap();
        let error = read_stack("pos".into(), &compose, None).unwrap_err();
        assert!(
            error.to_string().contains("names env_file site.env"),
            "{error}"
        );
    }
}
