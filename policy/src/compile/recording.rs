//! Recording settings of zones and roles: `record`, `record_input`, and the zone-only
//! `unrecorded_fallback`, each refused where it could not mean what it says.

use toml::Spanned;

use crate::diagnostic::Sink;
use crate::model::{RawRole, RawZone};
use crate::policy::Policy;
use crate::recording::{RecordingRule, ZoneRecording};

/// A zone's recording setting. `record_input` and `unrecorded_fallback` need `record = true`.
pub(super) fn zone_recording(sink: &mut Sink<'_>, rz: &RawZone) -> ZoneRecording {
    let what = format!("zone `{}`", rz.name.get_ref());
    let rule = rule(sink, &what, rz.record.as_ref(), rz.record_input.as_ref());
    let mut unrecorded_fallback = false;
    if let Some(flag) = rz.unrecorded_fallback.as_ref().filter(|f| *f.get_ref()) {
        if rule.required {
            unrecorded_fallback = true;
        } else {
            sink.error(
                flag.span(),
                format!(
                    "unrecorded_fallback on {what} needs `record = true`: it lets the zone's own required recording go on unrecorded, and the zone requires none"
                ),
            );
        }
    }
    ZoneRecording {
        rule,
        unrecorded_fallback,
    }
}

/// A role's recording setting. A role cannot opt into going on unrecorded.
pub(super) fn role_recording(sink: &mut Sink<'_>, rr: &RawRole) -> RecordingRule {
    let what = format!("role `{}`", rr.name.get_ref());
    if let Some(flag) = &rr.unrecorded_fallback {
        sink.error(
            flag.span(),
            format!(
                "unrecorded_fallback is a zone setting, not a role's: no role can let a required recording go on unrecorded; remove it from {what} (or set it on the zone)"
            ),
        );
    }
    rule(sink, &what, rr.record.as_ref(), rr.record_input.as_ref())
}

fn rule(
    sink: &mut Sink<'_>,
    what: &str,
    record: Option<&Spanned<bool>>,
    record_input: Option<&Spanned<bool>>,
) -> RecordingRule {
    let required = record.is_some_and(|r| *r.get_ref());
    let mut input = false;
    if let Some(flag) = record_input.filter(|f| *f.get_ref()) {
        if required {
            input = true;
        } else {
            sink.error(
                flag.span(),
                format!(
                    "record_input on {what} needs `record = true`: typed input is captured only in recordings that {what} requires"
                ),
            );
        }
    }
    RecordingRule { required, input }
}

/// Warns where a role says `record = false` and grants a zone that requires recording: it
/// waives nothing, and whoever wrote it may think it does.
pub(super) fn check_waivers(policy: &Policy, raw: &[RawRole], sink: &mut Sink<'_>) {
    for (role, rr) in policy.roles.iter().zip(raw) {
        let Some(flag) = rr.record.as_ref().filter(|f| !*f.get_ref()) else {
            continue;
        };
        let recorded = policy.zones.iter().enumerate().find(|(id, zone)| {
            zone.recording.rule.required && role.grants.iter().any(|g| g.zones.contains(*id))
        });
        if let Some((_, zone)) = recorded {
            sink.warning(
                flag.span(),
                format!(
                    "role `{}` sets `record = false`, but zone `{}` it grants requires recording: no role can waive a zone's requirement, so its sessions there are recorded",
                    role.name, zone.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
