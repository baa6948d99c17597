//! A sync against what the last one stored: the three-way merge, removals, refusals
//! audited once, and the order of changes.

use super::*;

fn update<'p>(plan: &'p Plan, key: &str) -> (&'p TargetRecord, &'p TargetRecord, Vec<String>) {
    plan.changes
        .iter()
        .find_map(|c| match c {
            Change::Update {
                before,
                after,
                fields,
            } if after.source_key.as_deref() == Some(key) => Some((
                before,
                after,
                fields.iter().map(|f| f.field.clone()).collect(),
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no update of {key}: {plan:#?}"))
}

fn removals(plan: &Plan) -> Vec<(String, String)> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove { target, reason } => {
                Some((target.source_key.clone().unwrap(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn refuses(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Refuse { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// A fixture whose first sync is stored.
fn synced(guests: Vec<Guest>) -> Fixture {
    let mut fx = Fixture::new(guests);
    fx.sync();
    fx.now += 300;
    fx
}

#[test]
fn a_second_sync_of_the_same_discovery_changes_nothing_and_writes_nothing() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5"), vm(151, "b", "10.1.0.6")]);
    let plan = fx.sync();
    assert_eq!(plan.changes, Vec::new());
    assert_eq!(plan.unchanged, 2);
    // Not written: the seen time is the last change's.
    assert_eq!(Seen::of(fx.stored("qemu/150")).unwrap().seen_at, NOW);
}

#[test]
fn an_address_changed_in_proxmox_is_taken_with_its_zone() {
    let mut fx = synced(vec![vm(500, "a", "10.1.0.5")]);
    fx.found.guests[0].addresses = vec![address("10.20.0.5", AddressOrigin::CloudInit)];
    let plan = fx.sync();
    let (before, after, fields) = update(&plan, "qemu/500");
    assert_eq!(fields, vec!["address", "zone"]);
    assert_eq!(after.id, before.id);
    assert_eq!(after.address, "10.20.0.5:22");
    assert_eq!(after.zone.as_deref(), Some("MGMT"));
    assert_eq!(after.updated_at, fx.now as i64);
    assert_eq!(after.created_at, before.created_at);
    let Change::Update { fields, .. } = &plan.changes[0] else {
        panic!()
    };
    assert_eq!(fields[0].before.as_deref(), Some("10.1.0.5:22"));
    assert_eq!(fields[0].after.as_deref(), Some("10.20.0.5:22"));
}

#[test]
fn an_admins_service_override_survives_a_sync_and_a_proxmox_address_change() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    let t = fx.stored("qemu/150");
    t.service = Some("rdp".into());
    t.max_session_secs = 60;
    assert_eq!(overrides(fx.stored("qemu/150")), vec!["service"]);
    assert!(fx.sync().changes.is_empty(), "an override is no change");

    fx.found.guests[0].addresses = vec![address("10.1.0.9", AddressOrigin::CloudInit)];
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/150");
    assert_eq!(fields, vec!["address"]);
    assert_eq!(after.service.as_deref(), Some("rdp"));
    assert_eq!(after.address, "10.1.0.9:22");
    assert_eq!(
        after.max_session_secs, 60,
        "the target's own fields are kept"
    );
    assert_eq!(overrides(after), vec!["service"]);
}

#[test]
fn an_admins_address_override_survives_and_a_proxmox_change_is_only_seen() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.stored("qemu/150").address = "10.1.0.7:2222".into();
    assert!(fx.sync().changes.is_empty());

    fx.found.guests[0].addresses = vec![address("10.1.0.9", AddressOrigin::CloudInit)];
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/150");
    assert_eq!(fields, vec!["discovered.address"]);
    assert_eq!(after.address, "10.1.0.7:2222");
    assert_eq!(Seen::of(after).unwrap().address, "10.1.0.9:22");
    assert_eq!(overrides(after), vec!["address"]);
}

#[test]
fn the_zone_follows_an_overridden_address() {
    let mut fx = synced(vec![vm(500, "a", "10.1.0.5")]);
    let t = fx.stored("qemu/500");
    t.address = "10.20.0.5:22".into();
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/500");
    assert_eq!(fields, vec!["zone"]);
    assert_eq!(after.zone.as_deref(), Some("MGMT"));
    assert_eq!(overrides(after), vec!["address"], "the zone is no override");
    assert!(fx.sync().changes.is_empty());
}

#[test]
fn an_overridden_address_the_policy_refuses_removes_the_target_and_is_refused() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.stored("qemu/150").address = "10.2.0.5:22".into();
    let plan = fx.sync();
    assert_eq!(
        removals(&plan),
        vec![("qemu/150".to_owned(), "refused".to_owned())]
    );
    let reason = refusal(&plan, "qemu/150");
    assert!(reason.contains("VMID 150 puts it in zone LAB"), "{reason}");
    assert!(
        reason.contains("an admin changed the target's address"),
        "{reason}"
    );
    assert!(matches!(plan.changes[0], Change::Remove { .. }));
}

#[test]
fn an_overridden_host_name_keeps_the_zone_of_the_found_address() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.stored("qemu/150").address = "web.lab.example:22".into();
    assert!(fx.sync().changes.is_empty());
    assert_eq!(fx.stored("qemu/150").zone.as_deref(), Some("LAB"));
}

#[test]
fn an_admins_name_override_survives_and_its_name_stays_taken() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.stored("qemu/150").name = "b".into();
    assert_eq!(overrides(fx.stored("qemu/150")), vec!["name"]);
    fx.found.guests.push(vm(151, "b", "10.1.0.6"));
    let plan = fx.sync();
    assert_eq!(names(&plan)["qemu/151"], "b-151");
    assert_eq!(plan.unchanged, 1);
    assert_eq!(fx.stored("qemu/150").name, "b");
}

#[test]
fn a_stored_namesake_keeps_its_name_against_a_new_guest() {
    let mut fx = synced(vec![vm(160, "web", "10.1.0.6")]);
    fx.found.guests.push(vm(150, "web", "10.1.0.5"));
    let plan = fx.sync();
    assert_eq!(plan.unchanged, 1);
    assert_eq!(names(&plan)["qemu/150"], "web-150");
}

#[test]
fn available_follows_proxmox_and_status_is_seen() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.found.guests[0].status = "stopped".into();
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/150");
    assert_eq!(fields, vec!["available", "discovered.status"]);
    assert!(!after.available);
}

#[test]
fn a_stopped_guest_without_an_address_keeps_the_one_it_had() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.addresses = vec![address("10.1.0.5", AddressOrigin::GuestAgent)];
    let mut fx = synced(vec![g]);
    fx.found.guests[0].status = "stopped".into();
    fx.found.guests[0].addresses.clear();
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/150");
    assert_eq!(fields, vec!["available", "discovered.status"]);
    assert_eq!(after.address, "10.1.0.5:22");
    assert!(plan.refused.is_empty());
}

#[test]
fn a_stopped_guest_whose_last_address_is_refused_is_refused_for_want_of_an_address() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.found.guests[0].status = "stopped".into();
    fx.found.guests[0].addresses.clear();
    fx.found.guests[0].tags = vec!["prod".into()];
    let plan = fx.sync();
    assert_eq!(
        removals(&plan),
        vec![("qemu/150".to_owned(), "refused".to_owned())]
    );
    assert!(refusal(&plan, "qemu/150").ends_with("(it is not running: its agent cannot be asked)"));
    assert!(fx.sync().changes.is_empty(), "the next sync says the same");
}

#[test]
fn a_guest_moved_to_another_node_is_a_seen_change() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    fx.found.guests[0].node = "pve2".into();
    let plan = fx.sync();
    let (_, _, fields) = update(&plan, "qemu/150");
    assert_eq!(fields, vec!["discovered.node"]);
}

#[test]
fn a_gone_guest_and_a_dropped_service_are_removed_as_gone() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["ssh".into(), "rdp".into()];
    let mut fx = synced(vec![g, vm(151, "b", "10.1.0.6")]);
    fx.found.guests.remove(1);
    fx.found.guests[0].tags = vec!["ssh".into()];
    let plan = fx.sync();
    assert_eq!(
        removals(&plan),
        vec![
            ("qemu/150#rdp".to_owned(), "gone".to_owned()),
            ("qemu/151".to_owned(), "gone".to_owned()),
        ]
    );
    assert_eq!(update(&plan, "qemu/150").2, vec!["tags"]);
}

