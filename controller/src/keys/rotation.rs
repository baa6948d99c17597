//! The TLS CA's rotation with an overlap, as pure decisions over the keyset's rows.
//!
//! Workers and clients pin the TLS CA, so a new CA cannot start signing the moment it is
//! made: whoever has not learnt it yet would refuse the controller. The rotation therefore
//! runs in three steps, each an operator's command:
//!
//! 1. `keys rotate tls-ca` makes the new CA the `next` key: trusted (it joins the bundle
//!    that the link hands to workers and the API hands to the CLI) but not signing.
//! 2. `keys activate KEY`, once everyone has the bundle: the `next` CA becomes `active` and
//!    signs the controllers' link and API certificates and the workers' renewals; the old
//!    one becomes `previous` and stays in the bundle, so certificates it issued still pass.
//! 3. `keys retire OLD`: the old CA leaves the bundle; a certificate it issued is refused.
//!
//! Other purposes keep their one-step rotation (the new key is active at once).

use super::Purpose;

/// A key's place in its purpose's life, as the store spells it.
pub(crate) const ACTIVE: &str = "active";
pub(crate) const NEXT: &str = "next";

/// The state a freshly rotated key of `purpose` starts in.
pub(crate) fn rotated_state(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::TlsCa => NEXT,
        _ => ACTIVE,
    }
}

/// Whether a new key of `purpose` may be made, given the states of its usable keys.
pub(crate) fn may_rotate(purpose: Purpose, states: &[&str]) -> Result<(), String> {
    if purpose == Purpose::TlsCa && states.contains(&NEXT) {
        return Err(
            "a next TLS CA already waits: activate it (`portcullis controller keys activate KEY`) \
             before rotating again (see `portcullis controller keys list`)"
                .into(),
        );
    }
    Ok(())
}

/// Whether `key_id` may become active: it must be a `next` key.
pub(crate) fn may_activate(key_id: &str, state: Option<&str>) -> Result<(), String> {
    match state {
        Some(NEXT) => Ok(()),
        Some(ACTIVE) => Err(format!("key {key_id} is already active")),
        Some(other) => Err(format!(
            "key {key_id} is {other}, not next: only a TLS CA made by `keys rotate tls-ca` is \
             activated (see `portcullis controller keys list`)"
        )),
        None => Err(format!(
            "no key {key_id} (see `portcullis controller keys list`)"
        )),
    }
}

/// The trust bundle: the certificates of every usable TLS CA, the signing (active) one first,
/// then the others in the order given (newest first).
pub(crate) fn bundle<'a>(cas: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let (mut active, mut others) = (Vec::new(), Vec::new());
    for (state, pem) in cas {
        let pem = pem.trim_end().to_owned() + "\n";
        if state == ACTIVE {
            active.push(pem);
        } else {
            others.push(pem);
        }
    }
    active.append(&mut others);
    active
}

#[cfg(test)]
mod tests;
