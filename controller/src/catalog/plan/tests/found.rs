//! What a guest or node becomes: its services, address, zone and availability, or a
//! refusal that says why.

use super::*;

#[test]
fn a_running_vm_becomes_an_ssh_target_in_the_zone_of_its_address() {
    let plan = Fixture::new(vec![vm(150, "Web", "10.1.0.5")]).plan();
    assert_eq!(plan.unchanged, 0);
    assert!(plan.refused.is_empty());
    let t = added_key(&plan, "qemu/150");
    assert!(crate::ids::looks_like(crate::ids::IdKind::Target, &t.id));
    assert_eq!(t.name, "web");
    assert_eq!(t.address, "10.1.0.5:22");
    assert_eq!(t.zone.as_deref(), Some("LAB"));
    assert_eq!(t.service.as_deref(), Some("ssh"));
    assert_eq!(t.vmid, Some(150));
    assert_eq!(t.source.as_deref(), Some("lab"));
    assert!(t.available);
    assert_eq!((t.max_session_secs, t.connection_limit), (3600, 0));
    assert!(t.ssh_host_keys.is_empty() && t.vault_ssh_mount.is_none());
    assert_eq!((t.created_at, t.updated_at), (NOW as i64, NOW as i64));
    let seen = Seen::of(t).unwrap();
    assert_eq!(
        seen,
        Seen {
            name: "web".into(),
            address: "10.1.0.5:22".into(),
            zone: "LAB".into(),
            service: Some("ssh".into()),
            vmid: Some(150),
            tags: Vec::new(),
            pool: None,
            node: Some("pve1".into()),
            guest_type: "qemu".into(),
            status: "running".into(),
            address_origin: Some("cloud-init".into()),
            available: true,
            seen_at: NOW,
        }
    );
}

#[test]
fn a_container_is_keyed_lxc_and_keeps_its_tags_and_pool() {
    let mut ct = vm(151, "db", "10.1.0.6");
    ct.guest_type = GuestType::Lxc;
    ct.tags = vec!["lab".into(), "backup".into()];
    ct.pool = Some("lab-pool".into());
    ct.addresses = vec![address("10.1.0.6", AddressOrigin::LxcConfig)];
    let plan = Fixture::new(vec![ct]).plan();
    let t = added_key(&plan, "lxc/151");
    assert_eq!(t.tags, vec!["lab", "backup"]);
    assert_eq!(t.pool.as_deref(), Some("lab-pool"));
    assert_eq!(Seen::of(t).unwrap().guest_type, "lxc");
}

#[test]
fn tagged_services_give_one_target_each_in_tag_order() {
    let mut g = vm(150, "win", "10.1.0.5");
    g.tags = vec!["rdp".into(), "lab".into(), "ssh".into(), "rdp".into()];
    let plan = Fixture::new(vec![g]).plan();
    let first = added_key(&plan, "qemu/150");
    assert_eq!(first.service.as_deref(), Some("rdp"));
    assert_eq!(first.address, "10.1.0.5:3389");
    assert_eq!(first.name, "win");
    let second = added_key(&plan, "qemu/150#ssh");
    assert_eq!(second.service.as_deref(), Some("ssh"));
    assert_eq!(second.address, "10.1.0.5:22");
    assert_eq!(second.name, "win-ssh");
    assert_eq!(added(&plan).len(), 2);
}

#[test]
fn a_service_tag_needs_the_cluster_prefix() {
    let mut fx = Fixture::new(vec![vm(150, "win", "10.1.0.5")]);
    fx.found.guests[0].tags = vec!["rdp".into(), "svc-rdp".into()];
    fx.cluster.service_tag_prefix = "svc-".into();
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("rdp"));
}

#[test]
fn untagged_guests_take_their_zones_default_services_else_the_star() {
    let mut fx = Fixture::new(vec![vm(150, "a", "10.1.0.5"), vm(250, "b", "10.2.0.5")]);
    fx.cluster.default_services = BTreeMap::from([
        ("*".to_owned(), vec!["ssh".to_owned()]),
        ("PROD".to_owned(), vec!["rdp".to_owned(), "ssh".to_owned()]),
    ]);
    let plan = fx.plan();
    assert_eq!(
        only_key(&plan),
        vec!["qemu/150", "qemu/250", "qemu/250#ssh"]
    );
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("ssh"));
    assert_eq!(added_key(&plan, "qemu/250").service.as_deref(), Some("rdp"));
}

