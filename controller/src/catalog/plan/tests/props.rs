//! Properties over arbitrary discoveries: the plan never panics, every guest ends up a
//! target or a refusal, names stay unique and valid, and a sync is idempotent.

use proptest::prelude::*;

use super::*;

const IPS: [&str; 10] = [
    "10.1.0.5",
    "10.1.0.6",
    "10.2.0.5",
    "10.4.0.7",
    "10.4.1.7",
    "10.20.0.9",
    "192.168.1.1",
    "fd00:1::7",
    "::ffff:10.1.0.8",
    "10.9.0.1",
];
const TAGS: [&str; 7] = ["ssh", "rdp", "anything", "lab", "prod", "proxmox-api", "x"];
const ORIGINS: [AddressOrigin; 5] = [
    AddressOrigin::CloudInit,
    AddressOrigin::LxcConfig,
    AddressOrigin::SdnIpam,
    AddressOrigin::GuestAgent,
    AddressOrigin::LxcInterfaces,
];

fn vmid() -> impl Strategy<Value = u32> {
    prop_oneof![
        100u32..106,
        200u32..206,
        4000u32..4003,
        4100u32..4103,
        500u32..503
    ]
}

fn guest_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_owned()),
        Just("web-150".to_owned()),
        Just(String::new()),
        "[A-Za-z0-9 _.!-]{0,12}",
        "\\PC{0,70}",
    ]
}

fn found_address() -> impl Strategy<Value = FoundAddress> {
    (0..IPS.len(), 0..ORIGINS.len()).prop_map(|(ip, origin)| address(IPS[ip], ORIGINS[origin]))
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        any::<bool>(),
        guest_name(),
        prop_oneof![Just("running"), Just("stopped"), Just("paused")],
        any::<bool>(),
        proptest::sample::subsequence(TAGS.to_vec(), 0..4),
        prop_oneof![Just(None), Just(Some("lab-pool")), Just(Some("prod-pool"))],
        proptest::collection::vec(found_address(), 0..3),
    )
        .prop_map(
            |(lxc, name, status, template, tags, pool, addresses)| Guest {
                guest_type: if lxc { GuestType::Lxc } else { GuestType::Qemu },
                vmid: 0,
                name,
                node: "pve1".into(),
                status: status.into(),
                template,
                tags: tags.into_iter().map(str::to_owned).collect(),
                pool: pool.map(str::to_owned),
                addresses,
            },
        )
}

fn fixture() -> impl Strategy<Value = Fixture> {
    (
        proptest::collection::btree_map(vmid(), guest(), 0..10),
        proptest::collection::vec(
            (
                "[a-z]{1,4}",
                proptest::option::of(0..IPS.len()),
                any::<bool>(),
            ),
            0..3,
        ),
        proptest::sample::subsequence(vec!["web", "vm-100", "a"], 0..3),
        proptest::option::of(Just(".lab")),
    )
        .prop_map(|(guests, nodes, taken, suffix)| {
            let guests = guests
                .into_iter()
                .map(|(vmid, g)| Guest { vmid, ..g })
                .collect();
            let mut fx = Fixture::new(guests);
            fx.cluster.node_targets = true;
            fx.found.nodes = nodes
                .into_iter()
                .map(|(name, ip, online)| node(&name, ip.map(|i| IPS[i]), online))
                .collect();
            fx.taken = taken.into_iter().map(str::to_owned).collect();
            fx.cluster.name_suffix = suffix.unwrap_or_default().to_owned();
            fx
        })
}

fn guest_keys(fx: &Fixture) -> Vec<String> {
    let mut keys: Vec<String> = fx
        .found
        .guests
        .iter()
        .map(|g| format!("{}/{}", g.guest_type.as_str(), g.vmid))
        .chain(fx.found.nodes.iter().map(|n| format!("node/{}", n.name)))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

proptest! {
    #[test]
    fn a_sync_is_total_unique_and_idempotent(mut fx in fixture()) {
        let first = fx.sync();
        let targets = fx.current.clone();

        // Every guest and node is a target or refused (under its own key or a service's).
        for key in guest_keys(&fx) {
            let placed = targets.iter().any(|t| {
                crate::catalog::plan::found::guest_key(t.source_key.as_deref().unwrap()) == key
            }) || first.refused.keys().any(|k| crate::catalog::plan::found::guest_key(k) == key);
            prop_assert!(placed, "{key} is neither a target nor refused");
        }
        // Names are unique, valid, and none another source's.
        let names: BTreeSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        prop_assert_eq!(names.len(), targets.len());
        for t in &targets {
            prop_assert!(crate::catalog::plan::names::is_valid(&t.name), "{}", t.name);
            prop_assert!(!fx.taken.contains(&t.name));
            prop_assert!(!first.refused.contains_key(t.source_key.as_deref().unwrap()));
        }

        // The same discovery again: nothing to do.
        fx.now += 300;
        let again = fx.sync();
        prop_assert_eq!(&again.changes, &Vec::new());
        prop_assert_eq!(again.unchanged as usize, targets.len());
        prop_assert_eq!(&again.refused, &first.refused);
    }

    #[test]
    fn a_sync_after_any_change_is_idempotent(mut fx in fixture(), next in fixture()) {
        fx.sync();
        // A guest not running and without an address keeps the address it last had while
        // its target stays; if the target is refused for another reason, the next sync
        // knows no address and says so once more: that takes one sync more to settle.
        let settles_late = next
            .found
            .guests
            .iter()
            .any(|g| g.addresses.is_empty() && (g.status != "running" || g.template));
        fx.found = next.found;
        fx.now += 300;
        fx.sync();
        if settles_late {
            fx.now += 300;
            fx.sync();
        }
        let targets = fx.current.clone();
        let names: BTreeSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        prop_assert_eq!(names.len(), targets.len());
        fx.now += 300;
        let again = fx.sync();
        prop_assert_eq!(&again.changes, &Vec::new());
        prop_assert_eq!(again.unchanged as usize, targets.len());
    }

    #[test]
    fn an_admins_overrides_survive_a_sync_unchanged(
        mut fx in fixture(),
        picks in proptest::collection::vec(0u8..8, 0..12),
    ) {
        fx.sync();
        for (i, (t, pick)) in fx.current.iter_mut().zip(picks).enumerate() {
            if pick & 1 != 0 {
                t.name = format!("admin-{i}");
            }
            if pick & 2 != 0 {
                t.service = Some("rdp".into());
            }
            if pick & 4 != 0 {
                let ip = t.address.rsplit_once(':').unwrap().0.to_owned();
                t.address = format!("{ip}:2222");
            }
        }
        let set = fx.current.clone();
        fx.now += 300;
        fx.sync();
        // What an admin set stays (a name an admin took from a namesake may free another
        // target's plain name: that one changes), and the sync after changes nothing.
        for before in &set {
            let after = fx.current.iter().find(|t| t.id == before.id);
            let after = after.unwrap();
            prop_assert_eq!(&after.service, &before.service);
            prop_assert_eq!(&after.address, &before.address);
            if before.name.starts_with("admin-") {
                prop_assert_eq!(&after.name, &before.name);
            }
        }
        fx.now += 300;
        prop_assert_eq!(&fx.sync().changes, &Vec::new());
    }
}
