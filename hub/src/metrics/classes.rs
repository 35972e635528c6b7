//! Counters with one label whose values are known up front: each child is created once and kept,
//! so recording is an atomic add and never looks the label up in the family's locked map.

use axum::http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// One label and its value.
pub(crate) type Label = [(&'static str, &'static str); 1];

/// A family of counters over fixed label values, and a kept handle on each.
#[derive(Clone, Debug)]
struct Fixed<const N: usize> {
    family: Family<Label, Counter>,
    children: [Counter; N],
}

impl<const N: usize> Fixed<N> {
    fn new(name: &'static str, values: [&'static str; N]) -> Self {
        let family = Family::<Label, Counter>::default();
        let children = values.map(|value| family.get_or_create(&[(name, value)]).clone());
        Self { family, children }
    }
}

/// Proxied requests by the class of their answer's status: `1xx` (an upgrade: `exec -it`) to
/// `5xx`.
#[derive(Clone, Debug)]
pub(crate) struct StatusClasses(Fixed<5>);

impl Default for StatusClasses {
    fn default() -> Self {
        Self(Fixed::new("class", ["1xx", "2xx", "3xx", "4xx", "5xx"]))
    }
}

impl StatusClasses {
    /// Count one answer.
    pub(crate) fn count(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5);
        self.0.children[class - 1].inc();
    }

    /// The family, to register.
    pub(crate) fn family(&self) -> Family<Label, Counter> {
        self.0.family.clone()
    }
}

/// UDP payload bytes on the agents' socket, by direction.
#[derive(Clone, Debug)]
pub(crate) struct WireBytes(Fixed<2>);

impl Default for WireBytes {
    fn default() -> Self {
        Self(Fixed::new("direction", ["received", "sent"]))
    }
}

impl WireBytes {
    /// `bytes` arrived from agents.
    pub(crate) fn received(&self, bytes: usize) {
        self.0.children[0].inc_by(bytes as u64);
    }

    /// `bytes` left for agents.
    pub(crate) fn sent(&self, bytes: usize) {
        self.0.children[1].inc_by(bytes as u64);
    }

    /// The family, to register.
    pub(crate) fn family(&self) -> Family<Label, Counter> {
        self.0.family.clone()
    }
}
