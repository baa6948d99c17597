//! Role membership by identity-provider group, login templates, and MFA constraints.

use std::collections::HashMap;

use crate::model::GroupMatch;
use crate::policy::{IdSet, Mfa, RoleId};
use crate::request::Identity;

/// Finds the roles an identity's groups make it a member of, without scanning every role.
///
/// Exact-match groups are keyed by the whole name. Path-match groups are keyed by their last
/// path segment, which any matching identity group must share, then compared segment-wise.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupIndex {
    exact: HashMap<String, Vec<RoleId>>,
    by_last_segment: HashMap<String, Vec<(RoleId, GroupPattern)>>,
    role_count: usize,
}

impl GroupIndex {
    pub(crate) fn add(&mut self, role: RoleId, group: &str, mode: GroupMatch) {
        self.role_count = self.role_count.max(role + 1);
        match mode {
            GroupMatch::Exact => self.exact.entry(group.to_owned()).or_default().push(role),
            GroupMatch::Path => {
                let pattern = GroupPattern::new(group);
                let last = pattern.segments.last().cloned().unwrap_or_default();
                self.by_last_segment
                    .entry(last)
                    .or_default()
                    .push((role, pattern));
            }
        }
    }

    /// The roles whose members include an identity with `groups`.
    pub(crate) fn members_of(&self, groups: &[String]) -> IdSet {
        let mut roles = IdSet::with_capacity(self.role_count);
        for group in groups {
            if let Some(ids) = self.exact.get(group.as_str()) {
                ids.iter().for_each(|id| roles.insert(*id));
            }
            let last = group.rsplit('/').next().unwrap_or(group);
            if let Some(patterns) = self.by_last_segment.get(last) {
                for (id, pattern) in patterns {
                    if pattern.matches(group) {
                        roles.insert(*id);
                    }
                }
            }
        }
        roles
    }
}

/// A configured group in path mode: `admins`, `org/admins`, or anchored `/org/admins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupPattern {
    anchored: bool,
    segments: Vec<String>,
}

impl GroupPattern {
    pub(crate) fn new(configured: &str) -> GroupPattern {
        GroupPattern {
            anchored: configured.starts_with('/'),
            segments: split_path(configured).map(str::to_owned).collect(),
        }
    }

    /// Whether an identity's group (e.g. Keycloak's `/org/admins`) matches: its trailing
    /// segments equal the pattern's; an anchored pattern must equal the whole path.
    pub(crate) fn matches(&self, group: &str) -> bool {
        if self.segments.is_empty() {
            return false;
        }
        let mut actual = split_path(group).rev();
        for expected in self.segments.iter().rev() {
            if actual.next() != Some(expected.as_str()) {
                return false;
            }
        }
        !self.anchored || actual.next().is_none()
    }
}

/// Whether any of an identity's `groups` matches any `configured` group name, compared as
/// `mode` says (a role's `group_match`).
pub(crate) fn any_group_matches(
    mode: GroupMatch,
    configured: &[String],
    groups: &[String],
) -> bool {
    configured.iter().any(|c| match mode {
        GroupMatch::Exact => groups.iter().any(|g| g == c),
        GroupMatch::Path => {
            let pattern = GroupPattern::new(c);
            groups.iter().any(|g| pattern.matches(g))
        }
    })
}

fn split_path(s: &str) -> impl DoubleEndedIterator<Item = &str> {
    s.split('/').filter(|seg| !seg.is_empty())
}

/// A login template such as `{{preferred_username}}` or `svc-{{subject}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    PreferredUsername,
    Email,
    Subject,
}

