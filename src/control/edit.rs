//! Policy edits through the admin API: create, replace, delete, history, rollback. Each edit
//! is validated and previewed here; whether it may be written (its `If-Match` /
//! `If-None-Match`) is decided by the policy store's compare-and-set, so that two writers
//! sharing a store (two nodes on one Redis) cannot both win: the loser gets 412.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::rr::Name;
use tracing::info;

use super::load::parse_checked;
use super::{Controller, EditError, EditOutcome, Entry, PolicyInfo, Precondition, ms};
use crate::preview::{self, Preview};
use crate::store::{CasError, Expect, Version};

/// ETags are quoted per RFC 9110 (the store's, so every node computes the same one).
pub fn etag(text: &str) -> String {
    crate::store::etag(text)
}

/// The key for a policy name: lower case, no trailing dot, only DNS name characters (it is
/// also a file name, so nothing that could leave the directory).
pub fn policy_key(name: &str) -> Result<String, EditError> {
    let parsed = Name::from_ascii(name)
        .map_err(|e| EditError::Invalid(format!("{name:?} is not a valid DNS name: {e}")))?;
    let key = parsed.to_lowercase().to_ascii();
    let key = key.trim_end_matches('.').to_owned();
    let safe = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !safe {
        return Err(EditError::Invalid(format!(
            "{name:?}: policy names may only use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(key)
}

impl Controller {
    pub fn policies(&self) -> Vec<PolicyInfo> {
        self.lock()
            .policies
            .iter()
            .map(|(k, e)| PolicyInfo {
                name: k.clone(),
                etag: e.etag.clone(),
                source: e.steered.policy.source.clone(),
            })
            .collect()
    }

    /// The policy's text and ETag.
    pub fn policy(&self, name: &str) -> Result<(String, String), EditError> {
        let key = policy_key(name)?;
        let state = self.lock();
        state
            .policies
            .get(&key)
            .map(|e| (e.text.clone(), e.etag.clone()))
            .ok_or(EditError::NotFound(key))
    }

    /// Create or replace a policy: validate, preview, write durably, compile, publish.
    pub fn put_policy(
        &self,
        name: &str,
        text: &str,
        pre: &Precondition,
        dry_run: bool,
    ) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        // Edits on this node one at a time; the state lock is never held across a store
        // call (a store on the network would stall every reader of the state meanwhile).
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        // Say first that the demo cannot be edited at all, before asking for an ETag.
        let store = Self::policy_store(&self.lock())?;
        // The store's version, not this node's copy: another writer may have changed it.
        let current_etag = store.current(&key).map_err(cas_error)?.as_deref().map(etag);
        let mut state = self.lock();
        let current = state.policies.get(&key).map(|e| e.steered.clone());
        // A preview changes nothing, so it needs no ETag (If-Match is still checked if sent).
        if !dry_run || pre.if_match.is_some() || pre.if_none_match {
            check_precondition(&key, current_etag.as_deref(), pre)?;
        }
        let source = store.source_of(&key);
        let (parsed_key, policy) =
            parse_checked(&source, text, &state.zones, &state.geo).map_err(EditError::Invalid)?;
        if parsed_key != key {
            return Err(EditError::Invalid(format!(
                "{source}: name: the body is for {parsed_key}, but the request is for {key}"
            )));
        }
        let (compiled, choices) = state.compile_noting(policy);
        let mut steered = Arc::new(compiled);
        let preview = preview::compare(current.as_deref(), &steered, &state.geo);
        // Whether the store had it (this node's copy may not have caught up yet).
        let created = current_etag.is_none();
        let new_etag = etag(text);
        if dry_run {
            return Ok(EditOutcome {
                name: key,
                etag: Some(new_etag),
                generation: None,
                created,
                preview,
            });
        }
        let compile_ms = ms(started);
        drop(state);
        let writing = Instant::now();
        store
            .put_if(&key, text, &expect(pre, current_etag.as_deref()))
            .map_err(cas_error)?;
        let write_ms = ms(writing);
        let mut state = self.lock();
        state.keep_choices(&steered.policy, choices);
        // Editing a policy is how an operator resumes a halted ramp.
        let resumed = super::inputs::resume_ramps(&mut state, &steered.policy, &key);
        if !resumed.is_empty() {
            steered = Arc::new(state.compile(steered.policy.clone()));
        }
        state.policies.insert(
            key.clone(),
            Entry {
                text: text.to_owned(),
                etag: new_etag.clone(),
                steered,
            },
        );
        let publishing = Instant::now();
        let message = format!(
            "{}; {}",
            if created { "created" } else { "replaced" },
            changed_regions(&preview)
        );
        let why = if resumed.is_empty() {
            "admin API".to_owned()
        } else {
            format!(
                "admin API; resumes the halted ramp of {}",
                resumed.join(", ")
            )
        };
        self.note(crate::events::Kind::Policy, &key, &message, &why);
        let generation = self.publish(&state).map_err(EditError::Invalid);
        drop(state);
        self.persist_resumed(&resumed);
        let generation = generation?;
        info!(
            policy = %key,
            generation,
            compile_ms,
            write_ms,
            publish_ms = ms(publishing),
            total_ms = ms(started),
            "policy {}",
            if created { "created" } else { "replaced" }
        );
        Ok(EditOutcome {
            name: key,
            etag: Some(new_etag),
            generation: Some(generation),
            created,
            preview,
        })
    }

    pub fn delete_policy(&self, name: &str, pre: &Precondition) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let store = Self::policy_store(&self.lock())?;
        let current = store
            .current(&key)
            .map_err(cas_error)?
            .as_deref()
            .map(etag)
            .ok_or_else(|| EditError::NotFound(key.clone()))?;
        check_precondition(&key, Some(&current), pre)?;
        store
            .delete_if(&key, &expect(pre, Some(&current)))
            .map_err(cas_error)?;
        let mut state = self.lock();
        state.policies.remove(&key);
        self.note(crate::events::Kind::Policy, &key, "deleted", "admin API");
        let generation = self.publish(&state).map_err(EditError::Invalid)?;
        info!(policy = %key, generation, "policy deleted");
        Ok(EditOutcome {
            name: key,
            etag: None,
            generation: Some(generation),
            created: false,
            preview: Preview::default(),
        })
    }

    pub fn history(&self, name: &str) -> Result<Vec<Version>, EditError> {
        let key = policy_key(name)?;
        let store = Self::policy_store(&self.lock())?;
        store
            .history(&key)
            .map_err(|e| EditError::Storage(e.to_string()))
    }

    /// Make an earlier version current again (itself a new, recorded edit).
    pub fn rollback(
        &self,
        name: &str,
        version: u64,
        pre: &Precondition,
    ) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        let text = {
            let store = Self::policy_store(&self.lock())?;
            store
                .version(&key, version)
                .map_err(|e| EditError::Storage(e.to_string()))?
                .ok_or_else(|| EditError::NotFound(format!("{key} version {version}")))?
        };
        self.put_policy(&key, &text, pre, false)
    }
}

/// `3 of 40 regions change`, for the timeline.
fn changed_regions(preview: &Preview) -> String {
    match preview.changes.len() {
        0 => format!("no change in any of {} regions", preview.regions),
        n => format!("{n} of {} regions change", preview.regions),
    }
}

fn check_precondition(
    key: &str,
    current: Option<&str>,
    pre: &Precondition,
) -> Result<(), EditError> {
    match (current, &pre.if_match) {
        (Some(_), None) if pre.if_none_match => Err(EditError::PreconditionFailed {
            current: current.unwrap_or_default().to_owned(),
        }),
        (Some(_), None) => Err(EditError::PreconditionRequired(key.to_owned())),
        (Some(cur), Some(want)) if want != "*" && want != cur => {
            Err(EditError::PreconditionFailed {
                current: cur.to_owned(),
            })
        }
        (None, Some(_)) => Err(EditError::PreconditionFailed {
            current: String::new(),
        }),
        _ => Ok(()),
    }
}

/// What the store must find for the edit to go through: what the editor asserted, or, with
/// no assertion, nothing (the edit creates; replacing needs an ETag, checked before).
fn expect(pre: &Precondition, current: Option<&str>) -> Expect {
    match (&pre.if_match, pre.if_none_match) {
        (_, true) => Expect::Absent,
        (Some(want), false) if want == "*" => Expect::Present,
        (Some(want), false) => Expect::Etag(want.clone()),
        (None, false) => match current {
            Some(cur) => Expect::Etag(cur.to_owned()),
            None => Expect::Absent,
        },
    }
}

fn cas_error(e: CasError) -> EditError {
    match e {
        CasError::PreconditionFailed { current } => EditError::PreconditionFailed { current },
        CasError::Unavailable(reason) => EditError::Unavailable(reason),
        CasError::Store(e) => EditError::Storage(e.to_string()),
    }
}
