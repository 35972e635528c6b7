//! Compose's variable interpolation in values: `${NAME}`, `$NAME`, `${NAME:-default}`,
//! `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`, `${NAME:+other}`, `${NAME+other}`,
//! and `$$` for a literal `$`.
//!
//! The variables are the stack's `--env-file` only: the hub's own environment is not the
//! admin's shell, and a fleet's stack must mean the same on every device. Unlike Compose, a
//! variable that is unset and has no default is refused instead of becoming empty: an empty image
//! tag on ten thousand devices is worse than a 400 at `stack create`.

use std::collections::HashMap;

use thiserror::Error;

/// Deepest nesting of `${…}` inside defaults.
const MAX_DEPTH: usize = 8;

/// Why a value could not be interpolated.
#[derive(Debug, Error, PartialEq, Eq)]
pub(super) enum InterpolationError {
    /// A variable without a value and without a default.
    #[error("variable {0} is not set (give it in --env-file, or a default: ${{{0}:-value}})")]
    Unset(String),
    /// `${NAME:?message}` with NAME unset.
    #[error("variable {name} is required: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
    /// A `$` that starts no valid reference (`$$` is a literal dollar sign).
    #[error("invalid interpolation at {0:?} (write $$ for a literal $)")]
    Invalid(String),
}

/// `text` with every reference replaced from `vars`.
pub(super) fn substitute(
    text: &str,
    vars: &HashMap<String, String>,
) -> Result<String, InterpolationError> {
    substitute_at(text, vars, 0)
}

fn substitute_at(
    text: &str,
    vars: &HashMap<String, String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (value, used) = reference(after, vars, depth).ok_or_else(|| invalid(&rest[at..]))??;
        out.push_str(&value);
        rest = &after[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of the reference at the start of `text` (just after its `$`) and how many bytes it
/// took; `None` if no valid reference starts there.
fn reference(
    text: &str,
    vars: &HashMap<String, String>,
    depth: usize,
) -> Option<Result<(String, usize), InterpolationError>> {
    if text.starts_with('$') {
        return Some(Ok(("$".to_owned(), 1)));
    }
    if let Some(braced) = text.strip_prefix('{') {
        let end = closing_brace(braced)?;
        let value = braced_value(&braced[..end], vars, depth)?;
        return Some(value.map(|v| (v, end + 2)));
    }
    let name_len = name_length(text);
    if name_len == 0 {
        return None;
    }
    let name = &text[..name_len];
    Some(
        vars.get(name)
            .map(|v| (v.clone(), name_len))
            .ok_or_else(|| InterpolationError::Unset(name.to_owned())),
    )
}

/// The value of `${inner}`.
fn braced_value(
    inner: &str,
    vars: &HashMap<String, String>,
    depth: usize,
) -> Option<Result<String, InterpolationError>> {
    let name_len = name_length(inner);
    if name_len == 0 || depth >= MAX_DEPTH {
        return None;
    }
    let (name, modifier) = inner.split_at(name_len);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let nested = |text: &str| substitute_at(text, vars, depth + 1);
    let result = match modifier {
        "" => value
            .cloned()
            .ok_or_else(|| InterpolationError::Unset(name.to_owned())),
        _ if modifier.starts_with(":-") => match set_nonempty {
            true => Ok(value.cloned().unwrap_or_default()),
            false => nested(&modifier[2..]),
        },
        _ if modifier.starts_with('-') => match value {
            Some(v) => Ok(v.clone()),
            None => nested(&modifier[1..]),
        },
        _ if modifier.starts_with(":?") || modifier.starts_with('?') => {
            let colon = modifier.starts_with(':');
            let present = if colon { set_nonempty } else { value.is_some() };
            match present {
                true => Ok(value.cloned().unwrap_or_default()),
                false => Err(InterpolationError::Required {
                    name: name.to_owned(),
                    message: modifier[1 + usize::from(colon)..].to_owned(),
                }),
            }
        }
        _ if modifier.starts_with(":+") => match set_nonempty {
            true => nested(&modifier[2..]),
            false => Ok(String::new()),
        },
        _ if modifier.starts_with('+') => match value {
            Some(_) => nested(&modifier[1..]),
            None => Ok(String::new()),
        },
        _ => return None,
    };
    Some(result)
}

/// Index of the `}` that closes a `${`, counting nested `${…}`.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(index),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Length of the variable name at the start of `text`: `[A-Za-z_][A-Za-z0-9_]*`.
fn name_length(text: &str) -> usize {
    let starts = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts {
        return 0;
    }
    text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len())
}

fn invalid(text: &str) -> InterpolationError {
    InterpolationError::Invalid(text.chars().take(24).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("TAG", "42"), ("EMPTY", ""), ("REG", "registry.local")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn sub(text: &str) -> Result<String, InterpolationError> {
        substitute(text, &vars())
    }

    #[test]
    fn references_are_replaced() {
        assert_eq!(sub("pos:${TAG}").unwrap(), "pos:42");
        assert_eq!(sub("$REG/pos:$TAG").unwrap(), "registry.local/pos:42");
        assert_eq!(sub("no references").unwrap(), "no references");
        assert_eq!(sub("cost $$5").unwrap(), "cost $5");
    }

    #[test]
    fn defaults_and_alternatives_follow_compose() {
        assert_eq!(sub("${MISSING:-1}").unwrap(), "1");
        assert_eq!(sub("${EMPTY:-1}").unwrap(), "1");
        assert_eq!(sub("${EMPTY-1}").unwrap(), "");
        assert_eq!(sub("${MISSING-1}").unwrap(), "1");
        assert_eq!(sub("${TAG:+set}").unwrap(), "set");
        assert_eq!(sub("${EMPTY:+set}").unwrap(), "");
        assert_eq!(sub("${EMPTY+set}").unwrap(), "set");
        assert_eq!(sub("${MISSING:-${REG}/x}").unwrap(), "registry.local/x");
    }

    #[test]
    fn unset_and_required_variables_are_refused() {
        assert_eq!(
            sub("pos:${MISSING}"),
            Err(InterpolationError::Unset("MISSING".to_owned()))
        );
        assert_eq!(
            sub("$MISSING"),
            Err(InterpolationError::Unset("MISSING".to_owned()))
        );
        assert_eq!(
            sub("${EMPTY:?needs a value}"),
            Err(InterpolationError::Required {
                name: "EMPTY".to_owned(),
                message: "needs a value".to_owned()
            })
        );
        assert_eq!(sub("${EMPTY?x}").unwrap(), "");
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["$", "${", "${TAG", "${}", "${1A}", "$-", "${TAG!x}"] {
            assert!(
                matches!(sub(bad), Err(InterpolationError::Invalid(_))),
                "{bad:?}: {:?}",
                sub(bad)
            );
        }
        let deep = format!(
            "{}x{}",
            "${A:-".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(sub(&deep), Err(InterpolationError::Invalid(_))));
    }
}
