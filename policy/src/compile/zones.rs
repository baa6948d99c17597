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

pub(super) struct Zoned {
    pub zones: Vec<Zone>,
    pub cidrs: Vec<(IpNet, ZoneId)>,
    pub vmids: Vec<(u32, u32, ZoneId)>,
    pub tags: HashMap<String, ZoneId>,
    pub pools: HashMap<String, ZoneId>,
}

pub(super) fn compile_zones(raw: &[RawZone], names: &mut Names, sink: &mut Sink<'_>) -> Zoned {
    let mut out = Zoned {
        zones: Vec::new(),
        cidrs: Vec::new(),
        vmids: Vec::new(),
        tags: HashMap::new(),
        pools: HashMap::new(),
    };
    let mut seen_cidrs: HashMap<IpNet, String> = HashMap::new();
    let mut vmid_spans: Vec<(u32, u32, String)> = Vec::new();
    for rz in raw {
        check_name(sink, "zone", &rz.name);
        let id = out.zones.len();
        let name = rz.name.get_ref().clone();
        if names.zones.insert(name.clone(), id).is_some() {
            sink.error(rz.name.span(), format!("zone `{name}` is defined twice"));
        }
        let mut zone = Zone {
            name: name.clone(),
            description: rz.description.clone(),
            trust: rz.trust,
            cidrs: Vec::new(),
            vmids: Vec::new(),
            tags: Vec::new(),
            pools: Vec::new(),
            microsegments: None,
        };
        for text in &rz.cidrs {
            let Some(net) = parse_cidr(sink, text) else {
                continue;
            };
            if let Some(other) = seen_cidrs.insert(net, name.clone()) {
                sink.error(
                    text.span(),
                    format!("CIDR {net} is already in zone `{other}`: a CIDR belongs to one zone"),
                );
                continue;
            }
            zone.cidrs.push(net);
            out.cidrs.push((net, id));
        }
        for text in &rz.vmids {
            let Some((start, end)) = parse_vmids(sink, text) else {
                continue;
            };
            if let Some((s, e, other)) =
                vmid_spans.iter().find(|(s, e, _)| start <= *e && *s <= end)
            {
                sink.error(
                    text.span(),
                    format!("VMID range {start}-{end} overlaps {s}-{e} of zone `{other}`"),
                );
                continue;
            }
            vmid_spans.push((start, end, name.clone()));
            zone.vmids.push((start, end));
            out.vmids.push((start, end, id));
        }
        label_selectors(
            sink,
            &rz.tags,
            "tag",
            id,
            &name,
            &mut out.tags,
            &mut zone.tags,
        );
        label_selectors(
            sink,
            &rz.pools,
            "pool",
            id,
            &name,
            &mut out.pools,
            &mut zone.pools,
        );
        if let Some(ms) = &rz.microsegments {
            zone.microsegments = compile_microsegments(sink, ms, &zone);
        }
        out.zones.push(zone);
    }
    out.vmids.sort_by_key(|(start, _, _)| *start);
    out
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
