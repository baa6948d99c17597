//! Zones: names, CIDRs, VMID ranges, tags, pools and microsegments.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use toml::Spanned;

use super::{check_name, Names};
use crate::diagnostic::Sink;
use crate::model::RawZone;
use crate::policy::{Microsegments, Zone, ZoneId};
use crate::zones::segment_count;

/// At most this many microsegments per CIDR (a /12 cut into /32s).
const MAX_SEGMENTS_PER_CIDR: u32 = 1 << 20;

#[derive(Default)]
pub(super) struct Zoned {
    pub zones: Vec<Zone>,
    pub cidrs: Vec<(IpNet, ZoneId)>,
    pub vmids: Vec<(u32, u32, ZoneId)>,
    pub tags: HashMap<String, ZoneId>,
    pub pools: HashMap<String, ZoneId>,
}

pub(super) fn compile_zones(raw: &[RawZone], names: &mut Names, sink: &mut Sink<'_>) -> Zoned {
    let mut builder = ZonesBuilder::default();
    for rz in raw {
        check_name(sink, "zone", &rz.name);
        let id = builder.out.zones.len();
        let name = rz.name.get_ref();
        if names.zones.insert(name.clone(), id).is_some() {
            sink.error(rz.name.span(), format!("zone `{name}` is defined twice"));
        }
        let zone = builder.compile_zone(sink, rz, id);
        builder.out.zones.push(zone);
    }
    builder.finish()
}

/// The zones compiled so far, and who claimed what: a CIDR or a VMID belongs to one zone.
#[derive(Default)]
struct ZonesBuilder {
    out: Zoned,
    /// Each CIDR claimed, with its zone's name.
    cidr_owners: HashMap<IpNet, String>,
    /// Each VMID range claimed, with its zone's name.
    vmid_owners: Vec<(u32, u32, String)>,
}

impl ZonesBuilder {
    /// One zone and its selectors, each checked against those of the zones before it.
    fn compile_zone(&mut self, sink: &mut Sink<'_>, rz: &RawZone, id: ZoneId) -> Zone {
        let name = rz.name.get_ref().clone();
        let mut zone = Zone {
            name: name.clone(),
            description: rz.description.clone(),
            trust: rz.trust,
            cidrs: Vec::new(),
            vmids: Vec::new(),
            tags: Vec::new(),
            pools: Vec::new(),
            microsegments: None,
            ssh_mode: rz.ssh_mode.unwrap_or_default(),
            recording: super::recording::zone_recording(sink, rz),
            guest_reported_addresses: rz.guest_reported_addresses.unwrap_or(false),
        };
        self.claim_cidrs(sink, rz, id, &mut zone);
        self.claim_vmids(sink, rz, id, &mut zone);
        label_selectors(
            sink,
            &rz.tags,
            "tag",
            id,
            &name,
            &mut self.out.tags,
            &mut zone.tags,
        );
        label_selectors(
            sink,
            &rz.pools,
            "pool",
            id,
            &name,
            &mut self.out.pools,
            &mut zone.pools,
        );
        if let Some(ms) = &rz.microsegments {
            zone.microsegments = compile_microsegments(sink, ms, &zone);
        }
        zone
    }

    /// The zone's CIDRs, each refused when another zone (or this one) already has it.
    fn claim_cidrs(&mut self, sink: &mut Sink<'_>, rz: &RawZone, id: ZoneId, zone: &mut Zone) {
        for text in &rz.cidrs {
            let Some(net) = parse_cidr(sink, text) else {
                continue;
            };
            if let Some(other) = self.cidr_owners.insert(net, zone.name.clone()) {
                sink.error(
                    text.span(),
                    format!("CIDR {net} is already in zone `{other}`: a CIDR belongs to one zone"),
                );
                continue;
            }
            zone.cidrs.push(net);
            self.out.cidrs.push((net, id));
        }
    }