#[test]
fn a_guest_that_becomes_refused_is_removed_and_its_refusal_audited() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["ssh".into(), "rdp".into()];
    let mut fx = synced(vec![g]);
    fx.found.guests[0].tags.push("prod".into());
    let plan = fx.sync();
    assert_eq!(
        removals(&plan),
        vec![
            ("qemu/150".to_owned(), "refused".to_owned()),
            ("qemu/150#rdp".to_owned(), "refused".to_owned()),
        ]
    );
    assert_eq!(refuses(&plan), vec!["qemu/150"]);
    assert!(fx.current.is_empty());
}

#[test]
fn a_refusal_is_audited_once_and_again_when_its_reason_changes() {
    let mut fx = Fixture::new(vec![vm(150, "a", "192.168.1.5")]);
    assert_eq!(refuses(&fx.sync()), vec!["qemu/150"]);

    let plan = fx.sync();
    assert!(
        plan.changes.is_empty(),
        "the same reason is not audited again"
    );
    assert_eq!(plan.refused.len(), 1, "but it still holds");

    fx.found.guests[0].addresses = vec![address("192.168.1.6", AddressOrigin::CloudInit)];
    let plan = fx.sync();
    assert_eq!(refuses(&plan), vec!["qemu/150"]);
    assert!(refusal(&plan, "qemu/150").contains("192.168.1.6"));

    fx.found.guests[0].addresses = vec![address("10.1.0.5", AddressOrigin::CloudInit)];
    let plan = fx.sync();
    assert!(
        plan.refused.is_empty(),
        "a guest accepted is no longer refused"
    );
    assert_eq!(added(&plan).len(), 1);
}

