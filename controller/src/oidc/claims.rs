//! From the claims of a verified ID token to an [`OidcIdentity`]: groups (with a missing
//! claim or an overflow marker as an error, never as "no roles"), user name, and the MFA rule.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{GroupMatch, MfaRule};

/// A verified identity from one login: what the user record and the token carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OidcIdentity {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
}

/// How to read the claims.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules<'a> {
    pub groups_claim: &'a str,
    pub group_match: GroupMatch,
    pub username_claim: &'a str,
    pub mfa: &'a MfaRule,
}

/// Builds the identity from the (already verified) ID token payload.
pub(crate) fn identity(
    issuer: &str,
    payload: &Value,
    rules: &ClaimRules<'_>,
) -> Result<OidcIdentity, String> {
    let subject = payload
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the ID token has no `sub` claim")?
        .to_owned();
    let groups = groups(payload, rules.groups_claim, rules.group_match)?;
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let username = text(rules.username_claim)
        .or_else(|| text("preferred_username"))
        .or_else(|| text("email"))
        .unwrap_or_else(|| subject.clone());
    let mut amr: Vec<String> = match payload.get("amr") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    // `svc` marks a service account's login, which only the controller grants (a role's MFA
    // exemption for service accounts keys on it): a provider cannot send it.
    amr.retain(|a| a != portcullis_policy::SERVICE_ACCOUNT_AMR);
    let acr = text("acr");
    let by_amr = amr.iter().any(|a| rules.mfa.amr.contains(a));
    let by_acr = acr.as_ref().is_some_and(|a| rules.mfa.acr.contains(a));
    if (by_amr || by_acr) && !amr.iter().any(|a| a == "mfa") {
        amr.push("mfa".into());
    }
    let auth_time = payload
        .get("auth_time")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    Ok(OidcIdentity {
        issuer: issuer.to_owned(),
        subject,
        username,
        email: text("email"),
        name: text("name"),
        groups,
        amr,
        acr,
        auth_time,
    })
}

/// The groups claim as a list. A missing claim, an overflow marker (Entra sends
/// `_claim_names` instead of the groups past 200 of them) or a claim of another type is an
/// error: silently giving the user no roles would hide a provider misconfiguration.
pub(crate) fn groups(
    payload: &Value,
    claim: &str,
    mode: GroupMatch,
) -> Result<Vec<String>, String> {
    let overflow = payload
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(claim) || names.contains_key("groups"));
    if overflow {
        return Err(format!(
            "the provider sent the `{claim}` claim by reference (`_claim_names`: Entra does this \
             when a user is in more than 200 groups), so the groups are unknown; configure the \
             application to emit only the groups assigned to it (Entra: \"Groups assigned to the \
             application\") or a group filter"
        ));
    }
    let raw = match payload.get(claim) {
        None | Some(Value::Null) => {
            return Err(format!(
                "the ID token has no `{claim}` claim, so no role can be chosen; configure the \
                 provider to put the user's groups in the ID token under `{claim}` (a groups \
                 scope or mapper), or set auth.oidc.groups_claim to the claim it uses"
            ))
        }
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        return Err(format!(
                            "the `{claim}` claim holds {other}, not a group name (a string)"
                        ))
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(format!(
                "the `{claim}` claim is {other}, not a list of group names"
            ))
        }
    };
    Ok(raw
        .into_iter()
        .map(|g| match mode {
            GroupMatch::Exact => g,
            GroupMatch::Path => {
                let segments: Vec<&str> = g.split('/').filter(|s| !s.is_empty()).collect();
                format!("/{}", segments.join("/"))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(mfa: &MfaRule) -> ClaimRules<'_> {
        ClaimRules {
            groups_claim: "groups",
            group_match: GroupMatch::Exact,
            username_claim: "preferred_username",
            mfa,
        }
    }

    #[test]
    fn identity_from_claims_with_the_mfa_rule() {
        let mfa = MfaRule {
            amr: vec!["otp".into()],
            acr: vec!["gold".into()],
        };
        let id = identity(
            "https://idp",
            &json!({"sub": "u1", "preferred_username": "alice", "groups": ["ops"], "amr": ["pwd", "otp"], "auth_time": 100}),
            &rules(&mfa),
        )
        .unwrap();
        assert_eq!(id.username, "alice");
        assert_eq!(id.amr, vec!["pwd", "otp", "mfa"]);
        assert_eq!(id.auth_time, Some(100));
        let id = identity(
            "https://idp",
            &json!({"sub": "u1", "groups": [], "amr": ["pwd"], "acr": "bronze"}),
            &rules(&mfa),
        )
        .unwrap();
        assert_eq!(id.amr, vec!["pwd"]);
        assert_eq!(id.username, "u1");
        let id = identity(
            "https://idp",
            &json!({"sub": "u1", "groups": "ops", "acr": "gold"}),
            &rules(&mfa),
        )
        .unwrap();
        assert_eq!(id.amr, vec!["mfa"]);
        assert_eq!(id.groups, vec!["ops"]);
    }

    #[test]
    fn a_provider_cannot_mark_a_login_as_a_service_account() {
        let mfa = MfaRule {
            amr: vec!["otp".into()],
            acr: vec![],
        };
        let id = identity(
            "https://idp",
            &json!({"sub": "u1", "groups": [], "amr": ["pwd", "svc", "otp", "svc"]}),
            &rules(&mfa),
        )
        .unwrap();
        assert_eq!(id.amr, vec!["pwd", "otp", "mfa"]);
        let id = identity(
            "https://idp",
            &json!({"sub": "u1", "groups": [], "amr": "svc"}),
            &rules(&mfa),
        )
        .unwrap();
        assert!(id.amr.is_empty(), "{:?}", id.amr);
    }

    #[test]
    fn missing_or_overflowing_groups_fail_clearly() {
        let err = groups(&json!({"sub": "x"}), "groups", GroupMatch::Exact).unwrap_err();
        assert!(err.contains("no `groups` claim"), "{err}");
        let err = groups(
            &json!({"sub": "x", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph"}}}),
            "groups",
            GroupMatch::Exact,
        )
        .unwrap_err();
        assert!(err.contains("_claim_names") && err.contains("200"), "{err}");
        let err = groups(&json!({"groups": [1]}), "groups", GroupMatch::Exact).unwrap_err();
        assert!(err.contains("not a group name"), "{err}");
        assert_eq!(
            groups(
                &json!({"roles": ["org/admins/", "/x"]}),
                "roles",
                GroupMatch::Path
            )
            .unwrap(),
            vec!["/org/admins", "/x"]
        );
    }
}
