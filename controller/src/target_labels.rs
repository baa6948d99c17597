//! Whether a target's zone and service are ones the policy knows: a pure decision, made
//! when a target is created or changed. A label the policy does not know makes a target no
//! session can reach (the policy denies what it cannot place), which is almost always a typo;
//! so it is refused with the labels the policy knows, unless the caller insists (`force`)
//! and the policy comes from a file that can be reloaded to name it, when it is a warning.

use portcullis_policy::Policy;

/// A label the policy does not know, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?} is not in the policy; {known}. {what_to_do}")]
pub(crate) struct UnknownLabel {
    /// `zone` or `service`: the field.
    pub kind: &'static str,
    pub name: String,
    known: String,
    what_to_do: &'static str,
}

/// What the caller asked for beyond the labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LabelCheck {
    /// The caller insists (`--force`).
    pub force: bool,
    /// The policy comes from a file a reload re-reads (`policy.file`).
    pub reloadable: bool,
}

/// Checks the labels being set; `Ok` carries a warning per unknown label let through.
pub(crate) fn check(
    policy: Option<&Policy>,
    zone: Option<&str>,
    service: Option<&str>,
    how: LabelCheck,
) -> Result<Vec<String>, UnknownLabel> {
    let zones: Vec<&str> = policy.map(|p| p.zone_names().collect()).unwrap_or_default();
    let services: Vec<&str> = policy
        .map(|p| p.service_names().collect())
        .unwrap_or_default();
    let mut warnings = Vec::new();
    for (kind, plural, name, known) in [
        ("zone", "zones", zone, &zones),
        ("service", "services", service, &services),
    ] {
        let Some(name) = name else { continue };
        if known.contains(&name) {
            continue;
        }
        let known = if policy.is_none() {
            format!("no policy is loaded, so it knows no {plural}")
        } else if known.is_empty() {
            format!("it knows no {plural}")
        } else {
            format!("it knows the {plural} {}", known.join(", "))
        };
        if how.force && how.reloadable {
            warnings.push(format!(
                "{kind} {name:?} is not in the policy ({known}); sessions to this target are \
                 denied until the policy names it and is reloaded"
            ));
            continue;
        }
        let what_to_do = if how.reloadable {
            "Fix the name, or add it to the policy file and reload; --force (\"force\": true) \
             creates it anyway"
        } else {
            "Fix the name, or add it to the policy (no policy file is configured, so --force \
             cannot help)"
        };
        return Err(UnknownLabel {
            kind,
            name: name.to_owned(),
            known,
            what_to_do,
        });
    }
    Ok(warnings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(include_str!("../../config/policy-dev.toml")).unwrap()
    }

    const STRICT: LabelCheck = LabelCheck {
        force: false,
        reloadable: true,
    };

    #[test]
    fn known_labels_and_none_pass_without_a_word() {
        let p = policy();
        assert_eq!(
            check(Some(&p), Some("LOCAL"), Some("echo"), STRICT),
            Ok(vec![])
        );
        assert_eq!(check(Some(&p), None, None, STRICT), Ok(vec![]));
        assert_eq!(check(None, None, None, STRICT), Ok(vec![]));
    }

    #[test]
    fn an_unknown_label_is_refused_with_the_known_ones() {
        let p = policy();
        let err = check(Some(&p), Some("DMZ"), Some("echo"), STRICT).unwrap_err();
        assert_eq!(err.kind, "zone");
        let text = err.to_string();
        assert!(
            text.starts_with("zone \"DMZ\" is not in the policy; it knows the zones LOCAL. "),
            "{text}"
        );
        assert!(text.contains("--force"), "{text}");
        let err = check(Some(&p), Some("LOCAL"), Some("https"), STRICT).unwrap_err();
        assert_eq!(err.kind, "service");
        assert!(
            err.to_string().contains("it knows the services echo"),
            "{err}"
        );
        let err = check(None, Some("LOCAL"), None, STRICT).unwrap_err();
        assert!(err.to_string().contains("no policy is loaded"), "{err}");
    }

    #[test]
    fn force_warns_only_when_the_policy_can_be_reloaded() {
        let p = policy();
        let forced = LabelCheck {
            force: true,
            reloadable: true,
        };
        let warnings = check(Some(&p), Some("DMZ"), Some("https"), forced).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("zone \"DMZ\" is not in the policy"));
        assert!(warnings[1].starts_with("service \"https\" is not in the policy"));
        let fixed = LabelCheck {
            force: true,
            reloadable: false,
        };
        let err = check(Some(&p), Some("DMZ"), None, fixed).unwrap_err();
        assert!(err.to_string().contains("cannot help"), "{err}");
    }
}