impl Template {
    /// Parses a template; unknown placeholders and unclosed braces are errors.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let (before, after) = rest.split_at(open);
            if !before.is_empty() {
                parts.push(Part::Text(before.to_owned()));
            }
            let after = after.get(2..).unwrap_or_default();
            let close = after
                .find("}}")
                .ok_or_else(|| format!("login template `{text}` has `{{{{` without `}}}}`"))?;
            let name = after.get(..close).unwrap_or_default().trim();
            let var = match name {
                "preferred_username" => Var::PreferredUsername,
                "email" => Var::Email,
                "subject" => Var::Subject,
                other => {
                    return Err(format!(
                        "login template `{text}` uses unknown placeholder `{other}`; \
                         use {{{{preferred_username}}}}, {{{{email}}}} or {{{{subject}}}}"
                    ))
                }
            };
            parts.push(Part::Var(var));
            rest = after.get(close + 2..).unwrap_or_default();
        }
        if rest.contains("}}") {
            return Err(format!("login template `{text}` has `}}}}` without `{{{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("a login template is empty".into());
        }
        Ok(Template { parts })
    }

    /// Renders for `identity`. `None` when a value is missing or the result is not a safe
    /// login name (letters, digits, `.`, `_`, `-`, `@`; at most 64 bytes): a rendered login
    /// becomes an SSH principal, and must not smuggle separators into one.
    pub(crate) fn render(&self, identity: &Identity) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::PreferredUsername) => {
                    out.push_str(identity.preferred_username.as_deref()?)
                }
                Part::Var(Var::Email) => out.push_str(identity.email.as_deref()?),
                Part::Var(Var::Subject) => out.push_str(&identity.subject),
            }
        }
        let safe = !out.is_empty()
            && out.len() <= 64
            && out
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        safe.then_some(out)
    }

    /// The template as written, for exports.
    pub(crate) fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Var(Var::PreferredUsername) => "{{preferred_username}}".into(),
                Part::Var(Var::Email) => "{{email}}".into(),
                Part::Var(Var::Subject) => "{{subject}}".into(),
            })
            .collect()
    }
}

/// Clock skew tolerated for an `auth_time` slightly in the future.
pub(crate) const AUTH_TIME_SKEW_SECS: u64 = 300;

impl Mfa {
    /// `Ok` when the identity satisfies the requirement at `now`; otherwise what is missing.
    ///
    /// A service account never meets it by its `amr` or `acr` (whatever else they say): only
    /// a role that admits service accounts lets one through, and then the age limit still
    /// applies.
    pub(crate) fn check(&self, identity: &Identity, now: u64) -> Result<(), String> {
        if identity.is_service_account() {
            if !self.service_accounts {
                return Err(format!(
                    "requires MFA ({}), and a service account cannot provide it: the role must set service_accounts = true in constraints.mfa to admit service accounts",
                    self.describe()
                ));
            }
            return self.check_age(identity, now);
        }
        let by_amr = identity.amr.iter().any(|a| self.amr.contains(a));
        let by_acr = identity
            .acr
            .as_ref()
            .is_some_and(|acr| self.acr.contains(acr));
        if !by_amr && !by_acr {
            return Err(format!("requires MFA ({})", self.describe()));
        }
        self.check_age(identity, now)
    }

