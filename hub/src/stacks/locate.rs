//! Where each key of a Compose file is written, so a refusal can name the line.
//!
//! serde_yaml's values carry no positions, and a refusal such as "`deploy` is not supported"
//! is only useful with the line it is on. One pass of yaml-rust2's event parser records the line
//! of every mapping key by its dotted path (`services.web.deploy`; sequence items by index,
//! `services.web.ports.0.mode`). Keys that come from a merge (`<<: *defaults`) are not written
//! under the path they end up at; [`KeyLines::nearest`] falls back to the closest ancestor that is.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::ComposeError;

/// The line (1-based) of every mapping key, by dotted path.
#[derive(Debug, Default)]
pub(super) struct KeyLines(HashMap<String, usize>);

impl KeyLines {
    /// Scan `text`; a YAML syntax error is refused with its line.
    pub(super) fn scan(text: &str) -> Result<Self, ComposeError> {
        let mut recorder = Recorder::default();
        Parser::new_from_str(text)
            .load(&mut recorder, false)
            .map_err(|e| ComposeError {
                key: None,
                line: Some(e.marker().line()),
                problem: format!("not valid YAML: {}", e.info()),
            })?;
        Ok(recorder.lines)
    }

    /// The line of the key at `path`, or of its nearest ancestor written in the file.
    pub(super) fn nearest(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            path = &path[..path.rfind('.')?];
        }
    }
}

/// One open collection while scanning.
enum Frame {
    /// A mapping at `path`; `key` is the key whose value comes next, `None` while a key is due.
    Map { path: String, key: Option<String> },
    /// A sequence at `path`, at item `index`.
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Recorder {
    lines: KeyLines,
    open: Vec<Frame>,
}

impl Recorder {
    /// The path of the value that comes next in the innermost collection.
    fn child_path(&self) -> String {
        match self.open.last() {
            Some(Frame::Map { path, key }) => join(path, key.as_deref().unwrap_or_default()),
            Some(Frame::Seq { path, index }) => join(path, &index.to_string()),
            None => String::new(),
        }
    }

    /// A value (scalar, alias or whole collection) ended in the innermost collection.
    fn value_done(&mut self) {
        match self.open.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                }) = self.open.last_mut()
                {
                    self.lines.0.entry(join(path, &text)).or_insert(mark.line());
                    *key = Some(text);
                } else {
                    self.value_done();
                }
            }
            Event::Alias(_) => self.value_done(),
            Event::MappingStart(..) => {
                let path = self.child_path();
                self.open.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.child_path();
                self.open.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.open.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
