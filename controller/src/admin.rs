//! Operations the `portcullis` command runs on a controller's store itself, outside the API:
//! the seeding of `portcullis dev`. Each one is an audited transaction like the API's (the
//! offline commands' other operations live beside what they change: `tokens::issue_local`,
//! `enrolment::issue_join_token`, `Keyset::rotate` and `retire`).

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::state::AppState;
use crate::store::targets::{self as rows, TargetRecord};
use crate::store::StoreError;

/// Creates the target `record` describes, or re-points the existing target of that name at
/// `record`'s address (changing nothing else), with `target_created` or `target_updated`.
pub async fn put_target(
    state: &AppState,
    actor: Actor,
    record: TargetRecord,
) -> Result<TargetRecord, StoreError> {
    let mut tx = state.begin_audited().await?;
    let (stored, event) = match rows::find(tx.read(), &record.name).await? {
        Some(existing) => {
            let changed = TargetRecord {
                address: record.address,
                updated_at: record.updated_at,
                ..existing
            };
            rows::update(tx.write(), &changed).await?;
            let event = target_updated(&changed);
            (changed, event)
        }
        None => {
            rows::insert(tx.write(), &record).await?;
            let event = target_created(&record);
            (record, event)
        }
    };
    tx.commit(AuditEvent::new(actor, event).target(&stored.id))
        .await?;
    Ok(stored)
}

/// The event of a new target.
pub(crate) fn target_created(t: &TargetRecord) -> Event {
    Event::TargetCreated { details: named(t) }
}

/// The event of a changed target.
pub(crate) fn target_updated(t: &TargetRecord) -> Event {
    Event::TargetUpdated { details: named(t) }
}

fn named(t: &TargetRecord) -> event::TargetNamed {
    event::TargetNamed {
        name: t.name.clone(),
        address: t.address.clone(),
    }
}
