//! `ChannelRefused` connection events: a gateway session's channel or request that its
//! rights (or the controller, vetting a forward) refused, recorded as one `ssh_channel_refused`
//! event each, in the frame's transaction like the other connection events (docs/audit.md).
//! Delivery is at least once: an event resent after a lost acknowledgement is recorded again.

use portcullis_proto::gateway::ChannelRefusal;
use portcullis_proto::link::ConnectionEvent;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::store::sessions::SessionRecord;

/// Records `refusal`, reported by `worker_id` for `session` (the worker carrying it).
pub(crate) fn record(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
    session: &SessionRecord,
    refusal: &ChannelRefusal,
) {
    tx.record(audit_event(worker_id, event, session, refusal));
}

/// The `ssh_channel_refused` event of `refusal`.
pub(crate) fn audit_event(
    worker_id: &str,
    event: &ConnectionEvent,
    session: &SessionRecord,
    refusal: &ChannelRefusal,
) -> AuditEvent {
    let refused = Event::SshChannelRefused {
        reason: refusal.rule.clone(),
        details: event::SshChannelRefused {
            connection_id: event.connection_id.clone(),
            channel: refusal.channel.clone(),
            destination: refusal.destination.clone(),
            login: refusal.login.clone(),
        },
    };
    AuditEvent::new(Actor::worker(worker_id), refused)
        .session(&session.id)
        .target(&session.target_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_channel_is_one_event_naming_the_session_channel_destination_login_and_rule() {
        let session = crate::store::sessions::SessionRecord {
            id: "s_1".into(),
            user_id: "u_1".into(),
            target_id: "t_1".into(),
            worker_id: "w_1".into(),
            state: crate::store::sessions::SessionState::Active,
            termination_reason: None,
            client_addr: "127.0.0.1".into(),
            client_key_hash: "00".into(),
            endpoint: "127.0.0.2:22".into(),
            connection_limit: 0,
            connections_count: 1,
            policy_hash: "h".into(),
            created_at: 0,
            expires_at: 10,
            activated_at: Some(1),
            terminated_at: None,
            ssh_mode: portcullis_policy::SshMode::Gateway,
            parent_session_id: None,
        };
        let refusal = ChannelRefusal {
            channel: "tcpip-forward".into(),
            destination: Some("0.0.0.0:8080".into()),
            login: "alice".into(),
            rule: portcullis_proto::gateway::rule_for_right("forward_remote"),
        };
        let reported = ConnectionEvent {
            event_id: "ev_1".into(),
            session_id: "s_1".into(),
            connection_id: "c_1".into(),
            at: 5,
            kind: portcullis_proto::link::ConnectionEventKind::ChannelRefused(refusal.clone()),
        };
        let event = audit_event("w_1", &reported, &session, &refusal);
        assert_eq!(event.session.as_deref(), Some("s_1"));
        assert_eq!(event.target.as_deref(), Some("t_1"));
        assert_eq!(event.actor, Actor::worker("w_1"));
        let body = serde_json::Value::Object(event.body("e_1", 1, "t", "0"));
        assert_eq!(body["type"], "ssh_channel_refused");
        assert_eq!(body["decision"], "deny");
        assert_eq!(
            body["reason"],
            "ssh.forward_remote is not granted to the session's roles"
        );
        assert_eq!(
            body["details"],
            serde_json::json!({"connection_id": "c_1", "channel": "tcpip-forward",
                "destination": "0.0.0.0:8080", "login": "alice"})
        );
    }
}