#[test]
fn changes_come_removals_first_then_updates_then_additions_then_refusals_by_key() {
    let mut fx = synced(vec![
        vm(150, "a", "10.1.0.5"),
        vm(151, "b", "10.1.0.6"),
        vm(152, "c", "10.1.0.7"),
        vm(153, "d", "10.1.0.8"),
    ]);
    fx.found.guests = vec![
        vm(199, "x", "192.168.0.1"),
        vm(153, "d", "10.1.0.18"),
        vm(160, "e", "10.1.0.9"),
        vm(151, "b", "10.1.0.16"),
        vm(198, "y", "192.168.0.2"),
        vm(110, "f", "10.1.0.10"),
    ];
    let plan = fx.plan();
    let order: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::Remove { target, .. } => ("remove", target.source_key.as_deref().unwrap()),
            Change::Update { after, .. } => ("update", after.source_key.as_deref().unwrap()),
            Change::Add(t) => ("add", t.source_key.as_deref().unwrap()),
            Change::Refuse { key, .. } => ("refuse", key.as_str()),
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("remove", "qemu/150"),
            ("remove", "qemu/152"),
            ("update", "qemu/151"),
            ("update", "qemu/153"),
            ("add", "qemu/110"),
            ("add", "qemu/160"),
            ("refuse", "qemu/198"),
            ("refuse", "qemu/199"),
        ]
    );

    // The same discovery in another order plans the same (but the new ids).
    let first = without_ids(plan);
    fx.found.guests.reverse();
    assert_eq!(without_ids(fx.plan()), first);
}

fn without_ids(mut plan: Plan) -> Plan {
    for change in &mut plan.changes {
        if let Change::Add(t) = change {
            t.id.clear();
        }
    }
    plan
}

#[test]
fn an_update_giving_up_a_name_goes_before_the_one_taking_it() {
    let mut fx = synced(vec![vm(150, "web", "10.1.0.5"), vm(160, "app", "10.1.0.6")]);
    fx.found.guests[0].name = "app".into();
    fx.found.guests[1].name = "db".into();
    let plan = fx.sync();
    let renames: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::Update { before, after, .. } => (before.name.as_str(), after.name.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(renames, vec![("app", "db"), ("web", "app")]);
}

#[test]
fn overrides_are_none_without_what_the_last_sync_saw() {
    let mut fx = synced(vec![vm(150, "a", "10.1.0.5")]);
    let t = fx.stored("qemu/150");
    t.discovered = None;
    t.name = "other".into();
    assert!(overrides(t).is_empty());
    // And the next sync, unable to tell, takes what Proxmox says and records it.
    let plan = fx.sync();
    let (_, after, fields) = update(&plan, "qemu/150");
    assert_eq!(after.name, "a");
    assert_eq!(fields[0], "name");
    assert!(Seen::of(after).is_some());
}
