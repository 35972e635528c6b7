//! The typed admin client ([`outpost_api::ApiClient`]) for a harness hub, for tests and benches
//! that call the API on its well-formed path. Tests of malformed or hostile requests keep raw HTTP
//! ([`crate::Hub::api_call`]).

use std::future::Future;

use outpost_api::{ApiClient, ApiError, Endpoint, ListQuery};

use crate::Hub;

/// Rows per page when reading every endpoint: the API's largest page.
const ALL_PAGE: u32 = 1000;

impl Hub {
    /// A client of this hub's API with the admin token and CA it wrote into its data directory
    /// (read now: a client made before `admin-token rotate` keeps the old token).
    pub fn api(&self) -> ApiClient {
        let read = |name: &str| std::fs::read(self.data_dir.join(name)).expect(name);
        let text = |name: &str| String::from_utf8(read(name)).expect(name).trim().to_owned();
        ApiClient::new(&text("api.url"), &text("admin.token"), &read("ca.pem"))
            .expect("an API client for the hub's CA")
    }
}

/// Run `future` to its end on a runtime of its own: tests drive the API from plain threads.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Every endpoint of `query`'s kind and filters, page by page.
pub async fn all_endpoints(api: &ApiClient, query: &ListQuery) -> Result<Vec<Endpoint>, ApiError> {
    let mut items = Vec::new();
    for page in 1.. {
        let page_query = ListQuery {
            page: Some(page.to_string()),
            per_page: Some(ALL_PAGE.to_string()),
            ..query.clone()
        };
        let batch = api.list(&page_query).await?.items;
        let done = batch.len() < ALL_PAGE as usize;
        items.extend(batch);
        if done {
            break;
        }
    }
    Ok(items)
}

/// UDP traffic summed over endpoints' live connections, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireSum {
    /// UDP payload bytes.
    pub bytes: u64,
    /// Datagrams.
    pub datagrams: u64,
}

impl WireSum {
    /// The sum over `endpoints` (those without a live connection count nothing).
    pub fn of(endpoints: &[Endpoint]) -> Self {
        endpoints
            .iter()
            .filter_map(|e| e.wire)
            .fold(Self::default(), |sum, w| Self {
                bytes: sum.bytes + w.tx_bytes + w.rx_bytes,
                datagrams: sum.datagrams + w.tx_datagrams + w.rx_datagrams,
            })
    }
}
