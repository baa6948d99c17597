//! Session recordings as the policy requires them: whether sessions into a zone or of a role
//! are recorded (`record`), whether the user's typed input is captured too (`record_input`),
//! and what happens when a required recording cannot be written (`unrecorded_fallback`, a
//! zone's opt-in only).
//!
//! Only a policy reload changes these, and no role can waive another's requirement: the
//! resolution on an allow starts from the target zone's setting and each granting role can
//! only make it stricter ([`Recording::with_role`]). A requirement closes the channel when
//! its recording cannot be written unless the target zone alone required it and opted in.

use serde::{Deserialize, Serialize};

/// What a required recording does when it cannot be written (size cap reached, the
/// worker's spool full, the store refusing a chunk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The channel is closed and the event audited: the default, and the only choice a
    /// role's requirement has.
    #[default]
    CloseChannel,
    /// The session goes on unrecorded (audited): only when the target zone opts in with
    /// `unrecorded_fallback = true` and no granting role requires recording.
    ContinueUnrecorded,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::CloseChannel => "close_channel",
            Fallback::ContinueUnrecorded => "continue_unrecorded",
        }
    }
}

/// How an allowed session is recorded, as the policy decided it. The default records
/// nothing (and would close the channel, were a recording required).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Recording {
    /// The session must be recorded: its output, commands, transfers and forwards.
    pub required: bool,
    /// The user's typed input (asciicast `i` events) is captured too. Off unless a place
    /// that requires the recording asks for it, because typed passwords would be captured.
    pub input: bool,
    /// What happens when the required recording cannot be written.
    pub fallback: Fallback,
}

impl Recording {
    /// The recording the target zone's own setting asks for: the start of the resolution.
    pub(crate) fn for_zone(zone: &ZoneRecording) -> Recording {
        let required = zone.rule.required;
        Recording {
            required,
            input: required && zone.rule.input,
            fallback: if required && zone.unrecorded_fallback {
                Fallback::ContinueUnrecorded
            } else {
                Fallback::CloseChannel
            },
        }
    }

    /// Adds a granting role's setting. It can only make the recording stricter: a role
    /// that requires recording makes it required, adds input capture if it asks for it,
    /// and closes the channel on failure (a role cannot opt into going on unrecorded, and
    /// the zone's opt-in covers only its own requirement). A role that requires nothing
    /// changes nothing.
    pub(crate) fn with_role(self, role: &RecordingRule) -> Recording {
        if !role.required {
            return self;
        }
        Recording {
            required: true,
            input: self.input || role.input,
            fallback: Fallback::CloseChannel,
        }
    }

    /// In words, for `explain`: `not required`, or `required (output only); if it cannot
    /// be written, the channel is closed`.
    pub fn describe(&self) -> String {
        if !self.required {
            return "not required".into();
        }
        let what = if self.input {
            "output and typed input"
        } else {
            "output only, typed input not captured"
        };
        let failure = match self.fallback {
            Fallback::CloseChannel => "the channel is closed",
            Fallback::ContinueUnrecorded => "the session goes on unrecorded (the zone's opt-in)",
        };
        format!("required ({what}); if it cannot be written, {failure}")
    }
}

/// What one zone or role says about recording, as compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecordingRule {
    /// `record = true`.
    pub required: bool,
    /// `record_input = true` (the compiler allows it only with `record = true`).
    pub input: bool,
}

/// A zone's recording setting: its rule, and its opt-in to going on unrecorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ZoneRecording {
    pub rule: RecordingRule,
    /// `unrecorded_fallback = true` (the compiler allows it only with `record = true`).
    pub unrecorded_fallback: bool,
}

#[cfg(test)]
mod tests;
