//! Target names: sanitised, suffixed, cut to 64, unique in the cluster, never another
//! source's.

use super::*;

#[test]
fn names_are_sanitised_to_the_target_name_rules() {
    let mut ct = vm(154, "", "10.1.0.9");
    ct.guest_type = GuestType::Lxc;
    let plan = Fixture::new(vec![
        vm(150, "My Web__Server!!", "10.1.0.5"),
        vm(151, "--Über  café--", "10.1.0.6"),
        vm(152, "", "10.1.0.7"),
        vm(153, "!!!", "10.1.0.8"),
        ct,
        vm(155, "db.internal", "10.1.0.10"),
    ])
    .plan();
    let names = names(&plan);
    assert_eq!(names["qemu/150"], "my-web__server");
    assert_eq!(names["qemu/151"], "ber-caf");
    assert_eq!(names["qemu/152"], "vm-152");
    assert_eq!(names["qemu/153"], "vm-153");
    assert_eq!(names["lxc/154"], "ct-154");
    assert_eq!(names["qemu/155"], "db.internal");
}

#[test]
fn the_cluster_suffix_ends_every_name_and_long_names_are_cut_to_64() {
    let long = "x".repeat(80);
    let mut g = vm(150, &long, "10.1.0.5");
    g.tags = vec!["ssh".into(), "rdp".into()];
    let mut fx = Fixture::new(vec![g, vm(151, "web", "10.1.0.6")]);
    fx.cluster.name_suffix = ".lab".into();
    let plan = fx.plan();
    let names = names(&plan);
    assert_eq!(names["qemu/151"], "web.lab");
    assert_eq!(names["qemu/150"], format!("{}.lab", "x".repeat(60)));
    assert_eq!(names["qemu/150#rdp"], format!("{}-rdp.lab", "x".repeat(56)));
}

#[test]
fn a_name_shaped_like_a_target_id_is_refused() {
    let plan = Fixture::new(vec![vm(150, "t_0123456789abcdef01234567", "10.1.0.5")]).plan();
    assert!(added(&plan).is_empty());
    assert!(refusal(&plan, "qemu/150").contains("not a valid target name"));
}

#[test]
fn namesakes_in_the_cluster_the_lowest_key_keeps_the_name() {
    let mut ct = vm(170, "web", "10.1.0.7");
    ct.guest_type = GuestType::Lxc;
    let mut fx = Fixture::new(vec![
        vm(160, "web", "10.1.0.6"),
        vm(150, "WEB", "10.1.0.5"),
        ct,
    ]);
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![node("web", Some("10.20.0.11"), true)];
    let names = names(&fx.plan());
    assert_eq!(names["lxc/170"], "web");
    assert_eq!(names["node/web"], "web-node");
    assert_eq!(names["qemu/150"], "web-150");
    assert_eq!(names["qemu/160"], "web-160");
}

#[test]
fn a_namesake_whose_fallback_is_taken_too_is_refused() {
    let plan = Fixture::new(vec![
        vm(150, "web", "10.1.0.5"),
        vm(151, "web-152", "10.1.0.6"),
        vm(152, "web", "10.1.0.7"),
    ])
    .plan();
    assert_eq!(names(&plan).len(), 2);
    let reason = refusal(&plan, "qemu/152");
    assert!(
        reason.contains("`web` and `web-152` are taken by qemu/150 and qemu/151"),
        "{reason}"
    );
}

#[test]
fn a_name_another_sources_target_holds_is_refused_not_renamed() {
    let mut fx = Fixture::new(vec![vm(150, "web", "10.1.0.5"), vm(151, "db", "10.1.0.6")]);
    fx.taken = BTreeSet::from(["web".to_owned()]);
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/151"]);
    let reason = refusal(&plan, "qemu/150");
    assert!(
        reason.contains("the name `web` is taken by another target named `web`"),
        "{reason}"
    );
}
