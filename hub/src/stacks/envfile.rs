//! `.env`-style files: the stack's `--env-file` (variables for `${…}`) and each service's
//! `env_file` (its environment), read the way Compose reads them: `KEY=value` per line, blank
//! lines and `#` comments skipped, an optional `export ` prefix, values unquoted (trimmed, a ` #`
//! starts a comment), in single quotes (literal) or in double quotes (`\n`, `\t`, `\"`, `\\`).
//!
//! Hand-written rather than `dotenvy`: dotenvy substitutes `$NAME` from the *hub's* process
//! environment, which would let a stack read the hub's secrets and make a stack mean different
//! things on different hubs. Values here are literal.

use super::ComposeError;

/// Largest env file.
pub(super) const MAX_ENV_FILE_BYTES: usize = 64 * 1024;

/// The `(KEY, value)` pairs of `text`, in file order; `name` says which file in errors.
pub(super) fn pairs(name: &str, text: &str) -> Result<Vec<(String, String)>, ComposeError> {
    if text.len() > MAX_ENV_FILE_BYTES {
        return Err(ComposeError::at(
            None,
            None,
            format!("{name} is larger than {MAX_ENV_FILE_BYTES} bytes"),
        ));
    }
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            pair(line.trim_start()).map(|p| {
                p.map_err(|problem| {
                    ComposeError::at(None, None, format!("{name}, line {}: {problem}", index + 1))
                })
            })
        })
        .collect()
}

/// One line's pair; `None` for a blank or comment line.
fn pair(line: &str) -> Option<Result<(String, String), String>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let Some((key, value)) = line.split_once('=') else {
        return Some(Err("expected KEY=value".to_owned()));
    };
    let key = key.trim();
    let valid_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_key {
        return Some(Err(format!("{key:?} is not a variable name")));
    }
    Some(value_of(value.trim_start()).map(|v| (key.to_owned(), v)))
}

fn value_of(raw: &str) -> Result<String, String> {
    if let Some(quoted) = raw.strip_prefix('\'') {
        let end = quoted.find('\'').ok_or("unterminated single quote")?;
        return Ok(quoted[..end].to_owned());
    }
    if let Some(quoted) = raw.strip_prefix('"') {
        return double_quoted(quoted);
    }
    let value = raw.split(" #").next().unwrap_or_default();
    Ok(value.trim_end().to_owned())
}

fn double_quoted(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other @ ('"' | '\\' | '$')) => out.push(other),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            _ => out.push(c),
        }
    }
    Err("unterminated double quote".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        pairs("test.env", text).unwrap()
    }

    #[test]
    fn compose_forms() {
        let text = "# settings\n\nTAG=42\nexport MODE = kiosk # comment\nQUOTED='a $b # c'\nESC=\"x\\ny \\\"z\\\"\"\nEMPTY=\nHOME_VAR=$HOME\n";
        assert_eq!(
            parse(text),
            [
                ("TAG", "42"),
                ("MODE", "kiosk"),
                ("QUOTED", "a $b # c"),
                ("ESC", "x\ny \"z\""),
                ("EMPTY", ""),
                ("HOME_VAR", "$HOME"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        for (text, line) in [
            ("A=1\nno equals sign\n", 2),
            ("A='open\n", 1),
            ("A=1\nB=\"open\n", 2),
            ("bad key=1\n", 1),
        ] {
            let error = pairs("site.env", text).unwrap_err();
            assert!(
                error
                    .problem
                    .starts_with(&format!("site.env, line {line}: ")),
                "{text:?}: {error}"
            );
        }
        let big = "A=1\n".repeat(MAX_ENV_FILE_BYTES);
        assert!(pairs("big.env", &big).is_err());
    }
}
