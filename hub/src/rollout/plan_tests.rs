//! Plan text as an admin types it: what it means for fleets of several sizes, and the exact error
//! (naming the token) for what it refuses.

use super::plan::MAX_WAVES;
use super::*;

fn waves(text: &str) -> Waves {
    text.parse().expect("valid waves")
}

fn refused(text: &str) -> PlanError {
    text.parse::<Waves>().expect_err("refused")
}

/// Devices each wave reaches (cumulative) on a fleet of `n`.
fn reach(text: &str, n: usize) -> Vec<usize> {
    let waves = waves(text);
    (0..waves.count()).map(|k| waves.reach(k, n)).collect()
}

#[test]
fn the_default_plan_is_a_canary_a_sample_then_everyone_with_no_failure_tolerated() {
    let plan = Plan::default();
    assert_eq!(plan.waves.to_string(), "1%,10%,100%");
    assert_eq!(plan.max_failures.to_string(), "0");
    assert_eq!(plan.max_failures.allowed(10_000), 0);
    assert_eq!(plan.soak, Duration::from_secs(120));
    assert_eq!(reach("1%,10%,100%", 10_000), [100, 1_000, 10_000]);
}

#[test]
fn percentages_round_up_so_a_small_fleet_still_gets_a_canary() {
    assert_eq!(reach("1%,10%,100%", 3), [1, 1, 3], "1% of 3 is 1 device");
    assert_eq!(reach("1%,10%,100%", 1), [1, 1, 1]);
    assert_eq!(reach("1%,10%,100%", 101), [2, 11, 101]);
    assert_eq!(reach("1%,10%,100%", 0), [0, 0, 0]);
}

#[test]
fn counts_and_fractional_percentages_are_sizes_too() {
    assert_eq!(reach("1,100%", 5), [1, 5]);
    assert_eq!(reach("5,100%", 3), [3, 3], "a count is capped at the fleet");
    assert_eq!(reach("0.5%,12.25%,100%", 1_000), [5, 123, 1_000]);
    assert_eq!(
        reach(" 1% , 100% ", 10),
        [1, 10],
        "spaces around tokens are fine"
    );
    // Across kinds sizes resolve against the fleet; the controller skips a wave adding nobody.
    assert_eq!(reach("50,1%,100%", 1_000), [50, 10, 1_000]);
}

#[test]
fn plans_print_as_they_are_written() {
    for text in ["1%,10%,100%", "1,100%", "0.5%,12.25%,100%", "0.05%,2,100%"] {
        assert_eq!(waves(text).to_string(), text);
    }
    for text in ["0", "3", "5%", "0.5%"] {
        assert_eq!(text.parse::<MaxFailures>().unwrap().to_string(), text);
    }
}

#[test]
fn each_refusal_names_the_token_at_fault() {
    let bad = |t: &str| PlanError::BadToken(t.to_owned());
    assert_eq!(refused("ten%,100%"), bad("ten%"));
    assert_eq!(refused("1%,,100%"), bad(""));
    assert_eq!(refused(""), bad(""));
    assert_eq!(refused("-1,100%"), bad("-1"));
    assert_eq!(refused("1.%,100%"), bad("1.%"));
    assert_eq!(refused("1e2%"), bad("1e2%"));
    assert_eq!(refused("150%"), PlanError::PercentRange("150%".to_owned()));
    assert_eq!(
        refused("0.001%,100%"),
        PlanError::PercentRange("0.001%".to_owned())
    );
    assert_eq!(refused("0,100%"), PlanError::EmptyWave("0".to_owned()));
    assert_eq!(refused("0%,100%"), PlanError::EmptyWave("0%".to_owned()));
    assert_eq!(
        refused("10%,5%,100%"),
        PlanError::NotGrowing {
            token: "5%".to_owned(),
            earlier: "10%".to_owned()
        }
    );
    assert_eq!(
        refused("5,1%,5,100%"),
        PlanError::NotGrowing {
            token: "5".to_owned(),
            earlier: "5".to_owned()
        },
        "growth is checked against the last wave of the same kind"
    );
    assert_eq!(refused("1%,10%"), PlanError::LastNotAll("10%".to_owned()));
    assert_eq!(refused("1,100"), PlanError::LastNotAll("100".to_owned()));
    let many = (1..=MAX_WAVES + 1)
        .map(|k| format!("{k}"))
        .collect::<Vec<_>>();
    assert_eq!(
        refused(&many.join(",")),
        PlanError::TooManyWaves(MAX_WAVES + 1)
    );
    assert_eq!(
        refused("1%,10%").to_string(),
        "the last wave is \"10%\"; end with 100% so every target is reached (e.g. 10%,100%)"
    );
}

#[test]
fn max_failures_is_a_count_or_a_rate_that_may_be_reached_but_not_passed() {
    let max = |t: &str| t.parse::<MaxFailures>().expect("valid");
    assert_eq!(max("0").allowed(1_000), 0);
    assert_eq!(max("3").allowed(1), 3, "a count is a count");
    assert_eq!(max("5%").allowed(20), 1, "1 of 20 is 5%: allowed");
    assert_eq!(max("5%").allowed(19), 0, "1 of 19 passes 5%");
    assert_eq!(max("100%").allowed(7), 7);
    assert_eq!(
        "5 %".parse::<MaxFailures>(),
        Err(PlanError::BadToken("5 %".to_owned()))
    );
}

#[test]
fn a_stored_plan_reads_back_and_a_tampered_one_is_refused() {
    let plan = Plan {
        waves: waves("1,10%,100%"),
        max_failures: "2%".parse().unwrap(),
        soak: Duration::from_secs(300),
        on_drift: OnDrift::Report,
    };
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains("\"on_drift\":\"report\""), "{json}");
    assert!(
        json.contains("\"1,10%,100%\""),
        "waves stored as typed: {json}"
    );
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    let tampered = json.replace("1,10%,100%", "1,10%");
    assert!(serde_json::from_str::<Plan>(&tampered).is_err());
    let before_policies = json.replace(",\"on_drift\":\"report\"", "");
    let read = serde_json::from_str::<Plan>(&before_policies).unwrap();
    assert_eq!(
        read.on_drift,
        OnDrift::Reapply,
        "rollouts saved before re-apply"
    );
}

#[test]
fn on_drift_is_reapply_or_report() {
    assert_eq!("report".parse(), Ok(OnDrift::Report));
    assert_eq!("reapply".parse(), Ok(OnDrift::Reapply));
    assert_eq!(
        "ignore".parse::<OnDrift>().unwrap_err().to_string(),
        "on-drift \"ignore\": use reapply or report"
    );
    assert_eq!(Plan::default().on_drift, OnDrift::Reapply);
}
