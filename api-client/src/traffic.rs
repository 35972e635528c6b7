//! What devices cost on their links, by class and budget period, and the byte budgets set on the
//! fleet, a group or one device.

use serde::{Deserialize, Serialize};

/// A device's bytes in the current budget period (`GET /api/endpoints/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// The budget period: `month` (calendar months, UTC) or a span such as `90s`.
    pub period: String,
    /// When the current period began, RFC 3339.
    pub period_start: Option<String>,
    /// Bytes this period, every class both ways: what the budget counts.
    pub used: u64,
    /// The budget that applies, if any.
    pub budget: Option<AppliedBudget>,
    /// `budget` while background transfers (images) are held back by the budget; interactive
    /// calls never are. (A transfer window is kept by the device, on its own clock: its stacks
    /// show `deferred: window …` while it is closed.)
    pub deferred: Option<String>,
    /// The transfer window that applies (`HH:MM-HH:MM`, device time), if any.
    #[serde(default)]
    pub window: Option<String>,
    /// Bytes by class: `control` (check-ins, control messages, packet overhead), `interactive`
    /// (Docker calls), `images`, `snapshots`, `stacks`. They sum to the wire's UDP payload.
    pub classes: Vec<ClassBytes>,
    /// Bytes in each of the last twelve periods before this one, newest first.
    #[serde(default)]
    pub history: Vec<PeriodBytes>,
}

/// A past period's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodBytes {
    /// When the period began, RFC 3339.
    pub period_start: Option<String>,
    /// Bytes, every class both ways.
    pub used: u64,
}

/// One class's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassBytes {
    /// The class.
    pub class: String,
    /// Device → hub.
    pub up: u64,
    /// Hub → device.
    pub down: u64,
}

/// The budget a device is held to, and where it was set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedBudget {
    /// Bytes a period.
    pub bytes: u64,
    /// Where it was set: `the fleet`, `group NAME` or `endpoint ID`.
    pub set_on: String,
}

/// A budget as `GET /api/budgets` lists it and `PUT /api/budgets` sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// `fleet` (every device without a more specific budget), `group` (each device of the
    /// group without its own) or `endpoint`.
    pub scope: String,
    /// The group's name or the endpoint's id; none for the fleet.
    #[serde(default)]
    pub name: Option<String>,
    /// Bytes a period, per device.
    pub bytes: u64,
}

/// `DELETE /api/budgets`: which budget to remove (answered with itself once removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetTarget {
    /// `fleet`, `group` or `endpoint`.
    pub scope: String,
    /// The group's name or the endpoint's id; none for the fleet.
    #[serde(default)]
    pub name: Option<String>,
}

impl crate::ApiClient {
    /// `GET /api/budgets`: every budget set.
    pub async fn budgets(&self) -> Result<Vec<Budget>, crate::ApiError> {
        self.call(reqwest::Method::GET, "/api/budgets").await
    }

    /// `PUT /api/budgets`: set a budget.
    pub async fn set_budget(&self, budget: &Budget) -> Result<Budget, crate::ApiError> {
        let path = "/api/budgets";
        self.send(path, self.request(reqwest::Method::PUT, path).json(budget))
            .await
    }

    /// `DELETE /api/budgets`: remove a budget.
    pub async fn remove_budget(
        &self,
        target: &BudgetTarget,
    ) -> Result<BudgetTarget, crate::ApiError> {
        let path = "/api/budgets";
        self.send(
            path,
            self.request(reqwest::Method::DELETE, path).json(target),
        )
        .await
    }
}

/// A transfer window as `GET /api/windows` lists it and `PUT /api/windows` sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `fleet`, `group` or `endpoint`, as for a [`Budget`].
    pub scope: String,
    /// The group's name or the endpoint's id; none for the fleet.
    #[serde(default)]
    pub name: Option<String>,
    /// `HH:MM-HH:MM` on the device's clock, such as `01:00-05:00` (over midnight when the end
    /// is earlier).
    pub window: String,
}

impl crate::ApiClient {
    /// `GET /api/windows`: every transfer window set.
    pub async fn windows(&self) -> Result<Vec<Window>, crate::ApiError> {
        self.call(reqwest::Method::GET, "/api/windows").await
    }

    /// `PUT /api/windows`: set a transfer window.
    pub async fn set_window(&self, window: &Window) -> Result<Window, crate::ApiError> {
        let path = "/api/windows";
        self.send(path, self.request(reqwest::Method::PUT, path).json(window))
            .await
    }

    /// `DELETE /api/windows`: remove a transfer window.
    pub async fn remove_window(
        &self,
        target: &BudgetTarget,
    ) -> Result<BudgetTarget, crate::ApiError> {
        let path = "/api/windows";
        self.send(
            path,
            self.request(reqwest::Method::DELETE, path).json(target),
        )
        .await
    }
}
