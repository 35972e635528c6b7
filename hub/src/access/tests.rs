use super::*;

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn roles_parse_by_name_and_order_by_power() {
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    assert_eq!(
        "root".parse::<Role>(),
        Err(AccessError::UnknownRole("root".into()))
    );
    assert!("Admin".parse::<Role>().is_err());
}

#[test]
fn a_scope_names_at_least_one_valid_group_or_tag() {
    assert_eq!(Scope::new(&[], &[]), Err(AccessError::EmptyScope));
    let bad = Scope::new(&strings(&["a,b"]), &[]).unwrap_err();
    assert!(bad.to_string().contains("group \"a,b\""), "{bad}");
    let scope = Scope::new(&strings(&[" berlin "]), &strings(&["pos"])).unwrap();
    assert_eq!(scope.groups(), ["berlin"]);
    assert_eq!(scope.to_string(), "groups: berlin; tags: pos");
}

#[test]
fn a_selection_is_inside_a_scope_only_by_its_groups_and_tags() {
    let scope = Scope::new(&strings(&["Berlin"]), &strings(&["pos"])).unwrap();
    let inside = Selector {
        groups: strings(&["berlin"]),
        tags: strings(&["POS"]),
        endpoints: vec![4],
    };
    assert_eq!(scope.outside_of(&inside), None);
    let other_group = Selector {
        groups: strings(&["berlin", "paris"]),
        ..Selector::default()
    };
    assert_eq!(
        scope.outside_of(&other_group).as_deref(),
        Some("group \"paris\"")
    );
    let other_tag = Selector {
        tags: strings(&["kiosk"]),
        ..Selector::default()
    };
    assert_eq!(
        scope.outside_of(&other_tag).as_deref(),
        Some("tag \"kiosk\"")
    );
}

#[test]
fn credential_names_are_short_and_printable() {
    assert_eq!(credential_name(" ci "), Ok("ci".into()));
    assert_eq!(credential_name(""), Err(AccessError::BadName));
    assert_eq!(credential_name("a\u{1b}[2J"), Err(AccessError::BadName));
    assert_eq!(credential_name(&"x".repeat(65)), Err(AccessError::BadName));
}