    /// The `max_auth_age_secs` part of the requirement.
    fn check_age(&self, identity: &Identity, now: u64) -> Result<(), String> {
        if let Some(max_age) = self.max_auth_age_secs {
            let Some(auth_time) = identity.auth_time else {
                return Err(format!(
                    "requires an authentication at most {max_age} s old, and the identity has no auth_time"
                ));
            };
            if auth_time > now.saturating_add(AUTH_TIME_SKEW_SECS) {
                return Err(
                    "requires a recent authentication, and auth_time is in the future".into(),
                );
            }
            let age = now.saturating_sub(auth_time);
            if age > max_age {
                return Err(format!(
                    "requires an authentication at most {max_age} s old; yours is {age} s old: sign in again"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> String {
        let mut ways = Vec::new();
        if !self.amr.is_empty() {
            ways.push(format!("amr one of {}", self.amr.join(", ")));
        }
        if !self.acr.is_empty() {
            ways.push(format!("acr one of {}", self.acr.join(", ")));
        }
        let mut out = ways.join(", or ");
        if let Some(age) = self.max_auth_age_secs {
            out.push_str(&format!("; auth_time at most {age} s old"));
        }
        if self.service_accounts {
            out.push_str("; service accounts admitted by their key");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::SERVICE_ACCOUNT_AMR;

    fn identity() -> Identity {
        Identity {
            subject: "f1e2".into(),
            preferred_username: Some("alice".into()),
            email: Some("alice@example.org".into()),
            ..Identity::default()
        }
    }

    #[test]
    fn path_patterns_match_trailing_segments() {
        let suffix = GroupPattern::new("admins");
        assert!(suffix.matches("admins"));
        assert!(suffix.matches("/admins"));
        assert!(suffix.matches("/org/admins"));
        assert!(!suffix.matches("/org/admins-old"));
        assert!(!suffix.matches("/admins/sub"));
        let anchored = GroupPattern::new("/org/admins");
        assert!(anchored.matches("/org/admins"));
        assert!(!anchored.matches("/evil/org/admins"));
        let two = GroupPattern::new("org/admins");
        assert!(two.matches("/tenant/org/admins"));
        assert!(!two.matches("/admins"));
    }

    #[test]
    fn index_finds_exact_and_path_members() {
        let mut index = GroupIndex::default();
        index.add(0, "admins", GroupMatch::Exact);
        index.add(1, "admins", GroupMatch::Path);
        index.add(2, "/org/ops", GroupMatch::Path);
        let ids = |groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            index.members_of(&groups).iter().collect::<Vec<_>>()
        };
        assert_eq!(ids(&["admins"]), vec![0, 1]);
        assert_eq!(ids(&["/org/admins"]), vec![1]);
        assert_eq!(ids(&["/org/ops", "x"]), vec![2]);
        assert_eq!(ids(&["/other/ops"]), Vec::<usize>::new());
    }

    #[test]
    fn templates_render_and_refuse_unknown_placeholders() {
        let t = Template::parse("{{preferred_username}}").unwrap();
        assert_eq!(t.render(&identity()).as_deref(), Some("alice"));
        let t = Template::parse("adm-{{ subject }}").unwrap();
        assert_eq!(t.render(&identity()).as_deref(), Some("adm-f1e2"));
        assert_eq!(t.source(), "adm-{{subject}}");
        assert!(Template::parse("{{username}}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(Template::parse("{{email").is_err());
        assert!(Template::parse("email}}").is_err());
        let mut odd = identity();
        odd.preferred_username = Some("alice,root".into());
        let t = Template::parse("{{preferred_username}}").unwrap();
        assert_eq!(t.render(&odd), None);
        odd.preferred_username = None;
        assert_eq!(t.render(&odd), None);
    }

    #[test]
    fn mfa_by_amr_or_acr_with_age() {
        let mfa = Mfa {
            amr: vec!["mfa".into(), "otp".into()],
            acr: vec!["gold".into()],
            max_auth_age_secs: Some(600),
            service_accounts: false,
        };
        let mut id = identity();
        assert!(mfa.check(&id, 1000).unwrap_err().contains("requires MFA"));
        id.amr = vec!["pwd".into(), "otp".into()];
        assert!(mfa.check(&id, 1000).unwrap_err().contains("no auth_time"));
        id.auth_time = Some(500);
        assert_eq!(mfa.check(&id, 1000), Ok(()));
        assert!(mfa.check(&id, 2000).unwrap_err().contains("sign in again"));
        id.amr.clear();
        id.acr = Some("gold".into());
        assert_eq!(mfa.check(&id, 1000), Ok(()));
        id.auth_time = Some(u64::MAX);
        assert!(mfa.check(&id, 1000).unwrap_err().contains("future"));
    }

    #[test]
    fn service_accounts_pass_mfa_only_when_admitted() {
        let mut mfa = Mfa {
            amr: vec!["otp".into()],
            acr: vec!["gold".into()],
            max_auth_age_secs: Some(600),
            service_accounts: false,
        };
        let mut id = identity();
        id.amr = vec![SERVICE_ACCOUNT_AMR.into(), "otp".into()];
        id.acr = Some("gold".into());
        id.auth_time = Some(900);
        assert!(id.is_service_account());
        let refused = mfa.check(&id, 1000).unwrap_err();
        assert!(refused.contains("service_accounts = true"), "{refused}");
        mfa.service_accounts = true;
        assert_eq!(mfa.check(&id, 1000), Ok(()));
        assert!(mfa.check(&id, 2000).unwrap_err().contains("sign in again"));
        assert!(mfa
            .describe()
            .ends_with("service accounts admitted by their key"));
        // A person is unaffected by the setting.
        id.amr = vec!["pwd".into()];
        id.acr = None;
        assert!(!id.is_service_account());
        assert!(mfa.check(&id, 1000).unwrap_err().contains("requires MFA"));
    }
}