#[test]
fn services_the_policy_does_not_know_are_skipped() {
    let mut fx = Fixture::new(vec![vm(150, "a", "10.1.0.5")]);
    fx.found.guests[0].tags = vec!["telnet".into()];
    fx.cluster.default_services =
        BTreeMap::from([("*".to_owned(), vec!["telnet".to_owned(), "ssh".to_owned()])]);
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("ssh"));
}

#[test]
fn a_guest_with_no_service_is_refused() {
    let mut fx = Fixture::new(vec![vm(250, "b", "10.2.0.5"), vm(150, "a", "10.1.0.5")]);
    fx.cluster.default_services = BTreeMap::from([
        ("*".to_owned(), vec!["ssh".to_owned()]),
        ("PROD".to_owned(), Vec::new()),
    ]);
    let plan = fx.plan();
    assert!(refusal(&plan, "qemu/250").starts_with("no service"));
    assert_eq!(only_key(&plan), vec!["qemu/150"]);

    fx.cluster.default_services = BTreeMap::from([("*".to_owned(), vec!["telnet".to_owned()])]);
    let reason = refusal(&fx.plan(), "qemu/150");
    assert!(
        reason.contains("(telnet) are not in the policy"),
        "{reason}"
    );
}

#[test]
fn a_service_of_any_port_is_refused_for_want_of_a_single_port() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["ssh".into(), "anything".into()];
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert!(refusal(&plan, "qemu/150#anything").contains("has no single port"));
}

#[test]
fn an_address_in_no_zone_is_refused() {
    let plan = Fixture::new(vec![vm(150, "a", "192.168.1.5")]).plan();
    assert!(added(&plan).is_empty());
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "the address 192.168.1.5 is in no zone"
    );
}

#[test]
fn a_tag_of_another_zone_is_refused_not_remapped() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["prod".into()];
    let plan = Fixture::new(vec![g]).plan();
    assert!(added(&plan).is_empty(), "no target in any zone");
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "the target's tag `prod` puts it in zone PROD, but its address 10.1.0.5 is in zone LAB"
    );
    let Some(Change::Refuse {
        vmid,
        node,
        address,
        address_origin,
        name,
        ..
    }) = plan.changes.first()
    else {
        panic!("{plan:#?}")
    };
    assert_eq!((name.as_str(), *vmid), ("a", Some(150)));
    assert_eq!(node.as_deref(), Some("pve1"));
    assert_eq!(address.as_deref(), Some("10.1.0.5"));
    assert_eq!(address_origin.as_deref(), Some("cloud-init"));
}

#[test]
fn a_vmid_range_that_disagrees_with_the_address_is_refused() {
    let plan = Fixture::new(vec![vm(250, "a", "10.1.0.5")]).plan();
    assert!(added(&plan).is_empty());
    assert!(refusal(&plan, "qemu/250").contains("VMID 250 puts it in zone PROD"));
}

#[test]
fn a_pool_that_disagrees_with_the_address_is_refused() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.pool = Some("prod-pool".into());
    let plan = Fixture::new(vec![g]).plan();
    assert!(refusal(&plan, "qemu/150").contains("pool `prod-pool` puts it in zone PROD"));
}

#[test]
fn a_microsegment_that_disagrees_with_the_address_is_refused() {
    let plan = Fixture::new(vec![vm(4000, "a", "10.4.1.5"), vm(4100, "b", "10.4.1.6")]).plan();
    assert!(refusal(&plan, "qemu/4000").contains("microsegment"));
    assert_eq!(added_key(&plan, "qemu/4100").zone.as_deref(), Some("APPS"));
}

#[test]
fn the_first_address_whose_zone_checks_pass_is_used() {
    let mut g = vm(150, "a", "192.168.1.5");
    g.addresses
        .push(address("10.2.0.5", AddressOrigin::CloudInit));
    g.addresses
        .push(address("10.1.0.5", AddressOrigin::CloudInit));
    g.addresses
        .push(address("10.1.0.6", AddressOrigin::CloudInit));
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(added_key(&plan, "qemu/150").address, "10.1.0.5:22");
}

#[test]
fn every_address_refused_says_why_for_each() {
    let mut g = vm(150, "a", "192.168.1.5");
    g.addresses
        .push(address("10.2.0.5", AddressOrigin::CloudInit));
    let reason = refusal(&Fixture::new(vec![g]).plan(), "qemu/150");
    assert!(reason.starts_with("none of its 2 addresses is usable: the address 192.168.1.5 is in no zone; the target's VMID 150"), "{reason}");
}

