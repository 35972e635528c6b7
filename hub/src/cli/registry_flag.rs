//! The `--registry URL` flag's parser. clap's own error for a refused value quotes the value, and a
//! URL with credentials in it would put a password on the terminal and into whatever logs the
//! hub's output; this parser's errors never quote it.

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

use crate::mirror::config::parse_upstream;

/// Parses `--registry` with [`parse_upstream`], reporting errors without the value.
#[derive(Clone, Copy, Debug)]
pub(super) struct RegistryUrlParser;

impl TypedValueParser for RegistryUrlParser {
    type Value = reqwest::Url;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("--registry: {message}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("not UTF-8".into()))?;
        parse_upstream(text).map_err(refuse)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn a_refused_registry_url_is_not_echoed() {
        let error = Cli::try_parse_from([
            "outpost-hub",
            "serve",
            "--registry",
            "https://u:s3cret@r.example",
        ])
        .expect_err("credentials in the URL are refused");
        let text = error.to_string();
        assert!(
            text.contains("--registry-credentials") && !text.contains("s3cret"),
            "{text}"
        );
        let Command::Serve(args) = Cli::parse_from([
            "outpost-hub",
            "serve",
            "--registry",
            "http://127.0.0.1:5000",
            "--registry",
            "https://r.example",
        ])
        .command
        else {
            panic!("serve")
        };
        assert_eq!(args.registries.len(), 2);
    }
}
