//! Services, service sets and the matrix cells.

use std::collections::HashSet;

use toml::Spanned;

use super::{check_name, Names};
use crate::diagnostic::Sink;
use crate::model::{Access, RawCell, RawPolicy, RawPort, RawPorts};
use crate::policy::{Cell, IdSet, Ports, Service, ServiceId, ZoneId};

pub(super) fn compile_services(
    raw: &RawPolicy,
    names: &mut Names,
    sink: &mut Sink<'_>,
) -> (Vec<Service>, Vec<(String, Vec<ServiceId>)>) {
    let mut services = Vec::new();
    for rs in &raw.services {
        check_name(sink, "service", &rs.name);
        let id = services.len();
        if names
            .services
            .insert(rs.name.get_ref().clone(), id)
            .is_some()
        {
            sink.error(
                rs.name.span(),
                format!("service `{}` is defined twice", rs.name.get_ref()),
            );
        }
        let zones = rs.zones.as_ref().map(|list| {
            let mut set = IdSet::default();
            for z in list {
                if let Some(id) = names.zone(sink, z) {
                    set.insert(id);
                }
            }
            set
        });
        services.push(Service {
            name: rs.name.get_ref().clone(),
            description: rs.description.clone(),
            protocol: rs.protocol,
            ports: parse_ports(sink, &rs.ports).unwrap_or(Ports::List(Vec::new())),
            zones,
        });
    }
    let mut sets = Vec::new();
    for set in &raw.service_sets {
        check_name(sink, "service set", &set.name);
        if names.services.contains_key(set.name.get_ref())
            || names.sets.contains_key(set.name.get_ref())
        {
            sink.error(
                set.name.span(),
                format!(
                    "service set `{}` reuses the name of a service or set",
                    set.name.get_ref()
                ),
            );
            continue;
        }
        let mut members = Vec::new();
        for s in &set.services {
            match names.services.get(s.get_ref()) {
                Some(id) => members.push(*id),
                None => sink.error(
                    s.span(),
                    format!(
                        "unknown service `{}` (a set lists services, not sets)",
                        s.get_ref()
                    ),
                ),
            }
        }
        names
            .sets
            .insert(set.name.get_ref().clone(), members.clone());
        sets.push((set.name.get_ref().clone(), members));
    }
    (services, sets)
}

fn parse_ports(sink: &mut Sink<'_>, raw: &Spanned<RawPorts>) -> Option<Ports> {
    let bad = |sink: &mut Sink<'_>, what: String| {
        sink.error(
            raw.span(),
            format!("{what}; write ports = [22, \"8000-8010\"] or ports = \"any\""),
        );
        None
    };
    let list = match raw.get_ref() {
        RawPorts::Word(w) if w == "any" => return Some(Ports::Any),
        RawPorts::Word(w) => return bad(sink, format!("`{w}` is not a port list")),
        RawPorts::List(list) => list,
    };
    if list.is_empty() {
        return bad(sink, "a service needs at least one port".into());
    }
    let mut ranges = Vec::new();
    for item in list {
        let range = match item {
            RawPort::Number(n) => port(*n).map(|p| (p, p)),
            RawPort::Range(s) => s.split_once('-').and_then(|(a, b)| {
                let lo = port(a.trim().parse().ok()?)?;
                let hi = port(b.trim().parse().ok()?)?;
                (lo <= hi).then_some((lo, hi))
            }),
        };
        match range {
            Some(r) => ranges.push(r),
            None => return bad(sink, format!("{item:?} is not a port (1-65535) or range")),
        }
    }
    Some(Ports::List(ranges))
}

fn port(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

pub(super) fn compile_cells(
    raw: &[RawCell],
    zone_count: usize,
    services: &[Service],
    names: &Names,
    sink: &mut Sink<'_>,
) -> Vec<Cell> {
    let mut matrix = vec![Cell::deny(); zone_count * zone_count];
    let mut seen = HashSet::new();
    for rc in raw {
        let from = names.zone(sink, &rc.from);
        let to = names.zone(sink, &rc.to);
        let cell = Cell {
            access: *rc.access.get_ref(),
            services: cell_services(rc, to, services, names, sink),
            same_microsegment: rc.same_microsegment.as_ref().is_some_and(|s| *s.get_ref()),
            declared: true,
            note: rc.note.clone(),
        };
        warn_of_unused_services(rc, sink);
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if let Some(flag) = &rc.same_microsegment {
            if *flag.get_ref() && from != to {
                sink.error(
                    flag.span(),
                    "same_microsegment applies only to a cell from a zone to itself",
                );
            }
        }
        if !seen.insert((from, to)) {
            sink.error(
                rc.from.span(),
                format!(
                    "cell {} -> {} is defined twice",
                    rc.from.get_ref(),
                    rc.to.get_ref()
                ),
            );
            continue;
        }
        if let Some(slot) = matrix.get_mut(from * zone_count + to) {
            *slot = cell;
        }
    }
    matrix
}

/// The services and the members of the service sets a cell lists, each refused when it is
/// offered only in zones other than the cell's target zone `to`.
fn cell_services(
    rc: &RawCell,
    to: Option<ZoneId>,
    services: &[Service],
    names: &Names,
    sink: &mut Sink<'_>,
) -> IdSet {
    let mut set = IdSet::default();
    for s in &rc.services {
        for id in names.services(sink, s).unwrap_or_default() {
            let restricted = services
                .get(id)
                .and_then(|svc| svc.zones.as_ref().map(|z| (svc, z)));
            if let (Some((svc, zones)), Some(to)) = (restricted, to) {
                if !zones.contains(to) {
                    sink.error(
                        s.span(),
                        format!(
                            "service `{}` is offered only in its own zones, not in `{}`",
                            svc.name,
                            rc.to.get_ref()
                        ),
                    );
                }
            }
            set.insert(id);
        }
    }
    set
}

/// Warns of a deny cell that lists services, and of an open cell that lists none.
fn warn_of_unused_services(rc: &RawCell, sink: &mut Sink<'_>) {
    let route = || format!("{} -> {}", rc.from.get_ref(), rc.to.get_ref());
    match rc.access.get_ref() {
        Access::Deny if !rc.services.is_empty() => sink.warning(
            rc.access.span(),
            format!("cell {} denies, so its services are never used", route()),
        ),
        Access::Allow | Access::BrokerOnly | Access::MtlsOnly if rc.services.is_empty() => sink
            .warning(
                rc.access.span(),
                format!("cell {} lists no services, so it never matches", route()),
            ),
        _ => {}
    }
}