#[test]
fn an_agent_address_is_refused_in_a_zone_without_the_setting() {
    let mut g = vm(250, "a", "10.2.0.5");
    g.addresses = vec![address("10.2.0.5", AddressOrigin::GuestAgent)];
    let plan = Fixture::new(vec![g]).plan();
    assert!(added(&plan).is_empty());
    let reason = refusal(&plan, "qemu/250");
    assert!(
        reason.contains("reported by the guest (guest-agent)"),
        "{reason}"
    );
    assert!(reason.contains("zone PROD does not accept guest-reported addresses"));
    assert!(reason.contains("guest_reported_addresses = true"));
}

#[test]
fn an_agent_address_is_accepted_in_a_zone_with_the_setting() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.addresses = vec![address("10.1.0.5", AddressOrigin::GuestAgent)];
    let plan = Fixture::new(vec![g]).plan();
    let t = added_key(&plan, "qemu/150");
    assert_eq!(t.zone.as_deref(), Some("LAB"));
    assert_eq!(
        Seen::of(t).unwrap().address_origin.as_deref(),
        Some("guest-agent")
    );
}

#[test]
fn a_guest_reported_address_is_skipped_for_a_configured_one() {
    let mut g = vm(250, "a", "10.2.0.9");
    g.addresses = vec![
        address("10.2.0.9", AddressOrigin::LxcInterfaces),
        address("10.2.0.5", AddressOrigin::LxcConfig),
    ];
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(added_key(&plan, "qemu/250").address, "10.2.0.5:22");
}

#[test]
fn a_guest_without_an_address_is_refused() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.addresses.clear();
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "no address: give it a cloud-init ipconfig0 / lxc net0 ip=, or enable the agent"
    );
}

#[test]
fn an_ipv6_address_is_written_in_brackets_and_a_mapped_ipv4_as_ipv4() {
    let plan = Fixture::new(vec![
        vm(150, "a", "fd00:1::5"),
        vm(151, "b", "::ffff:10.1.0.7"),
    ])
    .plan();
    assert_eq!(added_key(&plan, "qemu/150").address, "[fd00:1::5]:22");
    assert_eq!(added_key(&plan, "qemu/151").address, "10.1.0.7:22");
}

#[test]
fn templates_and_guests_not_running_are_unavailable() {
    let mut template = vm(150, "tpl", "10.1.0.5");
    template.template = true;
    template.status = "stopped".into();
    let mut stopped = vm(151, "off", "10.1.0.6");
    stopped.status = "stopped".into();
    let mut paused = vm(152, "paused", "10.1.0.7");
    paused.status = "paused".into();
    let plan = Fixture::new(vec![template, stopped, paused, vm(153, "on", "10.1.0.8")]).plan();
    let t = added_key(&plan, "qemu/150");
    assert!(!t.available);
    assert_eq!(Seen::of(t).unwrap().status, "template");
    assert!(!added_key(&plan, "qemu/151").available);
    assert!(!added_key(&plan, "qemu/152").available);
    assert!(added_key(&plan, "qemu/153").available);
}

#[test]
fn nodes_become_proxmox_api_targets_on_8006() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![
        node("pve1", Some("10.20.0.11"), true),
        node("pve2", Some("10.20.0.12"), false),
    ];
    let plan = fx.plan();
    let t = added_key(&plan, "node/pve1");
    assert_eq!(t.name, "pve1");
    assert_eq!(t.address, "10.20.0.11:8006");
    assert_eq!(t.zone.as_deref(), Some("MGMT"));
    assert_eq!(t.service.as_deref(), Some("proxmox-api"));
    assert_eq!(t.vmid, None);
    assert!(t.available);
    let seen = Seen::of(t).unwrap();
    assert_eq!(
        (seen.guest_type.as_str(), seen.status.as_str()),
        ("node", "online")
    );
    assert_eq!(seen.address_origin.as_deref(), Some("cluster-status"));
    assert!(!added_key(&plan, "node/pve2").available);

    fx.cluster.node_targets = false;
    assert!(fx.plan().changes.is_empty());
}

#[test]
fn a_node_without_an_address_is_refused() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![node("pve1", None, true)];
    assert_eq!(
        refusal(&fx.plan(), "node/pve1"),
        "no address: give the discovery token Sys.Audit for /cluster/status"
    );
}

#[test]
fn nodes_are_refused_when_the_policy_has_no_proxmox_api_service() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.policy = Policy::parse(&POLICY.replace("proxmox-api", "pve-web")).unwrap();
    fx.found.nodes = vec![node("pve1", Some("10.20.0.11"), true)];
    let reason = refusal(&fx.plan(), "node/pve1");
    assert!(
        reason.starts_with("the policy has no service `proxmox-api`"),
        "{reason}"
    );
}