    /// The zone's VMID ranges, each refused when it overlaps one already claimed.
    fn claim_vmids(&mut self, sink: &mut Sink<'_>, rz: &RawZone, id: ZoneId, zone: &mut Zone) {
        for text in &rz.vmids {
            let Some((start, end)) = parse_vmids(sink, text) else {
                continue;
            };
            if let Some((s, e, other)) = self
                .vmid_owners
                .iter()
                .find(|(s, e, _)| start <= *e && *s <= end)
            {
                sink.error(
                    text.span(),
                    format!("VMID range {start}-{end} overlaps {s}-{e} of zone `{other}`"),
                );
                continue;
            }
            self.vmid_owners.push((start, end, zone.name.clone()));
            zone.vmids.push((start, end));
            self.out.vmids.push((start, end, id));
        }
    }

    /// The zones, with the VMID ranges sorted for lookup.
    fn finish(mut self) -> Zoned {
        self.out.vmids.sort_by_key(|(start, _, _)| *start);
        self.out
    }
}

fn label_selectors(
    sink: &mut Sink<'_>,
    raw: &[Spanned<String>],
    what: &str,
    id: ZoneId,
    zone: &str,
    index: &mut HashMap<String, ZoneId>,
    into: &mut Vec<String>,
) {
    for label in raw {
        if index.contains_key(label.get_ref()) {
            sink.error(
                label.span(),
                format!(
                    "{what} `{}` selects more than one zone (here `{zone}`)",
                    label.get_ref()
                ),
            );
            continue;
        }
        index.insert(label.get_ref().clone(), id);
        into.push(label.get_ref().clone());
    }
}

fn parse_cidr(sink: &mut Sink<'_>, text: &Spanned<String>) -> Option<IpNet> {
    let s = text.get_ref().trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                sink.error(
                    text.span(),
                    format!("`{s}` is not a CIDR (e.g. 10.20.0.0/16)"),
                );
                return None;
            }
        },
    };
    if net.trunc() != net {
        sink.error(
            text.span(),
            format!("CIDR {s} has host bits set; did you mean {}?", net.trunc()),
        );
        return None;
    }
    Some(net)
}

fn parse_vmids(sink: &mut Sink<'_>, text: &Spanned<String>) -> Option<(u32, u32)> {
    let s = text.get_ref().trim();
    let parsed = match s.split_once('-') {
        Some((a, b)) => a
            .trim()
            .parse::<u32>()
            .ok()
            .zip(b.trim().parse::<u32>().ok()),
        None => s.parse::<u32>().ok().map(|v| (v, v)),
    };
    match parsed {
        Some((start, end)) if start <= end => Some((start, end)),
        _ => {
            sink.error(
                text.span(),
                format!("`{s}` is not a VMID range; write \"4000-4999\" or \"4012\""),
            );
            None
        }
    }
}

fn compile_microsegments(
    sink: &mut Sink<'_>,
    raw: &Spanned<crate::model::RawMicrosegments>,
    zone: &Zone,
) -> Option<Microsegments> {
    let ms = raw.get_ref();
    let mut ok = true;
    if ms.vmids_per_segment == 0 {
        sink.error(
            raw.span(),
            "microsegments.vmids_per_segment must be at least 1",
        );
        ok = false;
    }
    for net in &zone.cidrs {
        let fits = ms.prefix_len >= net.prefix_len()
            && ms.prefix_len <= net.max_prefix_len()
            && segment_count(net, ms.prefix_len).is_some_and(|n| n <= MAX_SEGMENTS_PER_CIDR);
        if !fits {
            sink.error(
                raw.span(),
                format!(
                    "microsegments.prefix_len {} does not cut {net} into at most {MAX_SEGMENTS_PER_CIDR} blocks",
                    ms.prefix_len
                ),
            );
            ok = false;
        }
    }
    ok.then_some(Microsegments {
        vmids_per_segment: ms.vmids_per_segment,
        prefix_len: ms.prefix_len,
    })
}
